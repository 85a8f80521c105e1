"""The node manager's shell around ``ReconstructionPlanner`` (lost objects)
and the retry of tasks whose node died (docs/fault-tolerance.md).

One per node manager: made by ``ClusterLink`` on a multi-node cluster, by
reconstruction_local.py otherwise (the embedded single-node session). It
learns of losses from the link (a node died: its copies are gone, tasks
forwarded to it are lost), from the object fetcher (a wanted object has
no known copy, its record names only dead nodes, a pull from a dead holder
failed) and from the object table (a released primary copy evicted, an
object's shared-memory file removed from outside), feeds the planner, and
carries out its effects:

- ``LoadLocations`` -> read ``obj/`` (locations on dead nodes dropped);
- ``LoadLineage`` -> read ``task/`` and scan ``attempt/``;
- ``ResubmitTask`` -> write the ``TaskAttempt`` (REPLAY), then submit the
  stored spec, unchanged, through the node's normal routing (kept here,
  spilled, forwarded), as attempt ``n`` of the same task;
- ``CompleteRecovery`` -> the object is findable again: requesters (gets,
  waits, parked tasks) are woken by the object table as usual, or a lookup
  fetches a copy the planner found elsewhere;
- ``FailRecovery`` -> the object becomes an ``ObjectReconstructionFailedError``
  naming the object, the task and why (and how it was lost);
- ``EmitEvent`` -> an ``EventRecord`` (same format as the actor recovery
  driver's).

Task retries (a task forwarded to a node that died) do not need the
planner: the spec is submitted again as attempt ``n+1`` (reason RETRY) while
``max_retries`` allows (shared budget with replays: attempts are numbered
from the records and runs of the same task), else the returns fail with
``NodeDiedError`` naming the task, its attempts and the node.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from lineagerun.control.client import CasOp, PutOp
from lineagerun.core import reconstruction as rc
from lineagerun.core.ids import FunctionID, NodeID, ObjectID, TaskID
from lineagerun.core.keys import attempt_key, attempts_prefix, event_key, function_key, object_key, task_key
from lineagerun.node import specs
from lineagerun.node.object_table import DROPPED_INLINE_WHY
from lineagerun.node.reconstruction_records import MissingRecords
from lineagerun.rpc import lineage_pb2, node_pb2

log = logging.getLogger(__name__)

# Lost objects remembered (why each was lost) until somebody wants them; the
# oldest are forgotten first (a later want finds them lost again through the
# object record, only the cause is then less precise).
LOST_REMEMBERED_MAX = 100_000
# A pull from a holder not (yet) declared dead is tried again after this
# long, at most this many times: node death is detected within about a
# second (node_timeout_ms), after which reconstruction takes over.
PULL_RETRY_DELAY_S = 0.1
PULL_RETRIES_MAX = 100
# Objects whose recovery completed recently: a lookup that still finds their
# old record (the new holder's record is written in a later batch) keeps
# polling instead of declaring them lost again, for this long.
RECENTLY_RECOVERED_MAX = 10_000
RECENTLY_RECOVERED_MS = 10_000
# Task specs kept between LineageLoaded and ResubmitTask.
SPECS_CACHED_MAX = 10_000
# Attempts (retries and replays) this node runs at once for recovery.
RECOVERY_ATTEMPTS_MAX = 100_000
# Failure kinds of an attempt that another attempt cannot fix.
NOT_RETRIABLE_KINDS = frozenset({"InfeasibleTaskError", "InvalidArgumentError", "TaskCancelledError",
                                 "ObjectReconstructionFailedError"})
TERMINAL_STATES = frozenset({lineage_pb2.FINISHED, lineage_pb2.FAILED, lineage_pb2.CANCELLED})
# The node's own token as the planner's requester: requesters are woken
# through the object table, not one by one.
_NODE_REQUESTER = "node"


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class _Attempt:
    """An attempt this node submitted to recover something."""

    task_id: bytes
    attempt_number: int
    reason: str                      # rc.REPLAY or "RETRY"
    returns: set[bytes]              # return ids not arrived yet
    spec: lineage_pb2.TaskSpec
    died_node: bytes = b""           # RETRY: the node the previous attempt died with
    died_why: str = ""
    started_ms: int = field(default_factory=_now_ms)


class ReconstructionDriver:
    def __init__(self, manager, link):
        self.manager = manager
        self.link = link
        self.node_id: bytes = manager.node_id.binary()
        self.planner = rc.ReconstructionPlanner()
        self._events: deque = deque()
        self._draining = False
        self._lost: OrderedDict[bytes, str] = OrderedDict()  # object id -> how it was lost
        self._needed_ms: dict[bytes, int] = {}               # object id -> first ObjectNeeded
        self._attempts: dict[bytes, _Attempt] = {}           # task id -> our attempt in flight
        self._pull_retries: dict[bytes, int] = {}
        self._recovered: OrderedDict[bytes, int] = OrderedDict()  # object id -> when its recovery ended
        self._specs: OrderedDict[bytes, lineage_pb2.TaskSpec] = OrderedDict()  # lineage loaded, by task id
        self._last_recovery: tuple[bytes, int] = (b"", 0)  # object id, ms from need to complete
        self.counters = {"objects_lost": 0, "objects_rebuilt": 0, "objects_failed": 0, "tasks_replayed": 0,
                         "tasks_retried": 0, "tasks_reexecuted": 0, "recovery_ms_total": 0, "recovery_ms_max": 0}
        # Lost objects whose owner had released them: a rebuilt copy is not
        # pinned as a primary again (the get that wanted it pins it a while).
        self._released: set[bytes] = set()
        manager.objects.on_lost = self.lost_here
        self.missing_records = MissingRecords(self)  # nested refs whose record was never written

    def recovery_counters(self) -> dict[str, int]:
        """Counters since the node started (the events hold the details)."""
        return dict(self.counters)

    # ============================================================ losses in

    def node_died(self, node_id: bytes, why: str, lost: list[bytes]) -> None:
        """``lost``: objects whose only known copies were on the node."""
        for oid in lost:
            self._remember_lost(oid, f"its only copy was on node {node_id.hex()[:16]}, which died ({why})")
        self._feed(rc.NodeDied(NodeID(node_id)))
        for oid in lost:
            if self._wanted(oid):
                self._need(oid)

    def lost_here(self, object_id: bytes, why: str, released: bool) -> None:
        """The object table lost this node's only copy (evicted after its
        release, or its file removed from outside): rebuilt when wanted."""
        self._remember_lost(object_id, why)
        if released:
            self._released.add(object_id)
            if len(self._released) > LOST_REMEMBERED_MAX:
                self._released.clear()  # bound; at worst a rebuilt copy stays pinned
        if self._wanted(object_id):
            self._need(object_id)

    def check_wanted(self, object_ids) -> None:
        """A get, a fetching wait or a task here names these: start the
        rebuild of those lost (a file removed from outside is found here)."""
        objects = self.manager.objects
        objects.check_files(object_ids)
        for oid in object_ids:
            if objects.take_dropped(oid):
                self._remember_lost(oid, DROPPED_INLINE_WHY)
        if self._lost:
            for oid in object_ids:
                if oid in self._lost and not objects.is_ready(oid):
                    self._need(oid)

    def unavailable(self, object_id: bytes) -> bool:
        """The fetcher wants ``object_id`` and knows no copy: True if it is a
        lost object (its recovery is started or joined)."""
        if self.manager.objects.take_dropped(object_id):
            self._remember_lost(object_id, DROPPED_INLINE_WHY)
        if object_id in self._lost or self.recovering(object_id):
            self._need(object_id)
            return True
        return False

    def recovering(self, object_id: bytes) -> bool:
        """Whether a recovery here waits for this object (lookups go on)."""
        return bool(self.planner.objects) and len(object_id) == ObjectID.SIZE \
            and self.planner.is_recovering(ObjectID(object_id))

    def need_if_lost(self, object_ids) -> None:
        """A wait that does not fetch names these."""
        for oid in object_ids:
            if not self.manager.objects.is_known(oid):
                self.unavailable(oid)

    def record_names_no_live_copy(self, object_id: bytes, record: lineage_pb2.ObjectRecord) -> bool:
        """A lookup read ``record`` and no holder it names is alive: True if
        reconstruction takes the object over (the lookup stops)."""
        recovered_ms = self._recovered.get(object_id)
        if self.recovering(object_id) or (recovered_ms is not None
                                          and _now_ms() - recovered_ms < RECENTLY_RECOVERED_MS):
            return False  # the rebuilt copy's record is on its way: keep polling
        if any(self._node_alive(n) for n in record.locations if n != self.node_id):
            return False
        if not record.locations:
            return False  # an error value's record: it names no holder
        dead = [n.hex()[:16] for n in record.locations]
        self._remember_lost(object_id, f"its record names only node(s) {', '.join(dead) or 'none'}, "
                                       "none of which holds it any more")
        self._need(object_id)
        return True

    def record_missing(self, object_id: bytes) -> None:
        """A lookup found no obj/ record of this object (yet)."""
        self.missing_records.record_missing(object_id)

    def declare_lost(self, object_id: bytes, why: str) -> None:
        """Another part of recovery found the object lost: rebuild it."""
        self._remember_lost(object_id, why)
        self._need(object_id)

    def pull_failed(self, object_id: bytes, copy, error: BaseException) -> bool:
        """A pull failed; True if the error must not become the object's value."""
        objects = self.manager.objects
        live = [c for c in objects.remote_copies(object_id) if self._node_alive(c.node_id)
                and c.address != copy.address]
        if live:
            self.link.fetcher.want(object_id, produced_here=True)  # another copy, e.g. a rebuilt one
            return True
        if not self._node_alive(copy.node_id):
            self._remember_lost(object_id, f"its holder, node {copy.node_id.hex()[:16]}, died")
            self._need(object_id)
            return True
        tries = self._pull_retries.get(object_id, 0) + 1
        if tries > PULL_RETRIES_MAX:
            self._pull_retries.pop(object_id, None)
            return False
        self._pull_retries[object_id] = tries  # the holder may be dying: its death decides
        asyncio.get_running_loop().call_later(PULL_RETRY_DELAY_S, self._pull_again, object_id)
        return True

    def _pull_again(self, object_id: bytes) -> None:
        if self.manager.objects.is_ready(object_id) or not self._wanted(object_id):
            self._pull_retries.pop(object_id, None)
            return
        self.link.fetcher.want(object_id, produced_here=True)

    def _remember_lost(self, object_id: bytes, why: str) -> None:
        self._lost[object_id] = why
        self._lost.move_to_end(object_id)
        while len(self._lost) > LOST_REMEMBERED_MAX:
            forgotten, how = self._lost.popitem(last=False)
            objects = self.manager.objects
            if objects.entries.get(forgotten) is not None and not objects.is_known(forgotten) \
                    and not self.recovering(forgotten):
                # A copy lost here would otherwise wait forever: it fails as before reconstruction.
                objects.add_error(forgotten, "ObjectLostError", f"object {forgotten.hex()} is lost: {how}")

    def _need(self, object_id: bytes) -> None:
        if len(object_id) != ObjectID.SIZE or self.manager.objects.is_ready(object_id):
            return
        self._needed_ms.setdefault(object_id, _now_ms())
        self._feed(rc.ObjectNeeded(ObjectID(object_id), _NODE_REQUESTER))

    def _wanted(self, object_id: bytes) -> bool:
        return self.link._still_wanted(object_id) or self.manager.objects.has_waiters(object_id)

    def _node_alive(self, node_id: bytes) -> bool:
        if node_id == self.node_id:
            return True
        record = self.link.nodes.get(node_id)
        return record is not None and record.alive

    # ===================================================== results coming in

    def objects_arrived(self, object_ids, node_id: bytes | None = None) -> None:
        """Objects became ready here or known elsewhere (``node_id``)."""
        if not self._attempts and not self.planner.objects and not self._pull_retries:
            return
        objects = self.manager.objects
        for oid in object_ids:
            if len(oid) != ObjectID.SIZE:
                continue
            self._pull_retries.pop(oid, None)
            where = node_id
            if where is None:
                copies = objects.remote_copies(oid)
                where = self.node_id if objects.is_ready(oid) else (copies[0].node_id if copies else b"")
            attempt = self._attempts.get(oid[:TaskID.SIZE])
            if attempt is not None and oid in attempt.returns:
                attempt.returns.discard(oid)
                if not attempt.returns:
                    self._attempt_succeeded(attempt, where)
                continue
            if self.planner.is_recovering(ObjectID(oid)) and len(where) == NodeID.SIZE:
                self._feed(rc.ObjectSealed(ObjectID(oid), NodeID(where)))

    def result_from(self, object_id: bytes, node_id: bytes) -> None:
        """A peer sends a result of a task forwarded to it."""
        attempt = self._attempts.get(object_id[:TaskID.SIZE]) if self._attempts else None
        if attempt is not None:
            # A return the node still had (a replay for a lost put) is not
            # "available" again: count it as arrived here.
            self.objects_arrived([object_id], node_id)

    def _attempt_succeeded(self, attempt: _Attempt, node_id: bytes) -> None:
        # The node that ran it recorded the attempt (its number and reason
        # travel with a forwarded spec: cluster_link._forward).
        del self._attempts[attempt.task_id]
        if self._released:
            self._unpin_released(specs.return_ids(attempt.spec))
        if attempt.reason != rc.REPLAY:
            return
        task_id = TaskID(attempt.task_id)
        produced = {ObjectID(r) for r in specs.return_ids(attempt.spec)}
        # Puts of a replay run where it ran and are not reported here; the
        # recovery of a lost put completes and a lookup fetches it from its
        # new record (a replay that did not put it again keeps being looked up).
        produced |= {o for o in self.planner.objects if o.task_id() == task_id and o.is_put()}
        node = NodeID(node_id) if len(node_id) == NodeID.SIZE else None
        self._feed(rc.TaskSucceeded(task_id, frozenset(produced), node))

    def _unpin_released(self, object_ids) -> None:
        """Rebuilt objects whose owner had released them are not primaries."""
        objects = self.manager.objects
        for oid in object_ids:
            if oid in self._released and objects.is_ready(oid):
                self._released.discard(oid)
                objects.release_primary([oid])

    def intercept_failures(self, return_ids: list[bytes], kind: str, message: str) -> list[bytes]:
        """The node is about to fail these returns: those of our attempts are
        handled here (a replay re-plans, a retry says what happened); the
        rest are returned to fail as usual."""
        if not self._attempts:
            return return_ids
        rest, failed = [], {}
        for oid in return_ids:
            attempt = self._attempts.get(oid[:TaskID.SIZE])
            if attempt is None or oid not in attempt.returns:
                rest.append(oid)
                continue
            if kind == "TaskCancelledError":  # the user's decision stands, as the error they asked for
                rest.append(oid)
            failed[attempt.task_id] = attempt  # once per task, however many returns it has
        for attempt in failed.values():
            self._attempt_failed(attempt, kind, message)
        return rest

    def _attempt_failed(self, attempt: _Attempt, kind: str, message: str) -> None:
        if self._attempts.get(attempt.task_id) is not attempt:
            return  # another of its returns already reported this failure
        del self._attempts[attempt.task_id]
        retriable = kind not in NOT_RETRIABLE_KINDS
        if kind == "TaskCancelledError":
            if attempt.reason == rc.REPLAY:
                self._feed(rc.TaskFailed(TaskID(attempt.task_id), attempt.attempt_number, "cancelled", False))
            return
        if attempt.reason == rc.REPLAY:
            self._feed(rc.TaskFailed(TaskID(attempt.task_id), attempt.attempt_number, f"{kind}: {message}",
                                     retriable))
            return
        if retriable and self._retry(attempt.spec, attempt.attempt_number, attempt.died_node, attempt.died_why):
            return
        self._fail_retry(attempt.spec, attempt.attempt_number, attempt.died_node, attempt.died_why,
                         f"attempt {attempt.attempt_number} failed: {kind}: {message}")

    # ================================================================ retries

    def forwarded_node_died(self, forwarded, node_id: bytes, why: str) -> bool:
        """A task forwarded to ``node_id`` is lost with it. True if handled
        here (retried, or failed with a clear error); False: not a task this
        driver retries (actor tasks: actor recovery's)."""
        run = forwarded.run
        spec = run.spec
        if spec.is_actor_task or spec.is_actor_creation:
            return False
        attempt = self._attempts.get(spec.task_id)
        number = attempt.attempt_number if attempt is not None else run.attempt
        self._record_failed_attempt(spec, number, node_id, why)
        if attempt is not None and attempt.reason == rc.REPLAY:
            del self._attempts[spec.task_id]
            self._feed(rc.TaskFailed(TaskID(spec.task_id), number, f"node {node_id.hex()[:16]} died while it "
                                     f"ran the replay ({why})"))
            return True
        self._attempts.pop(spec.task_id, None)
        if not self._retry(spec, number, node_id, why, owner=run.owner):
            self._fail_retry(spec, number, node_id, why, "")
        return True

    def _retry(self, spec: lineage_pb2.TaskSpec, failed_attempt: int, node_id: bytes, why: str,
               owner=None) -> bool:
        number = failed_attempt + 1
        max_retries = spec.options.max_retries
        if (max_retries != -1 and number > max_retries) or len(self._attempts) >= RECOVERY_ATTEMPTS_MAX:
            return False
        attempt = _Attempt(spec.task_id, number, "RETRY", set(specs.return_ids(spec)), spec, node_id, why)
        self._attempts[spec.task_id] = attempt
        self.counters["tasks_retried"] += 1
        self.counters["tasks_reexecuted"] += 1
        self._event("TASK_RETRIED", task_id=spec.task_id, node_id=node_id, attempt_number=number,
                    detail=f"node {node_id.hex()[:16]} died ({why}); attempt {number} of at most "
                           f"{'unlimited' if max_retries == -1 else max_retries + 1}")
        self._submit(attempt, owner)
        return True

    def _fail_retry(self, spec, last_attempt: int, node_id: bytes, why: str, detail: str) -> None:
        name = specs.function_name(spec, self.manager.functions)
        max_retries = spec.options.max_retries
        message = (f"task {name} ({spec.task_id.hex()[:16]}) ran on node {node_id.hex()[:16]}, which died "
                   f"({why}); {last_attempt + 1} attempt(s) made, max_retries={max_retries}"
                   + (f"; {detail}" if detail else ": no retries left"))
        self._event("TASK_FAILED", task_id=spec.task_id, node_id=node_id, attempt_number=last_attempt,
                    detail=message)
        for oid in specs.return_ids(spec):
            if not self.manager.objects.is_known(oid):
                self.manager.objects.add_error(oid, "NodeDiedError", message)

    def _record_failed_attempt(self, spec, number: int, node_id: bytes, why: str) -> None:
        record = lineage_pb2.TaskAttempt(task_id=spec.task_id, attempt_number=number, node_id=node_id,
                                         reason=lineage_pb2.FIRST_RUN if number == 0 else lineage_pb2.RETRY,
                                         state=lineage_pb2.FAILED, end_ms=_now_ms(),
                                         error=lineage_pb2.ErrorInfo(kind="NodeDiedError",
                                                                     message=f"node died: {why}"))
        self.manager.writer.write_later(attempt_key(TaskID(spec.task_id), number), record.SerializeToString())

    # ============================================================ submitting

    def _write_attempt(self, attempt: _Attempt, state: int, node_id: bytes, error) -> PutOp:
        record = lineage_pb2.TaskAttempt(
            task_id=attempt.task_id, attempt_number=attempt.attempt_number, node_id=node_id, state=state,
            reason=lineage_pb2.REPLAY if attempt.reason == rc.REPLAY else lineage_pb2.RETRY,
            start_ms=attempt.started_ms, end_ms=_now_ms() if state in TERMINAL_STATES else 0)
        op = PutOp(attempt_key(TaskID(attempt.task_id), attempt.attempt_number), record.SerializeToString())
        if state in TERMINAL_STATES:
            self.manager.writer.write_later(op.key, op.value)
        return op

    def _submit(self, attempt: _Attempt, owner=None) -> None:
        """Write the attempt record, then route the unchanged spec. A replay
        claims its attempt number (create-if-absent): when planners on two
        nodes rebuild the same object, one runs it and the other waits."""
        op = self._write_attempt(attempt, lineage_pb2.PENDING_NODE, self.node_id, None)
        if attempt.reason == rc.REPLAY:
            op = CasOp(op.key, None, op.value)
        # Its arguments stay while the attempt is written (a retried task's
        # forward pin went with its dead node; the route pins them next).
        holder = f"retrying:{attempt.task_id.hex()}:{attempt.attempt_number}"
        arg_ids = specs.arg_object_ids(attempt.spec)
        if arg_ids:
            self.manager.objects.pin(arg_ids, holder)
        future = self.manager.writer.write_now([op])
        future.add_done_callback(lambda f: self._attempt_written(attempt, owner, f, holder if arg_ids else ""))

    def _attempt_written(self, attempt: _Attempt, owner, future: asyncio.Future, holder: str = "") -> None:
        try:
            self._route_attempt(attempt, owner, future)
        finally:
            if holder:
                self.manager.objects.release_holder(holder)

    def _route_attempt(self, attempt: _Attempt, owner, future: asyncio.Future) -> None:
        if self._attempts.get(attempt.task_id) is not attempt:
            return
        if future.exception() is not None:
            log.warning("writing attempt %d of %s failed: %s", attempt.attempt_number, attempt.task_id.hex(),
                        future.exception())  # the run goes on: its own records say what happened
        elif attempt.reason == rc.REPLAY and not future.result()[0].ok:
            self._attempt_taken(attempt)
            return
        from lineagerun.node.server import TaskRun

        manager = self.manager
        if attempt.task_id in manager.tasks or attempt.task_id in self.link.forwarded:
            return  # an attempt of it is already here (its results are ours too)
        run = TaskRun(attempt.spec, specs.return_ids(attempt.spec), owner, attempt=attempt.attempt_number,
                      arg_ids=specs.arg_object_ids(attempt.spec))
        run.attempt_reason = lineage_pb2.REPLAY if attempt.reason == rc.REPLAY else lineage_pb2.RETRY
        run.scheduled = True
        manager.tasks[attempt.task_id] = run
        manager._schedule(run)
        if not attempt.returns:
            self._attempts.pop(attempt.task_id, None)  # no result will say it finished: nothing to track

    # ======================================================== the planner

    def _feed(self, event) -> None:
        """Hand the planner an event; effects may feed more (queued, not nested)."""
        self._events.append(event)
        if self._draining:
            return
        self._draining = True
        try:
            while self._events:
                for effect in self.planner.handle(self._events.popleft()):
                    self._EFFECTS[type(effect)](self, effect)
        finally:
            self._draining = False

    def _read(self, fn):
        return asyncio.get_running_loop().run_in_executor(None, fn)

    def _on_load_locations(self, effect: rc.LoadLocations) -> None:
        self.link._spawn(self._load_locations(effect.object_id))

    async def _load_locations(self, object_id: ObjectID) -> None:
        oid = object_id.binary()
        client = self.manager.writer.client
        try:
            raw = await self._read(lambda: client.get(object_key(object_id)))
        except Exception as exc:  # noqa: BLE001 - the control store is down: an empty view replays
            log.warning("reading the record of %s failed: %s", oid.hex(), exc)
            raw = None
        record = lineage_pb2.ObjectRecord.FromString(raw) if raw else None
        live = set()
        if self.manager.objects.is_ready(oid):
            live.add(self.node_id)
        elif record is not None and record.has_inline_value:
            self.manager.objects.add_payload(oid, node_pb2.ObjectPayload(
                inline=record.inline_value, size_bytes=len(record.inline_value)))
            live.add(self.node_id)
        elif record is not None:
            live |= {n for n in record.locations if n != self.node_id and self._node_alive(n)}
        self._feed(rc.LocationsLoaded(object_id, frozenset(NodeID(n) for n in live if len(n) == NodeID.SIZE)))

    def _on_load_lineage(self, effect: rc.LoadLineage) -> None:
        self.link._spawn(self._load_lineage(effect.task_id))

    async def _load_lineage(self, task_id: TaskID) -> None:
        client = self.manager.writer.client

        functions = self.manager.functions

        def read():
            raw = client.get(task_key(task_id))
            spec = lineage_pb2.TaskSpec.FromString(raw) if raw is not None else None
            function = None
            if spec is not None and not spec.is_actor_task and spec.function_id not in functions \
                    and len(spec.function_id) == FunctionID.SIZE:
                function = client.get(function_key(FunctionID(spec.function_id)))  # made by another node's client
            return spec, function, list(client.scan_prefix(attempts_prefix(task_id)))

        try:
            spec, function, attempts = await self._read(read)
        except Exception as exc:  # noqa: BLE001
            log.warning("reading the lineage of %s failed: %s", task_id.hex(), exc)
            spec, function, attempts = None, None, []
        if spec is None:
            self._feed(rc.LineageLoaded(task_id, None))
            return
        if function is not None:
            functions.setdefault(spec.function_id, lineage_pb2.FunctionRecord.FromString(function))
        self._specs[spec.task_id] = spec
        while len(self._specs) > SPECS_CACHED_MAX:
            self._specs.popitem(last=False)
        records = [lineage_pb2.TaskAttempt.FromString(v) for _, v in attempts]
        latest = max(records, key=lambda r: r.attempt_number, default=None)
        made = max(len(records), (latest.attempt_number + 1) if latest else 0, 1)
        running = (latest is not None and latest.state not in TERMINAL_STATES and len(latest.node_id) == NodeID.SIZE
                   and latest.node_id != self.node_id and self._node_alive(latest.node_id))
        args = [ObjectID(a) for a in specs.arg_object_ids(spec) if len(a) == ObjectID.SIZE]
        for arg in list(spec.args) + [k.arg for k in spec.kwargs]:
            args += [ObjectID(n) for n in arg.nested_object_ids if len(n) == ObjectID.SIZE]
        lineage = rc.TaskLineage(task_id, tuple(args), spec.num_returns, spec.options.max_retries, made,
                                 attempt_running=running,
                                 attempt_node_id=NodeID(latest.node_id) if running else None)
        self._feed(rc.LineageLoaded(task_id, lineage))
        if running:  # another node replays it: its copy shows up in a lookup
            for oid in [o for o in self.planner.objects if o.task_id() == task_id]:
                self.link.fetcher.lookup(oid.binary())

    def _attempt_taken(self, attempt: _Attempt) -> None:
        """Another node claimed this attempt: wait for it (its copies show
        up in lookups: ObjectSealed), as for a running attempt."""
        del self._attempts[attempt.task_id]
        self.counters["tasks_replayed"] -= 1
        self.counters["tasks_reexecuted"] -= 1
        task_id = TaskID(attempt.task_id)
        self._feed(rc.TaskResubmitted(task_id, attempt.attempt_number, None))
        for oid in [o for o in self.planner.objects if o.task_id() == task_id]:
            self.link.fetcher.lookup(oid.binary())

    def _on_resubmit_task(self, effect: rc.ResubmitTask) -> None:
        spec = self._specs.get(effect.task_id.binary())
        if spec is None:  # cannot happen: the planner resubmits only after LineageLoaded
            self._feed(rc.TaskFailed(effect.task_id, effect.attempt_number, "its spec was not loaded", False))
            return
        attempt = _Attempt(spec.task_id, effect.attempt_number, rc.REPLAY, set(specs.return_ids(spec)), spec)
        self._attempts[spec.task_id] = attempt
        self.counters["tasks_replayed"] += 1
        self.counters["tasks_reexecuted"] += 1
        self._submit(attempt)

    def _on_complete_recovery(self, effect: rc.CompleteRecovery) -> None:
        oid = effect.object_id.binary()
        self._lost.pop(oid, None)
        self._recovered[oid] = _now_ms()
        self._recovered.move_to_end(oid)
        while len(self._recovered) > RECENTLY_RECOVERED_MAX:
            self._recovered.popitem(last=False)
        started = self._needed_ms.pop(oid, None)
        if started is not None:
            self._last_recovery = (oid, max(0, _now_ms() - started))
        if self._released:
            self._unpin_released([oid])
        if not self.manager.objects.is_known(oid) and self._wanted(oid):
            self.link.fetcher.lookup(oid)  # a copy elsewhere, found through its record

    def _on_fail_recovery(self, effect: rc.FailRecovery) -> None:
        oid = effect.object_id.binary()
        how = self._lost.pop(oid, None)
        self._needed_ms.pop(oid, None)
        self.counters["objects_failed"] += 1
        message = effect.message + (f" (the object was lost: {how})" if how else "")
        log.warning("object %s cannot be rebuilt: %s", oid.hex(), message)
        self.manager.objects.add_error(oid, "ObjectReconstructionFailedError", message)

    def _on_emit_event(self, effect: rc.EmitEvent) -> None:
        duration_ms = 0
        if effect.kind == "OBJECT_LOST":
            self.counters["objects_lost"] += 1
        elif effect.kind == "OBJECT_RECONSTRUCTED":
            self.counters["objects_rebuilt"] += 1
            last_oid, last_ms = self._last_recovery
            duration_ms = last_ms if effect.object_id is not None and effect.object_id.binary() == last_oid else 0
            self.counters["recovery_ms_total"] += duration_ms
            self.counters["recovery_ms_max"] = max(self.counters["recovery_ms_max"], duration_ms)
        detail = effect.detail
        if effect.kind == "OBJECT_LOST" and effect.object_id is not None:
            detail = detail or self._lost.get(effect.object_id.binary(), "")
        self._event(effect.kind, task_id=effect.task_id.binary() if effect.task_id else b"",
                    object_id=effect.object_id.binary() if effect.object_id else b"",
                    node_id=effect.node_id.binary() if effect.node_id else self.node_id,
                    attempt_number=effect.attempt_number, detail=detail, duration_ms=duration_ms)

    def _event(self, kind: str, *, task_id: bytes = b"", object_id: bytes = b"", node_id: bytes = b"",
               attempt_number: int = 0, detail: str = "", duration_ms: int = 0) -> None:
        now = _now_ms()
        source = task_id or object_id[:TaskID.SIZE]
        record = lineage_pb2.EventRecord(
            kind=lineage_pb2.EventKind.Value(kind), time_ms=now, event_id=os.urandom(8),
            job_id=TaskID(source).job_id().binary() if len(source) == TaskID.SIZE else b"",
            task_id=task_id, object_id=object_id, node_id=node_id or self.node_id,
            attempt_number=attempt_number, detail=detail, duration_ms=duration_ms)
        self.manager.writer.write_later(event_key(now, record.event_id), record.SerializeToString())

    _EFFECTS = {
        rc.LoadLocations: _on_load_locations,
        rc.LoadLineage: _on_load_lineage,
        rc.ResubmitTask: _on_resubmit_task,
        rc.CompleteRecovery: _on_complete_recovery,
        rc.FailRecovery: _on_fail_recovery,
        rc.EmitEvent: _on_emit_event,
    }
