"""The actor recovery planner accepts replay confirmations in any order: an
actor with max_concurrency > 1 runs the replayed calls of a page on several
threads (the cause of the old intermittent hang of
test_concurrent_actor_restart_applies_every_call_once)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lineagerun.core.actor_recovery import (
    ALIVE,
    ActorDied,
    ActorRecordLoaded,
    ActorRecordSummary,
    ActorRecoveryPlanner,
    CallReplayed,
    CallsLoaded,
    CallSummary,
    CreationDone,
    DeliverQueuedCalls,
    PlacementFound,
    UpdateActorState,
)
from lineagerun.core.ids import ActorID, JobID, NodeID, TaskID

JOB = JobID(b"\x01\x00\x00\x00")
ACTOR = ActorID.of(JOB, TaskID.for_driver(JOB), 1)
NODE = NodeID(b"\x02" * NodeID.SIZE)


def _replaying(count: int) -> ActorRecoveryPlanner:
    planner = ActorRecoveryPlanner()
    planner.handle(ActorDied(ACTOR, None, "its node died"))
    planner.handle(ActorRecordLoaded(ACTOR, ActorRecordSummary(max_restarts=-1, num_restarts=0,
                                                               checkpoint_interval=0)))
    planner.handle(PlacementFound(ACTOR, 1, NODE))
    planner.handle(CreationDone(ACTOR, 1))
    calls = tuple(CallSummary(seq, TaskID.for_actor_task(JOB, TaskID.for_driver(JOB), seq, ACTOR))
                  for seq in range(1, count + 1))
    planner.handle(CallsLoaded(ACTOR, 1, calls))
    return planner


@settings(max_examples=50, deadline=None)
@given(st.permutations(list(range(1, 9))))
def test_replay_confirmations_in_any_order_complete_the_recovery(order):
    planner = _replaying(8)
    effects = []
    for seq in order:
        effects += planner.handle(CallReplayed(ACTOR, 1, seq))
    assert UpdateActorState(ACTOR, ALIVE, 1, NODE) in effects
    assert DeliverQueuedCalls(ACTOR, 8, 8) in effects
    planner.check_invariants()


def test_duplicate_and_stale_confirmations_are_ignored():
    planner = _replaying(3)
    assert planner.handle(CallReplayed(ACTOR, 1, 2)) == []
    assert planner.handle(CallReplayed(ACTOR, 1, 2)) == []  # duplicate
    assert planner.handle(CallReplayed(ACTOR, 0, 1)) == []  # an older incarnation
    planner.handle(CallReplayed(ACTOR, 1, 3))
    assert UpdateActorState(ACTOR, ALIVE, 1, NODE) in planner.handle(CallReplayed(ACTOR, 1, 1))
