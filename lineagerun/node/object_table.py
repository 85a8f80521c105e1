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

from lineagerun.core.object_store import AllocateFile, CreateObject, CreateRejected, ForgetObject, SealObject
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
# Holder of the pin a copy pulled from another node keeps while a task of
# this node still needs it. After that the copy is secondary, as in Ray:
# evictable, since the node that made the object keeps the primary copy and a
# later want pulls it again.
PULLED_HOLDER = "pulled"
# Objects their owner released before they existed here (a driver drops the
# ref of a task still running): they are stored without a primary pin.
# Bounded: past it the oldest are forgotten (and stay pinned when made).
RELEASED_EARLY_MAX = 100_000
# Inline values (held in this table, not the store) of released objects are
# kept for the most recent ones only, so a long job's table stays bounded:
# past either bound the oldest are dropped and, like an evicted object,
# come back from their record (small ones) or by replay if a borrowed ref
# asks for them again.
RELEASED_INLINE_KEPT_MAX = 20_000
RELEASED_INLINE_KEPT_BYTES = 64 * 1024 * 1024
# Ids of dropped inline values remembered (bounded): a get, wait or task
# naming one has it rebuilt; one forgotten past this is waited for like an
# object never seen.
DROPPED_REMEMBERED_MAX = 200_000
DROPPED_INLINE_WHY = "its value was dropped from the node's memory after its owner released it"


def routed_holder(task_id: bytes) -> str:
    """Pins a multi-node task's local arguments while it is placed (kept
    here, spilled, or parked until its arguments are found)."""
    return f"routed:{task_id.hex()}"


def remote_call_holder(task_id: bytes) -> str:
    """Pins the arguments of a call to an actor on another node while it
    waits here for that node to be known (the actor placed or relocated)."""
    return f"remote-call:{task_id.hex()}"


def forwarded_holder(task_id: bytes) -> str:
    """Pins a forwarded task's arguments here until its results come back
    (the peer pulls them from this node)."""
    return f"forwarded:{task_id.hex()}"


def _no_args_in_use() -> set[bytes]:
    return set()


# An object whose only copy here is gone (evicted after its release, or its
# file removed from outside): (object id, why, whether its owner had released
# it). Set by reconstruction, which rebuilds it when somebody wants it.
LostHook = Callable[[bytes, str, bool], None]


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

    def forget_vanished(self, object_id: bytes, holder: str) -> bool:
        """The object's sealed file is gone (removed from outside): forget it
        whatever its pins. Returns whether ``holder`` pinned it."""
        with self._lock:
            if self._closed:
                return False
            pinned = self._core.pinned_by(object_id, holder)
            self._apply(self._core.handle(ForgetObject(object_id)))
        return pinned


@dataclass(frozen=True)
class RemoteCopy:
    """A sealed copy of an object in another node's store (pull it from there)."""

    address: str           # that node manager's host:port (its ObjectManager service)
    node_id: bytes
    size_bytes: int
    is_error: bool = False
    nested_object_ids: tuple[bytes, ...] = ()


@dataclass
class ObjectEntry:
    payload: node_pb2.ObjectPayload | None = None
    error_kind: str = ""
    error_message: str = ""
    in_store: bool = False
    # Copies on other nodes (multi-node): the object exists, but a get or a
    # task here needs it pulled first.
    remote: list[RemoteCopy] = field(default_factory=list)

    def ready(self) -> bool:
        return self.payload is not None or bool(self.error_kind)


@dataclass(eq=False)
class _GetWaiter:
    object_ids: list[bytes]
    missing: set[bytes]
    reply: Callable[[list[node_pb2.ObjectResult] | None], None]  # None: timed out
    timer: asyncio.TimerHandle | None = None
    holder: str = ""  # pins the objects that are ready while it waits for the others
    owner: str = ""  # the session that asked (its waiters go with it)


@dataclass(eq=False)
class _WaitWaiter:
    object_ids: list[bytes]
    num_returns: int
    reply: Callable[[list[bytes]], None]
    timer: asyncio.TimerHandle | None = None
    done: bool = False
    holder: str = ""  # pins the objects that are ready while it waits for the others
    owner: str = ""  # the session that asked (its waiters go with it)
    fetch_local: bool = True  # False: a copy on another node counts as ready


