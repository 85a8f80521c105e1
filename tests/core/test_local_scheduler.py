import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lineagerun.core.ids import JobID, NodeID, ObjectID, TaskID, WorkerID
from lineagerun.core.local_scheduler import (
    FAIL_INFEASIBLE,
    FAIL_WORKER_DIED,
    TERMINAL_STATES,
    TRANSITIONS,
    CancelOnWorker,
    CancelTask,
    ClusterViewUpdated,
    DispatchTask,
    FailTask,
    FetchArgs,
    LocalScheduler,
    ObjectsAvailable,
    RetryTask,
    SpillTask,
    StartWorker,
    TaskCancelled,
    TaskFinished,
    TaskStarted,
    TaskState,
    TaskSubmitted,
    WorkerBlocked,
    WorkerDied,
    WorkerRegistered,
    WorkerStartFailed,
    WorkerUnblocked,
)
from lineagerun.core.resources import ResourceSet
from lineagerun.core.scheduling_strategies import NodeAffinitySchedulingStrategy
from lineagerun.exceptions import InvalidArgumentError

JOB = JobID.from_int(1)
DRIVER = TaskID.for_driver(JOB)
HERE = NodeID(b"\x01" * 28)
THERE = NodeID(b"\x02" * 28)
CPU1 = ResourceSet({"CPU": 1})


def task(i: int) -> TaskID:
    return TaskID.for_normal_task(JOB, DRIVER, i)


def obj(i: int) -> ObjectID:
    return ObjectID.from_index(TaskID.for_normal_task(JOB, DRIVER, 10_000 + i), 1)


def worker(i: int) -> WorkerID:
    return WorkerID(i.to_bytes(28, "big"))


def scheduler(cpus=2, pool=4, **kwargs) -> LocalScheduler:
    return LocalScheduler(HERE, ResourceSet({"CPU": cpus}), worker_pool_size_max=pool, **kwargs)


def with_workers(s: LocalScheduler, *ids: int) -> LocalScheduler:
    for i in ids:
        assert s.handle(WorkerRegistered(worker(i))) == []
    return s


def test_ready_task_goes_to_an_idle_worker():
    s = with_workers(scheduler(), 1)
    assert s.handle(TaskSubmitted(task(1), CPU1)) == [DispatchTask(task(1), worker(1), 0)]
    assert s.state_of(task(1)) is TaskState.DISPATCHED
    assert s.resources.available == CPU1
    s.handle(TaskStarted(task(1), worker(1), 0))
    assert s.state_of(task(1)) is TaskState.RUNNING
    s.handle(TaskFinished(task(1), worker(1), 0))
    assert s.state_of(task(1)) is TaskState.FINISHED
    assert s.resources.available == s.resources.total and s.idle_workers() == [worker(1)]
    s.check_invariants()


def test_no_idle_worker_starts_one_then_dispatches():
    s = scheduler()
    assert s.handle(TaskSubmitted(task(1), CPU1)) == [StartWorker()]
    assert s.handle(TaskSubmitted(task(2), CPU1)) == [StartWorker()]
    assert s.handle(WorkerRegistered(worker(1))) == [DispatchTask(task(1), worker(1), 0)]
    assert s.workers_starting == 1


def test_worker_pool_limit_bounds_starts():
    s = scheduler(cpus=8, pool=2)
    effects = [e for i in range(5) for e in s.handle(TaskSubmitted(task(i), CPU1))]
    assert effects.count(StartWorker()) == 2


def test_failed_worker_start_is_asked_again():
    s = scheduler(pool=1)
    assert s.handle(TaskSubmitted(task(1), CPU1)) == [StartWorker()]
    assert s.handle(WorkerStartFailed("exec failed")) == [StartWorker()]


def test_missing_args_are_fetched_before_the_task_is_ready():
    s = with_workers(scheduler(), 1)
    assert s.handle(TaskSubmitted(task(1), CPU1, frozenset({obj(1), obj(2)}))) == \
        [FetchArgs(task(1), frozenset({obj(1), obj(2)}))]
    assert s.handle(ObjectsAvailable(frozenset({obj(1)}))) == []
    assert s.state_of(task(1)) is TaskState.WAITING_FOR_ARGS
    assert s.handle(ObjectsAvailable(frozenset({obj(2), obj(3)}))) == [DispatchTask(task(1), worker(1), 0)]


