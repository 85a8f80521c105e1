"""Objects known only through a ref whose ``obj/`` record is missing
(docs/fault-tolerance.md, "Nested refs whose record was never written").

A node that wants an object it knows nothing of (a ref nested in a value,
or ``ObjectRef.from_hex``) looks its record up until one appears. If the
node that made the object died before its batched record write, none ever
will. The object's producing task is found from its id (the id's prefix is
the task id, for returns and puts alike) and its attempt records decide:

- the latest attempt ran on a dead node -> the object is lost now;
- the task has ended (latest attempt terminal, or one of its returns is
  known here: puts come before returns), or the object is a driver's put,
  and no record appeared for ``RECORD_MISSING_MAX_MS`` -> lost as well;
- the task has no attempt at all and the task that submitted it (its
  spec's parent) last ran on a dead node, and no record appeared for
  ``RECORD_MISSING_MAX_MS`` -> lost: it was queued on that node and died
  with it before it ran anywhere (its only retrier, the parent's node, is
  gone);
- otherwise the task has not run yet or runs on a live node: lookups go on.

A lost object is handed to the reconstruction driver, which rebuilds it by
replay or fails it with a typed error naming the object, task and reason.
Actor call results are left to actor recovery.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from lineagerun.core.ids import NodeID, ObjectID, TaskID
from lineagerun.core.keys import attempts_prefix, task_key
from lineagerun.rpc import lineage_pb2

log = logging.getLogger(__name__)

# The producing task of an object still without a record is checked at most
# this often (lookups poll meanwhile); the first miss is never checked, as a
# record is normally written within tens of ms.
RECORD_MISSING_CHECK_MS = 1_000
# An ended task's object without a record after this long is lost.
RECORD_MISSING_MAX_MS = 10_000
# Objects tracked at once; the oldest are forgotten (and start over).
RECORDS_MISSING_TRACKED_MAX = 10_000
_TERMINAL_STATES = frozenset({lineage_pb2.FINISHED, lineage_pb2.FAILED, lineage_pb2.CANCELLED})


def _now_ms() -> int:
    return int(time.time() * 1000)


class MissingRecords:
    def __init__(self, driver):
        self.driver = driver
        self._seen: OrderedDict[bytes, tuple[int, int]] = OrderedDict()  # id -> (first miss, last check) ms

    def record_missing(self, object_id: bytes) -> None:
        driver = self.driver
        if len(object_id) != ObjectID.SIZE or driver.recovering(object_id) or object_id in driver._lost:
            return
        now = _now_ms()
        seen = self._seen.get(object_id)
        if seen is None:
            self._seen[object_id] = (now, now)
            while len(self._seen) > RECORDS_MISSING_TRACKED_MAX:
                self._seen.popitem(last=False)
            return
        first_ms, checked_ms = seen
        if now - checked_ms < RECORD_MISSING_CHECK_MS:
            return
        self._seen[object_id] = (first_ms, now)
        self._seen.move_to_end(object_id)
        driver.link._spawn(self._check(object_id, now - first_ms))

    async def _check(self, object_id: bytes, missing_ms: int) -> None:
        driver = self.driver
        task_id = ObjectID(object_id).task_id()
        if not task_id.actor_id().is_nil_actor():
            return  # an actor call's result comes back with the actor's recovery
        if self._attempt_here(task_id.binary()):
            return
        client = driver.manager.writer.client
        try:
            raw = await driver._read(lambda: [v for _, v in client.scan_prefix(attempts_prefix(task_id))])
        except Exception as exc:  # noqa: BLE001 - the next lookup checks again
            log.debug("reading the attempts of %s failed: %s", task_id.hex(), exc)
            return
        latest = _latest(raw)
        objects = driver.manager.objects
        why = ""
        if latest is not None and len(latest.node_id) == NodeID.SIZE and not driver._node_alive(latest.node_id):
            why = (f"its task {task_id.hex()[:16]} ran on node {latest.node_id.hex()[:16]}, which died; the "
                   "object's record was never written")
        elif missing_ms >= RECORD_MISSING_MAX_MS:
            ended = latest is not None and latest.state in _TERMINAL_STATES
            returned = objects.is_known(ObjectID.from_index(task_id, 1).binary())
            if ended or returned or task_id.is_for_driver():
                why = f"no record of it was written within {missing_ms // 1000} s after its task ended"
            elif latest is None:
                why = await self._submitter_died(task_id)
        if not why or objects.is_known(object_id) or not driver._wanted(object_id) \
                or self._attempt_here(task_id.binary()):
            return
        self._seen.pop(object_id, None)
        driver.declare_lost(object_id, why)

    async def _submitter_died(self, task_id: TaskID) -> str:
        """Why the task, which never ran anywhere, is lost: the task that
        submitted it last ran on a dead node ("" if not, or unknown)."""
        driver = self.driver
        client = driver.manager.writer.client

        def read():
            raw = client.get(task_key(task_id))
            if raw is None:
                return None, []
            parent = TaskID(lineage_pb2.TaskSpec.FromString(raw).parent_task_id)
            if parent.is_for_driver():
                return parent, []  # a driver's node dies with its driver
            return parent, [v for _, v in client.scan_prefix(attempts_prefix(parent))]

        try:
            parent, raw = await driver._read(read)
        except Exception as exc:  # noqa: BLE001 - the next lookup checks again
            log.debug("reading the submitter of %s failed: %s", task_id.hex(), exc)
            return ""
        latest = _latest(raw)
        if latest is None or len(latest.node_id) != NodeID.SIZE or driver._node_alive(latest.node_id):
            return ""
        return (f"its task {task_id.hex()[:16]} never ran: it was submitted by task {parent.hex()[:16]} on node "
                f"{latest.node_id.hex()[:16]}, which died before it ran anywhere")

    def _attempt_here(self, task_id: bytes) -> bool:
        """An attempt of the task runs here or was forwarded from here (a
        retry or replay): its results come here, whatever the records say."""
        driver = self.driver
        return (task_id in driver._attempts or task_id in driver.manager.tasks
                or task_id in driver.link.forwarded)


def _latest(raw: list[bytes]) -> lineage_pb2.TaskAttempt | None:
    """The attempt record with the highest number (None: no attempt)."""
    records = [lineage_pb2.TaskAttempt.FromString(v) for v in raw]
    return max(records, key=lambda r: r.attempt_number, default=None)
