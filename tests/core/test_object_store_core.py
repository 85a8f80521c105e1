"""The object store's pure bookkeeping: scripted scenarios, then a hypothesis
state machine checked against a simple model of LRU eviction."""

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

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
    ObjectSealed,
    ObjectState,
    ObjectStoreCore,
    PinObject,
    Placement,
    RejectReason,
    ReleaseHolder,
    SealObject,
    UnlinkFile,
    UnpinObject,
    inline_or_shared,
)
from lineagerun.exceptions import InvalidArgumentError, ObjectStoreFullError

A, B, C, D = (bytes([i]) * 28 for i in range(1, 5))


def _put(core, oid, size, creator="w"):
    effects = core.handle(CreateObject(oid, size, creator))
    assert effects[-1] == AllocateFile(oid, size)
    assert core.handle(SealObject(oid)) == [ObjectSealed(oid, size)]
    return effects


def test_create_then_seal_allocates_and_makes_the_object_readable():
    core = ObjectStoreCore(100)
    assert core.handle(CreateObject(A, 10, "w")) == [AllocateFile(A, 10)]
    assert core.handle(GetObject(A)) == [ObjectNotFound(A, ObjectState.CREATING)]
    assert core.handle(SealObject(A)) == [ObjectSealed(A, 10)]
    assert core.handle(GetObject(A)) == [ObjectFound(A, 10)]
    assert core.used_bytes == 10
    core.check_invariants()


def test_create_evicts_least_recently_used_first():
    core = ObjectStoreCore(30)
    for oid in (A, B, C):
        _put(core, oid, 10)
    core.handle(GetObject(A))  # A is now the most recently used
    effects = core.handle(CreateObject(D, 10, "w"))
    assert effects == [UnlinkFile(B, sealed=True), EvictedObject(B, 10), AllocateFile(D, 10)]
    assert core.state_of(B) is None and core.state_of(A) is ObjectState.SEALED
    core.check_invariants()


def test_pinned_objects_are_never_evicted():
    core = ObjectStoreCore(30)
    for oid in (A, B, C):
        _put(core, oid, 10)
    core.handle(PinObject(A, "worker-1"))
    effects = core.handle(CreateObject(D, 20, "w"))
    assert [e for e in effects if isinstance(e, EvictedObject)] == [EvictedObject(B, 10), EvictedObject(C, 10)]
    assert core.state_of(A) is ObjectState.SEALED
    core.check_invariants()


def test_create_is_rejected_and_evicts_nothing_when_pinned_bytes_leave_no_room():
    core = ObjectStoreCore(30)
    for oid in (A, B):
        _put(core, oid, 10)
    core.handle(PinObject(A, "h"))
    core.handle(PinObject(B, "h"))
    _put(core, C, 5)
    [rejected] = core.handle(CreateObject(D, 20, "w"))
    assert isinstance(rejected, CreateRejected) and rejected.reason is RejectReason.FULL
    assert "capacity 30 bytes, 25 bytes in use, of which 20 bytes are pinned" in rejected.message
    assert isinstance(rejected.error(), ObjectStoreFullError)
    assert core.state_of(C) is ObjectState.SEALED  # nothing was evicted in vain
    core.check_invariants()


def test_object_larger_than_capacity_is_rejected_as_too_large():
    core = ObjectStoreCore(100)
    [rejected] = core.handle(CreateObject(A, 101, "w"))
    assert rejected.reason is RejectReason.TOO_LARGE
    assert "larger than the object store's whole capacity of 100 bytes" in rejected.message
    assert core.used_bytes == 0


def test_objects_being_created_are_never_evicted():
    core = ObjectStoreCore(20)
    core.handle(CreateObject(A, 10, "w"))
    _put(core, B, 10)
    effects = core.handle(CreateObject(C, 10, "w"))
    assert EvictedObject(B, 10) in effects and core.state_of(A) is ObjectState.CREATING


def test_create_of_an_existing_id_reports_it_and_changes_nothing():
    core = ObjectStoreCore(100)
    _put(core, A, 10)
    assert core.handle(CreateObject(A, 10, "w")) == [ObjectAlreadyExists(A, ObjectState.SEALED)]
    assert core.used_bytes == 10


def test_release_of_a_holder_drops_its_pins_and_aborts_its_creations():
    core = ObjectStoreCore(100)
    _put(core, A, 10)
    core.handle(PinObject(A, "worker-1"))
    core.handle(PinObject(A, "worker-1"))
    core.handle(CreateObject(B, 10, "worker-1"))
    effects = core.handle(ReleaseHolder("worker-1"))
    assert effects == [UnlinkFile(B, sealed=False)]
    assert core.pin_count(A) == 0 and core.lru_order() == [A]
    assert core.used_bytes == 10
    core.check_invariants()