@dataclass
class ObjectTable:
    store: NodeObjectStore
    on_available: Callable[[bytes], None]
    entries: dict[bytes, ObjectEntry] = field(default_factory=dict)
    _gets: dict[bytes, set[_GetWaiter]] = field(default_factory=dict)
    _waits: dict[bytes, set[_WaitWaiter]] = field(default_factory=dict)
    # Arguments of the tasks of this node, queued or running (set by the
    # cluster link): pulled copies among them stay pinned.
    args_in_use: Callable[[], set[bytes]] = _no_args_in_use
    _pulled: set[bytes] = field(default_factory=set)   # pulled copies pinned by PULLED_HOLDER
    # None: a lost primary copy becomes an ObjectLostError value.
    on_lost: LostHook | None = None
    _released_early: dict[bytes, None] = field(default_factory=dict)  # insertion-ordered
    _pull_release_scheduled: bool = False
    _released_inline: dict[bytes, int] = field(default_factory=dict)  # id -> bytes, insertion-ordered
    _released_inline_bytes: int = 0
    # Pins of inline values (the store pins only its own files): an
    # argument of a queued task or call is not dropped.
    _inline_pins: dict[str, set[bytes]] = field(default_factory=dict)  # holder -> ids
    _inline_pin_counts: dict[bytes, int] = field(default_factory=dict)
    _dropped: dict[bytes, None] = field(default_factory=dict)  # insertion-ordered
    _waiter_serial: int = 0
    _waiters_by_owner: dict[str, set] = field(default_factory=dict)

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
                if object_id in self._released_early:
                    del self._released_early[object_id]  # its owner is done with it already
                else:
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
        self._dropped.pop(object_id, None)
        self._became_ready(object_id)
        if not in_store and object_id in self._released_early:
            del self._released_early[object_id]
            self._keep_released_inline(object_id, len(payload.inline))
        return None

    def add_error(self, object_id: bytes, kind: str, message: str) -> None:
        entry = self.entries.get(object_id)
        if entry is not None and entry.ready():
            return
        self.entries[object_id] = ObjectEntry(error_kind=kind, error_message=message)
        self._dropped.pop(object_id, None)
        self._became_ready(object_id)

    def add_remote(self, object_id: bytes, copy: RemoteCopy) -> bool:
        """Record a copy on another node; True if it is new (and the object
        is not local already)."""
        entry = self.entries.setdefault(object_id, ObjectEntry())
        if entry.ready() or any(c.address == copy.address for c in entry.remote):
            return False
        entry.remote.append(copy)
        for waiter in list(self._waits.get(object_id, ())):
            if not waiter.fetch_local:
                self._try_finish_wait(waiter)
        return True

    def remote_copies(self, object_id: bytes) -> list[RemoteCopy]:
        entry = self.entries.get(object_id)
        return list(entry.remote) if entry is not None and not entry.ready() else []

    def is_known(self, object_id: bytes) -> bool:
        """Local, failed, or with a known copy elsewhere."""
        entry = self.entries.get(object_id)
        return entry is not None and (entry.ready() or bool(entry.remote))

    def drop_remote_node(self, node_id: bytes) -> list[bytes]:
        """A node died: its copies are gone. Returns the objects that had
        no other copy (rebuilding them is reconstruction's job)."""
        lost = []
        for object_id, entry in self.entries.items():
            if entry.remote:
                kept = [c for c in entry.remote if c.node_id != node_id]
                if not kept and not entry.ready():
                    lost.append(object_id)
                entry.remote = kept
        return lost

    def add_pulled(self, object_id: bytes, size_bytes: int, is_error: bool, nested_object_ids) -> None:
        """The object was pulled into the store (sealed there by the puller):
        account it like a local one. Pinned (``PULLED_HOLDER``) so it cannot
        be evicted between now and the task or get that asked for it; the pin
        goes once no task here needs it (``release_unneeded_pulls``)."""
        entry = self.entries.get(object_id)
        if entry is not None and entry.ready():
            return
        try:
            self.store.pin(object_id, PULLED_HOLDER)
            self._pulled.add(object_id)
        except Exception as exc:  # noqa: BLE001 - evicted at once: becomes the object's error
            self.add_error(object_id, "ObjectLostError", f"pulled object {object_id.hex()} vanished: {exc}")
            return
        remote = entry.remote if entry is not None else []
        payload = node_pb2.ObjectPayload(
            shm_name=os.path.basename(shm.object_path(self.store.session_id, object_id)),
            size_bytes=size_bytes, is_error=is_error, nested_object_ids=list(nested_object_ids))
        self.entries[object_id] = ObjectEntry(payload=payload, in_store=True, remote=remote)
        self._became_ready(object_id)

    def waited_for(self, object_id: bytes) -> bool:
        """Whether a get, or a wait that fetches, of a client waits for this object."""
        return object_id in self._gets or any(w.fetch_local for w in self._waits.get(object_id, ()))

    def has_waiters(self, object_id: bytes) -> bool:
        """Whether any get or wait (fetching or not) waits for this object."""
        return object_id in self._gets or object_id in self._waits

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
        self._pulled.discard(object_id)
        entry = self.entries.get(object_id)
        if entry is not None and entry.in_store and entry.remote:
            entry.payload, entry.in_store = None, False  # a pulled copy: the source still has it
            return
        if entry is not None and entry.in_store:
            entry.payload, entry.in_store = None, False
            why = "it was evicted from the node's object store after its owner released it"
            if self.on_lost is not None:
                self.on_lost(object_id, why, True)  # not ready again until rebuilt
                return
            entry.error_kind = "ObjectLostError"
            entry.error_message = f"object {object_id.hex()}: {why}"

    def check_files(self, object_ids: Iterable[bytes]) -> None:
        """Objects whose shared-memory file vanished from outside the store
        (a /dev/shm cleaner, an operator) are lost: forget them, so a get
        waits for their rebuild instead of mapping a missing file."""
        if self.on_lost is None:
            return
        for oid in object_ids:
            entry = self.entries.get(oid)
            if entry is None or not entry.in_store or entry.payload is None:
                continue
            if os.path.exists(shm.object_path(self.store.session_id, oid, shm_dir=self.store.shm_dir)):
                continue
            still_owned = self.store.forget_vanished(oid, PRIMARY_HOLDER)
            self._pulled.discard(oid)
            entry.payload, entry.in_store = None, False
            if entry.remote:
                continue  # a pulled copy: the source still has it
            self.on_lost(oid, "its shared-memory file was removed from outside the object store", not still_owned)

    # -------------------------------------------------------------- pins

    def pin(self, object_ids: Iterable[bytes], holder: str) -> None:
        for oid in object_ids:
            entry = self.entries.get(oid)
            if entry is not None and entry.in_store:
                try:
                    self.store.pin(oid, holder)
                except Exception:  # noqa: BLE001 - evicted meanwhile: the get reports it
                    pass
            elif entry is not None and entry.payload is not None:
                pinned = self._inline_pins.setdefault(holder, set())
                if oid not in pinned:
                    pinned.add(oid)
                    self._inline_pin_counts[oid] = self._inline_pin_counts.get(oid, 0) + 1

    def release_holder(self, holder: str) -> None:
        self.store.release(holder)
        for oid in self._inline_pins.pop(holder, ()):
            count = self._inline_pin_counts.pop(oid, 1) - 1
            if count > 0:
                self._inline_pin_counts[oid] = count
        if self._pulled and not self._pull_release_scheduled:
            # Once per event-loop turn: a burst of finishing tasks scans once.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.release_unneeded_pulls()
                return
            self._pull_release_scheduled = True
            loop.call_soon(self.release_unneeded_pulls)

    def release_unneeded_pulls(self) -> None:
        """Unpin pulled copies no task of this node needs any more (a get's
        own pin covers the client that asked)."""
        self._pull_release_scheduled = False
        if not self._pulled:
            return
        in_use = self.args_in_use()
        for oid in [oid for oid in self._pulled if oid not in in_use]:
            self._pulled.discard(oid)
            self.store.unpin(oid, PULLED_HOLDER)

    def release_primary(self, object_ids: Iterable[bytes]) -> None:
        for oid in object_ids:
            entry = self.entries.get(oid)
            if entry is None or not entry.ready():
                self._released_early[oid] = None
                while len(self._released_early) > RELEASED_EARLY_MAX:
                    del self._released_early[next(iter(self._released_early))]
            elif entry.in_store:
                self.store.unpin(oid, PRIMARY_HOLDER)
                if oid in self._pulled:
                    self._pulled.discard(oid)
                    self.store.unpin(oid, PULLED_HOLDER)
            elif entry.payload is not None and not entry.remote:
                self._keep_released_inline(oid, len(entry.payload.inline))

    def _keep_released_inline(self, object_id: bytes, size: int) -> None:
        if object_id in self._released_inline:
            return
        self._released_inline[object_id] = size
        self._released_inline_bytes += size
        kept = self._released_inline
        tries = len(kept)  # each kept one is looked at once at most: all may be in use
        while kept and tries > 0 and (len(kept) > RELEASED_INLINE_KEPT_MAX
                                      or self._released_inline_bytes > RELEASED_INLINE_KEPT_BYTES):
            tries -= 1
            oldest = next(iter(kept))
            size = kept.pop(oldest)
            if self._in_use(oldest):
                kept[oldest] = size  # again later, from the young end
                continue
            self._released_inline_bytes -= size
            self._drop_released_inline(oldest)

    def _in_use(self, object_id: bytes) -> bool:
        return (object_id in self._inline_pin_counts or bool(self._gets.get(object_id))
                or bool(self._waits.get(object_id)))

    def _drop_released_inline(self, object_id: bytes) -> None:
        entry = self.entries.get(object_id)
        if entry is None or entry.in_store or entry.payload is None or entry.remote:
            return  # rebuilt into the store meanwhile
        del self.entries[object_id]
        self._dropped[object_id] = None
        while len(self._dropped) > DROPPED_REMEMBERED_MAX:
            del self._dropped[next(iter(self._dropped))]

    def take_dropped(self, object_id: bytes) -> bool:
        """Whether ``object_id``'s value was dropped (forgotten now: its
        rebuild takes over)."""
        if object_id in self._dropped:
            del self._dropped[object_id]
            return True
        return False

    # ----------------------------------------------------------- waiters

    def get(self, object_ids: list[bytes], timeout_ms: int,
            reply: Callable[[list[node_pb2.ObjectResult] | None], None], owner: str = "") -> bool:
        """Call ``reply(results)`` when all are ready, or ``reply(None)`` at
        the timeout (-1: never). Returns True if answered at once."""
        missing = {oid for oid in object_ids if not self.is_ready(oid)}
        if not missing:
            reply([self.result(oid) for oid in object_ids])
            return True
        if timeout_ms == 0:
            reply(None)
            return True
        waiter = _GetWaiter(list(object_ids), missing, reply, owner=owner)
        self._pin_for(waiter, [oid for oid in object_ids if oid not in missing])
        for oid in missing:
            self._gets.setdefault(oid, set()).add(waiter)
        self._own(waiter)
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
        self._unpin_waiter(waiter)

    def _pin_for(self, waiter, ready: list[bytes]) -> None:
        """A get or wait that must wait keeps what is ready meanwhile: an
        eviction or a dropped inline value would turn it into a loss in the
        answer."""
        if not ready:
            return
        if not waiter.holder:
            self._waiter_serial += 1
            waiter.holder = f"waiting:{self._waiter_serial}"
        self.pin(ready, waiter.holder)

    def _own(self, waiter) -> None:
        if waiter.owner:
            self._waiters_by_owner.setdefault(waiter.owner, set()).add(waiter)

    def _unpin_waiter(self, waiter) -> None:
        if waiter.owner:
            waiters = self._waiters_by_owner.get(waiter.owner)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters_by_owner[waiter.owner]
        if waiter.holder:
            holder, waiter.holder = waiter.holder, ""
            self.release_holder(holder)

    def drop_waiters(self, owner: str) -> None:
        """The session ``owner`` ended: its gets and waits are not answered
        and keep nothing pinned."""
        for waiter in list(self._waiters_by_owner.pop(owner, ())):
            if waiter.timer is not None:
                waiter.timer.cancel()
            table = self._gets if isinstance(waiter, _GetWaiter) else self._waits
            for oid in waiter.object_ids:
                waiters = table.get(oid)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del table[oid]
            if isinstance(waiter, _WaitWaiter):
                waiter.done = True
            waiter.owner = ""
            self._unpin_waiter(waiter)

    def wait(self, object_ids: list[bytes], num_returns: int, timeout_ms: int,
             reply: Callable[[list[bytes]], None], fetch_local: bool = True, owner: str = "") -> bool:
        waiter = _WaitWaiter(list(object_ids), num_returns, reply, fetch_local=fetch_local, owner=owner)
        if self._try_finish_wait(waiter):
            return True
        if timeout_ms == 0:
            self._finish_wait(waiter)
            return True
        self._pin_for(waiter, [oid for oid in object_ids if self._wait_ready(waiter, oid)])
        for oid in object_ids:
            if not self._wait_ready(waiter, oid):
                self._waits.setdefault(oid, set()).add(waiter)
        self._own(waiter)
        if timeout_ms > 0:
            waiter.timer = asyncio.get_running_loop().call_later(timeout_ms / 1000, self._finish_wait, waiter)
        return False

    def _wait_ready(self, waiter: _WaitWaiter, object_id: bytes) -> bool:
        return self.is_ready(object_id) if waiter.fetch_local else self.is_known(object_id)

    def _ready_ids(self, waiter: _WaitWaiter) -> list[bytes]:
        return [oid for oid in waiter.object_ids if self._wait_ready(waiter, oid)][: waiter.num_returns]

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
        self._unpin_waiter(waiter)

    def _became_ready(self, object_id: bytes) -> None:
        for waiter in self._gets.pop(object_id, ()):
            waiter.missing.discard(object_id)
            if not waiter.missing:
                if waiter.timer is not None:
                    waiter.timer.cancel()
                waiter.reply([self.result(oid) for oid in waiter.object_ids])
                self._unpin_waiter(waiter)
            else:
                self._pin_for(waiter, [object_id])
        for waiter in list(self._waits.get(object_id, ())):
            if not self._try_finish_wait(waiter):
                self._pin_for(waiter, [object_id])
        self.on_available(object_id)

    def pending_waiters(self) -> int:
        return sum(len(w) for w in self._gets.values()) + sum(len(w) for w in self._waits.values())
