"""A node's local scheduler: a pure state machine, ``handle(event) -> effects``.

The node manager feeds in what happens (tasks submitted, argument objects
arriving, workers registering, starting, finishing and dying, cancellations,
the cluster's resource view) and carries out the effects (fetch arguments,
start a worker, dispatch a task, spill it to the global scheduler, fail it,
record a retry, interrupt a worker). Nothing here does I/O or reads a clock.

Task states and the only transitions allowed (``TRANSITIONS``)::

    WAITING_FOR_ARGS -> READY | SPILLED | FAILED | CANCELLED
    READY            -> DISPATCHED | CANCELLED
    DISPATCHED       -> RUNNING | FINISHED | READY (retry) | FAILED | CANCELLED
    RUNNING          -> FINISHED | READY (retry) | FAILED | CANCELLED
    FINISHED, FAILED, SPILLED, CANCELLED: terminal

Submission decides where a task goes, before its arguments are fetched (the
global scheduler weighs argument locality itself):

1. node affinity to another node -> spill (unless the global scheduler
   placed it here, ``allow_spill=False``);
2. infeasible here (the node's *total* cannot fit the demand) -> fail if a
   hard affinity names this node, or if the cluster view (``ClusterViewUpdated``)
   shows no alive node that could ever fit it; else spill (even with
   ``allow_spill=False``: the global scheduler's view was stale);
3. SPREAD, or ``queue_length_spill_threshold`` tasks already queued -> spill
   (unless ``allow_spill=False``);
4. otherwise queue here: WAITING_FOR_ARGS (and fetch the missing arguments)
   or READY.

READY tasks are dispatched in arrival order, each as soon as its demand fits
the available resources and a worker is idle; a task that fits but finds no
idle worker asks for a worker, up to ``worker_pool_size_max`` workers.
Resources are taken at dispatch and given back when the worker reports the
task finished or dies; a cancelled running task keeps its worker's resources
until then. A task whose worker dies is retried here (a new attempt number)
while ``attempt_number < max_retries`` (``max_retries=-1``: always), else it
fails. Attempt numbers come from the submitter (the owner counts attempts
across nodes) and grow by one per local retry. Exceptions raised by user code
finish the task (the error is its result); retrying those is the owner's call.

A worker whose task blocks in ``get``/``wait`` (``WorkerBlocked``) lends its
CPUs back, as Ray does, so that a parent waiting for its children on a full
node does not deadlock; on ``WorkerUnblocked`` it is owed them, and gets them
back before any new task is dispatched (it runs oversubscribed meanwhile;
``available`` itself never goes negative).

The second slot (``second_slot=True``; the node manager's setting): a
worker running a task may be sent the next READY task of
the same resource shape (when no worker is starting), which it queues and
starts as soon as the current one finishes; the resources pass from one to
the next, so the worker's idle gap (finish report, scheduling, dispatch) is
hidden. A queued task is DISPATCHED but holds nothing. Before its running
task blocks in ``get``/``wait`` the worker hands the queued task back
(``TaskHandedBack``): it goes to the front of its queue, and that worker gets
no second task until its current one ends, so a parent never waits for a
child queued behind it. A queued task whose worker dies goes back to the
front of the queue with the same attempt number (it never started, so it
uses no retry); cancelling it drops it from the worker (never by a kill,
which would take the running task too). Tasks submitted with
``queueable=False`` (the node manager: actor creations, and tasks with
object arguments) are never queued behind another, nor is anything queued
behind them.

Events for unknown or superseded tasks and workers (a late message from an
earlier attempt) are ignored: they are expected after retries and failures.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from dataclasses import dataclass, field

from lineagerun.core.ids import NodeID, ObjectID, TaskID, WorkerID
from lineagerun.core.resources import CPU, NodeResources, ResourceSet
from lineagerun.core.scheduling_strategies import (
    SPREAD,
    NodeAffinitySchedulingStrategy,
    SchedulingStrategy,
    normalize_strategy,
)
from lineagerun.exceptions import InvalidArgumentError
from lineagerun.core.local_scheduler_events import (  # noqa: F401  (re-exported: ls.TaskSubmitted ...)
    TaskSubmitted,
    ObjectsAvailable,
    WorkerRegistered,
    WorkerStartFailed,
    TaskStarted,
    TaskFinished,
    WorkerDied,
    WorkerBlocked,
    WorkerUnblocked,
    TaskHandedBack,
    CancelTask,
    ClusterViewUpdated,
    FetchArgs,
    StartWorker,
    DispatchTask,
    SpillTask,
    FailTask,
    RetryTask,
    CancelOnWorker,
    TaskCancelled,
    Event,
    Effect,
)

# Tasks queued here (waiting for arguments or resources) beyond which new
# tasks are spilled: a long local queue means another node may start sooner.
QUEUE_LENGTH_SPILL_THRESHOLD_DEFAULT = 100
# Terminal tasks remembered (for duplicate detection and inspection); older
# ones are forgotten so a long-lived node does not grow without bound.
TERMINAL_TASKS_RETAINED_MAX_DEFAULT = 10_000

FAIL_INFEASIBLE = "INFEASIBLE"
FAIL_WORKER_DIED = "WORKER_DIED"


class TaskState(enum.Enum):
    WAITING_FOR_ARGS = "waiting_for_args"
    READY = "ready"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    SPILLED = "spilled"
    CANCELLED = "cancelled"


S = TaskState
TERMINAL_STATES = frozenset({S.FINISHED, S.FAILED, S.SPILLED, S.CANCELLED})
QUEUED_STATES = frozenset({S.WAITING_FOR_ARGS, S.READY})
ON_WORKER_STATES = frozenset({S.DISPATCHED, S.RUNNING})
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    S.WAITING_FOR_ARGS: frozenset({S.READY, S.SPILLED, S.FAILED, S.CANCELLED}),
    S.READY: frozenset({S.DISPATCHED, S.CANCELLED}),
    S.DISPATCHED: frozenset({S.RUNNING, S.FINISHED, S.READY, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.FINISHED, S.READY, S.FAILED, S.CANCELLED}),
    S.FINISHED: frozenset(),
    S.FAILED: frozenset(),
    S.SPILLED: frozenset(),
    S.CANCELLED: frozenset(),
}


# --------------------------------------------------------------------- state


@dataclass
class TaskEntry:
    task_id: TaskID
    demand: ResourceSet
    max_retries: int
    attempt_number: int
    state: TaskState
    first_attempt_number: int = 0
    missing_args: set[ObjectID] = field(default_factory=set)
    worker_id: WorkerID | None = None
    generation: int = 0  # tells lifecycles of one resubmitted task id apart
    ready_seq: int = 0  # arrival number of its latest move to READY (older queue entries are stale)
    queueable: bool = True


@dataclass
class WorkerEntry:
    worker_id: WorkerID
    task_id: TaskID | None = None
    attempt_number: int = 0
    generation: int = 0  # of the task lifecycle it runs
    held: ResourceSet = field(default_factory=ResourceSet)
    blocked: bool = False
    lent: ResourceSet = field(default_factory=ResourceSet)  # CPUs given back while blocked
    owed: ResourceSet = field(default_factory=ResourceSet)  # CPUs to take back after unblocking
    # The second slot: a task sent to run after the current one (holds nothing).
    next_task_id: TaskID | None = None
    next_attempt_number: int = 0
    next_generation: int = 0
    no_next: bool = False  # handed one back or blocked: no second task until the current one ends


class LocalScheduler:
    def __init__(self, node_id: NodeID, total: ResourceSet, *, worker_pool_size_max: int,
                 queue_length_spill_threshold: int = QUEUE_LENGTH_SPILL_THRESHOLD_DEFAULT,
                 terminal_tasks_retained_max: int = TERMINAL_TASKS_RETAINED_MAX_DEFAULT,
                 second_slot: bool = False):
        if not isinstance(node_id, NodeID):
            raise InvalidArgumentError(f"node_id must be a NodeID, got {type(node_id).__name__}")
        for name, value, minimum in (("worker_pool_size_max", worker_pool_size_max, 1),
                                     ("queue_length_spill_threshold", queue_length_spill_threshold, 1),
                                     ("terminal_tasks_retained_max", terminal_tasks_retained_max, 0)):
            if not isinstance(value, int) or value < minimum:
                raise InvalidArgumentError(f"{name} must be an int >= {minimum}, got {value!r}")
        self.node_id = node_id
        self.resources = NodeResources(total)
        self.worker_pool_size_max = worker_pool_size_max
        self.queue_length_spill_threshold = queue_length_spill_threshold
        self.terminal_tasks_retained_max = terminal_tasks_retained_max
        self.second_slot = second_slot
        self.tasks: dict[TaskID, TaskEntry] = {}
        self.workers: dict[WorkerID, WorkerEntry] = {}
        self.workers_starting = 0
        self.cluster_totals: dict[NodeID, ResourceSet] | None = None
        # READY tasks by resource shape (Ray's scheduling class), each in
        # arrival order as (arrival number, task id); entries of tasks that
        # moved on since are stale and dropped when met. A scan looks at a
        # shape only while its next task fits, so its cost is O(shapes +
        # tasks dispatched), not O(tasks queued).
        self._ready: dict[ResourceSet, deque[tuple[int, TaskID]]] = {}
        self._arrivals = 0
        self._front_arrivals = 0  # decreasing: tasks handed back go before every arrival
        self._waiting_for: dict[ObjectID, set[TaskID]] = {}
        self._terminal_order: deque[tuple[TaskID, int]] = deque()
        self._generation = 0
        self._queued = 0  # tasks in QUEUED_STATES, kept by _move

    # ----------------------------------------------------------- the mutator

    def handle(self, event: Event) -> list[Effect]:
        handler = self._HANDLERS.get(type(event))
        if handler is None:
            raise InvalidArgumentError(f"LocalScheduler cannot handle {type(event).__name__}")
        effects: list[Effect] = handler(self, event)
        effects.extend(self._schedule())
        return effects

    # ---------------------------------------------------------------- queries

    def state_of(self, task_id: TaskID) -> TaskState | None:
        entry = self.tasks.get(task_id)
        return entry.state if entry else None

    def queue_length(self) -> int:
        return self._queued

    def idle_workers(self) -> list[WorkerID]:
        return [w.worker_id for w in self.workers.values() if w.task_id is None]

    def check_invariants(self) -> None:
        """Raise AssertionError if the bookkeeping is inconsistent (for tests)."""
        held = ResourceSet()
        for worker in self.workers.values():
            held = held + worker.held
            if worker.task_id is None:
                assert worker.held.is_empty() and worker.lent.is_empty() and worker.owed.is_empty(), worker
                assert not worker.blocked and worker.next_task_id is None and not worker.no_next, worker
                continue
            queued = self.tasks.get(worker.next_task_id) if worker.next_task_id is not None else None
            if queued is not None and queued.generation == worker.next_generation:
                assert queued.state is S.DISPATCHED and queued.worker_id == worker.worker_id, (worker, queued)
            assert worker.blocked or worker.lent.is_empty(), worker
            task = self.tasks.get(worker.task_id)
            if task is not None and task.generation == worker.generation:
                assert task.worker_id == worker.worker_id, (worker, task)
                assert task.state in ON_WORKER_STATES | {S.CANCELLED}, task
        assert self.resources.available + held == self.resources.total, (self.resources, held)
        assert self.resources.available.fits_in(self.resources.total)
        for task in self.tasks.values():
            if task.state in ON_WORKER_STATES:
                worker = self.workers.get(task.worker_id)
                assert worker is not None, task
                running = worker.task_id == task.task_id and worker.generation == task.generation
                queued = worker.next_task_id == task.task_id and worker.next_generation == task.generation
                assert running or queued, (worker, task)
            if task.state in QUEUED_STATES:
                assert task.worker_id is None, task
            if task.max_retries >= 0:
                assert task.attempt_number <= max(task.max_retries, task.first_attempt_number), task
        assert self._queued == sum(1 for t in self.tasks.values() if t.state in QUEUED_STATES)
        assert self.workers_starting >= 0
        assert self.workers_starting == 0 or len(self.workers) + self.workers_starting <= self.worker_pool_size_max

    # --------------------------------------------------------------- helpers

    def _move(self, task: TaskEntry, new: TaskState, front: bool = False) -> None:
        if new not in TRANSITIONS[task.state]:
            raise AssertionError(f"task {task.task_id!r}: illegal transition {task.state.name} -> {new.name}")
        self._queued += (new in QUEUED_STATES) - (task.state in QUEUED_STATES)
        task.state = new
        if new is S.READY and front:
            self._front_arrivals -= 1
            task.ready_seq = self._front_arrivals
            self._ready.setdefault(task.demand, deque()).appendleft((self._front_arrivals, task.task_id))
        elif new is S.READY:
            self._arrivals += 1
            task.ready_seq = self._arrivals
            self._ready.setdefault(task.demand, deque()).append((self._arrivals, task.task_id))
        if new in TERMINAL_STATES:
            self._forget_waiting(task)
            self._terminal_order.append((task.task_id, task.generation))
            while len(self._terminal_order) > self.terminal_tasks_retained_max:
                old_id, generation = self._terminal_order.popleft()
                old = self.tasks.get(old_id)
                if old is not None and old.generation == generation and old.state in TERMINAL_STATES:
                    del self.tasks[old_id]

    def _forget_waiting(self, task: TaskEntry) -> None:
        for oid in task.missing_args:
            waiters = self._waiting_for.get(oid)
            if waiters is not None:
                waiters.discard(task.task_id)
                if not waiters:
                    del self._waiting_for[oid]
        task.missing_args.clear()

    def _release_worker(self, worker: WorkerEntry) -> TaskEntry | None:
        """Free the worker; returns the task lifecycle it ran, if still known."""
        task = self.tasks.get(worker.task_id) if worker.task_id is not None else None
        if task is not None and task.generation != worker.generation:
            task = None  # the id was resubmitted since; that lifecycle is not ours
        self.resources.release(worker.held)
        worker.held = worker.lent = worker.owed = ResourceSet()
        worker.task_id, worker.blocked, worker.no_next = None, False, False
        if task is not None:
            task.worker_id = None
        return task

    def _take_next(self, worker: WorkerEntry) -> TaskEntry | None:
        """Empty the worker's second slot; returns the task queued there, if still known."""
        task = self.tasks.get(worker.next_task_id) if worker.next_task_id is not None else None
        if task is not None and (task.generation != worker.next_generation or task.state is not S.DISPATCHED):
            task = None
        worker.next_task_id = None
        if task is not None:
            task.worker_id = None
        return task

    def _promote_next(self, worker: WorkerEntry) -> None:
        """The worker starts its queued task by itself once the current one
        ended: it takes over the resources (what does not fit now is owed,
        as for an unblocked worker: it runs oversubscribed until repaid)."""
        attempt_number, generation = worker.next_attempt_number, worker.next_generation
        task = self._take_next(worker)
        if task is None:
            return
        available = self.resources.available
        held = ResourceSet.from_units({name: min(units, available.units(name))
                                       for name, units in task.demand.units_dict().items()})
        self.resources.allocate(held)
        worker.task_id, worker.held, worker.owed = task.task_id, held, task.demand - held
        worker.attempt_number, worker.generation = attempt_number, generation
        task.worker_id = worker.worker_id

    def _cluster_can_ever_fit(self, demand: ResourceSet) -> bool:
        if self.cluster_totals is None:
            return True  # no view yet: let the global scheduler judge
        return any(demand.fits_in(total) for total in self.cluster_totals.values())

    # --------------------------------------------------------------- handlers

    def _on_submitted(self, event: TaskSubmitted) -> list[Effect]:
        existing = self.tasks.get(event.task_id)
        if existing is not None and existing.state not in TERMINAL_STATES:
            return []  # a duplicate of a submission we are already handling
        strategy = normalize_strategy(event.strategy)
        if not isinstance(event.demand, ResourceSet):
            raise InvalidArgumentError(f"demand must be a ResourceSet, got {type(event.demand).__name__}")
        if not isinstance(event.max_retries, int) or event.max_retries < -1:
            raise InvalidArgumentError(f"max_retries must be an int >= -1, got {event.max_retries!r}")
        self._generation += 1
        task = TaskEntry(event.task_id, event.demand, event.max_retries, event.attempt_number,
                         S.WAITING_FOR_ARGS, first_attempt_number=event.attempt_number,
                         generation=self._generation, queueable=event.queueable)
        self.tasks[event.task_id] = task
        self._queued += 1
        decision = self._placement_decision(task, strategy, event.allow_spill)
        if decision is not None:
            return [decision]
        missing = set(event.missing_args)
        if not missing:
            self._move(task, S.READY)
            return []
        task.missing_args = missing
        for oid in missing:
            self._waiting_for.setdefault(oid, set()).add(task.task_id)
        return [FetchArgs(task.task_id, frozenset(missing))]

    def _placement_decision(self, task: TaskEntry, strategy, allow_spill: bool) -> Effect | None:
        """Spill or fail at submission, or None to queue the task here."""
        affinity = strategy if isinstance(strategy, NodeAffinitySchedulingStrategy) else None
        if affinity is not None and affinity.node() != self.node_id and allow_spill:
            return self._spill(task, f"node affinity to node {affinity.node_id}")
        if not self.resources.is_feasible(task.demand):
            lacking = task.demand.missing_from(self.resources.total)
            if affinity is not None and affinity.node() == self.node_id and not affinity.soft:
                return self._fail(task, FAIL_INFEASIBLE,
                                  f"hard node affinity to this node, whose total lacks {lacking}")
            if not self._cluster_can_ever_fit(task.demand):
                return self._fail(task, FAIL_INFEASIBLE,
                                  f"no alive node can ever fit {task.demand.to_dict()} (this node lacks {lacking})")
            return self._spill(task, f"infeasible here: this node lacks {lacking}")
        if allow_spill and strategy == SPREAD:
            return self._spill(task, "SPREAD strategy")
        if allow_spill and self.queue_length() - 1 >= self.queue_length_spill_threshold:
            return self._spill(task, f"local queue at its threshold of {self.queue_length_spill_threshold}")
        return None

    def _spill(self, task: TaskEntry, reason: str) -> Effect:
        self._move(task, S.SPILLED)
        return SpillTask(task.task_id, reason)

    def _fail(self, task: TaskEntry, kind: str, reason: str) -> Effect:
        self._move(task, S.FAILED)
        return FailTask(task.task_id, kind, reason, task.attempt_number)

    def _on_objects_available(self, event: ObjectsAvailable) -> list[Effect]:
        for oid in event.object_ids:
            for task_id in sorted(self._waiting_for.pop(oid, ())):
                task = self.tasks[task_id]
                task.missing_args.discard(oid)
                if not task.missing_args and task.state is S.WAITING_FOR_ARGS:
                    self._move(task, S.READY)
        return []

    def _on_worker_registered(self, event: WorkerRegistered) -> list[Effect]:
        if event.worker_id in self.workers:
            return []
        if self.workers_starting > 0:
            self.workers_starting -= 1
        self.workers[event.worker_id] = WorkerEntry(event.worker_id)
        return []

    def _on_worker_start_failed(self, event: WorkerStartFailed) -> list[Effect]:
        self.workers_starting = max(0, self.workers_starting - 1)
        return []

    def _worker_on(self, task_id: TaskID, worker_id: WorkerID, attempt_number: int) -> WorkerEntry | None:
        worker = self.workers.get(worker_id)
        if worker is None or worker.task_id != task_id or worker.attempt_number != attempt_number:
            return None  # a late report from a superseded attempt
        return worker

    def _on_task_started(self, event: TaskStarted) -> list[Effect]:
        worker = self._worker_on(event.task_id, event.worker_id, event.attempt_number)
        task = self.tasks.get(event.task_id)
        if worker is not None and task is not None and task.generation == worker.generation \
                and task.state is S.DISPATCHED:
            self._move(task, S.RUNNING)
        return []

    def _queued_on(self, task_id: TaskID, worker_id: WorkerID, attempt_number: int) -> WorkerEntry | None:
        worker = self.workers.get(worker_id)
        if worker is None or worker.next_task_id != task_id or worker.next_attempt_number != attempt_number:
            return None
        return worker

    def _on_task_finished(self, event: TaskFinished) -> list[Effect]:
        worker = self._worker_on(event.task_id, event.worker_id, event.attempt_number)
        if worker is not None:
            task = self._release_worker(worker)
            if task is not None and task.state in ON_WORKER_STATES:
                self._move(task, S.FINISHED)
            if not event.retire_worker:
                self._promote_next(worker)
        else:
            worker = self._queued_on(event.task_id, event.worker_id, event.attempt_number)
            if worker is not None:  # the node could not send the queued task after all
                task = self._take_next(worker)
                if task is not None:
                    self._move(task, S.FINISHED)
        if event.retire_worker:
            self._retire(event.worker_id)
        return []

    def _retire(self, worker_id: WorkerID) -> None:
        """The worker leaves once idle: what its second slot holds never started."""
        worker = self.workers.get(worker_id)
        if worker is None or worker.task_id is not None:
            return  # gone already, or still running a task (its WorkerDied will come)
        del self.workers[worker_id]
        queued = self._take_next(worker)
        if queued is not None:
            self._move(queued, S.READY, front=True)

    def _on_handed_back(self, event: TaskHandedBack) -> list[Effect]:
        worker = self._queued_on(event.task_id, event.worker_id, event.attempt_number)
        if worker is not None:
            task = self._take_next(worker)
            worker.no_next = True
        else:
            # Sent as the worker's only task while it was still unwinding one
            # the node took as ended (a cancelled task): it never started.
            worker = self._worker_on(event.task_id, event.worker_id, event.attempt_number)
            if worker is None:
                return []
            task = self._release_worker(worker)
            self._promote_next(worker)
        if task is not None and task.state in ON_WORKER_STATES:
            self._move(task, S.READY, front=True)
        return []

    def _on_worker_died(self, event: WorkerDied) -> list[Effect]:
        worker = self.workers.pop(event.worker_id, None)
        if worker is None or worker.task_id is None:
            return []
        queued = self._take_next(worker)
        if queued is not None:  # it never started: same attempt, no retry used
            self._move(queued, S.READY, front=True)
        task = self._release_worker(worker)
        if task is None or task.state not in ON_WORKER_STATES:
            return []  # cancelled (or forgotten): nothing to retry
        why = f"worker {event.worker_id.hex()} died" + (f": {event.reason}" if event.reason else "")
        if task.max_retries == -1 or task.attempt_number < task.max_retries:
            task.attempt_number += 1
            self._move(task, S.READY)
            return [RetryTask(task.task_id, task.attempt_number, why)]
        attempts = task.attempt_number + 1
        return [self._fail(task, FAIL_WORKER_DIED,
                           f"{why}; {attempts} attempt(s) made, max_retries={task.max_retries}")]

    def _on_cancel(self, event: CancelTask) -> list[Effect]:
        task = self.tasks.get(event.task_id)
        if task is None or task.state in TERMINAL_STATES:
            return []
        worker_id = task.worker_id
        worker = self.workers.get(worker_id) if worker_id is not None else None
        if worker is not None and worker.next_task_id == task.task_id and worker.next_generation == task.generation:
            # Queued behind another task: the worker drops it (a kill would take the running one too).
            self._take_next(worker)
            self._move(task, S.CANCELLED)
            return [CancelOnWorker(task.task_id, worker.worker_id, False), TaskCancelled(task.task_id)]
        self._move(task, S.CANCELLED)
        if worker_id is not None:
            return [CancelOnWorker(task.task_id, worker_id, event.force), TaskCancelled(task.task_id)]
        return [TaskCancelled(task.task_id)]

    def _on_cluster_view(self, event: ClusterViewUpdated) -> list[Effect]:
        self.cluster_totals = dict(event.node_totals)
        return []

    def _on_worker_blocked(self, event: WorkerBlocked) -> list[Effect]:
        worker = self.workers.get(event.worker_id)
        if worker is None or worker.task_id is None or worker.blocked:
            return []
        # As Ray: only CPUs are lent (a GPU or custom resource stays bound to
        # the process), so a parent waiting on its children cannot starve them.
        worker.no_next = True
        cpus = ResourceSet.from_units({CPU: worker.held.units(CPU)})
        self.resources.release(cpus)
        worker.held = worker.held - cpus
        worker.lent, worker.blocked = worker.lent + cpus, True
        return []

    def _on_worker_unblocked(self, event: WorkerUnblocked) -> list[Effect]:
        worker = self.workers.get(event.worker_id)
        if worker is None or not worker.blocked:
            return []
        worker.owed, worker.lent, worker.blocked = worker.owed + worker.lent, ResourceSet(), False
        return []

    _HANDLERS = {
        TaskSubmitted: _on_submitted,
        ObjectsAvailable: _on_objects_available,
        WorkerRegistered: _on_worker_registered,
        WorkerStartFailed: _on_worker_start_failed,
        TaskStarted: _on_task_started,
        TaskFinished: _on_task_finished,
        WorkerDied: _on_worker_died,
        WorkerBlocked: _on_worker_blocked,
        WorkerUnblocked: _on_worker_unblocked,
        TaskHandedBack: _on_handed_back,
        CancelTask: _on_cancel,
        ClusterViewUpdated: _on_cluster_view,
    }

    # -------------------------------------------------------------- dispatch

    def _repay_unblocked(self) -> ResourceSet:
        """Give unblocked workers their CPUs back first; returns what is still owed."""
        owed_total = ResourceSet()
        for worker_id in sorted(w.worker_id for w in self.workers.values() if not w.owed.is_empty()):
            worker = self.workers[worker_id]
            if worker.owed.fits_in(self.resources.available):
                self.resources.allocate(worker.owed)
                worker.held, worker.owed = worker.held + worker.owed, ResourceSet()
            else:
                owed_total = owed_total + worker.owed
        return owed_total

    def _schedule(self) -> list[Effect]:
        effects = self._dispatch_ready()
        if self.second_slot and self._ready and self.workers_starting == 0:
            effects.extend(self._fill_second_slots())
        return effects

    def _fill_second_slots(self) -> list[Effect]:
        """Queue the next READY task of its shape on each busy worker that
        can take one. Only when no worker is starting: one that is would
        run the task sooner than a worker still busy."""
        effects: list[Effect] = []
        for worker_id in sorted(self.workers):
            worker = self.workers[worker_id]
            if worker.task_id is None or worker.next_task_id is not None or worker.no_next \
                    or not worker.owed.is_empty():
                continue
            running = self.tasks.get(worker.task_id)
            if running is None or running.generation != worker.generation or not running.queueable \
                    or running.state not in ON_WORKER_STATES or running.demand not in self._ready:
                continue
            index = self._next_ready(running.demand, 0)
            if index is None:
                continue
            queue = self._ready[running.demand]
            task = self.tasks[queue[index][1]]
            if not task.queueable:
                continue  # keeps its place; it waits for a worker of its own
            queue.popleft()
            worker.next_task_id, worker.next_attempt_number = task.task_id, task.attempt_number
            worker.next_generation = task.generation
            task.worker_id = worker.worker_id
            self._move(task, S.DISPATCHED)
            effects.append(DispatchTask(task.task_id, worker.worker_id, task.attempt_number))
        return effects

    def _dispatch_ready(self) -> list[Effect]:
        owed = self._repay_unblocked()
        room = self.worker_pool_size_max - len(self.workers) - self.workers_starting
        if not self._ready or (room <= 0 and not any(w.task_id is None for w in self.workers.values())):
            return []  # nothing queued, or nothing that could take it: skip the scan
        effects: list[Effect] = []
        idle = deque(sorted(self.idle_workers()))
        # What is left after workers owed CPUs and tasks awaiting a worker; a
        # worker that unblocked runs oversubscribed until its CPUs come back,
        # and no new task takes them before it does.
        unclaimed = ResourceSet.from_units({
            name: max(0, units - owed.units(name)) for name, units in self.resources.available.units_dict().items()
        })
        needing_worker = 0
        # The next candidate of every shape, merged in arrival order: the
        # same order as one scan of a single queue, skipping whole shapes
        # that do not fit (what is left only shrinks during a scan).
        candidates: list[tuple[int, int, ResourceSet]] = []
        for shape in list(self._ready):
            index = self._next_ready(shape, 0)
            if index is not None:
                candidates.append((self._ready[shape][index][0], index, shape))
        heapq.heapify(candidates)
        while candidates:
            if not idle and needing_worker >= self.workers_starting + room:
                break  # no worker for anything further: leave the rest queued, in order
            _, index, shape = heapq.heappop(candidates)
            if not shape.fits_in(unclaimed):
                continue  # nor does any later task of this shape
            queue = self._ready[shape]
            task = self.tasks[queue[index][1]]
            if idle:
                del queue[index]  # index < workers that could take a task: cheap
                effects.append(self._dispatch(task, self.workers[idle.popleft()]))
            else:
                needing_worker += 1
                index += 1
            unclaimed = unclaimed - task.demand
            index = self._next_ready(shape, index)
            if index is not None:
                heapq.heappush(candidates, (queue[index][0], index, shape))
        to_start = max(0, min(needing_worker - self.workers_starting, room))
        self.workers_starting += to_start
        effects.extend(StartWorker() for _ in range(to_start))
        return effects

    def _next_ready(self, shape: ResourceSet, index: int) -> int | None:
        """Index of the first live entry at or after ``index`` in ``shape``'s
        queue (stale ones at its front are dropped); None if there is none."""
        queue = self._ready[shape]
        while index < len(queue):
            seq, task_id = queue[index]
            task = self.tasks.get(task_id)
            if task is not None and task.state is S.READY and task.ready_seq == seq:
                return index
            if index == 0:
                queue.popleft()
            else:
                index += 1
        if not queue:
            del self._ready[shape]
        return None

    def _dispatch(self, task: TaskEntry, worker: WorkerEntry) -> DispatchTask:
        self.resources.allocate(task.demand)
        worker.task_id, worker.held = task.task_id, task.demand
        worker.attempt_number, worker.generation = task.attempt_number, task.generation
        task.worker_id = worker.worker_id
        self._move(task, S.DISPATCHED)
        return DispatchTask(task.task_id, worker.worker_id, task.attempt_number)
