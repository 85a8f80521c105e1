"""Shared-memory files of the object store: one POSIX shared-memory file per
object under /dev/shm, plus one owner file per session.

Names (``<tag>`` is the first 8 hex digits of the session id)::

    lr-<tag>-<object id hex>.tmp   an object being written (never read)
    lr-<tag>-<object id hex>       a sealed object: complete and immutable
    lr-<tag>.owner                 "<pid> <process create time>" of the
                                   process that owns the session's store

Sealing is a rename, so a reader that opens the sealed name always sees a
complete object. Unlinking a file does not invalidate mappings already made
(Linux keeps the pages until the last mapping goes), so eviction never breaks
a reader that holds a value.

Plain ``os.open`` + ``mmap`` is used rather than
``multiprocessing.shared_memory``: on Python < 3.13 the latter registers every
segment with the resource tracker, which unlinks segments when the creating
process exits and warns about "leaked" ones.

Crash cleanup: the owner file names the owning process by pid and create time
(so a reused pid is not taken for the owner). ``cleanup_stale_sessions``
removes every file of a session whose owner is gone.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import psutil

from lineagerun.exceptions import ConfigurationError, InvalidArgumentError, ObjectStoreFullError

SHM_DIR = "/dev/shm"
FILE_PREFIX = "lr-"
SESSION_TAG_LEN = 8
TMP_SUFFIX = ".tmp"
OWNER_SUFFIX = ".owner"
FILE_MODE = 0o600  # only the cluster's user may map its objects
# An owner file is created and then written with one write(); a cleaner that
# finds it empty or unreadable leaves it alone this long, since its writer may
# be between the two calls.
OWNER_WRITE_GRACE_S = 10.0
# Create times of one process read twice agree exactly; a reused pid's differ
# by at least a clock tick (10 ms).
_CREATE_TIME_TOLERANCE_S = 0.005

_SESSION_ID_RE = re.compile(r"^[0-9a-f]{8,64}$")
_FILE_RE = re.compile(r"^lr-(?P<tag>[0-9a-f]{8})(?:-(?P<oid>[0-9a-f]+)(?P<tmp>\.tmp)?|(?P<owner>\.owner))$")


def new_session_id() -> str:
    return uuid.uuid4().hex


def session_tag(session_id: str) -> str:
    if not isinstance(session_id, str) or not _SESSION_ID_RE.match(session_id):
        raise InvalidArgumentError(
            f"session ids are 8 to 64 lowercase hex digits (e.g. lineagerun.objects.shm.new_session_id()); "
            f"got {session_id!r}")
    return session_id[:SESSION_TAG_LEN]


def object_path(session_id: str, object_id: bytes, *, sealed: bool = True, shm_dir: str = SHM_DIR) -> str:
    if not isinstance(object_id, bytes) or not object_id:
        raise InvalidArgumentError(f"object ids are non-empty bytes, got {object_id!r}")
    name = f"{FILE_PREFIX}{session_tag(session_id)}-{object_id.hex()}"
    return os.path.join(shm_dir, name if sealed else name + TMP_SUFFIX)


def owner_path(session_id: str, *, shm_dir: str = SHM_DIR) -> str:
    return os.path.join(shm_dir, f"{FILE_PREFIX}{session_tag(session_id)}{OWNER_SUFFIX}")


# ------------------------------------------------------------ object files


def allocate_object_file(session_id: str, object_id: bytes, size_bytes: int, *, shm_dir: str = SHM_DIR) -> str:
    """Create the unsealed file of an object with ``size_bytes`` of memory
    reserved; returns its path. Reserving (fallocate) now turns a full
    /dev/shm into ObjectStoreFullError here instead of a SIGBUS while writing."""
    if size_bytes <= 0:
        raise InvalidArgumentError(f"an object file needs at least one byte, got size_bytes={size_bytes}")
    path = object_path(session_id, object_id, sealed=False, shm_dir=shm_dir)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, FILE_MODE)
    except FileExistsError:
        # An earlier attempt of the task that makes this object died while
        # writing it (attempts of one task never run at once): its unsealed
        # file is garbage, and the retry must be able to write the object.
        _unlink_quietly(path)
        fd = os.open(path, flags, FILE_MODE)
    try:
        try:
            os.posix_fallocate(fd, 0, size_bytes)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise ObjectStoreFullError(
                    f"{shm_dir} has no room for object {object_id.hex()} of {size_bytes} bytes; the object "
                    f"store's capacity is larger than the free space of {shm_dir}: lower the capacity or "
                    f"enlarge {shm_dir} (e.g. docker --shm-size)") from exc
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            os.ftruncate(fd, size_bytes)  # a file system without fallocate (tests may use one)
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    os.close(fd)
    return path


def seal_object_file(session_id: str, object_id: bytes, *, shm_dir: str = SHM_DIR) -> None:
    """Publish a written object under its sealed name (atomic rename)."""
    os.rename(object_path(session_id, object_id, sealed=False, shm_dir=shm_dir),
              object_path(session_id, object_id, sealed=True, shm_dir=shm_dir))


def map_object_file(session_id: str, object_id: bytes, *, shm_dir: str = SHM_DIR) -> mmap.mmap:
    """Map a sealed object read-only. Raises FileNotFoundError if it is not
    (or no longer) there. The mapping outlives an unlink of the file."""
    fd = os.open(object_path(session_id, object_id, shm_dir=shm_dir), os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise InvalidArgumentError(f"object file of {object_id.hex()} is empty: it was not written by lineagerun")
        return mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)


def unlink_object_file(session_id: str, object_id: bytes, *, sealed: bool, shm_dir: str = SHM_DIR) -> None:
    _unlink_quietly(object_path(session_id, object_id, sealed=sealed, shm_dir=shm_dir))


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------- sessions


@dataclass(frozen=True)
class SessionOwner:
    pid: int
    create_time: float


AliveCheck = Callable[[SessionOwner], bool]


def current_owner() -> SessionOwner:
    return SessionOwner(os.getpid(), psutil.Process().create_time())


def owner_is_alive(owner: SessionOwner) -> bool:
    """True if the process that wrote the owner record is still running."""
    try:
        create_time = psutil.Process(owner.pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # someone else's live process: never ours to clean
    return abs(create_time - owner.create_time) <= _CREATE_TIME_TOLERANCE_S


def read_owner(session_id: str, *, shm_dir: str = SHM_DIR) -> SessionOwner | None:
    """The session's owner, or None if there is no (complete) owner file."""
    return _read_owner_file(owner_path(session_id, shm_dir=shm_dir))