def test_delete_of_a_pinned_object_waits_for_the_last_unpin():
    core = ObjectStoreCore(100)
    _put(core, A, 10)
    core.handle(PinObject(A, "h1"))
    core.handle(PinObject(A, "h2"))
    assert core.handle(DeleteObject(A)) == []
    assert core.handle(GetObject(A)) == [ObjectNotFound(A)]
    assert core.handle(PinObject(A, "h3")) == [ObjectNotFound(A)]
    assert core.handle(UnpinObject(A, "h1")) == []
    assert core.handle(UnpinObject(A, "h2")) == [UnlinkFile(A, sealed=True)]
    assert core.used_bytes == 0
    core.check_invariants()


def test_abort_frees_the_room_of_an_unsealed_object():
    core = ObjectStoreCore(100)
    core.handle(CreateObject(A, 60, "w"))
    assert core.handle(AbortCreate(A)) == [UnlinkFile(A, sealed=False)]
    assert core.used_bytes == 0
    assert core.handle(CreateObject(B, 100, "w")) == [AllocateFile(B, 100)]


def test_repeated_unpin_and_seal_change_nothing():
    core = ObjectStoreCore(100)
    _put(core, A, 10)
    core.handle(PinObject(A, "h"))
    core.handle(UnpinObject(A, "h"))
    assert core.handle(UnpinObject(A, "h")) == []
    assert core.handle(SealObject(A)) == []
    core.check_invariants()


def test_get_with_holder_pins():
    core = ObjectStoreCore(10)
    _put(core, A, 10)
    core.handle(GetObject(A, holder="reader"))
    [rejected] = core.handle(CreateObject(B, 10, "w"))
    assert rejected.reason is RejectReason.FULL


def test_bad_input_raises_typed_errors():
    core = ObjectStoreCore(10)
    with pytest.raises(InvalidArgumentError, match="object ids are non-empty bytes"):
        core.handle(CreateObject("abc", 1, "w"))
    with pytest.raises(InvalidArgumentError, match="size_bytes"):
        core.handle(CreateObject(A, -1, "w"))
    with pytest.raises(InvalidArgumentError, match="capacity_bytes"):
        ObjectStoreCore(0)


def test_inline_or_shared_splits_at_the_threshold():
    assert inline_or_shared(INLINE_THRESHOLD_BYTES - 1) is Placement.INLINE
    assert inline_or_shared(INLINE_THRESHOLD_BYTES) is Placement.SHARED
    assert inline_or_shared(10, inline_threshold_bytes=5) is Placement.SHARED


# ------------------------------------------------------------ state machine

CAPACITY_BYTES = 100
OBJECT_IDS = [bytes([i]) * 28 for i in range(8)]
HOLDERS = ["h0", "h1", "h2"]


