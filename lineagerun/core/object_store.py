"""Bookkeeping of a node's shared-memory object store, as a pure state machine.

No I/O, no clock, no threads: :class:`ObjectStoreCore` takes events through its
one mutator ``handle(event) -> list[effect]`` and says, as effects, which files
to allocate or unlink and which objects it evicted. The shell
(``lineagerun.objects.store``) carries the effects out, in list order: the
unlinks of evicted objects come before the allocation that needed their room.

Model:
- an object is CREATING (room reserved, its creator writing it) then SEALED
  (immutable, readable); ``used_bytes`` counts both and never exceeds
  ``capacity_bytes``;
- a holder (a worker or driver that has mapped a value, or a task that needs
  it as an argument) pins an object any number of times; pinned objects are
  never evicted; ``ReleaseHolder`` drops every pin of a holder that is gone
  and aborts the objects it was still creating;
- sealed, unpinned objects sit in an LRU order (oldest first); sealing,
  ``GetObject`` and the last unpin count as a use. A create that does not fit
  evicts from the oldest end, and evicts nothing if even evicting every
  unpinned object would not make room;
- deleting a pinned object hides it from new users at once and unlinks it
  when the last pin goes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from lineagerun.exceptions import InvalidArgumentError, ObjectStoreFullError

# Below this size a value travels inline (with the task result or in the
# control message) instead of through a shared-memory file: a file costs a few
# system calls and at least one page, more than copying 100 KiB (as Ray).
INLINE_THRESHOLD_BYTES = 100 * 1024


class Placement(enum.Enum):
    INLINE = "inline"
    SHARED = "shared"


def inline_or_shared(size_bytes: int, inline_threshold_bytes: int = INLINE_THRESHOLD_BYTES) -> Placement:
    """Where a serialised value of ``size_bytes`` should live."""
    return Placement.INLINE if size_bytes < inline_threshold_bytes else Placement.SHARED


class ObjectState(enum.Enum):
    CREATING = "creating"
    SEALED = "sealed"


class RejectReason(enum.Enum):
    TOO_LARGE = "too_large"  # bigger than the whole capacity: retrying cannot help
    FULL = "full"  # pinned and in-flight objects leave no room now


# ------------------------------------------------------------------ events


@dataclass(frozen=True)
class CreateObject:
    object_id: bytes
    size_bytes: int
    creator: str


@dataclass(frozen=True)
class SealObject:
    object_id: bytes


@dataclass(frozen=True)
class AbortCreate:
    """The creator failed to write the object (or gave up)."""

    object_id: bytes


@dataclass(frozen=True)
class PinObject:
    object_id: bytes
    holder: str


@dataclass(frozen=True)
class UnpinObject:
    object_id: bytes
    holder: str


@dataclass(frozen=True)
class ReleaseHolder:
    """The holder is gone (process exited, task finished): drop all its pins."""

    holder: str


@dataclass(frozen=True)
class DeleteObject:
    object_id: bytes


@dataclass(frozen=True)
class ForgetObject:
    """The object's sealed file vanished from outside the store (e.g. a
    /dev/shm cleaner): forget it at once, whatever its pins; later unpins of
    its old holders change nothing. The node rebuilds it from lineage."""

    object_id: bytes


@dataclass(frozen=True)
class GetObject:
    """A read; pins the object for ``holder`` when one is given."""

    object_id: bytes
    holder: str | None = None


Event = (CreateObject | SealObject | AbortCreate | PinObject | UnpinObject | ReleaseHolder | DeleteObject | GetObject
         | ForgetObject)

# ----------------------------------------------------------------- effects


@dataclass(frozen=True)
class AllocateFile:
    """Create the (not yet sealed) file of a new object for its creator."""

    object_id: bytes
    size_bytes: int


@dataclass(frozen=True)
class UnlinkFile:
    """Remove an object's file: the sealed one, or the unsealed one of an
    aborted create. Mappings already made stay valid."""

    object_id: bytes
    sealed: bool


@dataclass(frozen=True)
class EvictedObject:
    """An object was evicted to make room: the runtime drops this node from
    its locations (a later get rebuilds or pulls it)."""

    object_id: bytes
    size_bytes: int


@dataclass(frozen=True)
class CreateRejected:
    object_id: bytes
    size_bytes: int
    reason: RejectReason
    message: str

    def error(self) -> ObjectStoreFullError:
        return ObjectStoreFullError(self.message)


@dataclass(frozen=True)
class ObjectAlreadyExists:
    """A create of an id that exists (objects are immutable and replay makes
    the same ids, so the existing object is as good as the new one)."""

    object_id: bytes
    state: ObjectState


@dataclass(frozen=True)
class ObjectSealed:
    object_id: bytes
    size_bytes: int


@dataclass(frozen=True)
class ObjectFound:
    object_id: bytes
    size_bytes: int


@dataclass(frozen=True)
class ObjectNotFound:
    """Unknown, deleted, or (``state`` CREATING) not sealed yet."""

    object_id: bytes
    state: ObjectState | None = None


Effect = (AllocateFile | UnlinkFile | EvictedObject | CreateRejected | ObjectAlreadyExists
          | ObjectSealed | ObjectFound | ObjectNotFound)


@dataclass(frozen=True)
class ObjectStoreStats:
    capacity_bytes: int
    used_bytes: int
    evictable_bytes: int
    pinned_bytes: int  # used and not evictable: pinned, being created, or awaiting delete
    object_count: int
    sealed_count: int
    creating_count: int
    evicted_count_total: int
    evicted_bytes_total: int
    rejected_count_total: int


@dataclass
class _Entry:
    object_id: bytes
    size_bytes: int
    state: ObjectState
    creator: str | None
    pin_count: int = 0
    delete_pending: bool = False
    pins: dict[str, int] = field(default_factory=dict)


class ObjectStoreCore:
    """The object store's state machine; see the module docstring."""

    def __init__(self, capacity_bytes: int):
        if not isinstance(capacity_bytes, int) or capacity_bytes <= 0:
            raise InvalidArgumentError(f"capacity_bytes must be a positive int, got {capacity_bytes!r}")
        self.capacity_bytes = capacity_bytes
        self.used_bytes = 0
        self._objects: dict[bytes, _Entry] = {}
        # Sealed, unpinned, not deleted objects, oldest use first (dicts keep
        # insertion order; a use moves the key to the end).
        self._lru: dict[bytes, None] = {}
        self._evictable_bytes = 0
        self._objects_by_holder: dict[str, set[bytes]] = {}
        self._creating_by_creator: dict[str, set[bytes]] = {}
        self._evicted_count = 0
        self._evicted_bytes = 0
        self._rejected_count = 0

    # ------------------------------------------------------------ queries

    def state_of(self, object_id: bytes) -> ObjectState | None:
        """The object's state, or None if unknown or deleted."""
        entry = self._objects.get(object_id)
        return None if entry is None or entry.delete_pending else entry.state

    def size_of(self, object_id: bytes) -> int | None:
        entry = self._objects.get(object_id)
        return None if entry is None else entry.size_bytes

    def pin_count(self, object_id: bytes) -> int:
        entry = self._objects.get(object_id)
        return 0 if entry is None else entry.pin_count

    def object_ids(self) -> list[bytes]:
        """Every object that has a file (including ones awaiting delete)."""
        return list(self._objects)

    def lru_order(self) -> list[bytes]:
        """Evictable objects, next to be evicted first."""
        return list(self._lru)

    def stats(self) -> ObjectStoreStats:
        sealed = sum(1 for e in self._objects.values() if e.state is ObjectState.SEALED)
        return ObjectStoreStats(
            capacity_bytes=self.capacity_bytes, used_bytes=self.used_bytes,
            evictable_bytes=self._evictable_bytes, pinned_bytes=self.used_bytes - self._evictable_bytes,
            object_count=len(self._objects), sealed_count=sealed, creating_count=len(self._objects) - sealed,
            evicted_count_total=self._evicted_count, evicted_bytes_total=self._evicted_bytes,
            rejected_count_total=self._rejected_count)

    def check_invariants(self) -> None:
        """Assert the bookkeeping is consistent (tests call it after every step)."""
        assert self.used_bytes == sum(e.size_bytes for e in self._objects.values())
        assert 0 <= self.used_bytes <= self.capacity_bytes
        evictable = [oid for oid, e in self._objects.items()
                     if e.state is ObjectState.SEALED and e.pin_count == 0 and not e.delete_pending]
        assert set(self._lru) == set(evictable)
        assert self._evictable_bytes == sum(self._objects[oid].size_bytes for oid in self._lru)
        for entry in self._objects.values():
            assert entry.pin_count == sum(entry.pins.values()) and all(n > 0 for n in entry.pins.values())
            assert not entry.delete_pending or entry.pin_count > 0
            for holder in entry.pins:
                assert entry.object_id in self._objects_by_holder[holder]
            assert (entry.creator is None) == (entry.state is ObjectState.SEALED)
        for holder, ids in self._objects_by_holder.items():
            assert ids and all(holder in self._objects[oid].pins for oid in ids)

    # ------------------------------------------------------------ mutator

    def handle(self, event: Event) -> list[Effect]:
        if isinstance(event, CreateObject):
            return self._create(event)
        if isinstance(event, SealObject):
            return self._seal(event.object_id)
        if isinstance(event, AbortCreate):
            return self._abort(event.object_id)
        if isinstance(event, PinObject):
            return self._pin(event.object_id, event.holder)
        if isinstance(event, UnpinObject):
            return self._unpin(event.object_id, event.holder)
        if isinstance(event, ReleaseHolder):
            return self._release(event.holder)
        if isinstance(event, DeleteObject):
            return self._delete(event.object_id)
        if isinstance(event, GetObject):
            return self._get(event.object_id, event.holder)
        if isinstance(event, ForgetObject):
            return self._forget_vanished(event.object_id)
        raise InvalidArgumentError(f"ObjectStoreCore cannot handle a {type(event).__name__}")

    # ----------------------------------------------------------- handlers

    def _create(self, event: CreateObject) -> list[Effect]:
        _check_object_id(event.object_id)
        if not isinstance(event.size_bytes, int) or event.size_bytes < 0:
            raise InvalidArgumentError(f"size_bytes must be an int >= 0, got {event.size_bytes!r}")
        oid, size = event.object_id, event.size_bytes
        existing = self._objects.get(oid)
        if existing is not None:
            return [ObjectAlreadyExists(oid, existing.state)]
        if size > self.capacity_bytes:
            self._rejected_count += 1
            return [CreateRejected(oid, size, RejectReason.TOO_LARGE, (
                f"object {oid.hex()} of {size} bytes is larger than the object store's whole capacity "
                f"of {self.capacity_bytes} bytes; raise the node's object store capacity (and the size "
                "of /dev/shm), or split the value into smaller objects"))]
        room_needed = self.used_bytes + size - self.capacity_bytes
        if room_needed > self._evictable_bytes:
            self._rejected_count += 1
            unevictable = self.used_bytes - self._evictable_bytes
            return [CreateRejected(oid, size, RejectReason.FULL, (
                f"object store full: no room for object {oid.hex()} of {size} bytes: capacity "
                f"{self.capacity_bytes} bytes, {self.used_bytes} bytes in use, of which {unevictable} "
                "bytes are pinned or still being written and cannot be evicted; release references "
                "to objects you no longer need (or delete them), or give the node a larger object "
                "store capacity"))]
        effects: list[Effect] = []
        while self.used_bytes + size > self.capacity_bytes:
            effects.extend(self._evict_oldest())
        self._objects[oid] = _Entry(oid, size, ObjectState.CREATING, creator=event.creator)
        self._creating_by_creator.setdefault(event.creator, set()).add(oid)
        self.used_bytes += size
        effects.append(AllocateFile(oid, size))
        return effects

    def _evict_oldest(self) -> list[Effect]:
        oid = next(iter(self._lru))
        entry = self._objects[oid]
        self._lru_remove(oid)
        self._forget(entry)
        self._evicted_count += 1
        self._evicted_bytes += entry.size_bytes
        return [UnlinkFile(oid, sealed=True), EvictedObject(oid, entry.size_bytes)]

    def _seal(self, oid: bytes) -> list[Effect]:
        entry = self._objects.get(oid)
        if entry is None:
            return [ObjectNotFound(oid)]
        if entry.state is ObjectState.SEALED:
            return []  # a repeated seal changes nothing
        self._drop_creator(entry)
        entry.state = ObjectState.SEALED
        if entry.pin_count == 0:
            self._lru_add(oid)
        return [ObjectSealed(oid, entry.size_bytes)]

    def _abort(self, oid: bytes) -> list[Effect]:
        entry = self._objects.get(oid)
        if entry is None or entry.state is ObjectState.SEALED:
            return []
        self._drop_creator(entry)
        for holder in list(entry.pins):
            self._drop_holder_index(holder, oid)
        self._forget(entry)
        return [UnlinkFile(oid, sealed=False)]

    def _pin(self, oid: bytes, holder: str) -> list[Effect]:
        entry = self._objects.get(oid)
        if entry is None or entry.delete_pending:
            return [ObjectNotFound(oid)]
        if entry.pin_count == 0 and entry.state is ObjectState.SEALED:
            self._lru_remove(oid)
        entry.pin_count += 1
        entry.pins[holder] = entry.pins.get(holder, 0) + 1
        self._objects_by_holder.setdefault(holder, set()).add(oid)
        return []

    def _unpin(self, oid: bytes, holder: str) -> list[Effect]:
        entry = self._objects.get(oid)
        if entry is None or holder not in entry.pins:
            return []  # a repeated unpin (e.g. a retried message) changes nothing
        entry.pins[holder] -= 1
        entry.pin_count -= 1
        if entry.pins[holder] == 0:
            del entry.pins[holder]
            self._drop_holder_index(holder, oid)
        return self._after_unpin(entry)

    def _after_unpin(self, entry: _Entry) -> list[Effect]:
        if entry.pin_count > 0:
            return []
        if entry.delete_pending:
            self._forget(entry)
            return [UnlinkFile(entry.object_id, sealed=True)]
        if entry.state is ObjectState.SEALED:
            self._lru_add(entry.object_id)
        return []

    def _release(self, holder: str) -> list[Effect]:
        effects: list[Effect] = []
        for oid in sorted(self._creating_by_creator.get(holder, ())):
            effects.extend(self._abort(oid))
        for oid in sorted(self._objects_by_holder.pop(holder, ())):
            entry = self._objects[oid]
            entry.pin_count -= entry.pins.pop(holder)
            effects.extend(self._after_unpin(entry))
        return effects

    def _delete(self, oid: bytes) -> list[Effect]:
        entry = self._objects.get(oid)
        if entry is None or entry.delete_pending:
            return []
        if entry.state is ObjectState.CREATING:
            return self._abort(oid)
        if entry.pin_count > 0:
            entry.delete_pending = True
            return []
        self._lru_remove(oid)
        self._forget(entry)
        return [UnlinkFile(oid, sealed=True)]

    def _forget_vanished(self, oid: bytes) -> list[Effect]:
        entry = self._objects.get(oid)
        if entry is None:
            return []
        if entry.state is ObjectState.CREATING:
            return self._abort(oid)
        for holder in list(entry.pins):
            self._drop_holder_index(holder, oid)
        self._lru_remove(oid)
        self._forget(entry)
        return []  # its file is gone already (one that reappeared is not ours to remove)

    def pinned_by(self, object_id: bytes, holder: str) -> bool:
        """Whether ``holder`` pins the object (a query; changes nothing)."""
        entry = self._objects.get(object_id)
        return entry is not None and holder in entry.pins

    def _get(self, oid: bytes, holder: str | None) -> list[Effect]:
        entry = self._objects.get(oid)
        if entry is None or entry.delete_pending:
            return [ObjectNotFound(oid)]
        if entry.state is ObjectState.CREATING:
            return [ObjectNotFound(oid, ObjectState.CREATING)]
        if holder is not None:
            self._pin(oid, holder)
        elif entry.pin_count == 0:
            self._lru_remove(oid)
            self._lru_add(oid)
        return [ObjectFound(oid, entry.size_bytes)]

    # ------------------------------------------------------------ helpers

    def _lru_add(self, oid: bytes) -> None:
        self._lru[oid] = None
        self._evictable_bytes += self._objects[oid].size_bytes

    def _lru_remove(self, oid: bytes) -> None:
        if self._lru.pop(oid, False) is None:
            self._evictable_bytes -= self._objects[oid].size_bytes

    def _forget(self, entry: _Entry) -> None:
        del self._objects[entry.object_id]
        self.used_bytes -= entry.size_bytes

    def _drop_creator(self, entry: _Entry) -> None:
        creating = self._creating_by_creator.get(entry.creator)
        if creating is not None:
            creating.discard(entry.object_id)
            if not creating:
                del self._creating_by_creator[entry.creator]
        entry.creator = None

    def _drop_holder_index(self, holder: str, oid: bytes) -> None:
        ids = self._objects_by_holder.get(holder)
        if ids is not None:
            ids.discard(oid)
            if not ids:
                del self._objects_by_holder[holder]


def _check_object_id(object_id) -> None:
    if not isinstance(object_id, bytes) or not object_id:
        raise InvalidArgumentError(f"object ids are non-empty bytes, got {object_id!r}")