def _read_owner_file(path: str) -> SessionOwner | None:
    try:
        with open(path, encoding="ascii") as f:
            pid_text, create_time_text = f.read().split()
        return SessionOwner(int(pid_text), float(create_time_text))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def claim_session(session_id: str, *, shm_dir: str = SHM_DIR,
                  alive_check: AliveCheck = owner_is_alive) -> SessionOwner:
    """Make this process the owner of the session's files. A session whose
    owner died is cleaned and taken over; a live owner is a ConfigurationError
    (two stores would evict each other's files)."""
    path = owner_path(session_id, shm_dir=shm_dir)
    owner = current_owner()
    for _attempt in range(2):  # the second attempt follows the cleanup of a dead owner
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except FileExistsError:
            existing = _read_owner_file(path)
            if existing is not None and alive_check(existing):
                raise ConfigurationError(
                    f"the object store of session {session_id} is already owned by live process "
                    f"{existing.pid}; use one store per session (readers use map_object_file)") from None
            if existing is None and _younger_than(path, OWNER_WRITE_GRACE_S):
                raise ConfigurationError(
                    f"another process is claiming the object store of session {session_id} right now")
            cleanup_session(session_id, shm_dir=shm_dir)
            continue
        try:
            os.write(fd, f"{owner.pid} {owner.create_time!r}\n".encode("ascii"))
        finally:
            os.close(fd)
        return owner
    raise ConfigurationError(f"could not claim the object store of session {session_id}: "
                             "another process keeps claiming it")


def _younger_than(path: str, age_s: float) -> bool:
    try:
        return time.time() - os.stat(path).st_mtime < age_s
    except FileNotFoundError:
        return False


def session_files(*, shm_dir: str = SHM_DIR) -> dict[str, list[str]]:
    """Every lineagerun file in ``shm_dir``, by session tag."""
    sessions: dict[str, list[str]] = {}
    try:
        names = os.listdir(shm_dir)
    except FileNotFoundError:
        return sessions
    for name in names:
        match = _FILE_RE.match(name)
        if match:
            sessions.setdefault(match.group("tag"), []).append(name)
    return sessions


def _remove_tag_files(tag: str, *, shm_dir: str, names: list[str] | None = None) -> int:
    """Remove a session's object files, then its owner file; returns how many
    files were removed."""
    if names is None:
        names = session_files(shm_dir=shm_dir).get(tag, [])
    owner_name = f"{FILE_PREFIX}{tag}{OWNER_SUFFIX}"
    removed = 0
    for name in sorted(names, key=lambda n: n == owner_name):  # owner file last
        try:
            os.unlink(os.path.join(shm_dir, name))
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def cleanup_session(session_id: str, *, shm_dir: str = SHM_DIR) -> int:
    """Remove every file of the session, live or not; returns the count."""
    return _remove_tag_files(session_tag(session_id), shm_dir=shm_dir)


def cleanup_stale_sessions(alive_check: AliveCheck = owner_is_alive, *, shm_dir: str = SHM_DIR) -> list[str]:
    """Remove the files of every session whose owner process is gone (crashed
    without ``close``); returns the tags of the sessions cleaned. Files of a
    session without an owner file are stale too (the owner file is written
    before any object and removed after all of them)."""
    cleaned = []
    for tag, names in sorted(session_files(shm_dir=shm_dir).items()):
        owner_name = f"{FILE_PREFIX}{tag}{OWNER_SUFFIX}"
        if owner_name in names:
            owner_file = os.path.join(shm_dir, owner_name)
            owner = _read_owner_file(owner_file)
            if owner is None and _younger_than(owner_file, OWNER_WRITE_GRACE_S):
                continue
            if owner is not None and alive_check(owner):
                continue
        if _remove_tag_files(tag, shm_dir=shm_dir, names=names):
            cleaned.append(tag)
    return cleaned
