"""The actor recovery planner: scripted scenarios, then a hypothesis state
machine with a simulated counter actor, deaths and checkpoints."""

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from lineagerun.core.actor_recovery import (
    ALIVE,
    DEAD,
    RESTARTING,
    ActorDied,
    ActorRecordLoaded,
    ActorRecordSummary,
    ActorRecoveryPlanner,
    ActorRegistered,
    CallFinished,
    CallReplayed,
    CallsLoaded,
    CallSubmitted,
    CallSummary,
    CheckpointTaken,
    CreationDone,
    DeliverQueuedCalls,
    EmitEvent,
    FailPendingCalls,
    LoadActorRecord,
    LoadCalls,
    Phase,
    PlaceActor,
    PlacementFound,
    RejectCall,
    ReplayCall,
    RestoreCheckpoint,
    RestoreDone,
    RunCreation,
    TakeCheckpoint,
    UpdateActorState,
)
from lineagerun.core.ids import ActorID, JobID, NodeID, ObjectID, TaskID
from lineagerun.exceptions import ActorDiedError, InvalidArgumentError

JOB = JobID.from_int(3)
DRIVER = TaskID.for_driver(JOB)
ACTOR = ActorID.of(JOB, DRIVER, 1)
N1, N2, N3 = (NodeID(bytes([i]) * 28) for i in (1, 2, 3))
CKPT = ObjectID.for_put(DRIVER, 9)


def call_task(seq: int) -> TaskID:
    return TaskID.for_actor_task(JOB, DRIVER, seq, ACTOR)


def record(max_restarts=1, num_restarts=0, interval=0, ckpt_seq=0, ckpt=None):
    return ActorRecordSummary(max_restarts, num_restarts, interval, ckpt_seq, ckpt, {"CPU": 1})


def calls(*seqs, finished=()):
    return tuple(CallSummary(s, call_task(s), s in finished) for s in seqs)


def core(effects):
    return [e for e in effects if not isinstance(e, EmitEvent)]


def alive(interval=0, max_restarts=1, **kw) -> ActorRecoveryPlanner:
    p = ActorRecoveryPlanner(**kw)
    p.handle(ActorRegistered(ACTOR, record(max_restarts, interval=interval), N1))
    return p


def submit_and_finish(p, seqs):
    for s in seqs:
        p.handle(CallSubmitted(ACTOR, s, call_task(s)))
        p.handle(CallFinished(ACTOR, s))


def test_calls_are_released_at_once_without_checkpoints():
    p = alive()
    assert p.handle(CallSubmitted(ACTOR, 1, call_task(1))) == [DeliverQueuedCalls(ACTOR, 0, 1)]
    assert p.handle(CallSubmitted(ACTOR, 2, call_task(2))) == [DeliverQueuedCalls(ACTOR, 0, 2)]
    assert p.handle(CallSubmitted(ACTOR, 2, call_task(2))) == []  # duplicate


def test_max_restarts_zero_dies_and_fails_pending_and_later_calls():
    p = alive(max_restarts=0)
    assert core(p.handle(ActorDied(ACTOR, N1, "node died"))) == [LoadActorRecord(ACTOR)]
    effects = core(p.handle(ActorRecordLoaded(ACTOR, record(max_restarts=0))))
    assert effects[0] == UpdateActorState(ACTOR, DEAD, 0, None, effects[0].reason)
    assert isinstance(effects[1], FailPendingCalls) and "node died" in effects[1].message
    assert isinstance(effects[1].error(), ActorDiedError) and "max_restarts=0" in effects[1].message
    later = p.handle(CallSubmitted(ACTOR, 7, call_task(7)))
    assert [type(e) for e in later] == [FailPendingCalls]
    assert p.phase_of(ACTOR) is Phase.DEAD


