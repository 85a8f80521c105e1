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

Events for unknown or superseded tasks and workers (a late message from an
earlier attempt) are ignored: they are expected after retries and failures.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from collections.abc import Mapping
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


# -------------------------------------------------------------------- events


@dataclass(frozen=True)
class TaskSubmitted:
    task_id: TaskID
    demand: ResourceSet
    missing_args: frozenset[ObjectID] = frozenset()
    strategy: SchedulingStrategy = None
    max_retries: int = 3
    attempt_number: int = 0
    allow_spill: bool = True  # False when the global scheduler placed it here


@dataclass(frozen=True)
class ObjectsAvailable:
    object_ids: frozenset[ObjectID]


@dataclass(frozen=True)
class WorkerRegistered:
    """A worker process (started on our request, or otherwise) is ready."""

    worker_id: WorkerID


@dataclass(frozen=True)
class WorkerStartFailed:
    reason: str = ""


@dataclass(frozen=True)
class TaskStarted:
    task_id: TaskID
    worker_id: WorkerID
    attempt_number: int


@dataclass(frozen=True)
class TaskFinished:
    """The worker is done with the task (returned or raised) and idle again."""

    task_id: TaskID
    worker_id: WorkerID
    attempt_number: int


@dataclass(frozen=True)
class WorkerDied:
    worker_id: WorkerID
    reason: str = ""


@dataclass(frozen=True)
class WorkerBlocked:
    """The worker's task waits in ``get``/``wait``: lend its CPUs to others."""

    worker_id: WorkerID


@dataclass(frozen=True)
class WorkerUnblocked:
    worker_id: WorkerID


@dataclass(frozen=True)
class CancelTask:
    task_id: TaskID
    force: bool = False


@dataclass(frozen=True)
class ClusterViewUpdated:
    """Total resources of every alive node of the cluster (full replacement)."""

    node_totals: Mapping[NodeID, ResourceSet]


Event = (TaskSubmitted | ObjectsAvailable | WorkerRegistered | WorkerStartFailed | TaskStarted
         | TaskFinished | WorkerDied | WorkerBlocked | WorkerUnblocked | CancelTask | ClusterViewUpdated)


# ------------------------------------------------------------------- effects


@dataclass(frozen=True)
class FetchArgs:
    task_id: TaskID
    object_ids: frozenset[ObjectID]


@dataclass(frozen=True)
class StartWorker:
    pass


@dataclass(frozen=True)
class DispatchTask:
    task_id: TaskID
    worker_id: WorkerID
    attempt_number: int


@dataclass(frozen=True)
class SpillTask:
    task_id: TaskID
    reason: str


@dataclass(frozen=True)
class FailTask:
    task_id: TaskID
    kind: str  # FAIL_INFEASIBLE or FAIL_WORKER_DIED
    reason: str
    attempt_number: int


@dataclass(frozen=True)
class RetryTask:
    """Record a new attempt (reason RETRY) of a task whose worker died."""

    task_id: TaskID
    attempt_number: int
    reason: str


@dataclass(frozen=True)
class CancelOnWorker:
    task_id: TaskID
    worker_id: WorkerID
    force: bool


@dataclass(frozen=True)
class TaskCancelled:
    task_id: TaskID


Effect = FetchArgs | StartWorker | DispatchTask | SpillTask | FailTask | RetryTask | CancelOnWorker | TaskCancelled


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


class LocalScheduler:
    def __init__(self, node_id: NodeID, total: ResourceSet, *, worker_pool_size_max: int,
                 queue_length_spill_threshold: int = QUEUE_LENGTH_SPILL_THRESHOLD_DEFAULT,
                 terminal_tasks_retained_max: int = TERMINAL_TASKS_RETAINED_MAX_DEFAULT):
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
                assert not worker.blocked, worker
                continue
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
                assert worker is not None and worker.task_id == task.task_id, task
                assert worker.generation == task.generation, (worker, task)
            if task.state in QUEUED_STATES:
                assert task.worker_id is None, task
            if task.max_retries >= 0:
                assert task.attempt_number <= max(task.max_retries, task.first_attempt_number), task
        assert self._queued == sum(1 for t in self.tasks.values() if t.state in QUEUED_STATES)
        assert self.workers_starting >= 0
        assert self.workers_starting == 0 or len(self.workers) + self.workers_starting <= self.worker_pool_size_max

    # --------------------------------------------------------------- helpers

    def _move(self, task: TaskEntry, new: TaskState) -> None:
        if new not in TRANSITIONS[task.state]:
            raise AssertionError(f"task {task.task_id!r}: illegal transition {task.state.name} -> {new.name}")
        self._queued += (new in QUEUED_STATES) - (task.state in QUEUED_STATES)
        task.state = new
        if new is S.READY:
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
        worker.task_id, worker.blocked = None, False
        if task is not None:
            task.worker_id = None
        return task

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
                         generation=self._generation)
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

    def _on_task_finished(self, event: TaskFinished) -> list[Effect]:
        worker = self._worker_on(event.task_id, event.worker_id, event.attempt_number)
        if worker is None:
            return []
        task = self._release_worker(worker)
        if task is not None and task.state in ON_WORKER_STATES:
            self._move(task, S.FINISHED)
        return []

    def _on_worker_died(self, event: WorkerDied) -> list[Effect]:
        worker = self.workers.pop(event.worker_id, None)
        if worker is None or worker.task_id is None:
            return []
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
