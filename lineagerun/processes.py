"""Starting a service process, waiting until it serves, stopping it: the one
way every launcher of lineagerun does it (control store, global scheduler,
node managers, the embedded session, chaos restarts).

- ``start_service(argv, log_path, name=, role=)`` starts it in a session of
  its own (``start_new_session``), so its pid is its process-group id and it
  and everything it starts (a node manager's workers) are signalled
  together; stdin is /dev/null, stdout and stderr are appended to
  ``log_path`` after a launch header; its start time is recorded, because
  pids are reused and a recorded pid is only signalled while it still is
  the process we started.
- ``wait_ready(process, probe, timeout_s)`` polls ``probe()`` (e.g.
  ``ready_text(path)``, ``ready_json(path)``, ``port_open(host, port)``)
  until it returns something; if the process exits first, or the time runs
  out, it raises ``ConfigurationError`` quoting the tail of the log.
- ``stop_services(processes)`` sends SIGTERM to every process group (and
  SIGCONT, so a paused one can act on it), waits up to a grace period, then
  SIGKILLs what is left and, always, what is left of the groups.

Nothing is ever looked up or signalled by name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import psutil

from lineagerun.exceptions import ConfigurationError

# Python start-up plus imports is ~0.5-1 s, RocksDB open more; a loaded
# 2-core CI machine needs far more.
START_TIMEOUT_S = 60.0
# SIGTERM, then SIGKILL after this: services stop their servers in < 1 s.
STOP_GRACE_S = 5.0
POLL_INTERVAL_S = 0.02
# Lines of a process's log quoted in an error.
LOG_TAIL_LINES = 30
# A recorded start time within this of the live process's is the same process.
CREATE_TIME_SLACK_S = 0.5
PORT_PROBE_TIMEOUT_S = 0.2

T = TypeVar("T")


class Signalled(Protocol):
    """What ``stop_services`` needs of a process record."""

    name: str
    pid: int | None
    create_time: float | None
    popen: subprocess.Popen | None

    def alive(self) -> bool: ...


@dataclass(eq=False)
class ServiceProcess:
    """A process started by ``start_service`` (``popen`` set) or read back
    from a record (``popen`` None: checked by pid and start time)."""

    name: str
    role: str
    pid: int
    create_time: float | None
    log_path: Path
    popen: subprocess.Popen | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return recorded_process_alive(self.pid, self.create_time)

    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)

    def record(self) -> dict:
        return {"name": self.name, "role": self.role, "pid": self.pid, "create_time": self.create_time,
                "log": str(self.log_path)}

    @classmethod
    def from_record(cls, entry: dict) -> "ServiceProcess":
        return cls(entry["name"], entry["role"], entry["pid"], entry.get("create_time"), Path(entry.get("log", "")))


# ------------------------------------------------------------------ start


def spawn(argv: list[str], log_path: Path, *, env: dict | None = None) -> subprocess.Popen:
    """Popen in a new session with output appended to ``log_path``."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} launching: {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True,
                                env=dict(os.environ if env is None else env, PYTHONUNBUFFERED="1"))


def start_service(argv: list[str], log_path: Path, *, name: str, role: str,
                  env: dict | None = None) -> ServiceProcess:
    popen = spawn(argv, log_path, env=env)
    return ServiceProcess(name, role, popen.pid, process_create_time(popen.pid), Path(log_path), popen)


