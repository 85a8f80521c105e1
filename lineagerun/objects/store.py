"""The node-local object store: the pure bookkeeping of
``lineagerun.core.object_store`` plus the shared-memory files of
``lineagerun.objects.shm``.

One ``LocalObjectStore`` per node and session owns the session's files (the
node manager's, in the runtime). Other processes of the node read sealed
objects with :func:`read_object` (zero copy, by mapping the file), and may
write an object the store reserved for them (``create`` -> write with
:func:`write_reserved` -> ``seal``).

Thread-safe: one lock guards the bookkeeping and the renames/unlinks; the
copy of an object's bytes and the unpickling run outside it.
"""

from __future__ import annotations

import os
import shutil
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from lineagerun.core.object_store import (
    INLINE_THRESHOLD_BYTES,
    AbortCreate,
    AllocateFile,
    CreateObject,
    CreateRejected,
    DeleteObject,
    EvictedObject,
    GetObject,
    ObjectAlreadyExists,
    ObjectFound,
    ObjectNotFound,
    ObjectState,
    ObjectStoreCore,
    ObjectStoreStats,
    PinObject,
    Placement,
    ReleaseHolder,
    SealObject,
    UnlinkFile,
    UnpinObject,
    inline_or_shared,
)
from lineagerun.exceptions import (
    ConfigurationError,
    InvalidArgumentError,
    NotFoundError,
    ObjectLostError,
    SerializationError,
)
from lineagerun.objects import shm
from lineagerun.objects.serialization import IdToRef, SerializedObject, deserialize_from, serialize
from lineagerun.objects.shm import SHM_DIR, AliveCheck, cleanup_session, owner_is_alive

__all__ = [
    "LocalObjectStore", "PlacedObject", "read_object", "read_object_buffer", "write_reserved",
    "cleanup_session", "cleanup_stale_sessions", "inline_or_shared", "Placement",
]

# The holder under which the store's own put() creates objects.
_PUT_CREATOR = "lineagerun.objects.store:put"


@dataclass(frozen=True)
class PlacedObject:
    """Result of ``LocalObjectStore.place``: the value's serialised size and,
    if it is small enough to travel inline, its bytes (else it is in the store)."""

    size_bytes: int
    inline_bytes: bytes | None

    @property
    def placement(self) -> Placement:
        return Placement.SHARED if self.inline_bytes is None else Placement.INLINE


def cleanup_stale_sessions(alive_check: AliveCheck = owner_is_alive, *, shm_dir: str = SHM_DIR) -> list[str]:
    """Remove the files of every session whose owning process is gone (see
    ``lineagerun.objects.shm``); returns the session tags cleaned. A node
    manager calls it when it starts, ``lineagerun stop`` after stopping."""
    return shm.cleanup_stale_sessions(alive_check, shm_dir=shm_dir)


def _cleanup_if_owner(session_id: str, shm_dir: str, owner_pid: int) -> None:
    # Runs at garbage collection or interpreter exit; a forked child inherits
    # the finalizer but does not own the session.
    if os.getpid() == owner_pid:
        cleanup_session(session_id, shm_dir=shm_dir)


