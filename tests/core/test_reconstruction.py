"""The reconstruction planner: scripted scenarios (one behaviour each), then a
hypothesis state machine driving it against a small simulated cluster."""

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from lineagerun.core.ids import ActorID, JobID, NodeID, ObjectID, TaskID
from lineagerun.core.reconstruction import (
    ACTOR_TASK_RESULT,
    ARGUMENT_LOST,
    DEPTH_LIMIT,
    LINEAGE_MISSING,
    MAX_RETRIES_EXHAUSTED,
    NONDETERMINISTIC,
    PUT_FROM_DRIVER,
    TASK_FAILED,
    CompleteRecovery,
    EmitEvent,
    FailRecovery,
    LineageLoaded,
    LoadLineage,
    LoadLocations,
    LocationsLoaded,
    NodeDied,
    ObjectNeeded,
    ObjectSealed,
    ReconstructionPlanner,
    ResubmitTask,
    TaskFailed,
    TaskLineage,
    TaskResubmitted,
    TaskSucceeded,
)
from lineagerun.exceptions import InvalidArgumentError, ObjectReconstructionFailedError

JOB = JobID.from_int(7)
DRIVER = TaskID.for_driver(JOB)
N1, N2, N3 = (NodeID(bytes([i]) * 28) for i in (1, 2, 3))
NONE: frozenset = frozenset()


def task(i: int) -> TaskID:
    return TaskID.for_normal_task(JOB, DRIVER, i)


def ret(i: int, k: int = 1) -> ObjectID:
    return ObjectID.from_index(task(i), k)


def lineage(i: int, args=(), num_returns=1, max_retries=3, attempts_made=1, **kw) -> TaskLineage:
    return TaskLineage(task(i), tuple(args), num_returns, max_retries, attempts_made, **kw)


def core(effects):
    """The effects without events, for exact comparisons."""
    return [e for e in effects if not isinstance(e, EmitEvent)]


def lost(p: ReconstructionPlanner, oid: ObjectID, requester="r") -> list:
    assert p.handle(ObjectNeeded(oid, requester)) == [LoadLocations(oid)]
    return core(p.handle(LocationsLoaded(oid, NONE)))


# ---------------------------------------------------------------- scenarios


def test_object_with_a_live_copy_completes_without_replay():
    p = ReconstructionPlanner()
    assert p.handle(ObjectNeeded(ret(1), "get")) == [LoadLocations(ret(1))]
    assert p.handle(LocationsLoaded(ret(1), frozenset({N2}))) == [CompleteRecovery(ret(1), ("get",), frozenset({N2}))]
    assert not p.is_recovering(ret(1))
    p.check_invariants()


def test_lost_object_without_arguments_is_replayed_once():
    p = ReconstructionPlanner()
    assert lost(p, ret(1)) == [LoadLineage(task(1))]
    assert core(p.handle(LineageLoaded(task(1), lineage(1)))) == [ResubmitTask(task(1), 1, "REPLAY")]
    effects = p.handle(TaskSucceeded(task(1), frozenset({ret(1)}), N2))
    assert core(effects) == [CompleteRecovery(ret(1), ("r",), frozenset({N2}))]
    assert any(isinstance(e, EmitEvent) and e.kind == "OBJECT_RECONSTRUCTED" for e in effects)
    assert not p.tasks and not p.objects