def test_full_recovery_without_checkpoint_replays_the_whole_chain():
    p = alive(max_restarts=-1)
    submit_and_finish(p, [1, 2])
    p.handle(CallSubmitted(ACTOR, 3, call_task(3)))  # released, not finished when the actor dies
    p.handle(ActorDied(ACTOR, N1, "killed"))
    assert core(p.handle(ActorRecordLoaded(ACTOR, record(max_restarts=-1, num_restarts=4)))) == [
        UpdateActorState(ACTOR, RESTARTING, 5, None, "killed"), PlaceActor(ACTOR, 5, {"CPU": 1})]
    assert p.handle(PlacementFound(ACTOR, 5, N2)) == [RunCreation(ACTOR, 5, N2, True)]
    assert p.handle(CreationDone(ACTOR, 5)) == [LoadCalls(ACTOR, 5, 0, 100)]
    assert p.handle(CallsLoaded(ACTOR, 5, calls(1, 2, 3, finished={1, 2}))) == [
        ReplayCall(ACTOR, 5, 1, call_task(1), False), ReplayCall(ACTOR, 5, 2, call_task(2), False),
        ReplayCall(ACTOR, 5, 3, call_task(3), True)]
    p.handle(CallReplayed(ACTOR, 5, 1))
    p.handle(CallReplayed(ACTOR, 5, 2))
    done = p.handle(CallReplayed(ACTOR, 5, 3))
    assert core(done) == [UpdateActorState(ACTOR, ALIVE, 5, N2), DeliverQueuedCalls(ACTOR, 3, 3)]
    assert [e.count for e in done if isinstance(e, EmitEvent) and e.kind == "ACTOR_CALLS_REPLAYED"] == [3]


def test_checkpoint_is_restored_and_only_later_calls_replayed():
    p = ActorRecoveryPlanner()
    p.handle(ActorDied(ACTOR, N1, "killed"))  # a planner that never saw the actor alive
    p.handle(ActorRecordLoaded(ACTOR, record(interval=2, ckpt_seq=4, ckpt=CKPT)))
    p.handle(PlacementFound(ACTOR, 1, N2))
    assert p.handle(CreationDone(ACTOR, 1)) == [RestoreCheckpoint(ACTOR, 1, CKPT, 4)]
    assert p.handle(RestoreDone(ACTOR, 1)) == [LoadCalls(ACTOR, 1, 4, 100)]
    assert [e.sequence_number for e in p.handle(CallsLoaded(ACTOR, 1, calls(5, 6)))] == [5, 6]


def test_checkpoint_interval_gates_release_and_asks_for_checkpoints():
    p = alive(interval=2)
    assert p.handle(CallSubmitted(ACTOR, 1, call_task(1))) == [DeliverQueuedCalls(ACTOR, 0, 1)]
    assert p.handle(CallSubmitted(ACTOR, 2, call_task(2))) == [DeliverQueuedCalls(ACTOR, 0, 2)]
    assert p.handle(CallSubmitted(ACTOR, 3, call_task(3))) == []  # window full: held
    assert p.handle(CallFinished(ACTOR, 1)) == []
    assert p.handle(CallFinished(ACTOR, 2)) == [TakeCheckpoint(ACTOR, 2)]
    effects = p.handle(CheckpointTaken(ACTOR, 2, CKPT))
    assert core(effects) == [DeliverQueuedCalls(ACTOR, 0, 3)]
    p.check_invariants()


def test_replay_is_bounded_by_the_checkpoint_interval():
    p = alive(interval=3, max_restarts=5)
    for s in range(1, 8):
        p.handle(CallSubmitted(ACTOR, s, call_task(s)))
    for s in (1, 2, 3):
        p.handle(CallFinished(ACTOR, s))
    p.handle(CheckpointTaken(ACTOR, 3, CKPT))  # releases 4, 5, 6; 7 stays held
    p.handle(CallFinished(ACTOR, 4))
    p.handle(ActorDied(ACTOR, N1, "killed"))
    p.handle(ActorRecordLoaded(ACTOR, record(5, interval=3, ckpt_seq=3, ckpt=CKPT)))
    p.handle(PlacementFound(ACTOR, 1, N2))
    p.handle(CreationDone(ACTOR, 1))
    p.handle(RestoreDone(ACTOR, 1))
    replays = p.handle(CallsLoaded(ACTOR, 1, calls(4, 5, 6, 7, finished={4})))
    assert [(r.sequence_number, r.deliver) for r in replays] == [(4, False), (5, True), (6, True)]
    for s in (4, 5, 6):
        effects = p.handle(CallReplayed(ACTOR, 1, s))
    # 3 replayed fill the window: checkpoint first, then call 7 goes.
    assert core(effects)[-2:] == [DeliverQueuedCalls(ACTOR, 6, 6), TakeCheckpoint(ACTOR, 6)]
    assert core(p.handle(CheckpointTaken(ACTOR, 6, CKPT))) == [DeliverQueuedCalls(ACTOR, 0, 7)]