def test_one_object_unblocks_every_task_waiting_for_it():
    s = with_workers(scheduler(), 1, 2)
    s.handle(TaskSubmitted(task(1), CPU1, frozenset({obj(1)})))
    s.handle(TaskSubmitted(task(2), CPU1, frozenset({obj(1)})))
    effects = s.handle(ObjectsAvailable(frozenset({obj(1)})))
    assert {e.task_id for e in effects if isinstance(e, DispatchTask)} == {task(1), task(2)}


def test_resources_limit_concurrency_and_free_on_finish():
    s = with_workers(scheduler(cpus=2), 1, 2, 3)
    dispatched = [e for i in range(3) for e in s.handle(TaskSubmitted(task(i), CPU1))]
    assert [e.task_id for e in dispatched] == [task(0), task(1)]
    assert s.state_of(task(2)) is TaskState.READY
    assert s.handle(TaskFinished(task(0), dispatched[0].worker_id, 0)) == \
        [DispatchTask(task(2), dispatched[0].worker_id, 0)]
    s.check_invariants()


def test_a_big_task_does_not_block_smaller_ones_behind_it():
    s = with_workers(scheduler(cpus=2), 1, 2)
    s.handle(TaskSubmitted(task(0), CPU1))
    s.handle(TaskSubmitted(task(1), ResourceSet({"CPU": 2})))
    assert s.handle(TaskSubmitted(task(2), CPU1)) == [DispatchTask(task(2), worker(2), 0)]


def test_infeasible_here_spills_when_cluster_unknown_or_able():
    s = scheduler(cpus=2)
    assert s.handle(TaskSubmitted(task(1), ResourceSet({"GPU": 1}))) == \
        [SpillTask(task(1), "infeasible here: this node lacks {'GPU': 1}")]
    s.handle(ClusterViewUpdated({HERE: ResourceSet({"CPU": 2}), THERE: ResourceSet({"GPU": 2})}))
    assert isinstance(s.handle(TaskSubmitted(task(2), ResourceSet({"GPU": 1})))[0], SpillTask)
    assert s.state_of(task(2)) is TaskState.SPILLED


def test_infeasible_everywhere_fails():
    s = scheduler(cpus=2)
    s.handle(ClusterViewUpdated({HERE: ResourceSet({"CPU": 2}), THERE: ResourceSet({"CPU": 4})}))
    [effect] = s.handle(TaskSubmitted(task(1), ResourceSet({"CPU": 8})))
    assert isinstance(effect, FailTask) and effect.kind == FAIL_INFEASIBLE
    assert "no alive node can ever fit" in effect.reason
    assert s.state_of(task(1)) is TaskState.FAILED


def test_queue_threshold_spills_new_tasks():
    s = scheduler(cpus=1, pool=1, queue_length_spill_threshold=2)
    s.handle(TaskSubmitted(task(0), CPU1, frozenset({obj(0)})))
    s.handle(TaskSubmitted(task(1), CPU1, frozenset({obj(0)})))
    [effect] = s.handle(TaskSubmitted(task(2), CPU1))
    assert isinstance(effect, SpillTask) and "threshold of 2" in effect.reason
    # placed here by the global scheduler: queued even over the threshold
    assert s.handle(TaskSubmitted(task(3), CPU1, allow_spill=False)) == [StartWorker()]
    assert s.queue_length() == 3


def test_spread_spills_unless_placed_here():
    s = with_workers(scheduler(), 1)
    assert isinstance(s.handle(TaskSubmitted(task(1), CPU1, strategy="SPREAD"))[0], SpillTask)
    assert s.handle(TaskSubmitted(task(2), CPU1, strategy="SPREAD", allow_spill=False)) == \
        [DispatchTask(task(2), worker(1), 0)]


def test_affinity_to_another_node_spills():
    s = with_workers(scheduler(), 1)
    [effect] = s.handle(TaskSubmitted(task(1), CPU1, strategy=NodeAffinitySchedulingStrategy(THERE)))
    assert isinstance(effect, SpillTask) and THERE.hex() in effect.reason


def test_hard_affinity_here_but_infeasible_fails_soft_spills():
    s = scheduler(cpus=1)
    big = ResourceSet({"CPU": 4})
    [hard] = s.handle(TaskSubmitted(task(1), big, strategy=NodeAffinitySchedulingStrategy(HERE)))
    assert isinstance(hard, FailTask) and "hard node affinity" in hard.reason
    [soft] = s.handle(TaskSubmitted(task(2), big, strategy=NodeAffinitySchedulingStrategy(HERE, soft=True)))
    assert isinstance(soft, SpillTask)


