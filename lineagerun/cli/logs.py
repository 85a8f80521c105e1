"""``lineagerun logs [WORKER_OR_PID] [--session DIR] [--tail N] [--follow] [--raw]``.

Lists the log files of a session (``SESSION/logs/``: one ``.out`` and one
``.err`` per worker, the node manager's log) with each worker's id, pid,
node and sizes; given a worker (an id prefix, a pid, or a file name) prints
its output, each line prefixed ``(task pid=N node=abcd1234)`` as the driver
echoes it (``--raw``: the file as written, marker lines included). The
session is ``--session DIR``, else the newest one under
``LINEAGERUN_SESSIONS_ROOT`` (default /tmp/lineagerun) that has logs.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from lineagerun.exceptions import ConfigurationError, InvalidArgumentError, LineagerunError, NotFoundError
from lineagerun.worker.log_capture import (
    LOGS_DIR_NAME,
    WORKER_FILE_PREFIX,
    LineSplitter,
    StreamAttribution,
)

SESSIONS_ROOT_DEFAULT = "/tmp/lineagerun"
FOLLOW_INTERVAL_S = 0.2
READ_CHUNK_BYTES = 1024 * 1024
HEADER_BYTES_MAX = 4096
# A worker id prefix shorter than this is too likely to name several.
WORKER_PREFIX_CHARS_MIN = 4


@dataclass(frozen=True)
class WorkerLog:
    name: str               # worker-<16 hex digits>
    worker_hex: str         # the full id when the worker wrote its marker, else the 16 digits of the name
    pid: int | None
    node_hex: str
    stdout: Path | None
    stderr: Path | None

    def size_bytes(self, path: Path | None) -> int | None:
        try:
            return path.stat().st_size if path is not None else None
        except OSError:
            return None


# ------------------------------------------------------------------ finding


def find_session(session: Path | None) -> Path:
    if session is not None:
        if not (session / LOGS_DIR_NAME).is_dir():
            raise ConfigurationError(f"{session} has no {LOGS_DIR_NAME}/ directory: pass a session directory "
                                     f"(e.g. {SESSIONS_ROOT_DEFAULT}/session_...)")
        return session
    root = Path(os.environ.get("LINEAGERUN_SESSIONS_ROOT") or SESSIONS_ROOT_DEFAULT)
    try:
        sessions = [p for p in root.iterdir() if (p / LOGS_DIR_NAME).is_dir()]
    except OSError:
        sessions = []
    if not sessions:
        raise ConfigurationError(f"no session with logs under {root}: pass --session DIR, or start a cluster "
                                 "(lineagerun.init())")
    return max(sessions, key=lambda p: p.stat().st_mtime)


def worker_logs(logs_dir: Path) -> tuple[list[WorkerLog], list[Path]]:
    """(workers, other log files) of a logs directory."""
    streams: dict[str, dict[str, Path]] = collections.defaultdict(dict)
    others = []
    for path in sorted(logs_dir.iterdir()):
        stem, suffix = path.stem, path.suffix
        if stem.startswith(WORKER_FILE_PREFIX) and suffix in (".out", ".err"):
            streams[stem][suffix] = path
        elif path.is_file():
            others.append(path)
    workers = []
    for name, files in streams.items():
        attribution = StreamAttribution()
        for path in files.values():
            attribution.feed(_first_line(path))
            if attribution.current.pid is not None:
                break
        header = attribution.current
        workers.append(WorkerLog(name, header.worker_hex or name.removeprefix(WORKER_FILE_PREFIX), header.pid,
                                 header.node_hex, files.get(".out"), files.get(".err")))
    return workers, others


def _first_line(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            return file.read(HEADER_BYTES_MAX).split(b"\n", 1)[0].decode("utf-8", errors="replace")
    except OSError:
        return ""


def resolve(key: str, workers: list[WorkerLog], others: list[Path]) -> WorkerLog | Path:
    """A worker by pid, worker id prefix or file name; or another log file by name."""
    if key.isdigit():
        by_pid = [w for w in workers if w.pid == int(key)]
        if by_pid:
            return max(by_pid, key=lambda w: w.size_bytes(w.stdout) or 0)  # a pid reused: the busiest
    for worker in workers:
        if key in (worker.name, worker.stdout and worker.stdout.name, worker.stderr and worker.stderr.name):
            return worker
    for path in others:
        if key == path.name:
            return path
    lowered = key.lower().removeprefix(WORKER_FILE_PREFIX)
    matches = [w for w in workers if w.worker_hex.startswith(lowered)] if len(lowered) >= WORKER_PREFIX_CHARS_MIN \
        else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise InvalidArgumentError(f"{key!r} names {len(matches)} workers "
                                   f"({', '.join(w.worker_hex[:16] for w in matches[:5])}...): give more digits")
    raise NotFoundError(f"no worker with pid or id {key!r} and no log file of that name in this session; "
                        "run `lineagerun logs` to list them")


# ------------------------------------------------------------------ reading


@dataclass
class StreamState:
    path: Path
    offset: int
    splitter: LineSplitter
    attribution: StreamAttribution


def read_stream(path: Path, raw: bool, tail_lines: int | None, emit) -> StreamState:
    """Emit the lines of a file (formatted unless ``raw``; the last
    ``tail_lines`` only, if given); returns where reading stopped."""
    state = StreamState(path, 0, LineSplitter(), StreamAttribution())
    kept = collections.deque(maxlen=tail_lines) if tail_lines is not None else None
    with open(path, "rb") as file:
        while True:
            data = file.read(READ_CHUNK_BYTES)
            if not data:
                break
            state.offset += len(data)
            for line in format_lines(state, state.splitter.feed(data), raw):
                if kept is not None:
                    kept.append(line)
                else:
                    emit(line)
    for line in kept or ():
        emit(line)
    return state


def format_lines(state: StreamState, lines: list[str], raw: bool) -> list[str]:
    if raw:
        for line in lines:
            state.attribution.feed(line)
        return lines
    out = []
    for line in lines:
        out += [f"{who.prefix()} {text}" for who, text in state.attribution.feed(line)]
    return out


def _human(size: int | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


# ------------------------------------------------------------------ command


@click.command("logs")
@click.argument("worker", metavar="[WORKER_OR_PID]", required=False)
@click.option("--session", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="session directory (default: the newest under /tmp/lineagerun)")
@click.option("--tail", "tail_lines", type=click.IntRange(0), default=None, help="print only the last N lines")
@click.option("--follow", "-f", is_flag=True, help="keep printing new output (Ctrl-C to stop)")
@click.option("--raw", is_flag=True, help="print the files as written (marker lines included)")
def logs_command(worker: str | None, session: Path | None, tail_lines: int | None, follow: bool, raw: bool) -> None:
    """List a session's log files, or print one worker's output (by id prefix, pid or file name)."""
    try:
        session_dir = find_session(session)
        logs_dir = session_dir / LOGS_DIR_NAME
        workers, others = worker_logs(logs_dir)
        if worker is None:
            if follow:
                _follow(logs_dir, None, [], raw)
                return
            _print_listing(session_dir, workers, others)
            return
        target = resolve(worker, workers, others)
    except LineagerunError as err:
        raise click.ClickException(f"{type(err).__name__}: {err}") from None
    if isinstance(target, Path):
        _print_plain_file(target, tail_lines, follow)
        return
    states = []
    for path, to_stderr in ((target.stdout, False), (target.stderr, True)):
        if path is None:
            continue
        click.echo(f"==> {path} <==", err=to_stderr)
        states.append(read_stream(path, raw, tail_lines, lambda line, e=to_stderr: click.echo(line, err=e)))
    if follow:
        _follow(logs_dir, frozenset(s.path.name for s in states), states, raw)


def _print_listing(session_dir: Path, workers: list[WorkerLog], others: list[Path]) -> None:
    from lineagerun.cli.state import to_table

    click.echo(f"session {session_dir}")
    if workers:
        rows = [{"WORKER": w.worker_hex[:16], "PID": w.pid if w.pid is not None else "-",
                 "NODE": w.node_hex[:8] or "-", "STDOUT": _human(w.size_bytes(w.stdout)),
                 "STDERR": _human(w.size_bytes(w.stderr)), "FILES": f"{w.name}.out|.err"}
                for w in sorted(workers, key=lambda w: (w.node_hex, w.pid or 0))]
        click.echo(to_table(rows, tuple(rows[0])))
    else:
        click.echo("no worker logs yet")
    for path in others:
        size = path.stat().st_size if path.exists() else None
        click.echo(f"{path.name}  {_human(size)}")
    click.echo("print one with `lineagerun logs WORKER_OR_PID` (an id prefix, a pid or a file name)")


def _print_plain_file(path: Path, tail_lines: int | None, follow: bool) -> None:
    offset = 0
    if tail_lines is not None:
        kept = collections.deque(maxlen=tail_lines)
        with open(path, "rb") as file:
            for line in file:
                kept.append(line)
            offset = file.tell()
        sys.stdout.buffer.write(b"".join(kept))
    else:
        with open(path, "rb") as file:
            while chunk := file.read(READ_CHUNK_BYTES):
                sys.stdout.buffer.write(chunk)
            offset = file.tell()
    sys.stdout.flush()
    while follow:
        time.sleep(FOLLOW_INTERVAL_S)
        with open(path, "rb") as file:
            file.seek(offset)
            chunk = file.read(READ_CHUNK_BYTES)
        offset += len(chunk)
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()


def _follow(logs_dir: Path, file_names: frozenset[str] | None, states: list[StreamState], raw: bool) -> None:
    """Print new output until interrupted (every worker's when no file is named)."""
    from lineagerun.api.log_echo import LogEcho

    echo = LogEcho(logs_dir, None, file_names=file_names, raw=raw)
    if states:
        for state in states:
            echo.follow(state.path, state.offset, state.splitter, state.attribution)
    else:
        echo.start_at_end()
    try:
        while True:
            if not echo.poll_once():
                time.sleep(FOLLOW_INTERVAL_S)
    except KeyboardInterrupt:
        echo.poll_once(final=True)