def process_create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def recorded_process_alive(pid: int | None, create_time: float | None) -> bool:
    """Whether ``pid`` is still the process we recorded (pids are reused)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > CREATE_TIME_SLACK_S:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# ------------------------------------------------------------------ ready


def ready_text(path: Path) -> Callable[[], str | None]:
    """Probe: the stripped text of a ready file (e.g. an address), once written."""
    def probe() -> str | None:
        try:
            return Path(path).read_text().strip() or None
        except OSError:
            return None
    return probe


def ready_json(path: Path) -> Callable[[], dict | None]:
    """Probe: the JSON object of a ready file written by rename."""
    def probe() -> dict | None:
        try:
            return json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return None
    return probe


def port_open(host: str, port: int) -> Callable[[], bool]:
    """Probe: something accepts TCP connections on host:port."""
    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=PORT_PROBE_TIMEOUT_S):
                return True
        except OSError:
            return False
    return probe


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_ready(process, probe: Callable[[], T], timeout_s: float = START_TIMEOUT_S, *,
               what: str = "ready", deadline_s: float | None = None, poll_interval_s: float = POLL_INTERVAL_S) -> T:
    """``probe()``'s first truthy answer. ``ConfigurationError`` with the
    tail of the process's log if it exits first or ``timeout_s`` (or the
    monotonic ``deadline_s``) passes. ``process`` needs ``name``,
    ``alive()`` and ``log_path``."""
    deadline_s = deadline_s if deadline_s is not None else time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if not process.alive():
            value = probe()  # written just before a clean exit
            if value:
                return value
            code = process.popen.poll() if getattr(process, "popen", None) is not None else None
            raise ConfigurationError(
                f"{process.name} exited{'' if code is None else f' with code {code}'} before it was {what}; "
                f"last lines of {process.log_path}:\n{log_tail(process.log_path)}")
        if time.monotonic() > deadline_s:
            raise ConfigurationError(
                f"{process.name} not {what} after {timeout_s:.0f} s; last lines of {process.log_path}:\n"
                f"{log_tail(process.log_path)}")
        time.sleep(poll_interval_s)


# ------------------------------------------------------------------- stop


def signal_group(pid: int | None, sig: int) -> None:
    """Signal the process group of a process started in its own session (its
    pgid is its pid); fall back to the pid alone. Gone already: nothing."""
    if not pid:
        return
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def signal_if_ours(process: Signalled, sig: int) -> bool:
    """Signal ``process``'s group only while its pid is still the process we
    started (or recorded); False if it is gone."""
    if process.popen is not None:
        if process.popen.poll() is not None:
            return False
    elif not recorded_process_alive(process.pid, process.create_time):
        return False
    signal_group(process.pid, sig)
    return True


def stop_services(processes: list[Signalled], *, force: bool = False, grace_s: float = STOP_GRACE_S) -> list[str]:
    """SIGTERM (``force``: SIGKILL) every process group, wait up to
    ``grace_s`` for all of them together, SIGKILL the rest. Returns the
    names of the processes that had to be killed after the grace period."""
    running = [p for p in processes if p is not None and p.pid and p.alive()]
    for process in running:
        signal_group(process.pid, signal.SIGKILL if force else signal.SIGTERM)
        signal_group(process.pid, signal.SIGCONT)  # a paused process acts on SIGTERM only once resumed
    deadline_s = time.monotonic() + grace_s
    killed = []
    for process in running:
        while process.alive() and time.monotonic() < deadline_s:
            time.sleep(POLL_INTERVAL_S)
        if process.alive():
            killed.append(process.name)
            signal_group(process.pid, signal.SIGKILL)
        if process.popen is not None:
            try:
                process.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        else:
            _wait_gone(process, grace_s)
    for process in processes:
        if process is not None:
            # Anything the process started shares its group, even after the
            # leader is gone (a SIGKILLed node manager's workers).
            signal_group(process.pid, signal.SIGKILL)
    return killed


def stop_service(process: Signalled, *, force: bool = False, grace_s: float = STOP_GRACE_S) -> bool:
    """``stop_services`` for one; True if it had to be killed."""
    return bool(stop_services([process], force=force, grace_s=grace_s))


def _wait_gone(process: Signalled, timeout_s: float) -> None:
    deadline_s = time.monotonic() + timeout_s
    while process.alive() and time.monotonic() < deadline_s:
        time.sleep(POLL_INTERVAL_S)