def test_worker_death_retries_with_next_attempt_until_max_retries():
    s = with_workers(scheduler(pool=10), 1)
    s.handle(TaskSubmitted(task(1), CPU1, max_retries=2))
    for attempt in (1, 2):
        effects = s.handle(WorkerDied(worker(attempt), "killed"))
        assert effects[0] == RetryTask(task(1), attempt, f"worker {worker(attempt).hex()} died: killed")
        assert s.resources.available == s.resources.total
        assert s.handle(WorkerRegistered(worker(attempt + 1))) == [DispatchTask(task(1), worker(attempt + 1), attempt)]
    [fail] = s.handle(WorkerDied(worker(3)))
    assert isinstance(fail, FailTask) and fail.kind == FAIL_WORKER_DIED and fail.attempt_number == 2
    assert "3 attempt(s) made, max_retries=2" in fail.reason
    s.check_invariants()


def test_max_retries_zero_fails_at_first_death():
    s = with_workers(scheduler(), 1)
    s.handle(TaskSubmitted(task(1), CPU1, max_retries=0))
    assert isinstance(s.handle(WorkerDied(worker(1)))[0], FailTask)


def test_max_retries_minus_one_retries_forever():
    s = scheduler(pool=1)
    s.handle(TaskSubmitted(task(1), CPU1, max_retries=-1))
    for n in range(1, 30):
        s.handle(WorkerRegistered(worker(n)))
        assert isinstance(s.handle(WorkerDied(worker(n)))[0], RetryTask)
    assert s.tasks[task(1)].attempt_number == 29


def test_attempt_numbers_continue_from_the_submitter():
    s = with_workers(scheduler(), 1)
    assert s.handle(TaskSubmitted(task(1), CPU1, max_retries=3, attempt_number=3)) == \
        [DispatchTask(task(1), worker(1), 3)]
    assert isinstance(s.handle(WorkerDied(worker(1)))[0], FailTask)  # no retries left


def test_cancel_queued_task():
    s = scheduler()
    s.handle(TaskSubmitted(task(1), CPU1, frozenset({obj(1)})))
    assert s.handle(CancelTask(task(1))) == [TaskCancelled(task(1))]
    assert s.state_of(task(1)) is TaskState.CANCELLED
    assert s.handle(ObjectsAvailable(frozenset({obj(1)}))) == []
    assert s.handle(CancelTask(task(1))) == []  # already terminal


def test_cancel_running_task_keeps_resources_until_worker_is_done():
    s = with_workers(scheduler(cpus=1), 1, 2)
    s.handle(TaskSubmitted(task(1), CPU1))
    s.handle(TaskSubmitted(task(2), CPU1))
    assert s.handle(CancelTask(task(1), force=True)) == \
        [CancelOnWorker(task(1), worker(1), True), TaskCancelled(task(1))]
    assert s.resources.available == ResourceSet()
    assert s.handle(TaskFinished(task(1), worker(1), 0)) == [DispatchTask(task(2), worker(1), 0)]
    assert s.state_of(task(1)) is TaskState.CANCELLED
    s.check_invariants()


def test_worker_death_after_cancel_does_not_retry():
    s = with_workers(scheduler(), 1)
    s.handle(TaskSubmitted(task(1), CPU1))
    s.handle(CancelTask(task(1)))
    assert s.handle(WorkerDied(worker(1))) == []
    assert s.resources.available == s.resources.total


def test_late_reports_of_old_attempts_are_ignored():
    s = with_workers(scheduler(), 1, 2)
    s.handle(TaskSubmitted(task(1), CPU1))
    s.handle(WorkerDied(worker(1)))  # retried as attempt 1 on worker 2
    assert s.tasks[task(1)].worker_id == worker(2)
    s.handle(TaskFinished(task(1), worker(2), 0))  # attempt 0's report: stale
    s.handle(TaskFinished(task(1), worker(9), 1))  # unknown worker
    assert s.state_of(task(1)) is TaskState.DISPATCHED
    s.check_invariants()


def test_duplicate_submission_is_ignored_and_resubmission_after_end_runs_again():
    s = with_workers(scheduler(), 1)
    s.handle(TaskSubmitted(task(1), CPU1))
    assert s.handle(TaskSubmitted(task(1), CPU1)) == []
    s.handle(TaskFinished(task(1), worker(1), 0))
    assert s.handle(TaskSubmitted(task(1), CPU1, attempt_number=1)) == [DispatchTask(task(1), worker(1), 1)]


