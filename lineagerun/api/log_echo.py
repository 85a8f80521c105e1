"""Echo workers' output to the driver, as Ray does.

A daemon thread tails the worker log files of the driver's session
(``SESSION/logs/worker-*.out|.err``) and prints each new line of a task of
*this driver's job* to the driver's stdout (``.out``) or stderr (``.err``),
prefixed ``(name pid=N node=abcd1234)``. Which task wrote a line comes from
the marker lines the worker writes (``lineagerun.worker.log_capture``).

The files are polled (every ``POLL_INTERVAL_S``) rather than streamed from
the node manager: no RPC, nothing on the node manager's loop, and a line is
echoed even when the worker that wrote it was killed. The price is up to one
interval of delay; ``stop()`` reads what is left, so what tasks printed
before ``shutdown()`` is not lost.

Files present when the echo starts are read from their end: they hold
nothing of this job (its job id is new), only their first line is read, for
the worker's pid and node.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lineagerun.worker.log_capture import (
    LOGS_DIR_NAME,
    WORKER_FILE_PREFIX,
    LineSplitter,
    StreamAttribution,
)

POLL_INTERVAL_S = 0.1
# Read at most this much of one file per poll, so that one chatty worker
# does not hold back the others (the rest is read on the next round, at once).
READ_BYTES_MAX = 1024 * 1024
# A file present at start is read (without echoing) to learn which task is
# running when it is at most this big; a bigger one only for its first line
# (the worker's marker), and its lines show the worker until the next marker.
SKIP_SCAN_BYTES_MAX = 1024 * 1024
HEADER_BYTES_MAX = 4096
# Files followed at once: every worker that lived in the session leaves two.
FILES_TRACKED_MAX = 8192
STOP_JOIN_TIMEOUT_S = 5.0


@dataclass
class _Tail:
    path: Path
    is_stderr: bool
    offset: int = 0
    splitter: LineSplitter = field(default_factory=LineSplitter)
    attribution: StreamAttribution = field(default_factory=StreamAttribution)


class LogEcho:
    """``job_hex=None`` echoes every line (``lineagerun logs --follow``);
    ``file_names`` limits it to those files of the directory; ``raw`` echoes
    lines as written (markers included, no prefix)."""

    def __init__(self, logs_dir: str | os.PathLike, job_hex: str | None, *, poll_interval_s: float = POLL_INTERVAL_S,
                 file_names: frozenset[str] | None = None, raw: bool = False):
        self.logs_dir = Path(logs_dir)
        self.job_hex = job_hex
        self.file_names = file_names
        self.raw = raw
        self.poll_interval_s = poll_interval_s
        self._tails: dict[str, _Tail] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll_lock = threading.Lock()
        self.lines_echoed = 0

    def start(self) -> None:
        self.start_at_end()
        self._thread = threading.Thread(target=self._run, name="lineagerun-log-echo", daemon=True)
        self._thread.start()

    def start_at_end(self) -> None:
        """Files present now are echoed from their end on."""
        for path in self._worker_files():
            tail = self._track(path)
            if tail is not None:
                self._skip_to_end(tail)

    def stop(self) -> None:
        """Stop the thread, then echo what is left in the files."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(STOP_JOIN_TIMEOUT_S)
        self.poll_once(final=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            more = self.poll_once()
            if not more:
                self._stop.wait(self.poll_interval_s)

    # ---------------------------------------------------------------- files

    def _worker_files(self) -> list[Path]:
        try:
            with os.scandir(self.logs_dir) as entries:
                return sorted(Path(e.path) for e in entries
                              if e.name.startswith(WORKER_FILE_PREFIX) and e.name.endswith((".out", ".err"))
                              and (self.file_names is None or e.name in self.file_names))
        except OSError:
            return []

    def _track(self, path: Path) -> _Tail | None:
        tail = self._tails.get(path.name)
        if tail is None and len(self._tails) < FILES_TRACKED_MAX:
            tail = _Tail(path, path.name.endswith(".err"))
            self._tails[path.name] = tail
        return tail

    def _skip_to_end(self, tail: _Tail) -> None:
        try:
            with open(tail.path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                data = file.read(size if size <= SKIP_SCAN_BYTES_MAX else HEADER_BYTES_MAX)
        except OSError:
            return
        lines = data.split(b"\n")
        if size > SKIP_SCAN_BYTES_MAX:
            lines = lines[:1]
        for line in lines:
            tail.attribution.feed(line.decode("utf-8", errors="replace"))
        tail.offset = size

    def follow(self, path: Path, offset: int, splitter: LineSplitter, attribution: StreamAttribution) -> None:
        """Continue a file from where a reader left it (``lineagerun logs
        --follow`` after printing it)."""
        self._tails[path.name] = _Tail(path, path.name.endswith(".err"), offset, splitter, attribution)

    def poll_once(self, final: bool = False) -> bool:
        """Echo new lines of every file; True if a file has more to read."""
        # The final read must not wait for ever behind a thread stuck writing
        # to a driver's full pipe.
        if not self._poll_lock.acquire(timeout=STOP_JOIN_TIMEOUT_S if final else -1):
            return False
        try:
            more = False
            for path in self._worker_files():
                tail = self._track(path)
                if tail is not None and (final or _size(path) > tail.offset):
                    more |= self._read(tail, final)
            return more
        finally:
            self._poll_lock.release()

    def _read(self, tail: _Tail, final: bool) -> bool:
        try:
            with open(tail.path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                if size <= tail.offset:
                    data = b""
                else:
                    file.seek(tail.offset)
                    data = file.read(READ_BYTES_MAX)
        except OSError:
            return False
        tail.offset += len(data)
        lines = tail.splitter.feed(data) if data else []
        if final:
            lines += tail.splitter.flush()
        self._echo(tail, lines)
        return tail.offset < size

    def _echo(self, tail: _Tail, lines: list[str]) -> None:
        out = []
        for line in lines:
            if self.raw:
                tail.attribution.feed(line)
                out.append(line + "\n")
                continue
            for attribution, text in tail.attribution.feed(line):
                if self.job_hex is None or attribution.job_hex == self.job_hex:
                    out.append(f"{attribution.prefix()} {text}\n")
        if not out:
            return
        stream = sys.stderr if tail.is_stderr else sys.stdout
        try:
            stream.write("".join(out))
            stream.flush()
        except (OSError, ValueError):
            return  # the driver closed its stream; nothing to echo to
        self.lines_echoed += len(out)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


_echo: LogEcho | None = None
_echo_lock = threading.Lock()


def start(session_dir: str | os.PathLike, job_hex: str) -> LogEcho:
    """Start echoing the session's worker output of ``job_hex`` (the driver's
    job); replaces an echo already running."""
    global _echo
    with _echo_lock:
        if _echo is not None:
            _echo.stop()
        _echo = LogEcho(Path(session_dir) / LOGS_DIR_NAME, job_hex)
        _echo.start()
        return _echo


def stop() -> None:
    global _echo
    with _echo_lock:
        echo, _echo = _echo, None
    if echo is not None:
        echo.stop()