class ObjectStoreMachine(RuleBasedStateMachine):
    """Drives the core with random events and checks each result against a
    model: sizes by id, states, pins, and the order of last use."""

    def __init__(self):
        super().__init__()
        self.core = ObjectStoreCore(CAPACITY_BYTES)
        self.sizes: dict[bytes, int] = {}
        self.sealed: set[bytes] = set()
        self.creators: dict[bytes, str] = {}
        self.pins: dict[bytes, dict[str, int]] = {}
        self.deleted: set[bytes] = set()  # delete pending
        self.use_order: list[bytes] = []  # evictable ids, oldest use first

    def _pinned(self, oid):
        return sum(self.pins.get(oid, {}).values()) > 0

    def _use(self, oid):
        if oid in self.use_order:
            self.use_order.remove(oid)
        if oid in self.sealed and not self._pinned(oid) and oid not in self.deleted:
            self.use_order.append(oid)

    def _forget(self, oid):
        for table in (self.sizes, self.creators, self.pins):
            table.pop(oid, None)
        self.sealed.discard(oid)
        self.deleted.discard(oid)
        if oid in self.use_order:
            self.use_order.remove(oid)

    # Mostly small sizes so that several objects fit and eviction has a choice.
    @rule(oid=st.sampled_from(OBJECT_IDS), size=st.one_of(st.integers(1, 35), st.integers(0, 120)),
          creator=st.sampled_from(HOLDERS))
    def create(self, oid, size, creator):
        effects = self.core.handle(CreateObject(oid, size, creator))
        if oid in self.sizes:
            assert effects == [ObjectAlreadyExists(oid, ObjectState.SEALED if oid in self.sealed
                                                   else ObjectState.CREATING)]
            return
        if size > CAPACITY_BYTES:
            assert [type(e) for e in effects] == [CreateRejected] and effects[0].reason is RejectReason.TOO_LARGE
            return
        need = sum(self.sizes.values()) + size - CAPACITY_BYTES
        evictable = sum(self.sizes[o] for o in self.use_order)
        if need > evictable:
            assert [type(e) for e in effects] == [CreateRejected] and effects[0].reason is RejectReason.FULL
            return
        expected_evicted = []
        while need > 0:
            victim = self.use_order[0]
            expected_evicted.append(victim)
            need -= self.sizes[victim]
            self._forget(victim)
        evicted = [e.object_id for e in effects if isinstance(e, EvictedObject)]
        assert evicted == expected_evicted  # LRU order, never a pinned object
        assert effects[-1] == AllocateFile(oid, size)
        self.sizes[oid] = size
        self.creators[oid] = creator

    @rule(oid=st.sampled_from(OBJECT_IDS))
    def seal(self, oid):
        effects = self.core.handle(SealObject(oid))
        if oid not in self.sizes:
            assert effects == [ObjectNotFound(oid)]
        elif oid in self.sealed:
            assert effects == []
        else:
            assert effects == [ObjectSealed(oid, self.sizes[oid])]
            self.sealed.add(oid)
            del self.creators[oid]
            self._use(oid)

    @rule(oid=st.sampled_from(OBJECT_IDS))
    def abort(self, oid):
        effects = self.core.handle(AbortCreate(oid))
        if oid in self.sizes and oid not in self.sealed:
            assert effects == [UnlinkFile(oid, sealed=False)]
            self._forget(oid)
        else:
            assert effects == []

    @rule(oid=st.sampled_from(OBJECT_IDS), holder=st.sampled_from(HOLDERS))
    def pin(self, oid, holder):
        effects = self.core.handle(PinObject(oid, holder))
        if oid not in self.sizes or oid in self.deleted:
            assert effects == [ObjectNotFound(oid)]
            return
        assert effects == []
        self.pins.setdefault(oid, {})[holder] = self.pins.get(oid, {}).get(holder, 0) + 1
        self._use(oid)

    def _after_unpin(self, oid, effects):
        if not self._pinned(oid) and oid in self.deleted:
            assert UnlinkFile(oid, sealed=True) in effects
            self._forget(oid)
        else:
            self._use(oid)

    @precondition(lambda self: any(self.pins.values()))
    @rule(data=st.data())
    def unpin(self, data):
        oid = data.draw(st.sampled_from(sorted(o for o, p in self.pins.items() if p)))
        holder = data.draw(st.sampled_from(sorted(self.pins[oid])))
        effects = self.core.handle(UnpinObject(oid, holder))
        self.pins[oid][holder] -= 1
        if self.pins[oid][holder] == 0:
            del self.pins[oid][holder]
        self._after_unpin(oid, effects)

    @rule(holder=st.sampled_from(HOLDERS))
    def release(self, holder):
        effects = self.core.handle(ReleaseHolder(holder))
        for oid, creator in list(self.creators.items()):
            if creator == holder:
                assert UnlinkFile(oid, sealed=False) in effects
                self._forget(oid)
        for oid in sorted(o for o, p in self.pins.items() if holder in p):
            del self.pins[oid][holder]
            self._after_unpin(oid, effects)

    @rule(oid=st.sampled_from(OBJECT_IDS))
    def delete(self, oid):
        effects = self.core.handle(DeleteObject(oid))
        if oid not in self.sizes or oid in self.deleted:
            assert effects == []
        elif oid not in self.sealed:
            assert effects == [UnlinkFile(oid, sealed=False)]
            self._forget(oid)
        elif self._pinned(oid):
            assert effects == []
            self.deleted.add(oid)
            self._use(oid)
        else:
            assert effects == [UnlinkFile(oid, sealed=True)]
            self._forget(oid)

    @rule(oid=st.sampled_from(OBJECT_IDS))
    def get(self, oid):
        effects = self.core.handle(GetObject(oid))
        if oid in self.sealed and oid not in self.deleted:
            assert effects == [ObjectFound(oid, self.sizes[oid])]
            self._use(oid)
        else:
            assert len(effects) == 1 and isinstance(effects[0], ObjectNotFound)

    @invariant()
    def bookkeeping_matches_the_model(self):
        self.core.check_invariants()
        assert self.core.used_bytes == sum(self.sizes.values()) <= CAPACITY_BYTES
        assert self.core.lru_order() == self.use_order
        for oid in OBJECT_IDS:
            assert self.core.pin_count(oid) == sum(self.pins.get(oid, {}).values())


TestObjectStoreMachine = ObjectStoreMachine.TestCase
TestObjectStoreMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
