"""The local scheduler's second slot: a busy worker is sent its next task of
the same shape, which holds no resources until the current one ends; it is
handed back before the running task blocks, requeued first (same attempt)
if the worker dies, and cancelled without killing the worker."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from lineagerun.core.ids import JobID, NodeID, TaskID, WorkerID
from lineagerun.core.local_scheduler import (
    CancelOnWorker, CancelTask, ClusterViewUpdated, DispatchTask, LocalScheduler, RetryTask, StartWorker, TaskCancelled, TaskFinished,
    TaskHandedBack, TaskState, TaskSubmitted, WorkerBlocked, WorkerDied, WorkerRegistered,
)
from lineagerun.core.resources import ResourceSet
from tests.core.test_local_scheduler import HERE as MACHINE_NODE
from tests.core.test_local_scheduler import LocalSchedulerMachine
from tests.core.test_local_scheduler import task as machine_task

JOB = JobID.from_int(9)
DRIVER = TaskID.for_driver(JOB)
HERE = NodeID(b"\x02" * 28)
CPU1 = ResourceSet({"CPU": 1})
CPU2 = ResourceSet({"CPU": 2})


def task(i: int) -> TaskID:
    return TaskID.for_normal_task(JOB, DRIVER, i)


def worker(i: int) -> WorkerID:
    return WorkerID(i.to_bytes(28, "big"))


def dispatches(effects) -> list[tuple[TaskID, WorkerID]]:
    return [(e.task_id, e.worker_id) for e in effects if isinstance(e, DispatchTask)]


def busy_node(cpus: int = 1, workers: int = 1, pool: int = 0) -> LocalScheduler:
    """``workers`` workers, each running one task (task(0), task(1), ...)."""
    s = LocalScheduler(HERE, ResourceSet({"CPU": cpus}), worker_pool_size_max=pool or workers, second_slot=True)
    for i in range(workers):
        s.handle(WorkerRegistered(worker(i)))
    for i in range(workers):
        assert dispatches(s.handle(TaskSubmitted(task(i), CPU1))) == [(task(i), worker(i))]
    return s


def test_a_busy_worker_is_sent_its_next_task_which_takes_over_the_resources():
    s = busy_node()
    assert dispatches(s.handle(TaskSubmitted(task(1), CPU1))) == [(task(1), worker(0))]
    assert dispatches(s.handle(TaskSubmitted(task(2), CPU1))) == []  # one queued task per worker
    assert s.state_of(task(1)) is TaskState.DISPATCHED
    assert s.resources.available == ResourceSet({"CPU": 0})  # the queued task holds nothing
    s.check_invariants()
    # The worker starts task(1) by itself: no dispatch for it, task(2) becomes its next.
    effects = s.handle(TaskFinished(task(0), worker(0), 0))
    assert dispatches(effects) == [(task(2), worker(0))]
    assert s.workers[worker(0)].task_id == task(1) and s.workers[worker(0)].held == CPU1
    s.check_invariants()
    s.handle(TaskFinished(task(1), worker(0), 0))
    s.handle(TaskFinished(task(2), worker(0), 0))
    assert s.resources.available == s.resources.total and s.idle_workers() == [worker(0)]
    s.check_invariants()


def test_off_by_default_and_only_for_the_same_shape():
    plain = LocalScheduler(HERE, CPU1, worker_pool_size_max=1)
    plain.handle(WorkerRegistered(worker(0)))
    plain.handle(TaskSubmitted(task(0), CPU1))
    assert dispatches(plain.handle(TaskSubmitted(task(1), CPU1))) == []
    s = busy_node(cpus=2)
    assert dispatches(s.handle(TaskSubmitted(task(5), CPU2))) == []  # other shape than task(0)
    assert s.state_of(task(5)) is TaskState.READY


def test_no_second_task_while_a_worker_is_starting():
    s = LocalScheduler(HERE, ResourceSet({"CPU": 2}), worker_pool_size_max=2, second_slot=True)
    s.handle(WorkerRegistered(worker(0)))
    s.handle(TaskSubmitted(task(0), CPU1))
    effects = s.handle(TaskSubmitted(task(1), CPU1))
    # A worker that starts runs task(1) sooner than one busy with task(0).
    assert any(isinstance(e, StartWorker) for e in effects) and dispatches(effects) == []
    assert dispatches(s.handle(WorkerRegistered(worker(1)))) == [(task(1), worker(1))]


def test_actor_creations_never_wait_behind_a_task_nor_does_a_task_behind_them():
    s = busy_node()
    assert dispatches(s.handle(TaskSubmitted(task(1), CPU1, queueable=False))) == []
    assert dispatches(s.handle(TaskSubmitted(task(2), CPU1))) == []  # keeps its place behind the creation
    assert dispatches(s.handle(TaskFinished(task(0), worker(0), 0))) == [(task(1), worker(0))]
    assert dispatches(s.handle(TaskSubmitted(task(3), CPU1))) == []  # nothing behind a creation
    s.check_invariants()


def test_a_handed_back_task_goes_first_and_the_worker_gets_no_other_until_its_task_ends():
    s = busy_node(cpus=2, workers=2, pool=3)
    s.handle(TaskSubmitted(task(2), CPU1))  # next on worker 0
    s.handle(TaskSubmitted(task(3), CPU1))  # next on worker 1
    s.handle(TaskSubmitted(task(4), CPU1))  # READY
    assert s.workers[worker(0)].next_task_id == task(2)
    # worker 0's task is about to block in get: it gives task(2) back, unstarted.
    assert dispatches(s.handle(TaskHandedBack(task(2), worker(0), 0))) == []
    assert s.state_of(task(2)) is TaskState.READY
    s.handle(WorkerBlocked(worker(0)))  # lends its CPU: task(2) runs first, on a new worker
    assert s.workers[worker(0)].next_task_id is None
    effects = s.handle(WorkerRegistered(worker(2)))
    # task(4) then queues behind task(2), never behind the blocked worker 0.
    assert dispatches(effects) == [(task(2), worker(2)), (task(4), worker(2))]
    assert s.workers[worker(0)].next_task_id is None
    s.check_invariants()


def test_a_queued_task_of_a_dead_worker_is_requeued_first_without_using_a_retry():
    s = busy_node()
    s.handle(TaskSubmitted(task(1), CPU1, max_retries=0))
    s.handle(TaskSubmitted(task(2), CPU1))
    effects = s.handle(WorkerDied(worker(0), "killed"))
    retries = [e for e in effects if isinstance(e, RetryTask)]
    assert retries == [RetryTask(task(0), 1, f"worker {worker(0).hex()} died: killed")]
    assert s.state_of(task(1)) is TaskState.READY and s.tasks[task(1)].attempt_number == 0
    s.handle(WorkerRegistered(worker(1)))
    assert s.workers[worker(1)].task_id == task(1)  # first: it was waiting before the retry
    s.check_invariants()


def test_cancelling_a_queued_task_never_kills_its_worker():
    s = busy_node()
    s.handle(TaskSubmitted(task(1), CPU1))
    effects = s.handle(CancelTask(task(1), force=True))
    assert effects[:2] == [CancelOnWorker(task(1), worker(0), False), TaskCancelled(task(1))]
    assert s.state_of(task(1)) is TaskState.CANCELLED and s.workers[worker(0)].next_task_id is None
    s.handle(TaskFinished(task(0), worker(0), 0))
    assert s.idle_workers() == [worker(0)] and s.resources.available == s.resources.total
    s.check_invariants()


def test_a_queued_dispatch_the_node_could_not_send_is_undone():
    s = busy_node()
    s.handle(TaskSubmitted(task(1), CPU1))
    s.handle(TaskFinished(task(1), worker(0), 0))  # e.g. an argument failed: returns errored
    assert s.state_of(task(1)) is TaskState.FINISHED and s.workers[worker(0)].task_id == task(0)
    s.check_invariants()


def test_a_blocked_worker_gets_no_second_task():
    s = busy_node(cpus=1)
    s.handle(WorkerBlocked(worker(0)))
    s.handle(TaskSubmitted(task(1), CPU1))  # waits for the lent CPU and a worker, not in the slot
    assert s.workers[worker(0)].next_task_id is None and s.state_of(task(1)) is TaskState.READY


def test_a_retiring_worker_leaves_and_its_queued_task_goes_back_first():
    s = busy_node(cpus=1, workers=1, pool=2)
    assert dispatches(s.handle(TaskSubmitted(task(1), CPU1))) == [(task(1), worker(0))]  # its second slot
    effects = s.handle(TaskFinished(task(0), worker(0), 0, retire_worker=True))
    assert worker(0) not in s.workers
    assert s.state_of(task(0)) is TaskState.FINISHED
    assert s.state_of(task(1)) is TaskState.READY  # never started: same attempt, no retry used
    assert not any(isinstance(e, RetryTask) for e in effects)
    assert any(isinstance(e, StartWorker) for e in effects)  # a fresh worker for it
    s.handle(WorkerRegistered(worker(7)))
    s.check_invariants()
    assert s.state_of(task(1)) is TaskState.DISPATCHED and s.workers[worker(7)].task_id == task(1)
    assert s.resources.available == ResourceSet({"CPU": 0})


class SecondSlotMachine(LocalSchedulerMachine):
    """The random walk of test_local_scheduler.py with second slots on, hand-backs and creations."""

    @initialize(view=st.booleans())
    def setup(self, view):
        super().setup(view)
        # Fewer CPUs than the base machine: tasks wait for CPUs, so second slots fill.
        self.s = LocalScheduler(MACHINE_NODE, ResourceSet({"CPU": 2, "GPU": 1}), worker_pool_size_max=3,
                                queue_length_spill_threshold=6, second_slot=True)
        if view:
            self.s.handle(ClusterViewUpdated({MACHINE_NODE: ResourceSet({"CPU": 2, "GPU": 1})}))

    def feed(self, event):
        effects = super().feed(event)
        while self.s.workers_starting:  # workers come up at once, so second slots fill
            self.next_worker += 1
            effects += super().feed(WorkerRegistered(worker(self.next_worker)))
        return effects

    @rule(count=st.integers(2, 5), max_retries=st.integers(0, 1))
    def burst_of_small_tasks(self, count, max_retries):
        for _ in range(count):
            task_id = machine_task(self.next_task)  # the base rules' ids, so they cancel these too
            self.next_task += 1
            self.open.add(task_id)
            self.max_retries[task_id] = max_retries
            self.feed(TaskSubmitted(task_id, CPU1, max_retries=max_retries))

    @rule(data=st.data())
    def creation_submitted(self, data):
        task_id = TaskID.for_normal_task(JobID.from_int(5), DRIVER, 10_000 + self.next_task)
        self.next_task += 1
        self.open.add(task_id)
        self.max_retries[task_id] = 0
        self.feed(TaskSubmitted(task_id, data.draw(st.sampled_from([CPU1, CPU2])), max_retries=0, queueable=False))

    @precondition(lambda self: any(e.next_task_id is not None for e in self.s.workers.values()))
    @rule(data=st.data(), undo=st.booleans())
    def queued_task_handed_back(self, data, undo):
        worker_id = data.draw(st.sampled_from(sorted(w for w, e in self.s.workers.items()
                                                     if e.next_task_id is not None)))
        entry = self.s.workers[worker_id]
        event = TaskFinished if undo else TaskHandedBack
        self.feed(event(entry.next_task_id, worker_id, entry.next_attempt_number))


    @precondition(lambda self: any(e.task_id is not None for e in self.s.workers.values()))
    @rule(data=st.data())
    def worker_retires_after_its_task(self, data):
        worker_id = data.draw(st.sampled_from(self.busy_workers()))
        entry = self.s.workers[worker_id]
        self.feed(TaskFinished(entry.task_id, worker_id, entry.attempt_number, retire_worker=True))
        assert worker_id not in self.s.workers


SecondSlotMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
TestSecondSlotMachine = SecondSlotMachine.TestCase
