"""The local scheduler plus what it lacks for actors.

``LocalScheduler`` schedules tasks on a pool of interchangeable workers. An
actor's creation task is scheduled like a task (its *placement* demand), but
once the constructor has run its worker belongs to the actor: it leaves the
pool and the actor keeps only its *lifetime* resources (Ray: 1 CPU to place
a simple actor, 0 held). Two events do that inside the state machine, so the
freed resources and the removed worker are accounted before the next
scheduling pass (doing it from outside would let that pass hand the freed
CPUs to another task first).
"""

from __future__ import annotations

from dataclasses import dataclass

from lineagerun.core.ids import TaskID, WorkerID
from lineagerun.core.local_scheduler import ON_WORKER_STATES, LocalScheduler, TaskState
from lineagerun.core.resources import ResourceSet


@dataclass(frozen=True)
class ActorWorkerDetached:
    """The creation task finished: its worker now hosts the actor ``holder``."""

    task_id: TaskID
    worker_id: WorkerID
    attempt_number: int
    holder: bytes
    lifetime: ResourceSet


@dataclass(frozen=True)
class ActorResourcesReleased:
    holder: bytes


class NodeScheduler(LocalScheduler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.actor_held: dict[bytes, ResourceSet] = {}

    def _on_actor_worker_detached(self, event: ActorWorkerDetached) -> list:
        worker = self._worker_on(event.task_id, event.worker_id, event.attempt_number)
        if worker is None:
            return []
        task = self._release_worker(worker)
        del self.workers[event.worker_id]
        if task is not None and task.state in ON_WORKER_STATES:
            self._move(task, TaskState.FINISHED)
        if event.lifetime.fits_in(self.resources.available):
            self.resources.allocate(event.lifetime)
            self.actor_held[event.holder] = event.lifetime
        return []

    def _on_actor_resources_released(self, event: ActorResourcesReleased) -> list:
        held = self.actor_held.pop(event.holder, None)
        if held is not None:
            self.resources.release(held)
        return []

    _HANDLERS = {
        **LocalScheduler._HANDLERS,
        ActorWorkerDetached: _on_actor_worker_detached,
        ActorResourcesReleased: _on_actor_resources_released,
    }

    def check_invariants(self) -> None:
        held = ResourceSet()
        for amount in self.actor_held.values():
            held = held + amount
        total = self.resources.total
        self.resources.total = total - held  # actors' holdings are outside the pool's books
        try:
            self.resources.available  # noqa: B018
            super().check_invariants()
        finally:
            self.resources.total = total
