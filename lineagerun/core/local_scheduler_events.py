"""Events into and effects out of the local scheduler (core/local_scheduler.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lineagerun.core.ids import NodeID, ObjectID, TaskID, WorkerID
from lineagerun.core.resources import ResourceSet
from lineagerun.core.scheduling_strategies import SchedulingStrategy

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
    queueable: bool = True  # may wait in a busy worker's second slot


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
    """The worker is done with the task (returned or raised) and idle again,
    or, with ``retire_worker``, leaving (it ran its function's ``max_calls``):
    nothing more is sent to it and a task queued in its second slot goes
    back to the queue (it never started: same attempt)."""

    task_id: TaskID
    worker_id: WorkerID
    attempt_number: int
    retire_worker: bool = False


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
class TaskHandedBack:
    """The worker gives back a task it was sent and has not started (its
    running task is about to block): back to the front of the queue."""

    task_id: TaskID
    worker_id: WorkerID
    attempt_number: int


@dataclass(frozen=True)
class CancelTask:
    task_id: TaskID
    force: bool = False


@dataclass(frozen=True)
class ClusterViewUpdated:
    """Total resources of every alive node of the cluster (full replacement)."""

    node_totals: Mapping[NodeID, ResourceSet]


Event = (TaskSubmitted | ObjectsAvailable | WorkerRegistered | WorkerStartFailed | TaskStarted
         | TaskFinished | WorkerDied | WorkerBlocked | WorkerUnblocked | TaskHandedBack | CancelTask
         | ClusterViewUpdated)


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