def test_resubmitting_a_cancelled_task_still_on_its_worker():
    s = with_workers(scheduler(cpus=2), 1, 2)
    s.handle(TaskSubmitted(task(1), CPU1))
    s.handle(CancelTask(task(1)))
    assert s.handle(TaskSubmitted(task(1), CPU1)) == [DispatchTask(task(1), worker(2), 0)]
    s.handle(TaskFinished(task(1), worker(1), 0))  # the old, cancelled run ends
    assert s.state_of(task(1)) is TaskState.DISPATCHED
    s.check_invariants()
    s.handle(TaskFinished(task(1), worker(2), 0))
    assert s.state_of(task(1)) is TaskState.FINISHED
    s.check_invariants()


def test_blocked_parent_lends_its_cpu_to_its_child():
    s = with_workers(scheduler(cpus=1, pool=2), 1, 2)
    s.handle(TaskSubmitted(task(0), CPU1))
    assert s.handle(TaskSubmitted(task(1), CPU1)) == []  # no CPU: the child waits
    assert s.handle(WorkerBlocked(worker(1))) == [DispatchTask(task(1), worker(2), 0)]
    s.check_invariants()
    s.handle(WorkerUnblocked(worker(1)))  # the child still holds the CPU
    assert s.resources.available == ResourceSet()
    s.handle(TaskSubmitted(task(2), CPU1))
    # the child finishes: the parent takes its CPU back before task 2 gets it
    assert s.handle(TaskFinished(task(1), worker(2), 0)) == []
    assert s.workers[worker(1)].held == CPU1 and s.state_of(task(2)) is TaskState.READY
    assert s.handle(TaskFinished(task(0), worker(1), 0)) == [DispatchTask(task(2), worker(1), 0)]
    s.check_invariants()


def test_only_cpus_are_lent_while_blocked():
    s = with_workers(LocalScheduler(HERE, ResourceSet({"CPU": 2, "GPU": 1}), worker_pool_size_max=2), 1)
    s.handle(TaskSubmitted(task(0), ResourceSet({"CPU": 1, "GPU": 1})))
    s.handle(WorkerBlocked(worker(1)))
    assert s.resources.available == ResourceSet({"CPU": 2})
    s.handle(WorkerDied(worker(1)))
    assert s.resources.available == s.resources.total
    s.check_invariants()


def test_terminal_tasks_are_forgotten_beyond_the_bound():
    s = scheduler(terminal_tasks_retained_max=3)
    for i in range(10):
        s.handle(TaskSubmitted(task(i), ResourceSet({"GPU": 1})))  # spilled at once
    assert set(s.tasks) == {task(7), task(8), task(9)}


def test_transition_table_has_no_exit_from_terminal_states():
    assert all(not TRANSITIONS[state] for state in TERMINAL_STATES)
    assert set(TRANSITIONS) == set(TaskState)


def test_bad_construction_and_unknown_events_are_refused():
    with pytest.raises(InvalidArgumentError, match="worker_pool_size_max"):
        LocalScheduler(HERE, CPU1, worker_pool_size_max=0)
    with pytest.raises(InvalidArgumentError, match="cannot handle"):
        scheduler().handle("tick")
    with pytest.raises(InvalidArgumentError, match="max_retries"):
        scheduler().handle(TaskSubmitted(task(1), CPU1, max_retries=-2))


# ------------------------------------------------------------------ stateful

DEMANDS = [ResourceSet({"CPU": 1}), ResourceSet({"CPU": 2}), ResourceSet({"CPU": 0.5, "GPU": 1}),
           ResourceSet(), ResourceSet({"CPU": 8}), ResourceSet({"TPU": 1})]
TERMINAL_EFFECTS = (SpillTask, FailTask, TaskCancelled)