def test_chain_rebuilds_arguments_depth_first_then_the_task():
    p = ReconstructionPlanner()
    lost(p, ret(3))
    assert core(p.handle(LineageLoaded(task(3), lineage(3, [ret(2)])))) == [LoadLocations(ret(2))]
    assert core(p.handle(LocationsLoaded(ret(2), NONE))) == [LoadLineage(task(2))]
    assert core(p.handle(LineageLoaded(task(2), lineage(2, [ret(1)])))) == [LoadLocations(ret(1))]
    assert core(p.handle(LocationsLoaded(ret(1), NONE))) == [LoadLineage(task(1))]
    assert core(p.handle(LineageLoaded(task(1), lineage(1)))) == [ResubmitTask(task(1), 1)]
    # Internal requesters are not answered outward; the next level goes.
    assert core(p.handle(TaskSucceeded(task(1), frozenset({ret(1)}), N1))) == [
        CompleteRecovery(ret(1), (), frozenset({N1})), ResubmitTask(task(2), 1)]
    assert core(p.handle(TaskSucceeded(task(2), frozenset({ret(2)}), N1))) == [
        CompleteRecovery(ret(2), (), frozenset({N1})), ResubmitTask(task(3), 1)]
    assert core(p.handle(TaskSucceeded(task(3), frozenset({ret(3)}), N1))) == [
        CompleteRecovery(ret(3), ("r",), frozenset({N1}))]
    p.check_invariants()
    assert not p.objects and not p.tasks


def test_tree_waits_for_every_argument():
    p = ReconstructionPlanner()
    lost(p, ret(3))
    p.handle(LineageLoaded(task(3), lineage(3, [ret(1), ret(2)])))
    p.handle(LocationsLoaded(ret(1), frozenset({N1})))
    assert p.task_phase(task(3)).value == "waiting_for_args"
    assert core(p.handle(LocationsLoaded(ret(2), frozenset({N2})))) == [
        CompleteRecovery(ret(2), (), frozenset({N2})), ResubmitTask(task(3), 1)]


def test_diamond_shared_argument_is_rebuilt_once():
    p = ReconstructionPlanner()
    lost(p, ret(4))
    p.handle(LineageLoaded(task(4), lineage(4, [ret(2), ret(3)])))
    p.handle(LocationsLoaded(ret(2), NONE))
    p.handle(LocationsLoaded(ret(3), NONE))
    p.handle(LineageLoaded(task(2), lineage(2, [ret(1)])))
    assert core(p.handle(LineageLoaded(task(3), lineage(3, [ret(1)])))) == []  # joins the lookup under way
    assert core(p.handle(LocationsLoaded(ret(1), NONE))) == [LoadLineage(task(1))]
    assert core(p.handle(LineageLoaded(task(1), lineage(1)))) == [ResubmitTask(task(1), 1)]
    effects = core(p.handle(TaskSucceeded(task(1), frozenset({ret(1)}), N1)))
    assert [e for e in effects if isinstance(e, ResubmitTask)] == [ResubmitTask(task(2), 1), ResubmitTask(task(3), 1)]


def test_overlapping_requests_share_one_recovery_and_each_is_answered_once():
    p = ReconstructionPlanner()
    assert p.handle(ObjectNeeded(ret(1), "a")) == [LoadLocations(ret(1))]
    assert p.handle(ObjectNeeded(ret(1), "b")) == []
    assert p.handle(ObjectNeeded(ret(1), "a")) == []  # the same requester again
    p.handle(LocationsLoaded(ret(1), NONE))
    assert p.handle(ObjectNeeded(ret(1), "c")) == []
    p.handle(LineageLoaded(task(1), lineage(1)))
    assert core(p.handle(TaskSucceeded(task(1), frozenset({ret(1)}), N1))) == [
        CompleteRecovery(ret(1), ("a", "b", "c"), frozenset({N1}))]


def test_task_with_several_lost_returns_is_resubmitted_once():
    p = ReconstructionPlanner()
    lost(p, ret(1, 1), "x")
    assert lost(p, ret(1, 2), "y") == []  # attaches to the same task recovery
    assert core(p.handle(LineageLoaded(task(1), lineage(1, num_returns=2)))) == [ResubmitTask(task(1), 1)]
    done = core(p.handle(TaskSucceeded(task(1), frozenset({ret(1, 1), ret(1, 2)}), N3)))
    assert {e.object_id for e in done} == {ret(1, 1), ret(1, 2)}


