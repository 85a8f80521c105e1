"""``python -m lineagerun.control.replica``: one control-store replica.

Exit codes: 0 after SIGTERM/SIGINT (clean stop), 2 bad arguments,
3 ``ShardMismatchError`` (the directory belongs to another shard, replica or
cluster), 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from lineagerun.control import dial_map
from lineagerun.control.replica.identity import check_identity
from lineagerun.control.replica.server import ReplicaService, now_ms, print_fatal
from lineagerun.control.replica.storage import DURABILITY_MODES, RocksStorage
from lineagerun.core.chain.replica import ReplicaCore, ReplicaSettings
from lineagerun.exceptions import ConfigurationError, ShardMismatchError
from lineagerun.rpc import control_store_pb2_grpc
from lineagerun.transport import channels, tls
from lineagerun.transport.auth import read_token_file
from lineagerun.util import event_loop

EXIT_SHARD_MISMATCH = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lineagerun.control.replica",
                                description="A control-store chain replica (RocksDB in DIR/db).")
    p.add_argument("--dir", required=True, type=Path, help="replica directory (db/, IDENTITY, ready)")
    p.add_argument("--shard", required=True, type=int)
    p.add_argument("--replica-id", required=True, help='stable across restarts, e.g. "s0r1"')
    p.add_argument("--coordinator", required=True, help="HOST:PORT of the chain coordinator")
    p.add_argument("--host", default=channels.DEFAULT_HOST)
    p.add_argument("--port", default=0, type=int, help="0 picks a free port (written to DIR/ready)")
    p.add_argument("--advertise-host", default=None,
                   help="host the coordinator, peers and clients are told to dial (default: --host); "
                        "a chaos cluster gives a proxy's")
    p.add_argument("--advertise-port", default=0, type=int, help="port to advertise (default: the bound one)")
    p.add_argument("--dial-map", default=None, type=Path,
                   help="JSON file: advertised peer address -> address to dial (chaos proxies per link)")
    p.add_argument("--token-file", required=True, type=Path)
    p.add_argument("--durability", default="wal", choices=DURABILITY_MODES)
    p.add_argument("--heartbeat-interval-ms", default=100, type=int)
    p.add_argument("--log-retention-entries", default=100_000, type=int)
    p.add_argument("--max-key-bytes", default=4096, type=int)
    p.add_argument("--max-value-bytes", default=16 * 1024 * 1024, type=int)
    p.add_argument("--log-level", default=os.environ.get("LINEAGERUN_LOG_LEVEL", "WARNING"))
    tls.add_flags(p)  # the replica serves, and dials its peers and the coordinator, over TLS
    return p


def _write_ready(directory: Path, address: str) -> None:
    tmp = directory / "ready.tmp"
    tmp.write_text(address)
    os.replace(tmp, directory / "ready")


async def _serve(args, token: str, cluster_id: str) -> int:
    storage = RocksStorage(args.dir / "db", args.durability)
    server = None
    service = None
    try:
        server = channels.make_aio_server(token)
        port = channels.bind(server, args.host, args.port, token)
        address = f"{args.host}:{port}"
        advertised = f"{args.advertise_host or args.host}:{args.advertise_port or port}"
        settings = ReplicaSettings(
            shard=args.shard, replica_id=args.replica_id, address=advertised, cluster_id=cluster_id,
            heartbeat_interval_ms=args.heartbeat_interval_ms, log_retention_entries=args.log_retention_entries,
            max_key_bytes=args.max_key_bytes, max_value_bytes=args.max_value_bytes, require_shard_count=True)
        core = ReplicaCore(settings, storage, now_ms())
        service = ReplicaService(core, storage, directory=args.dir, coordinator_address=args.coordinator,
                                 token=token)
        control_store_pb2_grpc.add_ControlStoreReplicaServicer_to_server(service, server)
        await server.start()
        _write_ready(args.dir, address)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.stopped.set)
        ticker = loop.create_task(service.run_ticks())
        await service.stopped.wait()
        ticker.cancel()
        if service.fatal_error is not None:
            print_fatal(service.fatal_error)
            return EXIT_SHARD_MISMATCH if isinstance(service.fatal_error, ShardMismatchError) else 1
        return 0
    finally:
        if server is not None:
            await server.stop(0.2)
        if service is not None:
            await service.close()
        storage.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s replica {args.replica_id} %(levelname)s %(name)s: %(message)s")
    try:
        for name in ("heartbeat_interval_ms", "log_retention_entries", "max_key_bytes", "max_value_bytes"):
            if getattr(args, name) <= 0:
                raise ConfigurationError(f"--{name.replace('_', '-')} must be positive")
        if not 0 <= args.advertise_port <= 65535:
            raise ConfigurationError(f"--advertise-port must be 0..65535, got {args.advertise_port}")
        dial_map.configure(args.dial_map)
        args.dir.mkdir(parents=True, exist_ok=True)
        identity = check_identity(args.dir, args.shard, args.replica_id)
        token = read_token_file(args.token_file)
        tls.configure_process_tls(tls.from_flags(args.tls_cert, args.tls_key, args.tls_ca) or tls.process_tls())
    except ShardMismatchError as err:
        print_fatal(err)
        return EXIT_SHARD_MISMATCH
    except ConfigurationError as err:
        print_fatal(err)
        return 2
    return event_loop.run(_serve(args, token, identity.cluster_id if identity else ""))


if __name__ == "__main__":
    sys.exit(main())
