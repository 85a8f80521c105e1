"""Worker processes of a node: start, watch, stop. By pid only.

Workers are started as ``python -m <worker_module> --node-manager unix:...
--token-file F --worker-id HEX --session-dir DIR`` in the node manager's own
process group (so nothing outlives a node manager killed with its group),
output to ``DIR/logs/worker-<id>.out|.err``. A process exit is noticed at
once through a pidfd on the event loop (Linux), falling back to polling.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lineagerun.core.ids import WorkerID

log = logging.getLogger(__name__)

DEFAULT_WORKER_MODULE = "lineagerun.worker"
# Without pidfd: how often exits are polled.
EXIT_POLL_INTERVAL_S = 0.1
STOP_GRACE_S = 3.0


@dataclass(eq=False)
class WorkerProcess:
    worker_id: WorkerID
    pid: int
    popen: subprocess.Popen | None  # None for a worker we did not start
    started_s: float = field(default_factory=time.monotonic)
    pidfd: int | None = None
    exited: bool = False


class WorkerPool:
    def __init__(self, *, node_socket: str, token_file: str, session_dir: str,
                 on_exit: Callable[[WorkerID], None], worker_module: str = DEFAULT_WORKER_MODULE):
        self.node_socket = node_socket
        self.token_file = token_file
        self.session_dir = session_dir
        self.worker_module = worker_module
        self.on_exit = on_exit
        self.processes: dict[WorkerID, WorkerProcess] = {}
        self._poller: asyncio.Task | None = None
        self.logs_dir = Path(session_dir) / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> WorkerID:
        worker_id = WorkerID(os.urandom(WorkerID.SIZE))
        argv = [sys.executable, "-m", self.worker_module, "--node-manager", self.node_socket,
                "--token-file", self.token_file, "--worker-id", worker_id.hex(), "--session-dir", self.session_dir]
        name = worker_id.hex()[:16]
        with open(self.logs_dir / f"worker-{name}.out", "ab") as out, \
                open(self.logs_dir / f"worker-{name}.err", "ab") as err:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                     start_new_session=False, close_fds=True)
        process = WorkerProcess(worker_id, popen.pid, popen)
        self.processes[worker_id] = process
        self._watch(process)
        return worker_id

    def _watch(self, process: WorkerProcess) -> None:
        loop = asyncio.get_running_loop()
        try:
            process.pidfd = os.pidfd_open(process.pid)
        except (AttributeError, OSError):
            if self._poller is None:
                self._poller = loop.create_task(self._poll_exits())
            return
        loop.add_reader(process.pidfd, self._exited, process)

    def _exited(self, process: WorkerProcess) -> None:
        if process.exited:
            return
        process.exited = True
        if process.pidfd is not None:
            asyncio.get_running_loop().remove_reader(process.pidfd)
            os.close(process.pidfd)
            process.pidfd = None
        if process.popen is not None:
            try:
                process.popen.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        self.processes.pop(process.worker_id, None)
        self.on_exit(process.worker_id)

    async def _poll_exits(self) -> None:
        while True:
            await asyncio.sleep(EXIT_POLL_INTERVAL_S)
            for process in list(self.processes.values()):
                if process.popen is not None and process.popen.poll() is not None:
                    self._exited(process)

    def pid_of(self, worker_id: WorkerID) -> int | None:
        process = self.processes.get(worker_id)
        return process.pid if process is not None else None

    def kill(self, worker_id: WorkerID, sig: int = signal.SIGKILL) -> bool:
        """Signal a worker we started, by its pid; False if it is not ours or gone."""
        process = self.processes.get(worker_id)
        if process is None or process.popen is None or process.exited:
            return False
        try:
            os.kill(process.pid, sig)
        except ProcessLookupError:
            return False
        return True

    async def stop_all(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM every worker, SIGKILL what is left after ``grace_s``."""
        ours = [p for p in self.processes.values() if p.popen is not None]
        for process in ours:
            self.kill(process.worker_id, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + grace_s
        while any(p.popen.poll() is None for p in ours) and loop.time() < deadline_s:
            await asyncio.sleep(0.02)
        for process in ours:
            if process.popen.poll() is None:
                self.kill(process.worker_id, signal.SIGKILL)
                try:
                    process.popen.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    log.error("worker pid %d did not exit after SIGKILL", process.pid)
            if process.pidfd is not None:
                loop.remove_reader(process.pidfd)
                os.close(process.pidfd)
                process.pidfd = None
        if self._poller is not None:
            self._poller.cancel()
        self.processes.clear()
