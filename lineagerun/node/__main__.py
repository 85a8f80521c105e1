"""``python -m lineagerun.node``: run a node manager until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import psutil

from lineagerun.control.client import ControlStoreClient
from lineagerun.core.ids import NodeID
from lineagerun.core.keys import node_key
from lineagerun.core.resources import CPU, GPU, ResourceSet
from lineagerun.exceptions import ConfigurationError, InvalidArgumentError, LineagerunError
from lineagerun.node.cluster_link import ClusterLink
from lineagerun.node.lineage_writer import LineageWriter
from lineagerun.node.object_table import NodeObjectStore
from lineagerun.node.server import NodeManager
from lineagerun.node.session import NodeManagerServicer
from lineagerun.node.store_dial import store_dial
from lineagerun.node.worker_pool import DEFAULT_WORKER_MODULE, WorkerPool
from lineagerun.objects import cleanup_stale_sessions, new_session_id
from lineagerun.objects.shm import SHM_DIR
from lineagerun.objects.transfer import ObjectManagerServicer
from lineagerun.rpc import lineage_pb2, node_pb2_grpc
from lineagerun.transport.auth import read_token_file
from lineagerun.transport.channels import bind, make_aio_server
from lineagerun.util import event_loop

log = logging.getLogger("lineagerun.node")

HEARTBEAT_INTERVAL_S = 0.1
# Default object store: 30% of RAM, at most 2 GiB, and at most half of /dev/shm.
OBJECT_STORE_RAM_FRACTION = 0.3
OBJECT_STORE_DEFAULT_MAX_BYTES = 2 * 1024**3
# A unix socket path is at most 107 bytes (sun_path); longer session
# directories get the socket under /tmp instead (ready.json says where).
UNIX_PATH_MAX = 107
# Workers beyond the CPU count: blocked workers (a task waiting in get) lend
# their CPUs, and new tasks then need new processes.
WORKERS_PER_CPU_MAX = 4
WORKERS_EXTRA_MAX = 4
# The event loop shares the GIL with the control-store writer thread and
# gRPC's threads; at Python's default 5 ms a woken loop could wait that long
# for the GIL, which showed as 8-10 ms task round trips (3.5 ms at 0.2 ms).
GIL_SWITCH_INTERVAL_S = 0.0005


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lineagerun.node", description=__doc__)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--control-store", required=True, help="coordinator host:port")
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--num-cpus", type=float, required=True)
    parser.add_argument("--num-gpus", type=float, default=0)
    parser.add_argument("--resources", default="{}", help="JSON dict of custom resources")
    parser.add_argument("--object-store-memory", type=int, default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--node-id", default=None)
    parser.add_argument("--prestart-workers", type=int, default=None)
    parser.add_argument("--worker-module", default=DEFAULT_WORKER_MODULE, help=argparse.SUPPRESS)
    parser.add_argument("--global-scheduler", default=None,
                        help="host:port of the cluster's global scheduler: join a multi-node cluster")
    parser.add_argument("--heartbeat-interval-ms", type=int, default=100,
                        help="load reports (heartbeats) to the global scheduler")
    parser.add_argument("--advertise-host", default=None,
                        help="host peers use to reach this node (default: --host, or this machine's "
                             "address when --host is 0.0.0.0)")
    parser.add_argument("--tls-cert", default=None, help="PEM certificate for the TCP port (with --tls-key)")
    parser.add_argument("--tls-key", default=None)
    parser.add_argument("--tls-ca", default=None, help="PEM root certificate peers are checked against")
    return parser.parse_args(argv)


def total_resources(args: argparse.Namespace) -> ResourceSet:
    try:
        custom = json.loads(args.resources)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"--resources must be a JSON object of name -> amount: {exc}") from None
    if not isinstance(custom, dict) or {CPU, GPU} & set(custom):
        raise InvalidArgumentError("--resources must be a JSON object without CPU/GPU (use --num-cpus/--num-gpus)")
    return ResourceSet({CPU: args.num_cpus, GPU: args.num_gpus, **custom})


def default_store_bytes() -> int:
    import shutil

    ram = psutil.virtual_memory().total
    return int(min(ram * OBJECT_STORE_RAM_FRACTION, OBJECT_STORE_DEFAULT_MAX_BYTES,
                   shutil.disk_usage(SHM_DIR).total // 2))


def socket_path(node_dir: Path, node_id: NodeID) -> str:
    path = str((node_dir / "node.sock").resolve())
    if len(path) > UNIX_PATH_MAX:
        path = f"/tmp/lr-{node_id.hex()[:16]}-{os.getpid()}.sock"
    return path


def write_json_atomic(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def node_record(node_id: NodeID, address: str, total: ResourceSet, started_ms: int) -> lineage_pb2.NodeRecord:
    # Incarnation = start time: a node manager restarted on the same node id
    # is a newer incarnation, and the global scheduler fences the old one.
    return lineage_pb2.NodeRecord(node_id=node_id.binary(), address=address, resources_total=total.units_dict(),
                                  alive=True, heartbeat_ms=started_ms, started_ms=started_ms,
                                  incarnation=started_ms)


def advertised_host(args: argparse.Namespace) -> str:
    if args.advertise_host:
        return args.advertise_host
    if args.host in ("0.0.0.0", "::", ""):
        import socket

        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"
    return args.host


def tls_files(args: argparse.Namespace) -> tuple[tuple[bytes, bytes] | None, bytes | None]:
    """((key, cert) for the server, root cert for peers), from the TLS flags."""
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigurationError("--tls-cert and --tls-key go together")
    server = (Path(args.tls_key).read_bytes(), Path(args.tls_cert).read_bytes()) if args.tls_cert else None
    root = Path(args.tls_ca).read_bytes() if args.tls_ca else (server[1] if server else None)
    return server, root


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()  # set early: a SIGTERM during start-up still cleans up
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    token = read_token_file(args.token_file)
    node_id = NodeID.from_hex(args.node_id) if args.node_id else NodeID(os.urandom(NodeID.SIZE))
    total = total_resources(args)
    session_dir = str(Path(args.session_dir).resolve())
    node_dir = Path(session_dir) / "nodes" / node_id.hex()
    node_dir.mkdir(parents=True, exist_ok=True)
    cleanup_stale_sessions()
    # The manager is made below (it needs the store); the callback runs later.
    store = NodeObjectStore(new_session_id(), args.object_store_memory or default_store_bytes(),
                            on_evicted=lambda oid: _evicted(manager, oid))
    client = ControlStoreClient(args.control_store, token)
    # Chaos clusters: this node's own proxies to the replicas (node/store_dial.py).
    client.address_map = store_dial()
    writer = LineageWriter(client)
    sock = socket_path(node_dir, node_id)
    if os.path.exists(sock):
        os.unlink(sock)
    cpus = max(1, int(args.num_cpus))
    prestart = cpus if args.prestart_workers is None else args.prestart_workers
    pool = WorkerPool(node_socket=f"unix:{sock}", token_file=str(Path(args.token_file).resolve()),
                      session_dir=session_dir, on_exit=lambda _w: None, worker_module=args.worker_module)
    manager = NodeManager(node_id=node_id, total=total, store=store, writer=writer, pool=pool,
                          session_dir=session_dir, control_store_address=args.control_store,
                          prestart_workers=prestart,
                          worker_pool_size_max=max(prestart, cpus * WORKERS_PER_CPU_MAX + WORKERS_EXTRA_MAX))
    server = make_aio_server(token)
    node_pb2_grpc.add_NodeManagerServicer_to_server(NodeManagerServicer(manager), server)
    tls, root_cert = tls_files(args)
    port = bind(server, args.host, args.port, token, tls=tls)
    if not server.add_insecure_port(f"unix:{sock}"):
        raise ConfigurationError(f"could not listen on unix:{sock}")
    address = f"{advertised_host(args)}:{port}"
    manager.address = address
    started_ms = int(time.time() * 1000)
    if args.global_scheduler:
        manager.cluster = ClusterLink(manager, scheduler_address=args.global_scheduler, token=token,
                                      incarnation=started_ms, heartbeat_interval_ms=args.heartbeat_interval_ms,
                                      on_fenced=lambda reason: _fenced(stop, reason), root_cert=root_cert)
        ObjectManagerServicer(store, payload_info=manager.cluster.payload_info).add_to_server(server)
    record = node_record(node_id, address, total, started_ms)
    await loop.run_in_executor(None, client.put, node_key(node_id), record.SerializeToString())
    await server.start()
    if manager.cluster is not None:
        await manager.cluster.start()
    for _ in range(prestart):
        pool.start()
    write_json_atomic(node_dir / "ready.json", {
        "node_id": node_id.hex(), "address": address, "socket": f"unix:{sock}", "pid": os.getpid(),
        "store_session_id": store.session_id})
    heartbeat = loop.create_task(_heartbeat(writer, node_id, record))
    log.info("node %s serving on %s and unix:%s", node_id.hex()[:16], address, sock)
    await stop.wait()
    log.info("stopping")
    heartbeat.cancel()
    manager.stopping = True
    if manager.cluster is not None:
        await manager.cluster.stop()
    await manager.stop()
    log.info("workers stopped")
    await server.stop(grace=0.5)
    log.info("server stopped")
    store.close()
    record.alive, record.died_ms, record.death_reason = False, int(time.time() * 1000), "stopped (SIGTERM)"
    writer.write_later(node_key(node_id), record.SerializeToString())
    await writer.flush(timeout_s=2.0)
    log.info("stopped")
    writer.close()
    client.close()
    for path in (sock, str(node_dir / "ready.json")):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _evicted(manager: NodeManager, object_id: bytes) -> None:
    manager.objects.evicted(object_id)
    if manager.cluster is not None:
        manager.cluster.evicted(object_id)


def _fenced(stop: asyncio.Event, reason: str) -> None:
    log.error("stopping: the cluster declared this node dead (%s)", reason)
    stop.set()


async def _heartbeat(writer: LineageWriter, node_id: NodeID, record: lineage_pb2.NodeRecord) -> None:
    key = node_key(node_id)
    while True:
        await asyncio.sleep(HEARTBEAT_INTERVAL_S)
        record.heartbeat_ms = int(time.time() * 1000)
        writer.write_later(key, record.SerializeToString())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("LINEAGERUN_NODE_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    profile_path = os.environ.get("LINEAGERUN_NODE_PROFILE")  # for performance work only
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        event_loop.run(serve(args))
    except (ConfigurationError, InvalidArgumentError) as exc:
        print(f"lineagerun node: {exc}", file=sys.stderr)
        return 2
    except LineagerunError as exc:  # e.g. the control store unreachable at start
        print(f"lineagerun node: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    # Workers are stopped and shm files unlinked by now; a control-store
    # write still retrying on a writer thread (store already gone) must not
    # hold the exit for its whole retry budget, as interpreter exit would.
    if profile_path:
        profiler.disable()
        profiler.dump_stats(profile_path)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