def test_calls_submitted_during_recovery_are_queued_then_delivered_in_order():
    p = alive()
    submit_and_finish(p, [1])
    p.handle(ActorDied(ACTOR, N1, "killed"))
    p.handle(CallSubmitted(ACTOR, 2, call_task(2)))
    p.handle(ActorRecordLoaded(ACTOR, record()))
    p.handle(CallSubmitted(ACTOR, 3, call_task(3)))
    p.handle(PlacementFound(ACTOR, 1, N2))
    p.handle(CreationDone(ACTOR, 1))
    replays = p.handle(CallsLoaded(ACTOR, 1, calls(1, 2, 3, finished={1})))
    assert [r.sequence_number for r in replays] == [1]  # 2 and 3 never ran: not replayed
    assert core(p.handle(CallReplayed(ACTOR, 1, 1)))[-1] == DeliverQueuedCalls(ACTOR, 1, 3)


def test_death_during_replay_restarts_recovery_and_counts_a_restart():
    p = alive(max_restarts=2)
    submit_and_finish(p, [1, 2])
    p.handle(ActorDied(ACTOR, N1, "first"))
    p.handle(ActorRecordLoaded(ACTOR, record(2)))
    p.handle(PlacementFound(ACTOR, 1, N2))
    p.handle(CreationDone(ACTOR, 1))
    p.handle(CallsLoaded(ACTOR, 1, calls(1, 2, finished={1, 2})))
    p.handle(CallReplayed(ACTOR, 1, 1))
    effects = core(p.handle(ActorDied(ACTOR, N2, "second")))
    assert effects == [UpdateActorState(ACTOR, RESTARTING, 2, None, "second"), PlaceActor(ACTOR, 2, {"CPU": 1})]
    assert p.handle(CallReplayed(ACTOR, 1, 2)) == []  # a late report of the dead instance
    p.handle(PlacementFound(ACTOR, 2, N3))
    p.handle(CreationDone(ACTOR, 2))
    assert [r.sequence_number for r in p.handle(CallsLoaded(ACTOR, 2, calls(1, 2)))] == [1, 2]
    third = core(p.handle(ActorDied(ACTOR, N3, "third")))
    assert [type(e) for e in third] == [UpdateActorState, FailPendingCalls] and third[0].state == DEAD


def test_stale_death_of_a_replaced_instance_is_ignored():
    p = alive(max_restarts=3)
    p.handle(ActorDied(ACTOR, N1, "killed"))
    p.handle(ActorRecordLoaded(ACTOR, record(3)))
    p.handle(PlacementFound(ACTOR, 1, N2))
    assert p.handle(ActorDied(ACTOR, N1, "late report")) == []


def test_calls_are_loaded_page_by_page():
    p = alive(calls_page_max=2)
    p.handle(ActorDied(ACTOR, N1, "killed"))
    p.handle(ActorRecordLoaded(ACTOR, record()))
    p.handle(PlacementFound(ACTOR, 1, N2))
    p.handle(CreationDone(ACTOR, 1))
    p.handle(CallsLoaded(ACTOR, 1, calls(1, 2)))
    p.handle(CallReplayed(ACTOR, 1, 1))
    assert p.handle(CallReplayed(ACTOR, 1, 2)) == [LoadCalls(ACTOR, 1, 2, 2)]
    with pytest.raises(InvalidArgumentError):
        p.handle(CallsLoaded(ACTOR, 1, calls(2, 3)))  # not after the previous page


