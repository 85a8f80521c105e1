"""Which tasks the local scheduler sees, and when.

Written when ``LocalScheduler`` rescanned its whole READY queue at every
event (3,000 queued no-op tasks on a full node took ~40 s): the node manager
keeps tasks here until their arguments are local and hands the scheduler at
most ``window`` READY tasks per resource shape (Ray's "scheduling class").
The scheduler now keeps READY queues per shape itself (a scan costs
O(shapes + tasks dispatched)), so the window is no longer needed for speed;
this module goes once the node manager passes missing arguments to the
scheduler (``TaskSubmitted.missing_args`` / ``ObjectsAvailable``) and
``cluster_link.py`` takes the queue length from the scheduler.
"""

from __future__ import annotations

from collections import deque

from lineagerun.core.resources import ResourceSet


class AdmissionQueue:
    def __init__(self, window: int):
        self.window = window
        self.shape_of: dict[bytes, ResourceSet] = {}
        self._missing: dict[bytes, set[bytes]] = {}  # task -> argument objects not local yet
        self._waiting_on: dict[bytes, set[bytes]] = {}  # object -> tasks waiting for it
        self._pending: dict[ResourceSet, deque[bytes]] = {}  # arguments local, not handed over yet
        self._handed: dict[ResourceSet, set[bytes]] = {}  # in the scheduler's queue
        self._out: set[bytes] = set()  # the scheduler dispatched (or ended) them

    def add(self, task_id: bytes, shape: ResourceSet, missing: set[bytes]) -> None:
        self.shape_of[task_id] = shape
        if missing:
            self._missing[task_id] = set(missing)
            for oid in missing:
                self._waiting_on.setdefault(oid, set()).add(task_id)
        else:
            self._pending.setdefault(shape, deque()).append(task_id)

    def objects_available(self, object_ids) -> None:
        for oid in object_ids:
            for task_id in sorted(self._waiting_on.pop(oid, ())):
                missing = self._missing.get(task_id)
                if missing is None:
                    continue
                missing.discard(oid)
                if not missing:
                    del self._missing[task_id]
                    self._pending.setdefault(self.shape_of[task_id], deque()).append(task_id)

    def take_admissible(self) -> list[bytes]:
        taken = []
        for shape, queue in self._pending.items():
            handed = self._handed.setdefault(shape, set())
            while queue and len(handed) < self.window:
                task_id = queue.popleft()
                if task_id in self.shape_of:  # not removed meanwhile
                    handed.add(task_id)
                    taken.append(task_id)
        return taken

    def holds_unhanded(self, task_id: bytes) -> bool:
        """True while the task waits here (the scheduler has not seen it)."""
        shape = self.shape_of.get(task_id)
        return shape is not None and task_id not in self._out and task_id not in self._handed.get(shape, ())

    def left_queue(self, task_id: bytes) -> None:
        """The scheduler dispatched, failed or cancelled it."""
        shape = self.shape_of.get(task_id)
        if shape is not None:
            self._handed.get(shape, set()).discard(task_id)
            self._out.add(task_id)

    def requeued(self, task_id: bytes) -> None:
        """The scheduler put it back in its READY queue (a retry)."""
        shape = self.shape_of.get(task_id)
        if shape is not None:
            self._handed.setdefault(shape, set()).add(task_id)
            self._out.discard(task_id)

    def remove(self, task_id: bytes) -> None:
        """Forget the task (finished, failed or cancelled)."""
        shape = self.shape_of.pop(task_id, None)
        self._out.discard(task_id)
        if shape is not None:
            self._handed.get(shape, set()).discard(task_id)
        for oid in self._missing.pop(task_id, ()):
            waiters = self._waiting_on.get(oid)
            if waiters is not None:
                waiters.discard(task_id)
                if not waiters:
                    del self._waiting_on[oid]
