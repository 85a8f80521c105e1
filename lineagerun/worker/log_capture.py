"""Worker output: where it goes, and which task wrote each line.

A worker's fd 1 and 2 go to ``SESSION/logs/worker-<id>.out`` and ``.err``
(``<id>``: the first 16 hex digits of its WorkerID). The node manager opens
them when it starts the worker; ``install`` re-points the fds if a worker
was started some other way, so output written by C code lands there too.

Attribution is written into the streams themselves, as marker lines
``:lineagerun:{json}`` (Ray writes ``:task_name:`` lines the same way): one
when the worker starts (worker id, pid, node) and one whenever the task (or
job) it runs changes. A marker is ordered exactly with the output around it,
needs no side index kept consistent with the file, and survives a worker
that is killed. Readers (the driver's echo, ``lineagerun logs``) parse the
files with ``StreamAttribution``, which is pure.

An actor is named by its class for all its calls (as Ray does): calls of a
threaded or async actor overlap, so a method name could be wrong.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path

MARKER = ":lineagerun:"
LOGS_DIR_NAME = "logs"
WORKER_FILE_PREFIX = "worker-"
WORKER_ID_CHARS = 16
# A line longer than this (no newline in sight) is cut and passed on in
# pieces: a reader must not hold unbounded text for one line.
LINE_CHARS_MAX = 64 * 1024


def log_paths(session_dir: str | os.PathLike, worker_id_hex: str) -> tuple[Path, Path]:
    """(stdout file, stderr file) of a worker."""
    logs_dir = Path(session_dir) / LOGS_DIR_NAME
    name = f"{WORKER_FILE_PREFIX}{worker_id_hex[:WORKER_ID_CHARS]}"
    return logs_dir / f"{name}.out", logs_dir / f"{name}.err"


def encode_marker(fields: dict) -> bytes:
    return (MARKER + json.dumps(fields, separators=(",", ":"), sort_keys=True) + "\n").encode()


def split_marker(line: str) -> tuple[str, dict | None]:
    """(text of the line before a marker, the marker's fields) or (line,
    None). A marker after text happens when output without a newline
    (``print(x, end="")``) precedes it; that text belongs to the task before."""
    index = line.find(MARKER)
    if index < 0:
        return line, None
    try:
        fields = json.loads(line[index + len(MARKER):])
    except ValueError:
        return line, None
    if not isinstance(fields, dict):
        return line, None
    return line[:index], fields


# ------------------------------------------------------------ reading (pure)


@dataclass(frozen=True)
class Attribution:
    """Who wrote a line: the task (or actor class) and job, on which worker."""

    name: str = ""
    job_hex: str = ""
    pid: int | None = None
    node_hex: str = ""
    worker_hex: str = ""

    def prefix(self) -> str:
        """``(name pid=N node=abcd1234)``, Ray's form."""
        pid = self.pid if self.pid is not None else "?"
        return f"({self.name or 'worker'} pid={pid} node={self.node_hex[:8] or '?'})"


class StreamAttribution:
    """Feed the lines of one worker stream in order; get back the output
    lines with their attribution (markers are consumed)."""

    def __init__(self) -> None:
        self.current = Attribution()
        self.tasks_seen = 0

    def feed(self, line: str) -> list[tuple[Attribution, str]]:
        text, fields = split_marker(line)
        if fields is None:
            return [(self.current, line)]
        before = [(self.current, text)] if text else []
        self._apply(fields)
        return before

    def _apply(self, fields: dict) -> None:
        current = self.current
        if "pid" in fields:
            current = replace(current, pid=_int_or_none(fields.get("pid")), node_hex=str(fields.get("node", "")),
                              worker_hex=str(fields.get("worker", "")))
        if "task" in fields:
            current = replace(current, name=str(fields["task"]), job_hex=str(fields.get("job", "")))
            self.tasks_seen += 1
        self.current = current


def _int_or_none(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class LineSplitter:
    """Bytes of a growing file in, complete lines out; an unfinished last
    line is kept (at most ``LINE_CHARS_MAX``) until its newline comes."""

    def __init__(self) -> None:
        self._partial = ""

    def feed(self, data: bytes) -> list[str]:
        text = self._partial + data.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        if len(self._partial) > LINE_CHARS_MAX:
            lines.append(self._partial)
            self._partial = ""
        return lines

    def flush(self) -> list[str]:
        """The unfinished line, if any (the file is not going to grow)."""
        partial, self._partial = self._partial, ""
        return [partial] if partial else []


# ------------------------------------------------------------ writing (worker)


class LogCapture:
    """In a worker: owns fds 1 and 2 and writes the markers."""

    def __init__(self, stdout_path: Path, stderr_path: Path) -> None:
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self._lock = threading.Lock()
        self._marked: tuple[str, str] | None = None

    def install(self, worker_id_hex: str, node_id_hex: str) -> None:
        self.stdout_path.parent.mkdir(parents=True, exist_ok=True)
        for fd, path in ((1, self.stdout_path), (2, self.stderr_path)):
            if not _fd_is_file(fd, path):
                target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(target, fd)
                os.close(target)
        # Block-buffered output of a task could otherwise reach the file
        # after the next task's marker and be attributed to it.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.reconfigure(line_buffering=True)
            except (AttributeError, ValueError):
                pass
        self._write(encode_marker({"worker": worker_id_hex, "pid": os.getpid(), "node": node_id_hex}))

    def mark(self, name: str, job_hex: str) -> None:
        """The task now running; a marker only when it changes."""
        key = (name, job_hex)
        if key == self._marked:
            return
        with self._lock:
            if key == self._marked:
                return
            self._marked = key
            self._write(encode_marker({"task": name, "job": job_hex}))

    def _write(self, marker: bytes) -> None:
        for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
            try:
                stream.flush()  # what the previous task printed goes before the marker
            except (AttributeError, ValueError, OSError):
                pass
            try:
                os.write(fd, marker)
            except OSError:
                pass  # a full disk must not fail the task


def _fd_is_file(fd: int, path: Path) -> bool:
    try:
        fd_stat, path_stat = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (fd_stat.st_dev, fd_stat.st_ino) == (path_stat.st_dev, path_stat.st_ino)


_capture: LogCapture | None = None


def install(session_dir: str, worker_id_hex: str, node_id_hex: str) -> LogCapture:
    """Called once by the worker process after it registered."""
    global _capture
    capture = LogCapture(*log_paths(session_dir, worker_id_hex))
    capture.install(worker_id_hex, node_id_hex)
    _capture = capture
    return capture


def mark_running(spec, name: str) -> None:
    """Called by the executor before a task's code runs (no-op outside a
    worker that installed capture)."""
    capture = _capture
    if capture is None:
        return
    if spec.is_actor_task:
        name = name.rsplit(".", 1)[0]  # the class: calls of one actor may overlap
    capture.mark(name, spec.job_id.hex())