def test_queue_bound_rejects_calls_beyond_it():
    p = alive(queued_calls_max=1)
    p.handle(ActorDied(ACTOR, N1, "killed"))
    p.handle(CallSubmitted(ACTOR, 1, call_task(1)))
    [reject] = p.handle(CallSubmitted(ACTOR, 2, call_task(2)))
    assert isinstance(reject, RejectCall) and "queued_calls_max" in reject.message


def test_unknown_actor_call_is_refused():
    with pytest.raises(InvalidArgumentError):
        ActorRecoveryPlanner().handle(CallSubmitted(ACTOR, 1, call_task(1)))


# --------------------------------------------------------- simulated actor


class ActorWorld:
    """A counter actor: each call adds its sequence number. Checks that the
    state after recovery is exact and every call's result delivered once."""

    def __init__(self, interval, max_restarts):
        self.interval, self.max_restarts = interval, max_restarts
        self.planner = ActorRecoveryPlanner(calls_page_max=3)
        self.planner.handle(ActorRegistered(ACTOR, record(max_restarts, interval=interval), N1))
        self.node = N1
        self.nodes = 1
        self.num_restarts = 0
        self.checkpoint = (0, 0)  # (seq, state)
        self.recorded: list[int] = []
        self.submitted = 0
        self.state = 0  # of the live instance
        self.applied: list[int] = []  # calls applied to the live instance, in order
        self.runnable: list[int] = []  # released to the live instance, not yet run
        self.delivered: dict[int, int] = {}  # seq -> times its caller got a result
        self.failed: set[int] = set()
        self.inbox: list = []
        self.replayed_this_recovery = 0
        self.incarnation = 0
        self.dead = False

    def feed(self, event):
        for e in self.planner.handle(event):
            self.apply(e)
        self.planner.check_invariants()

    def apply(self, e):
        if isinstance(e, DeliverQueuedCalls):
            pending = [s for s in range(e.after_seq + 1, e.up_to_seq + 1)
                       if s not in self.applied and s not in self.runnable and s <= self.submitted]
            assert pending == sorted(pending)
            self.runnable += pending
        elif isinstance(e, LoadActorRecord):
            self.inbox.append(ActorRecordLoaded(ACTOR, record(self.max_restarts, self.num_restarts, self.interval,
                                                              self.checkpoint[0], CKPT if self.checkpoint[0] else None)))
        elif isinstance(e, UpdateActorState):
            self.num_restarts = e.num_restarts
            if e.state == DEAD:
                self.dead = True
            if e.state == RESTARTING:
                self.replayed_this_recovery = 0
                self.applied, self.state, self.runnable = [], None, []
        elif isinstance(e, PlaceActor):
            self.nodes += 1
            self.inbox.append(PlacementFound(ACTOR, e.incarnation, NodeID(self.nodes.to_bytes(28, "big"))))
        elif isinstance(e, RunCreation):
            self.node, self.incarnation, self.state = e.node_id, e.incarnation, 0
            self.inbox.append(CreationDone(ACTOR, e.incarnation))
        elif isinstance(e, RestoreCheckpoint):
            assert e.sequence_number == self.checkpoint[0]
            self.state = self.checkpoint[1]
            self.applied = list(range(1, e.sequence_number + 1))
            self.inbox.append(RestoreDone(ACTOR, e.incarnation))
        elif isinstance(e, LoadCalls):
            page = [s for s in self.recorded if s > e.after_seq][: e.limit]
            self.inbox.append(CallsLoaded(ACTOR, e.incarnation, tuple(
                CallSummary(s, call_task(s), self.delivered.get(s, 0) > 0) for s in page)))
        elif isinstance(e, ReplayCall):
            assert e.incarnation == self.incarnation
            expected = (self.applied[-1] if self.applied else self.checkpoint[0]) + 1
            assert e.sequence_number >= expected, ("replay out of order", e, self.applied)
            self.replayed_this_recovery += 1
            if self.interval:
                assert self.replayed_this_recovery <= self.interval, "more than checkpoint_interval replayed"
            self.inbox.append(("replay", e.incarnation, e.sequence_number, e.deliver))
        elif isinstance(e, TakeCheckpoint):
            assert e.after_seq == (self.applied[-1] if self.applied else 0)
            self.inbox.append(("checkpoint", self.incarnation, e.after_seq, self.state))
        elif isinstance(e, FailPendingCalls):
            assert self.dead
            self.failed |= {s for s in range(1, self.submitted + 1) if not self.delivered.get(s)}
        elif isinstance(e, RejectCall):
            raise AssertionError(f"unexpected reject {e}")

    def run_one(self):
        s = self.runnable.pop(0)
        self._apply_call(s)
        self.delivered[s] = self.delivered.get(s, 0) + 1
        self.feed(CallFinished(ACTOR, s))

    def _apply_call(self, s):
        expected = (self.applied[-1] if self.applied else self.checkpoint[0]) + 1
        assert s == expected or (s > expected and all(x not in self.recorded for x in range(expected, s))), \
            ("call applied out of order", s, self.applied)
        self.applied.append(s)
        self.state += s

    def deliver(self, index):
        item = self.inbox.pop(index % len(self.inbox))
        if isinstance(item, tuple) and item[0] == "replay":
            # The actor runs replays in the order they were emitted.
            self.inbox.insert(index % (len(self.inbox) + 1), item)
            item = next(i for i in self.inbox if isinstance(i, tuple) and i[0] == "replay")
            self.inbox.remove(item)
        if isinstance(item, tuple):
            kind, incarnation, seq, extra = item
            if incarnation != self.incarnation or self.dead:
                return
            if kind == "replay":
                self._apply_call(seq)
                if extra:
                    self.delivered[seq] = self.delivered.get(seq, 0) + 1
                self.feed(CallReplayed(ACTOR, incarnation, seq))
            else:
                if seq > self.checkpoint[0]:
                    self.checkpoint = (seq, extra)
                self.feed(CheckpointTaken(ACTOR, seq, CKPT))
        else:
            self.feed(item)

    def kill(self):
        self.inbox = [i for i in self.inbox if not isinstance(i, tuple)]
        self.runnable = []
        self.feed(ActorDied(ACTOR, self.node, "killed"))


