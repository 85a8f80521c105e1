"""The local scheduler's READY queues per resource shape: tasks still go out
in arrival order across shapes, a shape that does not fit is skipped as a
whole (so a scan does not grow with the tasks queued behind it), and stale
queue entries (cancelled, retried) never dispatch anything twice."""

from __future__ import annotations

from lineagerun.core.ids import JobID, NodeID, TaskID, WorkerID
from lineagerun.core.local_scheduler import (
    CancelTask, DispatchTask, LocalScheduler, TaskFinished, TaskState, TaskSubmitted, WorkerDied, WorkerRegistered,
)
from lineagerun.core.resources import ResourceSet

JOB = JobID.from_int(7)
DRIVER = TaskID.for_driver(JOB)
HERE = NodeID(b"\x01" * 28)
CPU1 = ResourceSet({"CPU": 1})
CPU2 = ResourceSet({"CPU": 2})
GPU1 = ResourceSet({"CPU": 1, "GPU": 1})


def task(i: int) -> TaskID:
    return TaskID.for_normal_task(JOB, DRIVER, i)


def worker(i: int) -> WorkerID:
    return WorkerID(i.to_bytes(28, "big"))


def dispatched(effects) -> list[TaskID]:
    return [e.task_id for e in effects if isinstance(e, DispatchTask)]


def ready_scheduler(total: dict, workers: int) -> LocalScheduler:
    s = LocalScheduler(HERE, ResourceSet(total), worker_pool_size_max=workers)
    for i in range(workers):
        s.handle(WorkerRegistered(worker(i)))
    return s


def test_tasks_of_different_shapes_go_out_in_arrival_order():
    s = ready_scheduler({"CPU": 3}, 5)
    running = []
    for i in (1, 2, 3):
        running += dispatched(s.handle(TaskSubmitted(task(i), CPU1)))
    assert running == [task(1), task(2), task(3)]
    a, b, c, d = task(11), task(12), task(13), task(14)
    for t, demand in ((a, CPU1), (b, CPU2), (c, CPU1), (d, CPU1)):
        assert dispatched(s.handle(TaskSubmitted(t, demand))) == []
    order = []
    for done in (task(1), task(2), task(3), a, c):
        order += dispatched(s.handle(TaskFinished(done, s.tasks[done].worker_id, 0)))
    # One CPU frees at a time: B (2 CPUs) waits, later 1-CPU tasks pass it,
    # and it goes once two are free; the same order as one queue scanned.
    assert order == [a, c, d, b]
    s.check_invariants()


def test_a_shape_that_does_not_fit_is_skipped_without_scanning_its_queue(monkeypatch):
    s = ready_scheduler({"CPU": 4, "GPU": 1}, 3)
    s.handle(TaskSubmitted(task(0), GPU1))  # takes the only GPU for the whole test
    for i in range(1, 5_001):
        s.handle(TaskSubmitted(task(i), GPU1, allow_spill=False))  # queued behind it, never fitting
    checks = []
    original = ResourceSet.fits_in
    monkeypatch.setattr(ResourceSet, "fits_in", lambda self, other: checks.append(1) or original(self, other))
    running = []
    for i in range(10_000, 10_300):
        running += dispatched(s.handle(TaskSubmitted(task(i), CPU1, allow_spill=False)))
        if len(running) == 2:
            done = running.pop(0)
            w = s.tasks[done].worker_id
            running += dispatched(s.handle(TaskFinished(done, w, 0)))
    assert len(checks) < 300 * 12  # a few per event, not thousands
    assert s.state_of(task(5_000)) is TaskState.READY
    s.check_invariants()


def test_cancelled_and_retried_tasks_leave_no_live_duplicates():
    s = LocalScheduler(HERE, ResourceSet({"CPU": 1}), worker_pool_size_max=2)
    s.handle(WorkerRegistered(worker(0)))
    assert dispatched(s.handle(TaskSubmitted(task(1), CPU1, max_retries=2, allow_spill=False))) == [task(1)]
    for i in range(2, 6):
        s.handle(TaskSubmitted(task(i), CPU1, allow_spill=False))
    s.handle(CancelTask(task(3)))
    s.handle(WorkerDied(worker(0)))  # task 1 is retried: READY again, after 5
    order = dispatched(s.handle(WorkerRegistered(worker(1))))
    while True:
        running = order[-1]
        more = dispatched(s.handle(TaskFinished(running, worker(1), s.tasks[running].attempt_number)))
        if not more:
            break
        order += more
    assert order == [task(2), task(4), task(5), task(1)]
    assert s._ready == {}
    s.check_invariants()


def test_queues_empty_once_everything_ran():
    s = ready_scheduler({"CPU": 2}, 2)
    running = []
    for i in range(1, 41):
        running += dispatched(s.handle(TaskSubmitted(task(i), CPU1 if i % 2 else CPU2)))
    finished = 0
    while running:
        done = running.pop(0)
        running += dispatched(s.handle(TaskFinished(done, s.tasks[done].worker_id, 0)))
        finished += 1
    assert finished == 40
    assert s._ready == {}
    s.check_invariants()