def test_copy_reappearing_completes_without_resubmission():
    p = ReconstructionPlanner()
    lost(p, ret(1))
    assert core(p.handle(ObjectSealed(ret(1), N2))) == [CompleteRecovery(ret(1), ("r",), frozenset({N2}))]
    assert not p.tasks  # the task recovery served nobody any more
    assert core(p.handle(LineageLoaded(task(1), lineage(1)))) == []  # late answer: nothing resubmitted


def test_put_inside_a_task_is_rebuilt_by_replaying_the_task():
    p = ReconstructionPlanner()
    put = ObjectID.for_put(task(1), 1)
    assert lost(p, put) == [LoadLineage(task(1))]
    assert core(p.handle(LineageLoaded(task(1), lineage(1)))) == [ResubmitTask(task(1), 1)]
    assert core(p.handle(TaskSucceeded(task(1), frozenset({ret(1), put}), N1))) == [
        CompleteRecovery(put, ("r",), frozenset({N1}))]


def test_put_from_the_driver_fails_with_a_clear_error():
    p = ReconstructionPlanner()
    put = ObjectID.for_put(DRIVER, 3)
    [fail] = lost(p, put)
    assert isinstance(fail, FailRecovery) and fail.kind == PUT_FROM_DRIVER and fail.requesters == ("r",)
    assert put.hex() in fail.message and "driver" in fail.message
    err = fail.error()
    assert isinstance(err, ObjectReconstructionFailedError) and put.hex() in str(err)


def test_actor_task_result_is_not_rebuilt_by_object_reconstruction():
    actor = ActorID.of(JOB, DRIVER, 99)
    oid = ObjectID.from_index(TaskID.for_actor_task(JOB, DRIVER, 100, actor), 1)
    [fail] = lost(ReconstructionPlanner(), oid)
    assert fail.kind == ACTOR_TASK_RESULT


def test_exhausted_retries_fail_naming_object_task_and_limit():
    p = ReconstructionPlanner()
    lost(p, ret(1))
    [fail] = core(p.handle(LineageLoaded(task(1), lineage(1, max_retries=2, attempts_made=3))))
    assert fail.kind == MAX_RETRIES_EXHAUSTED
    assert ret(1).hex() in fail.message and task(1).hex() in fail.message and "max_retries=2" in fail.message


def test_infinite_retries_always_replay():
    p = ReconstructionPlanner()
    lost(p, ret(1))
    assert core(p.handle(LineageLoaded(task(1), lineage(1, max_retries=-1, attempts_made=500)))) == [
        ResubmitTask(task(1), 500)]


def test_missing_lineage_fails():
    p = ReconstructionPlanner()
    lost(p, ret(1))
    [fail] = core(p.handle(LineageLoaded(task(1), None)))
    assert fail.kind == LINEAGE_MISSING and "compacted" in fail.message


def test_failed_argument_fails_every_object_waiting_above_it():
    p = ReconstructionPlanner()
    lost(p, ret(2), "top")
    p.handle(LineageLoaded(task(2), lineage(2, [ObjectID.for_put(DRIVER, 1)])))
    effects = core(p.handle(LocationsLoaded(ObjectID.for_put(DRIVER, 1), NONE)))
    kinds = [(e.object_id, e.kind) for e in effects]
    assert kinds == [(ObjectID.for_put(DRIVER, 1), PUT_FROM_DRIVER), (ret(2), ARGUMENT_LOST)]
    assert effects[1].requesters == ("top",)
    assert not p.objects and not p.tasks


def test_non_deterministic_replay_that_skips_a_put_fails_that_object():
    p = ReconstructionPlanner()
    put = ObjectID.for_put(task(1), 2)
    lost(p, put)
    p.handle(LineageLoaded(task(1), lineage(1)))
    [fail] = core(p.handle(TaskSucceeded(task(1), frozenset({ret(1), ObjectID.for_put(task(1), 1)}), N1)))
    assert fail.kind == NONDETERMINISTIC and "deterministic" in fail.message


