"""A worker process: ``python -m lineagerun.worker --node-manager unix:PATH
--token-file FILE --worker-id HEX --session-dir DIR`` (started by the node
manager). Registers, runs the tasks it is sent, exits when the session ends
or the node manager says ``exit``."""

from __future__ import annotations

import argparse
import os
import sys

WORKER_SWITCH_INTERVAL_S = 0.0005


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lineagerun.worker")
    parser.add_argument("--node-manager", required=True, help="address of the node manager (unix:/path)")
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--worker-id", required=True, help="hex WorkerID")
    parser.add_argument("--session-dir", required=True)
    args = parser.parse_args(argv)

    from lineagerun.api import context
    from lineagerun.core.ids import WorkerID
    from lineagerun.rpc import node_pb2
    from lineagerun.transport.auth import read_token_file
    from lineagerun.worker.core_worker import CoreWorker
    from lineagerun.worker.executor import Executor

    # Wake the thread a message is for promptly: at the default 5 ms switch
    # interval the executor waits behind gRPC's threads for the GIL.
    sys.setswitchinterval(WORKER_SWITCH_INTERVAL_S)
    token = read_token_file(args.token_file)
    executor_box = []
    core = CoreWorker(args.node_manager, token, kind=node_pb2.Register.WORKER,
                      worker_id=WorkerID.from_hex(args.worker_id),
                      on_node_message=lambda message: executor_box[0].on_node_message(message),
                      on_closed=lambda: executor_box[0].on_closed())
    executor = Executor(core)
    executor_box.append(executor)
    core.connect()
    core.track_refs(keep_escaped=True)
    from lineagerun.worker import log_capture

    log_capture.install(args.session_dir, args.worker_id, core.node_id_hex)
    context.set_worker(core, args.session_dir)
    executor.run_forever()
    sys.stdout.flush()
    sys.stderr.flush()
    # Threads of user code (actor pools, loops) must not keep a stopped worker alive.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