class ActorMachine(RuleBasedStateMachine):
    @initialize(interval=st.sampled_from([0, 1, 2, 3]), max_restarts=st.sampled_from([0, 2, -1]))
    def build(self, interval, max_restarts):
        self.world = ActorWorld(interval, max_restarts)

    @rule()
    def submit(self):
        w = self.world
        w.submitted += 1
        w.recorded.append(w.submitted)
        w.feed(CallSubmitted(ACTOR, w.submitted, call_task(w.submitted)))

    @precondition(lambda self: self.world.runnable)
    @rule()
    def run_call(self):
        self.world.run_one()

    @precondition(lambda self: self.world.inbox)
    @rule(index=st.integers(0, 20))
    def deliver(self, index):
        self.world.deliver(index)

    @precondition(lambda self: not self.world.dead and self.world.planner.phase_of(ACTOR) is not Phase.PLACING
                  and self.world.planner.phase_of(ACTOR) is not Phase.LOADING_RECORD)
    @rule()
    def kill_actor(self):
        self.world.kill()

    def teardown(self):
        w = getattr(self, "world", None)
        if w is None:
            return
        for _ in range(10_000):
            if w.inbox:
                w.deliver(0)
            elif w.runnable:
                w.run_one()
            else:
                break
        assert all(n == 1 for n in w.delivered.values()), f"delivered more than once: {w.delivered}"
        if w.dead:
            assert set(range(1, w.submitted + 1)) <= set(w.delivered) | w.failed
            return
        assert w.planner.phase_of(ACTOR) is Phase.ALIVE, w.planner.phase_of(ACTOR)
        assert sorted(w.delivered) == list(range(1, w.submitted + 1)), (w.delivered, w.submitted)
        assert w.state == sum(range(1, w.submitted + 1)), "counter state is not exact"


ActorMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestActorMachine = ActorMachine.TestCase
