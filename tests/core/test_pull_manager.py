"""The pull bookkeeping core: scripted scenarios, then a hypothesis state
machine that plays sources and the local store against it and checks that an
object has one transfer at a time, every requester is answered exactly once,
and a pull fails only after every source was tried."""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lineagerun.core.pull_manager import (
    AbortReservation,
    CancelTransfer,
    ChunkArrived,
    CompletePull,
    FailPull,
    LocalStoreFailed,
    ObjectAlreadyLocal,
    ObjectSealed,
    PullManager,
    PullPhase,
    PullRequested,
    ReserveObject,
    SealObject,
    StartTransfer,
    TransferDone,
    TransferFailed,
    TransferHeader,
)
from lineagerun.exceptions import (
    NotFoundError,
    ObjectStoreFullError,
    RpcTimeoutError,
    UnavailableError,
)

A, B, C, D = (bytes([i]) * 28 for i in range(1, 5))


def test_one_pull_runs_header_chunks_seal_complete():
    core = PullManager()
    assert core.handle(PullRequested(A, ("n1", "n2"), 1)) == [StartTransfer(A, "n1", 0, 1)]
    assert core.handle(TransferHeader(A, 1, 10, is_error=True, nested_object_ids=(B,))) == [ReserveObject(A, 10)]
    assert core.handle(ChunkArrived(A, 1, 0, 4)) == []
    assert core.handle(ChunkArrived(A, 1, 4, 6)) == []
    assert core.handle(TransferDone(A, 1)) == [SealObject(A)]
    assert core.handle(ObjectSealed(A)) == [CompletePull(A, (1,), 10, True, (B,), "n1")]
    assert core.pulling() == []
    core.check_invariants()


def test_second_pull_of_the_same_object_joins_the_transfer():
    core = PullManager()
    core.handle(PullRequested(A, ("n1",), 1))
    assert core.handle(PullRequested(A, ("n1", "n2"), 2)) == []
    core.handle(TransferHeader(A, 1, 3))
    core.handle(ChunkArrived(A, 1, 0, 3))
    core.handle(TransferDone(A, 1))
    assert core.handle(ObjectSealed(A)) == [CompletePull(A, (1, 2), 3, False, (), "n1")]


def test_failed_source_is_replaced_by_the_next_resuming_at_the_offset_reached():
    core = PullManager()
    core.handle(PullRequested(A, ("n1", "n2"), 1))
    core.handle(TransferHeader(A, 1, 100))
    core.handle(ChunkArrived(A, 1, 0, 40))
    assert core.handle(TransferFailed(A, 1, "n1", UnavailableError("gone"))) == [StartTransfer(A, "n2", 40, 2)]
    # the header of the resumed stream does not reserve again
    assert core.handle(TransferHeader(A, 2, 100)) == []
    # late events of the dead attempt are ignored
    assert core.handle(ChunkArrived(A, 1, 40, 10)) == []
    core.handle(ChunkArrived(A, 2, 40, 60))
    assert core.handle(TransferDone(A, 2)) == [SealObject(A)]


def test_pull_fails_only_after_every_source_failed_and_gives_back_its_reservation():
    core = PullManager()
    core.handle(PullRequested(A, ("n1", "n2"), 1))
    core.handle(TransferHeader(A, 1, 100))
    core.handle(TransferFailed(A, 1, "n1", NotFoundError("not here")))
    effects = core.handle(TransferFailed(A, 2, "n2", NotFoundError("not here either")))
    assert effects[0] == AbortReservation(A)
    assert isinstance(effects[1], FailPull) and effects[1].requester_ids == (1,)
    assert isinstance(effects[1].error, NotFoundError)
    assert "n1" in str(effects[1].error) and "n2" in str(effects[1].error)


def test_mixed_failures_give_unavailable():
    core = PullManager()
    core.handle(PullRequested(A, ("n1", "n2"), 1))
    core.handle(TransferFailed(A, 1, "n1", NotFoundError("x")))
    (fail,) = core.handle(TransferFailed(A, 2, "n2", RpcTimeoutError("stalled")))
    assert type(fail.error) is UnavailableError


def test_stream_ending_early_or_out_of_order_fails_that_source():
    core = PullManager()
    core.handle(PullRequested(A, ("n1", "n2", "n3"), 1))
    core.handle(TransferHeader(A, 1, 10))
    core.handle(ChunkArrived(A, 1, 0, 5))
    assert core.handle(TransferDone(A, 1)) == [StartTransfer(A, "n2", 5, 2)]
    core.handle(TransferHeader(A, 2, 10))
    assert core.handle(ChunkArrived(A, 2, 7, 3)) == [CancelTransfer(A, 2), StartTransfer(A, "n3", 5, 3)]
    effects = core.handle(TransferHeader(A, 3, 11))  # another size for the same id: a bad source
    assert effects[:2] == [CancelTransfer(A, 3), AbortReservation(A)]
    assert isinstance(effects[2], FailPull) and isinstance(effects[2].error, UnavailableError)
    assert "11 bytes" in str(effects[2].error)