class LocalObjectStore:
    """A node's shared-memory object store for one session."""

    def __init__(self, session_id: str, capacity_bytes: int, *, shm_dir: str = SHM_DIR,
                 inline_threshold_bytes: int = INLINE_THRESHOLD_BYTES,
                 on_evicted: Callable[[bytes], None] | None = None):
        shm.session_tag(session_id)  # validates
        _check_capacity_fits(capacity_bytes, shm_dir)
        self.session_id = session_id
        self.shm_dir = shm_dir
        self.inline_threshold_bytes = inline_threshold_bytes
        self._on_evicted = on_evicted
        self._core = ObjectStoreCore(capacity_bytes)
        self._lock = threading.Lock()
        self._closed = False
        owner = shm.claim_session(session_id, shm_dir=shm_dir)
        self._finalizer = weakref.finalize(self, _cleanup_if_owner, session_id, shm_dir, owner.pid)

    # ------------------------------------------------------------- writes

    def put(self, object_id: bytes, value: Any) -> int:
        """Store ``value`` (whatever its size); returns its stored size in
        bytes. A put of an id that is already stored keeps the stored object
        (objects are immutable and replay makes the same ids)."""
        return self.put_serialized(object_id, serialize(value))

    def place(self, object_id: bytes, value: Any) -> PlacedObject:
        """Serialise ``value``; keep it inline if it is small (below
        ``inline_threshold_bytes``), else store it under ``object_id``."""
        serialized = serialize(value)
        if inline_or_shared(serialized.total_bytes, self.inline_threshold_bytes) is Placement.INLINE:
            return PlacedObject(serialized.total_bytes, serialized.to_bytes())
        return PlacedObject(self.put_serialized(object_id, serialized), None)

    def put_serialized(self, object_id: bytes, serialized: SerializedObject) -> int:
        path = self.create(object_id, serialized.total_bytes, _PUT_CREATOR)
        if path is None:
            with self._lock:
                return self._core.size_of(object_id) or serialized.total_bytes
        try:
            write_reserved(path, serialized)
        except BaseException:
            self.abort(object_id)
            raise
        self.seal(object_id)
        return serialized.total_bytes

    def create(self, object_id: bytes, size_bytes: int, creator: str) -> str | None:
        """Reserve room for an object and create its unsealed file; returns
        the file's path for the creator to write (``write_reserved``), or None
        if the object already exists. Evicts least recently used unpinned
        objects if needed; raises ObjectStoreFullError if it cannot make room.
        If ``creator`` is released before ``seal``, the object is aborted."""
        with self._lock:
            self._check_open()
            effects = self._core.handle(CreateObject(object_id, size_bytes, creator))
            evicted = self._apply(effects)
        try:
            for effect in effects:
                if isinstance(effect, CreateRejected):
                    raise effect.error()
                if isinstance(effect, ObjectAlreadyExists):
                    return None
                if isinstance(effect, AllocateFile):
                    return self._allocate(object_id, size_bytes)
            raise AssertionError(f"create of {object_id.hex()} produced no outcome: {effects}")
        finally:
            self._notify_evicted(evicted)

    def _allocate(self, object_id: bytes, size_bytes: int) -> str:
        # Outside the lock: reserving hundreds of MB takes tens of ms.
        try:
            path = shm.allocate_object_file(self.session_id, object_id, size_bytes, shm_dir=self.shm_dir)
        except BaseException:
            self.abort(object_id)
            raise
        with self._lock:
            if self._closed:  # close() ran meanwhile and could not see this file
                shm.unlink_object_file(self.session_id, object_id, sealed=False, shm_dir=self.shm_dir)
                self._check_open()
        return path

    def seal(self, object_id: bytes) -> None:
        """Publish a written object: from now on it is readable and immutable."""
        with self._lock:
            self._check_open()
            if self._core.state_of(object_id) is not ObjectState.CREATING:
                raise NotFoundError(f"object {object_id.hex()} is not being created in this store "
                                    "(never created, already sealed, or aborted)")
            shm.seal_object_file(self.session_id, object_id, shm_dir=self.shm_dir)
            self._apply(self._core.handle(SealObject(object_id)))

    def abort(self, object_id: bytes) -> None:
        """Give up an object being created and free its room."""
        with self._lock:
            if not self._closed:
                self._apply(self._core.handle(AbortCreate(object_id)))

    # -------------------------------------------------------------- reads

    def get(self, object_id: bytes, *, holder: str | None = None, id_to_ref: IdToRef | None = None) -> Any:
        """The value of a sealed object, zero copy: numpy arrays and Arrow
        data point into the shared-memory mapping (read-only). With
        ``holder``, the object stays pinned for it until unpin/release."""
        mapping = self._map(object_id, holder)
        try:
            return deserialize_from(mapping, id_to_ref=id_to_ref)
        except SerializationError:
            if holder is not None:
                self.unpin(object_id, holder)
            raise

    def get_buffer(self, object_id: bytes) -> memoryview:
        """The object's serialised region, read-only and zero copy (what an
        object transfer to another node sends)."""
        return memoryview(self._map(object_id, None)).toreadonly()

    def _map(self, object_id: bytes, holder: str | None):
        with self._lock:
            self._check_open()
            effects = self._core.handle(GetObject(object_id, holder))
            if not isinstance(effects[0], ObjectFound):
                creating = isinstance(effects[0], ObjectNotFound) and effects[0].state is ObjectState.CREATING
                raise NotFoundError(f"object {object_id.hex()} is "
                                    f"{'still being created' if creating else 'not'} in this node's object store")
            try:
                # Mapped under the lock so that an eviction cannot unlink the
                # file between the lookup and the open.
                return shm.map_object_file(self.session_id, object_id, shm_dir=self.shm_dir)
            except FileNotFoundError:
                if holder is not None:
                    self._core.handle(UnpinObject(object_id, holder))
                self._apply(self._core.handle(DeleteObject(object_id)))
                raise ObjectLostError(object_id.hex(), f"its shared-memory file in {self.shm_dir} was "
                                      "removed by something other than the object store") from None

    def contains(self, object_id: bytes) -> bool:
        """True if the object is sealed here (and not deleted)."""
        with self._lock:
            return self._core.state_of(object_id) is ObjectState.SEALED

    # ------------------------------------------------------ pins, deletes

    def pin(self, object_id: bytes, holder: str) -> None:
        """Keep the object from eviction until ``holder`` unpins or is released."""
        with self._lock:
            self._check_open()
            effects = self._core.handle(PinObject(object_id, holder))
        if effects and isinstance(effects[0], ObjectNotFound):
            raise NotFoundError(f"cannot pin object {object_id.hex()}: it is not in this node's object store")

    def unpin(self, object_id: bytes, holder: str) -> None:
        with self._lock:
            if not self._closed:
                self._apply(self._core.handle(UnpinObject(object_id, holder)))

    def release(self, holder: str) -> None:
        """``holder`` is gone: drop all its pins and abort what it was creating."""
        with self._lock:
            if not self._closed:
                self._apply(self._core.handle(ReleaseHolder(holder)))

    def delete(self, object_id: bytes) -> None:
        """Remove the object now, or when its last pin goes. Readers that
        already hold its value keep it."""
        with self._lock:
            if not self._closed:
                self._apply(self._core.handle(DeleteObject(object_id)))

    # ----------------------------------------------------------- lifecycle

    def stats(self) -> ObjectStoreStats:
        with self._lock:
            return self._core.stats()

    def close(self) -> None:
        """Unlink every file of the session (values already read stay valid)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for object_id in self._core.object_ids():
                sealed = self._core.state_of(object_id) is not ObjectState.CREATING
                shm.unlink_object_file(self.session_id, object_id, sealed=sealed, shm_dir=self.shm_dir)
            self._finalizer()  # removes whatever else the session has, owner file last

    def __enter__(self) -> "LocalObjectStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgumentError(f"the object store of session {self.session_id} is closed")

    def _apply(self, effects) -> list[bytes]:
        """Carry out file effects (under the lock); returns evicted ids."""
        evicted = []
        for effect in effects:
            if isinstance(effect, UnlinkFile):
                shm.unlink_object_file(self.session_id, effect.object_id, sealed=effect.sealed,
                                       shm_dir=self.shm_dir)
            elif isinstance(effect, EvictedObject):
                evicted.append(effect.object_id)
        return evicted

    def _notify_evicted(self, evicted: list[bytes]) -> None:
        if self._on_evicted is not None:
            for object_id in evicted:
                self._on_evicted(object_id)


def _check_capacity_fits(capacity_bytes: int, shm_dir: str) -> None:
    if not isinstance(capacity_bytes, int) or capacity_bytes <= 0:
        raise InvalidArgumentError(f"capacity_bytes must be a positive int, got {capacity_bytes!r}")
    try:
        total_bytes = shutil.disk_usage(shm_dir).total
    except FileNotFoundError:
        raise ConfigurationError(f"{shm_dir} does not exist; the object store needs a tmpfs there") from None
    if capacity_bytes > total_bytes:
        raise ConfigurationError(
            f"object store capacity {capacity_bytes} bytes is larger than {shm_dir} ({total_bytes} bytes); "
            f"lower the capacity or enlarge {shm_dir} (e.g. docker --shm-size)")


# ------------------------------------------------- other processes of a node


def write_reserved(path: str, serialized: SerializedObject) -> None:
    """Write a serialised object into a file reserved by ``LocalObjectStore.create``."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size != serialized.total_bytes:
            raise InvalidArgumentError(f"{path} was reserved for {size} bytes; the object has "
                                       f"{serialized.total_bytes}: reserve the size of the serialised object")
        serialized.write_to_fd(fd)
    finally:
        os.close(fd)


def read_object(session_id: str, object_id: bytes, *, shm_dir: str = SHM_DIR,
                id_to_ref: IdToRef | None = None) -> Any:
    """Read a sealed object of the session from any process of the node, zero
    copy. Raises FileNotFoundError if it is not there. The caller should hold
    a pin (via the store's owner) if it needs the object to stay available;
    a value already read stays valid regardless."""
    return deserialize_from(shm.map_object_file(session_id, object_id, shm_dir=shm_dir), id_to_ref=id_to_ref)


def read_object_buffer(session_id: str, object_id: bytes, *, shm_dir: str = SHM_DIR) -> memoryview:
    return memoryview(shm.map_object_file(session_id, object_id, shm_dir=shm_dir)).toreadonly()
