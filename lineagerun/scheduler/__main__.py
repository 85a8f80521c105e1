"""python -m lineagerun.scheduler --session-dir DIR --control-store HOST:PORT
--token-file FILE [--host 127.0.0.1] [--port 0] [--heartbeat-interval-ms 100]
[--node-timeout-ms 1000] [--tls-cert F --tls-key F] [--tls-ca F]

Serves the global scheduler and writes ``DIR/scheduler/ready.json``
(``{"address": "host:port", "pid": N}``, written to a temporary file and
renamed) once it has read the ``node/`` table and is serving.

Exit codes: 0 clean stop (SIGTERM/SIGINT); 2 bad command line or settings;
1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from lineagerun.control.client import ControlStoreClient
from lineagerun.exceptions import ConfigurationError, InvalidArgumentError
from lineagerun.rpc import scheduler_pb2_grpc
from lineagerun.scheduler.server import SchedulerService, SchedulerSettings
from lineagerun.transport import tls
from lineagerun.transport.auth import read_token_file
from lineagerun.transport.channels import DEFAULT_HOST, bind, make_aio_server

EXIT_BAD_ARGUMENTS = 2
EXIT_FATAL = 1
READY_FILE_NAME = "ready.json"
# In-flight RPCs get this long to finish at SIGTERM.
STOP_GRACE_S = 0.5


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lineagerun.scheduler", description="lineagerun global scheduler")
    p.add_argument("--session-dir", required=True, type=Path, help="ready.json goes to SESSION_DIR/scheduler/")
    p.add_argument("--control-store", required=True, help="control-store coordinator HOST:PORT")
    p.add_argument("--token-file", required=True, type=Path)
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--port", default=0, type=int, help="0 picks a free port")
    p.add_argument("--heartbeat-interval-ms", default=100, type=int,
                   help="how often node managers report load (and how often liveness is checked)")
    p.add_argument("--node-timeout-ms", default=1000, type=int,
                   help="a node silent this long is declared dead")
    tls.add_flags(p)  # serve TLS; the control-store client checks against --tls-ca
    return p


def write_ready(directory: Path, address: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / READY_FILE_NAME
    tmp = directory / f".{READY_FILE_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"address": address, "pid": os.getpid()}))
    os.replace(tmp, path)
    return path


async def serve(args: argparse.Namespace, settings: SchedulerSettings, token: str) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    store = ControlStoreClient(args.control_store, token)
    service = SchedulerService(settings, store)
    server = make_aio_server(token)
    scheduler_pb2_grpc.add_GlobalSchedulerServicer_to_server(service.servicer(), server)
    port = bind(server, args.host, args.port, token)  # TLS if the process's setting has a certificate
    address = f"{args.host}:{port}"
    ready_dir = args.session_dir / "scheduler"
    try:
        await service.start()
        await server.start()
        ready = write_ready(ready_dir, address)
        logging.info("global scheduler serving on %s (heartbeat %d ms, node timeout %d ms)", address,
                     settings.heartbeat_interval_ms, settings.node_timeout_ms)
        await stop.wait()
        logging.info("stopping")
        ready.unlink(missing_ok=True)
    finally:
        await server.stop(STOP_GRACE_S)
        await service.stop()
        await asyncio.to_thread(store.close)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=os.environ.get("LINEAGERUN_SCHEDULER_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="%(asctime)s scheduler %(levelname)s %(name)s: %(message)s")
    try:
        settings = SchedulerSettings(args.heartbeat_interval_ms, args.node_timeout_ms)
        if not 0 <= args.port < 65536:
            raise ConfigurationError(f"--port {args.port} is not a TCP port")
        token = read_token_file(args.token_file)
        tls.configure_process_tls(tls.from_flags(args.tls_cert, args.tls_key, args.tls_ca) or tls.process_tls())
    except (ConfigurationError, InvalidArgumentError) as err:
        print(f"lineagerun scheduler: error: {err}", file=sys.stderr, flush=True)
        return EXIT_BAD_ARGUMENTS
    try:
        return asyncio.run(serve(args, settings, token))
    except ConfigurationError as err:
        print(f"lineagerun scheduler: error: {err}", file=sys.stderr, flush=True)
        return EXIT_BAD_ARGUMENTS
    except Exception as err:
        logging.exception("fatal: %s", err)
        return EXIT_FATAL


if __name__ == "__main__":
    sys.exit(main())