def test_transfers_are_bounded_and_waiting_pulls_start_in_order():
    core = PullManager(transfers_max=2)
    assert core.handle(PullRequested(A, ("n1",), 1)) == [StartTransfer(A, "n1", 0, 1)]
    assert core.handle(PullRequested(B, ("n1",), 2)) == [StartTransfer(B, "n1", 0, 2)]
    assert core.handle(PullRequested(C, ("n1",), 3)) == []
    assert core.handle(PullRequested(D, ("n2",), 4)) == []
    assert core.phase_of(C) is PullPhase.WAITING
    effects = core.handle(TransferFailed(A, 1, "n1", UnavailableError("x")))
    assert isinstance(effects[0], FailPull) and effects[1:] == [StartTransfer(C, "n1", 0, 3)]
    core.check_invariants()


def test_waiting_queue_is_bounded():
    core = PullManager(transfers_max=1, waiting_pulls_max=1)
    core.handle(PullRequested(A, ("n1",), 1))
    assert core.handle(PullRequested(B, ("n1",), 2)) == []
    (fail,) = core.handle(PullRequested(C, ("n1",), 3))
    assert isinstance(fail.error, UnavailableError) and "waiting_pulls_max=1" in str(fail.error)


def test_pull_without_addresses_fails_with_not_found():
    (fail,) = PullManager().handle(PullRequested(A, (), 1))
    assert isinstance(fail.error, NotFoundError) and fail.requester_ids == (1,)


def test_object_already_local_completes_without_abort():
    core = PullManager()
    core.handle(PullRequested(A, ("n1",), 1))
    core.handle(TransferHeader(A, 1, 10))
    assert core.handle(ObjectAlreadyLocal(A)) == [CancelTransfer(A, 1), CompletePull(A, (1,), 10, False, (), None)]


def test_local_store_failure_fails_the_pull_without_trying_other_sources():
    core = PullManager()
    core.handle(PullRequested(A, ("n1", "n2"), 1))
    core.handle(TransferHeader(A, 1, 10))
    error = ObjectStoreFullError("full")
    assert core.handle(LocalStoreFailed(A, error)) == [CancelTransfer(A, 1), AbortReservation(A),
                                                       FailPull(A, (1,), error)]


# ------------------------------------------------------------ state machine

OBJECTS = (A, B, C, D)
ADDRESSES = ("n1", "n2", "n3")
SIZES = {A: 1, B: 10, C: 100, D: 7}
ERRORS = (NotFoundError("gone"), UnavailableError("down"), RpcTimeoutError("stalled"))