def test_depth_limit_fails_with_its_name():
    p = ReconstructionPlanner(reconstruction_depth_max=1)
    lost(p, ret(3))
    p.handle(LineageLoaded(task(3), lineage(3, [ret(2)])))
    p.handle(LocationsLoaded(ret(2), NONE))
    effects = core(p.handle(LineageLoaded(task(2), lineage(2, [ret(1)]))))
    assert [e.kind for e in effects] == [DEPTH_LIMIT, ARGUMENT_LOST]
    assert "reconstruction_depth_max=1" in effects[0].message


def test_node_death_during_replay_replans_with_a_new_attempt():
    p = ReconstructionPlanner()
    lost(p, ret(2))
    p.handle(LineageLoaded(task(2), lineage(2, [ret(1)])))
    p.handle(LocationsLoaded(ret(1), frozenset({N1})))
    p.handle(TaskResubmitted(task(2), 1, N2))
    # N2 dies while the replay runs: re-check the argument, then attempt 2.
    assert core(p.handle(NodeDied(N2))) == [LoadLocations(ret(1))]
    assert core(p.handle(LocationsLoaded(ret(1), frozenset({N1})))) == [
        CompleteRecovery(ret(1), (), frozenset({N1})), ResubmitTask(task(2), 2)]


def test_node_death_takes_a_ready_argument_back_to_recovery():
    p = ReconstructionPlanner()
    lost(p, ret(3))
    p.handle(LineageLoaded(task(3), lineage(3, [ret(1), ret(2)])))
    p.handle(LocationsLoaded(ret(1), frozenset({N1})))
    assert core(p.handle(NodeDied(N1))) == [LoadLocations(ret(1))]
    assert core(p.handle(LocationsLoaded(ret(2), frozenset({N2})))) == [CompleteRecovery(ret(2), (), frozenset({N2}))]
    assert core(p.handle(LocationsLoaded(ret(1), frozenset({N1})))) == [LoadLineage(task(1))]  # N1 is dead


def test_stale_locations_on_a_dead_node_are_ignored():
    p = ReconstructionPlanner()
    p.handle(NodeDied(N1))
    p.handle(ObjectNeeded(ret(1), "r"))
    assert core(p.handle(LocationsLoaded(ret(1), frozenset({N1})))) == [LoadLineage(task(1))]


def test_running_attempt_is_awaited_not_resubmitted():
    p = ReconstructionPlanner()
    lost(p, ret(1))
    assert core(p.handle(LineageLoaded(task(1), lineage(1, attempts_made=2, attempt_running=True,
                                                          attempt_node_id=N2)))) == []
    assert core(p.handle(NodeDied(N2))) == [ResubmitTask(task(1), 2)]


def test_retry_by_the_scheduler_is_adopted_and_not_duplicated():
    p = ReconstructionPlanner()
    lost(p, ret(1))
    p.handle(LineageLoaded(task(1), lineage(1)))  # ResubmitTask attempt 1
    assert core(p.handle(TaskResubmitted(task(1), 2, N3))) == []  # the local scheduler retried it
    assert core(p.handle(TaskFailed(task(1), 1, "old attempt"))) == []  # superseded
    assert core(p.handle(TaskFailed(task(1), 2, "worker died"))) == [ResubmitTask(task(1), 3)]


def test_non_retriable_failure_fails_the_objects():
    p = ReconstructionPlanner()
    lost(p, ret(1))
    p.handle(LineageLoaded(task(1), lineage(1)))
    [fail] = core(p.handle(TaskFailed(task(1), 1, "infeasible", retriable=False)))
    assert fail.kind == TASK_FAILED and "infeasible" in fail.message


def test_replays_count_against_max_retries():
    p = ReconstructionPlanner()
    lost(p, ret(1))
    p.handle(LineageLoaded(task(1), lineage(1, max_retries=2, attempts_made=1)))  # attempt 1
    assert core(p.handle(TaskFailed(task(1), 1, "lost"))) == [ResubmitTask(task(1), 2)]
    [fail] = core(p.handle(TaskFailed(task(1), 2, "lost")))
    assert fail.kind == MAX_RETRIES_EXHAUSTED


