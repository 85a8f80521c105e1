"""Which session this process uses: a driver's (``init()``) or a worker's.

Kept to one small module (not a process-global god object): the session
object lives in ``lineagerun.api.session``; this only says where it is.
"""

from __future__ import annotations

import threading

_lock = threading.RLock()
_core_worker = None
_session_dir = ""
_is_worker = False


def set_driver(core_worker, session_dir: str) -> None:
    global _core_worker, _session_dir, _is_worker
    with _lock:
        _core_worker, _session_dir, _is_worker = core_worker, session_dir, False


def set_worker(core_worker, session_dir: str) -> None:
    global _core_worker, _session_dir, _is_worker
    with _lock:
        _core_worker, _session_dir, _is_worker = core_worker, session_dir, True


def clear() -> None:
    global _core_worker, _session_dir
    with _lock:
        _core_worker, _session_dir = None, ""


def is_worker() -> bool:
    return _is_worker


def is_connected() -> bool:
    return _core_worker is not None


def session_dir() -> str:
    return _session_dir


def core_worker():
    """The session; a driver that has not called ``init()`` gets one started
    with the defaults (as Ray)."""
    worker = _core_worker
    if worker is not None:
        return worker
    with _lock:
        if _core_worker is None:
            from lineagerun.api import session

            session.init()
        return _core_worker