class PullMachine(RuleBasedStateMachine):
    """Plays the shell: sources answer, the store reserves and seals, all
    under hypothesis's control; every effect is checked as it comes out."""

    def __init__(self):
        super().__init__()
        self.core = PullManager(transfers_max=2)
        self.next_requester = 0
        self.answered: dict[int, object] = {}  # requester -> CompletePull | FailPull
        self.requested: dict[int, bytes] = {}
        self.running: dict[bytes, dict] = {}  # object -> {attempt, address, header, sent}
        self.pull_addresses: dict[bytes, set] = {}  # object -> every address asked for, this pull
        self.started: dict[bytes, list] = {}  # object -> addresses started, this pull
        self.reserved: dict[bytes, int] = {}  # object -> reserved size (an outstanding reservation)
        self.sealing: set[bytes] = set()
        self.local_failure: set[bytes] = set()

    def feed(self, event):
        effects = self.core.handle(event)
        for effect in effects:
            self.apply(effect)
        self.core.check_invariants()
        return effects

    def apply(self, effect):
        oid = effect.object_id
        if isinstance(effect, StartTransfer):
            assert oid not in self.running, "two transfers of one object at once"
            assert effect.address not in self.started[oid], "a source tried twice in one pull"
            assert effect.offset == self.core.received_bytes(oid)
            self.started[oid].append(effect.address)
            self.running[oid] = {"attempt": effect.attempt, "address": effect.address, "header": False,
                                 "sent": effect.offset}
        elif isinstance(effect, CancelTransfer):
            assert self.running[oid]["attempt"] == effect.attempt
            del self.running[oid]
        elif isinstance(effect, ReserveObject):
            assert oid not in self.reserved, "reserved twice"
            assert effect.size_bytes == SIZES[oid]
            self.reserved[oid] = effect.size_bytes
        elif isinstance(effect, SealObject):
            assert oid in self.reserved and oid not in self.running
            self.sealing.add(oid)
        elif isinstance(effect, AbortReservation):
            del self.reserved[oid]
        elif isinstance(effect, (CompletePull, FailPull)):
            assert oid not in self.running and oid not in self.sealing
            if isinstance(effect, FailPull) and oid not in self.local_failure:
                assert set(self.started[oid]) == self.pull_addresses[oid], "failed before trying every source"
                assert oid not in self.reserved, "failed without giving back the reservation"
            if isinstance(effect, CompletePull) and effect.address is not None:
                assert effect.size_bytes == SIZES[oid]
            for requester in effect.requester_ids:
                assert requester not in self.answered, f"requester {requester} answered twice"
                assert self.requested[requester] == oid
                self.answered[requester] = effect
            self.local_failure.discard(oid)
            self.reserved.pop(oid, None)  # sealed, or kept by the store (already local)
            del self.pull_addresses[oid], self.started[oid]

    @rule(oid=st.sampled_from(OBJECTS), addresses=st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=3))
    def request(self, oid, addresses):
        self.next_requester += 1
        self.requested[self.next_requester] = oid
        if oid not in self.pull_addresses:
            self.pull_addresses[oid], self.started[oid] = set(), []
        self.pull_addresses[oid].update(addresses)
        self.feed(PullRequested(oid, tuple(addresses), self.next_requester))

    def _transfer(self, data):
        oid = data.draw(st.sampled_from(sorted(self.running)))
        return oid, self.running[oid]

    @precondition(lambda self: self.running)
    @rule(data=st.data(), wrong_size=st.booleans())
    def source_sends_header(self, data, wrong_size):
        oid, t = self._transfer(data)
        t["header"] = True
        # A source disagreeing on the size is only possible once one has set it.
        bad = wrong_size and oid in self.reserved and data.draw(st.integers(0, 9)) == 0
        self.feed(TransferHeader(oid, t["attempt"], SIZES[oid] + (1 if bad else 0)))

    @precondition(lambda self: any(t["header"] for t in self.running.values()))
    @rule(data=st.data())
    def source_sends_chunk(self, data):
        oid = data.draw(st.sampled_from(sorted(o for o, t in self.running.items() if t["header"])))
        t = self.running[oid]
        if oid not in self.reserved:
            return
        left = SIZES[oid] - t["sent"]
        size = data.draw(st.integers(0, left))
        offset = t["sent"] + data.draw(st.sampled_from((0, 0, 0, 0, 1)))  # sometimes out of order
        if offset + size > SIZES[oid]:
            offset = t["sent"]
        t["sent"] = offset + size
        self.feed(ChunkArrived(oid, t["attempt"], offset, size))

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def source_ends_stream(self, data):
        oid, t = self._transfer(data)
        del self.running[oid]
        self.feed(TransferDone(oid, t["attempt"]))

    @precondition(lambda self: self.running)
    @rule(data=st.data(), error=st.sampled_from(ERRORS))
    def source_fails(self, data, error):
        oid, t = self._transfer(data)
        del self.running[oid]
        self.feed(TransferFailed(oid, t["attempt"], t["address"], error))

    @precondition(lambda self: self.running)
    @rule(data=st.data(), already_local=st.booleans())
    def store_refuses_reservation(self, data, already_local):
        oid = data.draw(st.sampled_from(sorted(self.running)))
        if oid not in self.reserved:
            return
        if already_local:
            self.reserved.pop(oid)
            self.feed(ObjectAlreadyLocal(oid))
        else:
            self.local_failure.add(oid)
            self.feed(LocalStoreFailed(oid, ObjectStoreFullError("full")))

    @precondition(lambda self: self.sealing)
    @rule(data=st.data(), ok=st.booleans())
    def store_answers_seal(self, data, ok):
        oid = data.draw(st.sampled_from(sorted(self.sealing)))
        self.sealing.discard(oid)
        if ok:
            self.feed(ObjectSealed(oid))
        else:
            self.local_failure.add(oid)
            self.feed(LocalStoreFailed(oid, ObjectStoreFullError("seal failed")))

    @invariant()
    def bounded_transfers(self):
        assert len(self.running) <= self.core.transfers_max

    def teardown(self):
        # Every source now fails or finishes: every requester must be answered.
        for _round in range(100):
            if self.sealing:
                oid = sorted(self.sealing)[0]
                self.sealing.discard(oid)
                self.feed(ObjectSealed(oid))
            elif self.running:
                oid = sorted(self.running)[0]
                t = self.running.pop(oid)
                self.feed(TransferFailed(oid, t["attempt"], t["address"], UnavailableError("teardown")))
            else:
                break
        assert set(self.answered) == set(self.requested), "a requester was never answered"
        assert self.core.pulling() == [] and not self.reserved


TestPullMachine = PullMachine.TestCase
TestPullMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