def test_bad_input_is_refused():
    p = ReconstructionPlanner()
    with pytest.raises(InvalidArgumentError):
        p.handle(ObjectNeeded(ObjectID.nil(), "r"))
    with pytest.raises(InvalidArgumentError):
        p.handle("not an event")
    with pytest.raises(InvalidArgumentError):
        ReconstructionPlanner(reconstruction_depth_max=0)


# --------------------------------------------------------- simulated world


class World:
    """A lineage DAG, nodes holding copies, and a queue of replies that
    hypothesis delivers in any order. Checks every effect as it comes out."""

    def __init__(self, specs, nodes):
        self.specs = specs  # TaskID -> (args, num_returns, puts, max_retries)
        self.alive = list(nodes)
        self.next_node = len(nodes) + 1
        self.locations: dict[ObjectID, set[NodeID]] = {}
        self.attempts = {t: 1 for t in specs}
        self.running: dict[TaskID, tuple[int, NodeID]] = {}
        self.inbox: list = []  # events waiting to reach the planner
        self.outstanding: dict[object, ObjectID] = {}
        self.requests = 0
        self.planner = ReconstructionPlanner()

    def outputs(self, t):
        args, num_returns, puts, _ = self.specs[t]
        return {ObjectID.from_index(t, k) for k in range(1, num_returns + 1)} | {
            ObjectID.for_put(t, k) for k in range(1, puts + 1)}

    def feed(self, event):
        for effect in self.planner.handle(event):
            self.apply(effect)
        self.planner.check_invariants()

    def apply(self, e):
        if isinstance(e, LoadLocations):
            live = {n for n in self.locations.get(e.object_id, ()) if n in self.alive}
            self.inbox.append(LocationsLoaded(e.object_id, frozenset(live)))
        elif isinstance(e, LoadLineage):
            t = e.task_id
            args, num_returns, puts, max_retries = self.specs[t]
            run = self.running.get(t)
            self.inbox.append(LineageLoaded(t, TaskLineage(t, args, num_returns, max_retries, self.attempts[t],
                                                           run is not None, run[1] if run else None)))
        elif isinstance(e, ResubmitTask):
            assert e.task_id not in self.running, f"{e.task_id!r} resubmitted while attempt in flight"
            assert e.attempt_number == self.attempts[e.task_id], (e, self.attempts[e.task_id])
            max_retries = self.specs[e.task_id][3]
            assert max_retries == -1 or e.attempt_number <= max_retries
            self.attempts[e.task_id] += 1
            node = self.alive[e.attempt_number % len(self.alive)]
            self.running[e.task_id] = (e.attempt_number, node)
            self.inbox.append(TaskResubmitted(e.task_id, e.attempt_number, node))
            self.inbox.append(("run", e.task_id, e.attempt_number, node))
        elif isinstance(e, CompleteRecovery):
            assert e.node_ids and set(e.node_ids) <= set(self.alive), e
            for r in e.requesters:
                assert self.outstanding.pop(r) == e.object_id, ("answered twice or wrongly", r, e)
        elif isinstance(e, FailRecovery):
            assert e.kind in (MAX_RETRIES_EXHAUSTED, PUT_FROM_DRIVER, ARGUMENT_LOST), e
            if e.kind == MAX_RETRIES_EXHAUSTED:
                max_retries = self.specs[e.object_id.task_id()][3]
                assert max_retries != -1 and self.attempts[e.object_id.task_id()] > max_retries
            for r in e.requesters:
                assert self.outstanding.pop(r) == e.object_id, ("answered twice or wrongly", r, e)

    def deliver(self, index):
        item = self.inbox.pop(index % len(self.inbox))
        if isinstance(item, tuple):
            _, t, attempt, node = item
            if self.running.get(t) != (attempt, node):
                return
            del self.running[t]
            produced = self.outputs(t)
            for o in produced:
                self.locations.setdefault(o, set()).add(node)
            self.feed(TaskSucceeded(t, frozenset(produced), node))
        else:
            self.feed(item)

    def kill(self, index):
        node = self.alive.pop(index % len(self.alive))
        for t in [t for t, (_, n) in self.running.items() if n == node]:
            del self.running[t]
        self.feed(NodeDied(node))

    def add_node(self):
        self.alive.append(NodeID(self.next_node.to_bytes(28, "big")))
        self.next_node += 1

    def need(self, oid):
        self.requests += 1
        self.outstanding[self.requests] = oid
        self.feed(ObjectNeeded(oid, self.requests))