class LocalSchedulerMachine(RuleBasedStateMachine):
    @initialize(view=st.booleans())
    def setup(self, view):
        self.s = LocalScheduler(HERE, ResourceSet({"CPU": 4, "GPU": 1}), worker_pool_size_max=3,
                                queue_length_spill_threshold=6)
        if view:
            self.s.handle(ClusterViewUpdated({HERE: ResourceSet({"CPU": 4, "GPU": 1}),
                                              THERE: ResourceSet({"TPU": 4})}))
        self.next_task = 0
        self.next_worker = 0
        self.open: set[TaskID] = set()  # lifecycles without a terminal outcome yet
        self.max_retries: dict[TaskID, int] = {}
        self.ended: list[TaskID] = []

    def feed(self, event):
        effects = self.s.handle(event)
        for effect in effects:
            if isinstance(effect, TERMINAL_EFFECTS):
                assert effect.task_id in self.open, f"second terminal outcome for {effect.task_id!r}"
                self.open.discard(effect.task_id)
            if isinstance(effect, RetryTask):
                limit = self.max_retries[effect.task_id]
                assert limit == -1 or effect.attempt_number <= limit
        for task_id in list(self.open):  # finishing has no effect: read the state
            if self.s.state_of(task_id) is TaskState.FINISHED:
                self.open.discard(task_id)
        return effects

    @rule(demand=st.sampled_from(DEMANDS), missing=st.sets(st.integers(0, 3), max_size=2),
          strategy=st.sampled_from([None, None, "SPREAD"]), max_retries=st.integers(-1, 2),
          allow_spill=st.booleans())
    def submit(self, demand, missing, strategy, max_retries, allow_spill):
        task_id = task(self.next_task)
        self.next_task += 1
        self.open.add(task_id)
        self.max_retries[task_id] = max_retries
        self.feed(TaskSubmitted(task_id, demand, frozenset(obj(i) for i in missing), strategy, max_retries,
                                allow_spill=allow_spill))

    @rule(which=st.sets(st.integers(0, 3), min_size=1))
    def objects_arrive(self, which):
        self.feed(ObjectsAvailable(frozenset(obj(i) for i in which)))

    @precondition(lambda self: self.s.workers_starting > 0)
    @rule(fail=st.booleans())
    def worker_comes_up(self, fail):
        if fail:
            self.feed(WorkerStartFailed())
        else:
            self.next_worker += 1
            self.feed(WorkerRegistered(worker(self.next_worker)))

    def busy_workers(self):
        return sorted(w for w, entry in self.s.workers.items() if entry.task_id is not None)

    @precondition(lambda self: any(e.task_id is not None for e in self.s.workers.values()))
    @rule(data=st.data())
    def worker_reports(self, data):
        worker_id = data.draw(st.sampled_from(self.busy_workers()))
        entry = self.s.workers[worker_id]
        if data.draw(st.booleans()):
            self.feed(TaskStarted(entry.task_id, worker_id, entry.attempt_number))
        else:
            self.feed(TaskFinished(entry.task_id, worker_id, entry.attempt_number))

    @precondition(lambda self: any(e.task_id is not None for e in self.s.workers.values()))
    @rule(data=st.data(), block=st.booleans())
    def worker_blocks_or_unblocks(self, data, block):
        worker_id = data.draw(st.sampled_from(self.busy_workers()))
        self.feed(WorkerBlocked(worker_id) if block else WorkerUnblocked(worker_id))

    @precondition(lambda self: self.s.workers)
    @rule(data=st.data())
    def worker_dies(self, data):
        self.feed(WorkerDied(data.draw(st.sampled_from(sorted(self.s.workers)))))

    @precondition(lambda self: self.next_task > 0)
    @rule(data=st.data(), force=st.booleans())
    def cancel(self, data, force):
        self.feed(CancelTask(task(data.draw(st.integers(0, self.next_task - 1))), force))

    @invariant()
    def bookkeeping_is_consistent(self):
        if hasattr(self, "s"):
            self.s.check_invariants()
            available, total = self.s.resources.available, self.s.resources.total
            assert available.fits_in(total)

    def teardown(self):
        if not hasattr(self, "s"):
            return
        # Drive the node to quiescence without faults: every task must end.
        for _ in range(200):
            if not self.open and not self.busy_workers():
                break
            self.feed(ObjectsAvailable(frozenset(obj(i) for i in range(4))))
            while self.s.workers_starting:
                self.next_worker += 1
                self.feed(WorkerRegistered(worker(self.next_worker)))
            for worker_id in self.busy_workers():
                entry = self.s.workers[worker_id]
                self.feed(TaskFinished(entry.task_id, worker_id, entry.attempt_number))
        assert not self.open, f"tasks that never ended: {self.open}"
        for task_id in self.max_retries:
            state = self.s.state_of(task_id)
            assert state is None or state in TERMINAL_STATES
        assert self.s.resources.available == self.s.resources.total
        self.s.check_invariants()


LocalSchedulerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLocalSchedulerMachine = LocalSchedulerMachine.TestCase
