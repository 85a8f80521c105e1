"""python -m lineagerun.control.coordinator --dir DIR --shards S --replicas R
[--host 127.0.0.1] [--port 0] --token-file FILE [--heartbeat-interval-ms 100]
[--failure-timeout-ms 1000] [--lease-ms 600] [--tls-cert F --tls-key F] [--tls-ca F]

Exit codes: 0 clean stop (SIGTERM/SIGINT); 2 bad command line; 3 the
directory belongs to another layout or another coordinator holds it;
4 config.pb is corrupt; 1 anything else (e.g. config.pb cannot be written).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from lineagerun.control import dial_map
from lineagerun.control.coordinator.persistence import ConfigStore, CorruptConfigError
from lineagerun.control.coordinator.server import CoordinatorOptions, FatalCoordinatorError, serve
from lineagerun.core.chain.coordinator_events import CoordinatorSettings
from lineagerun.exceptions import ConfigurationError
from lineagerun.transport import tls
from lineagerun.transport.auth import read_token_file
from lineagerun.transport.channels import DEFAULT_HOST

EXIT_BAD_ARGUMENTS = 2
EXIT_WRONG_DIRECTORY = 3
EXIT_CORRUPT_CONFIG = 4
EXIT_FATAL = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lineagerun.control.coordinator",
                                description="lineagerun control-store chain coordinator")
    p.add_argument("--dir", required=True, type=Path, help="directory for config.pb, ready, lock")
    p.add_argument("--shards", required=True, type=int, help="number of shards (used at first start)")
    p.add_argument("--replicas", required=True, type=int, help="replicas per shard to wait for at bootstrap")
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--port", default=0, type=int, help="0 picks a free port (written to DIR/ready)")
    p.add_argument("--token-file", required=True, type=Path)
    p.add_argument("--heartbeat-interval-ms", default=100, type=int)
    p.add_argument("--failure-timeout-ms", default=1000, type=int)
    p.add_argument("--lease-ms", default=600, type=int)
    p.add_argument("--dial-map", default=None, type=Path,
                   help="JSON file: a replica's advertised address -> address to dial (chaos proxies per link)")
    tls.add_flags(p)  # the coordinator serves, and dials the replicas, over TLS
    return p


def _fail(code: int, message: str) -> int:
    print(f"lineagerun coordinator: error: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s coordinator %(levelname)s %(message)s")
    try:
        CoordinatorSettings(num_shards=args.shards, replicas_per_shard=args.replicas,
                            failure_timeout_ms=args.failure_timeout_ms, lease_ms=args.lease_ms)
        if args.heartbeat_interval_ms < 1 or args.heartbeat_interval_ms >= args.failure_timeout_ms:
            raise ConfigurationError(
                f"--heartbeat-interval-ms ({args.heartbeat_interval_ms}) must be positive and shorter than "
                f"--failure-timeout-ms ({args.failure_timeout_ms})")
        if not 0 <= args.port < 65536:
            raise ConfigurationError(f"--port {args.port} is not a TCP port")
        token = read_token_file(args.token_file)
        dial_map.configure(args.dial_map)
        tls.configure_process_tls(tls.from_flags(args.tls_cert, args.tls_key, args.tls_ca) or tls.process_tls())
    except ConfigurationError as err:
        return _fail(EXIT_BAD_ARGUMENTS, str(err))
    try:
        persisted = ConfigStore(args.dir).load()
    except CorruptConfigError as err:
        return _fail(EXIT_CORRUPT_CONFIG, str(err))
    if persisted is not None and persisted.num_shards != args.shards:
        return _fail(EXIT_WRONG_DIRECTORY,
                     f"{args.dir} holds a cluster with {persisted.num_shards} shards, not {args.shards}; "
                     f"restart with --shards {persisted.num_shards} or use a new directory")
    options = CoordinatorOptions(directory=args.dir, num_shards=args.shards, replicas_per_shard=args.replicas,
                                 token=token, host=args.host, port=args.port,
                                 heartbeat_interval_ms=args.heartbeat_interval_ms,
                                 failure_timeout_ms=args.failure_timeout_ms, lease_ms=args.lease_ms)
    try:
        return asyncio.run(serve(options))
    except CorruptConfigError as err:
        return _fail(EXIT_CORRUPT_CONFIG, str(err))
    except ConfigurationError as err:
        return _fail(EXIT_WRONG_DIRECTORY, str(err))
    except (FatalCoordinatorError, OSError) as err:
        return _fail(EXIT_FATAL, str(err))


if __name__ == "__main__":
    sys.exit(main())