class ReconstructionMachine(RuleBasedStateMachine):
    @initialize(data=st.data(), n_tasks=st.integers(2, 7), n_nodes=st.integers(2, 4))
    def build(self, data, n_tasks, n_nodes):
        specs = {}
        driver_put = ObjectID.for_put(DRIVER, 1)
        objects = []
        for i in range(n_tasks):
            t = task(i)
            args = tuple(data.draw(st.lists(st.sampled_from(objects), max_size=3, unique=True))) if objects else ()
            if data.draw(st.integers(0, 5)) == 0:  # rarely: a driver put, which cannot be rebuilt
                args += (driver_put,)
            num_returns = data.draw(st.integers(1, 2))
            puts = data.draw(st.integers(0, 1))
            max_retries = data.draw(st.sampled_from([0, 1, 3, -1, -1]))
            specs[t] = (args, num_returns, puts, max_retries)
            objects += [ObjectID.from_index(t, k) for k in range(1, num_returns + 1)]
            objects += [ObjectID.for_put(t, k) for k in range(1, puts + 1)]
        objects.append(driver_put)
        nodes = [NodeID(i.to_bytes(28, "big")) for i in range(1, n_nodes + 1)]
        self.world = World(specs, nodes)
        self.objects = objects
        for o in objects:  # the first run left each object on some node
            self.world.locations[o] = {nodes[data.draw(st.integers(0, n_nodes - 1))]}

    @rule(data=st.data())
    def need(self, data):
        self.world.need(data.draw(st.sampled_from(self.objects)))

    @precondition(lambda self: self.world.running)
    @rule(data=st.data())
    def need_output_of_a_running_replay(self, data):
        t = data.draw(st.sampled_from(sorted(self.world.running)))
        self.world.need(data.draw(st.sampled_from(sorted(self.world.outputs(t)))))

    @precondition(lambda self: self.world.inbox)
    @rule(index=st.integers(0, 50))
    def deliver(self, index):
        self.world.deliver(index)

    @precondition(lambda self: len(self.world.alive) > 1)
    @rule(index=st.integers(0, 5))
    def kill_node(self, index):
        self.world.kill(index)

    @precondition(lambda self: len(self.world.alive) > 1 and self.world.running)
    @rule(index=st.integers(0, 5))
    def kill_node_running_a_replay(self, index):
        """R5: a double fault, the node of a replay dies while it runs."""
        runs = sorted(self.world.running.items())
        node = runs[index % len(runs)][1][1]
        self.world.kill(self.world.alive.index(node))

    @rule(data=st.data())
    def copy_reappears(self, data):
        """A copy shows up on a live node (restored from spill, or another
        planner rebuilt it): recoveries of it end without a replay."""
        recovering = sorted(self.world.planner.objects)
        oid = data.draw(st.sampled_from(recovering or self.objects))
        node = data.draw(st.sampled_from(self.world.alive))
        self.world.locations.setdefault(oid, set()).add(node)
        self.world.feed(ObjectSealed(oid, node))

    @precondition(lambda self: len(self.world.alive) < 4)
    @rule()
    def add_node(self):
        self.world.add_node()

    def teardown(self):
        world = getattr(self, "world", None)
        if world is None:
            return
        for _ in range(5_000):
            if not world.inbox:
                break
            world.deliver(0)
        assert not world.inbox, "recovery did not settle"
        assert not world.outstanding, f"requests never answered: {world.outstanding}"
        assert not world.planner.objects and not world.planner.tasks


ReconstructionMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestReconstructionMachine = ReconstructionMachine.TestCase
