"""What the node manager knows about objects: values (inline bytes or a
shared-memory file of the node's store), errors, and who waits for them.

The node manager never deserialises a value. Small values stay here as the
bytes a client sent; large ones are files the client wrote into the node's
store (``shm.allocate_object_file`` -> ``write_reserved`` -> seal) that the
node manager *adopts* into its ``LocalObjectStore`` accounting, so capacity,
pins and eviction cover them like objects the store made itself.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from lineagerun.core.object_store import AllocateFile, CreateObject, CreateRejected, SealObject
from lineagerun.objects import shm
from lineagerun.objects.store import LocalObjectStore
from lineagerun.rpc import node_pb2

# Holder of the pin every object's primary copy keeps until the client
# releases it (ReleaseObjects): a value somebody may still ``get`` is not
# evicted behind their back.
PRIMARY_HOLDER = "primary"
ADOPT_CREATOR = "lineagerun.node:adopt"
# A get reply names a shm file the client maps after it arrives; the file
# stays pinned this long after the reply is sent.
GET_PIN_GRACE_S = 5.0


class NodeObjectStore(LocalObjectStore):
    """``LocalObjectStore`` plus ``adopt``: account a sealed file another
    process of the node wrote under the store's session (the objects library
    only supports files the store itself reserved)."""

    def adopt(self, object_id: bytes, size_bytes: int) -> None:
        """Raise ObjectStoreFullError (and unlink the file) if there is no room."""
        path = shm.object_path(self.session_id, object_id, shm_dir=self.shm_dir)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no sealed object file {path}: write it (and seal it) before naming it")
        with self._lock:
            self._check_open()
            effects = self._core.handle(CreateObject(object_id, size_bytes, ADOPT_CREATOR))
            evicted = self._apply(effects)
            rejected = next((e for e in effects if isinstance(e, CreateRejected)), None)
            if any(isinstance(e, AllocateFile) for e in effects):
                self._apply(self._core.handle(SealObject(object_id)))
        self._notify_evicted(evicted)
        if rejected is not None:
            shm.unlink_object_file(self.session_id, object_id, sealed=True, shm_dir=self.shm_dir)
            raise rejected.error()


@dataclass
class ObjectEntry:
    payload: node_pb2.ObjectPayload | None = None
    error_kind: str = ""
    error_message: str = ""
    in_store: bool = False

    def ready(self) -> bool:
        return self.payload is not None or bool(self.error_kind)


@dataclass(eq=False)
class _GetWaiter:
    object_ids: list[bytes]
    missing: set[bytes]
    reply: Callable[[list[node_pb2.ObjectResult] | None], None]  # None: timed out
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _WaitWaiter:
    object_ids: list[bytes]
    num_returns: int
    reply: Callable[[list[bytes]], None]
    timer: asyncio.TimerHandle | None = None
    done: bool = False


@dataclass
class ObjectTable:
    store: NodeObjectStore
    on_available: Callable[[bytes], None]
    entries: dict[bytes, ObjectEntry] = field(default_factory=dict)
    _gets: dict[bytes, set[_GetWaiter]] = field(default_factory=dict)
    _waits: dict[bytes, set[_WaitWaiter]] = field(default_factory=dict)

    # ------------------------------------------------------------ values

    def add_payload(self, object_id: bytes, payload: node_pb2.ObjectPayload) -> str | None:
        """Record a value; the first value of an id wins (objects are
        immutable). Returns an error message if a shm payload could not be
        adopted (the object is then recorded as that error)."""
        entry = self.entries.get(object_id)
        if entry is not None and entry.ready():
            return None
        in_store = payload.WhichOneof("kind") == "shm_name"
        if in_store:
            try:
                self.store.adopt(object_id, payload.size_bytes or 1)
                self.store.pin(object_id, PRIMARY_HOLDER)
            except Exception as exc:  # noqa: BLE001 - becomes the object's error
                kind = type(exc).__name__ if type(exc).__module__.startswith("lineagerun") else "ObjectLostError"
                self.add_error(object_id, kind, f"could not store object {object_id.hex()}: {exc}")
                return str(exc)
            payload = node_pb2.ObjectPayload(
                shm_name=os.path.basename(shm.object_path(self.store.session_id, object_id)),
                size_bytes=payload.size_bytes, is_error=payload.is_error,
                nested_object_ids=payload.nested_object_ids)
        self.entries[object_id] = ObjectEntry(payload=payload, in_store=in_store)
        self._became_ready(object_id)
        return None

    def add_error(self, object_id: bytes, kind: str, message: str) -> None:
        entry = self.entries.get(object_id)
        if entry is not None and entry.ready():
            return
        self.entries[object_id] = ObjectEntry(error_kind=kind, error_message=message)
        self._became_ready(object_id)

    def is_ready(self, object_id: bytes) -> bool:
        entry = self.entries.get(object_id)
        return entry is not None and entry.ready()

    def result(self, object_id: bytes) -> node_pb2.ObjectResult:
        entry = self.entries.get(object_id)
        if entry is None or not entry.ready():
            return node_pb2.ObjectResult(object_id=object_id, error_kind="ObjectLostError",
                                         error_message=f"object {object_id.hex()} is not on this node")
        if entry.error_kind:
            return node_pb2.ObjectResult(object_id=object_id, error_kind=entry.error_kind,
                                         error_message=entry.error_message)
        return node_pb2.ObjectResult(object_id=object_id, payload=entry.payload)

    def error_of(self, object_id: bytes) -> tuple[str, str] | None:
        entry = self.entries.get(object_id)
        if entry is not None and entry.error_kind:
            return entry.error_kind, entry.error_message
        return None

    def evicted(self, object_id: bytes) -> None:
        """The store dropped the object's file to make room."""
        entry = self.entries.get(object_id)
        if entry is not None and entry.in_store:
            entry.payload, entry.in_store = None, False
            entry.error_kind = "ObjectLostError"
            entry.error_message = (f"object {object_id.hex()} was evicted from the node's object store after "
                                   "it was released (reconstruction is not implemented yet)")

    # -------------------------------------------------------------- pins

    def pin(self, object_ids: Iterable[bytes], holder: str) -> None:
        for oid in object_ids:
            entry = self.entries.get(oid)
            if entry is not None and entry.in_store:
                try:
                    self.store.pin(oid, holder)
                except Exception:  # noqa: BLE001 - evicted meanwhile: the get reports it
                    pass

    def release_holder(self, holder: str) -> None:
        self.store.release(holder)

    def release_primary(self, object_ids: Iterable[bytes]) -> None:
        for oid in object_ids:
            entry = self.entries.get(oid)
            if entry is not None and entry.in_store:
                self.store.unpin(oid, PRIMARY_HOLDER)

    # ----------------------------------------------------------- waiters

    def get(self, object_ids: list[bytes], timeout_ms: int,
            reply: Callable[[list[node_pb2.ObjectResult] | None], None]) -> bool:
        """Call ``reply(results)`` when all are ready, or ``reply(None)`` at
        the timeout (-1: never). Returns True if answered at once."""
        missing = {oid for oid in object_ids if not self.is_ready(oid)}
        if not missing:
            reply([self.result(oid) for oid in object_ids])
            return True
        if timeout_ms == 0:
            reply(None)
            return True
        waiter = _GetWaiter(list(object_ids), missing, reply)
        for oid in missing:
            self._gets.setdefault(oid, set()).add(waiter)
        if timeout_ms > 0:
            waiter.timer = asyncio.get_running_loop().call_later(timeout_ms / 1000, self._get_timed_out, waiter)
        return False

    def _get_timed_out(self, waiter: _GetWaiter) -> None:
        for oid in waiter.missing:
            waiters = self._gets.get(oid)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._gets[oid]
        waiter.missing.clear()
        waiter.reply(None)

    def wait(self, object_ids: list[bytes], num_returns: int, timeout_ms: int,
             reply: Callable[[list[bytes]], None]) -> bool:
        waiter = _WaitWaiter(list(object_ids), num_returns, reply)
        if self._try_finish_wait(waiter):
            return True
        if timeout_ms == 0:
            self._finish_wait(waiter)
            return True
        for oid in object_ids:
            if not self.is_ready(oid):
                self._waits.setdefault(oid, set()).add(waiter)
        if timeout_ms > 0:
            waiter.timer = asyncio.get_running_loop().call_later(timeout_ms / 1000, self._finish_wait, waiter)
        return False

    def _ready_ids(self, waiter: _WaitWaiter) -> list[bytes]:
        return [oid for oid in waiter.object_ids if self.is_ready(oid)][: waiter.num_returns]

    def _try_finish_wait(self, waiter: _WaitWaiter) -> bool:
        if len(self._ready_ids(waiter)) >= waiter.num_returns:
            self._finish_wait(waiter)
            return True
        return False

    def _finish_wait(self, waiter: _WaitWaiter) -> None:
        if waiter.done:
            return
        waiter.done = True
        if waiter.timer is not None:
            waiter.timer.cancel()
        for oid in waiter.object_ids:
            waiters = self._waits.get(oid)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waits[oid]
        waiter.reply(self._ready_ids(waiter))

    def _became_ready(self, object_id: bytes) -> None:
        for waiter in self._gets.pop(object_id, ()):
            waiter.missing.discard(object_id)
            if not waiter.missing:
                if waiter.timer is not None:
                    waiter.timer.cancel()
                waiter.reply([self.result(oid) for oid in waiter.object_ids])
        for waiter in list(self._waits.get(object_id, ())):
            self._try_finish_wait(waiter)
        self.on_available(object_id)

    def pending_waiters(self) -> int:
        return sum(len(w) for w in self._gets.values()) + sum(len(w) for w in self._waits.values())
