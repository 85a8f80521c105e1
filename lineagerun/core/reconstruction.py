"""Lost-object reconstruction planning: a pure state machine, ``handle(event) -> effects``.

The runtime (node manager or owner) feeds in what it learns (an object was
needed and found nowhere, the lineage and locations it loaded from the
control store, what became of the tasks it resubmitted, node deaths, copies
sealed somewhere) and carries out the effects (load lineage or locations,
resubmit a task as a REPLAY attempt, answer the requesters, record events).
No I/O, no clock, no randomness. The algorithm, as Ray's object recovery
manager (``src/ray/core_worker/object_recovery_manager.h``), with lineage read
from the control store instead of an owner's memory:

1. ``ObjectNeeded(o, requester)``: if ``o`` is already being recovered the
   requester joins that recovery (idempotent: one recovery per object, every
   requester answered once, when it ends). Otherwise look its locations up
   again (``LoadLocations``): the caller's view may be stale.
2. ``LocationsLoaded(o, nodes)``: a live copy exists -> ``CompleteRecovery``
   (the requester pulls it). None -> the object is lost (``OBJECT_LOST``):
   a ``put`` made by a driver has no task to replay -> ``FailRecovery``;
   an actor method's result is rebuilt only by actor recovery -> fail;
   otherwise attach ``o`` to its producing task ``t`` (its id is the prefix
   of the object id). Several lost objects of one task share one task
   recovery, so ``t`` is resubmitted once. A new task recovery asks for
   ``LoadLineage(t)``.
3. ``LineageLoaded(t, lineage)``: no lineage (compacted) -> fail. The lineage
   says an attempt is still running -> wait for it, resubmit nothing.
   Otherwise every argument of ``t`` (by reference or nested) is itself
   "needed" by ``t`` (step 1, one level deeper; depth-first, at most
   ``reconstruction_depth_max`` levels). Once every argument has a live copy,
   ``ResubmitTask(t, attempt_number, REPLAY)`` if ``max_retries`` allows.
4. ``TaskSucceeded(t, produced)``: every object of ``t`` under recovery that
   the run produced completes; one it did not produce (a ``put`` the replay
   did not make again) fails as non-deterministic.
5. ``TaskFailed(t, retriable)`` or ``NodeDied`` of the node running the
   replay (a double fault, R5): re-plan ``t`` from step 3 (its arguments may
   have died with the node too), as a new attempt, while retries allow.
   ``NodeDied`` also sends back to step 1 the ready arguments of waiting
   tasks whose only known copies were on that node.
6. ``ObjectSealed(o, node)`` anywhere: a recovery of ``o`` still running
   completes without resubmission (a copy reappeared, or another planner
   rebuilt it).

A failure of an argument fails the tasks that needed it and, through them,
the objects waiting on those tasks, each with a message naming the object,
the task and why.

Retry accounting follows Ray: lineage replays and failure retries share one
budget, ``max_retries``. Attempt numbers continue from the attempts already
recorded (``TaskLineage.attempts_made``); attempt ``n`` may run while
``n <= max_retries`` (``-1``: always). So a task with the default
``max_retries=3`` can be run 4 times in all, first run included, however
those runs were caused.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

from lineagerun.core.ids import NodeID, ObjectID, TaskID
from lineagerun.exceptions import InvalidArgumentError, ObjectReconstructionFailedError

# Levels of lost arguments followed below the object a requester asked for.
# A deeper lost lineage would take minutes to replay; past this the job
# should checkpoint (or persist) intermediate results instead. It also caps
# how much of a corrupt (cyclic) lineage one recovery can walk.
RECONSTRUCTION_DEPTH_MAX_DEFAULT = 1_000
# Objects under recovery at once in one planner; more means a mass loss the
# runtime should shed (the requester gets a failure it can retry later).
OBJECTS_IN_RECOVERY_MAX_DEFAULT = 100_000
# Dead node ids remembered to filter stale locations; matches the control
# store's retention of dead node records (docs/lineage-records.md).
DEAD_NODES_REMEMBERED_MAX_DEFAULT = 1_000

# Failure kinds of FailRecovery, for counters and tests; the message says more.
PUT_FROM_DRIVER = "PUT_FROM_DRIVER"
ACTOR_TASK_RESULT = "ACTOR_TASK_RESULT"
LINEAGE_MISSING = "LINEAGE_MISSING"
LINEAGE_MISMATCH = "LINEAGE_MISMATCH"
MAX_RETRIES_EXHAUSTED = "MAX_RETRIES_EXHAUSTED"
NONDETERMINISTIC = "NONDETERMINISTIC"
DEPTH_LIMIT = "DEPTH_LIMIT"
ARGUMENT_LOST = "ARGUMENT_LOST"
TASK_FAILED = "TASK_FAILED"
TOO_MANY_RECOVERIES = "TOO_MANY_RECOVERIES"

REPLAY = "REPLAY"  # TaskAttempt reason of every resubmission made here


# -------------------------------------------------------------------- events


@dataclass(frozen=True)
class TaskLineage:
    """What the planner needs of a TaskSpec and its attempts."""

    task_id: TaskID
    arg_object_ids: tuple[ObjectID, ...]  # by reference and nested, in argument order
    num_returns: int
    max_retries: int  # -1 = no limit
    attempts_made: int  # attempt records so far; the next attempt gets this number
    attempt_running: bool = False  # the latest attempt has not ended
    attempt_node_id: NodeID | None = None  # where that running attempt is


@dataclass(frozen=True)
class ObjectNeeded:
    """A get, or a task argument, found no live copy of the object."""

    object_id: ObjectID
    requester: Hashable


@dataclass(frozen=True)
class LocationsLoaded:
    object_id: ObjectID
    node_ids: frozenset[NodeID]


@dataclass(frozen=True)
class LineageLoaded:
    task_id: TaskID
    lineage: TaskLineage | None  # None: no TaskSpec in the control store


@dataclass(frozen=True)
class TaskResubmitted:
    """An attempt of the task is in flight (ours, placed on ``node_id``, or
    one the schedulers started on their own, e.g. a retry)."""

    task_id: TaskID
    attempt_number: int
    node_id: NodeID | None = None


@dataclass(frozen=True)
class TaskSucceeded:
    task_id: TaskID
    produced_object_ids: frozenset[ObjectID]  # returns and puts the run stored
    node_id: NodeID | None = None  # where they are


@dataclass(frozen=True)
class TaskFailed:
    """An attempt ended without results (worker or node lost, infeasible...).
    ``retriable=False`` when trying again cannot help."""

    task_id: TaskID
    attempt_number: int
    reason: str
    retriable: bool = True


@dataclass(frozen=True)
class NodeDied:
    node_id: NodeID


@dataclass(frozen=True)
class ObjectSealed:
    object_id: ObjectID
    node_id: NodeID


Event = (ObjectNeeded | LocationsLoaded | LineageLoaded | TaskResubmitted | TaskSucceeded | TaskFailed
         | NodeDied | ObjectSealed)


# ------------------------------------------------------------------- effects


@dataclass(frozen=True)
class LoadLocations:
    object_id: ObjectID


@dataclass(frozen=True)
class LoadLineage:
    task_id: TaskID


@dataclass(frozen=True)
class ResubmitTask:
    """Write attempt ``attempt_number`` (reason REPLAY) and submit the spec."""

    task_id: TaskID
    attempt_number: int
    reason: str = REPLAY


@dataclass(frozen=True)
class CompleteRecovery:
    """A live copy exists (``node_ids`` when known); answer the requesters."""

    object_id: ObjectID
    requesters: tuple[Hashable, ...]
    node_ids: frozenset[NodeID] = frozenset()


@dataclass(frozen=True)
class FailRecovery:
    object_id: ObjectID
    requesters: tuple[Hashable, ...]
    kind: str
    message: str

    def error(self) -> ObjectReconstructionFailedError:
        return ObjectReconstructionFailedError(self.object_id.hex(), self.message)


@dataclass(frozen=True)
class EmitEvent:
    """An EventRecord to write; ``kind`` is an ``EventKind`` name."""

    kind: str
    object_id: ObjectID | None = None
    task_id: TaskID | None = None
    node_id: NodeID | None = None
    attempt_number: int = 0
    detail: str = ""


Effect = LoadLocations | LoadLineage | ResubmitTask | CompleteRecovery | FailRecovery | EmitEvent


# --------------------------------------------------------------------- state


@dataclass(frozen=True)
class _ArgumentOf:
    """Internal requester: the task recovery that needs this object."""

    task_id: TaskID


class ObjectPhase(enum.Enum):
    LOCATING = "locating"  # LoadLocations sent
    WAITING_FOR_TASK = "waiting_for_task"  # attached to its producing task's recovery


class TaskPhase(enum.Enum):
    LOADING_LINEAGE = "loading_lineage"
    WAITING_FOR_ARGS = "waiting_for_args"
    IN_FLIGHT = "in_flight"


@dataclass
class _ObjectRecovery:
    object_id: ObjectID
    depth: int
    phase: ObjectPhase = ObjectPhase.LOCATING
    requesters: dict[Hashable, None] = field(default_factory=dict)  # ordered set


@dataclass
class _TaskRecovery:
    task_id: TaskID
    depth: int
    phase: TaskPhase = TaskPhase.LOADING_LINEAGE
    objects: set[ObjectID] = field(default_factory=set)  # under recovery, waiting on this task
    lineage: TaskLineage | None = None
    pending_args: set[ObjectID] = field(default_factory=set)
    ready_args: dict[ObjectID, frozenset[NodeID]] = field(default_factory=dict)  # known copies
    next_attempt: int = 0
    in_flight_attempt: int = -1
    in_flight_node: NodeID | None = None


def _describe(object_id: ObjectID) -> str:
    return f"{'put' if object_id.is_put() else 'return'} object {object_id.hex()}"


class ReconstructionPlanner:
    def __init__(self, *, reconstruction_depth_max: int = RECONSTRUCTION_DEPTH_MAX_DEFAULT,
                 objects_in_recovery_max: int = OBJECTS_IN_RECOVERY_MAX_DEFAULT,
                 dead_nodes_remembered_max: int = DEAD_NODES_REMEMBERED_MAX_DEFAULT):
        for name, value in (("reconstruction_depth_max", reconstruction_depth_max),
                            ("objects_in_recovery_max", objects_in_recovery_max),
                            ("dead_nodes_remembered_max", dead_nodes_remembered_max)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be an int >= 1, got {value!r}")
        self.reconstruction_depth_max = reconstruction_depth_max
        self.objects_in_recovery_max = objects_in_recovery_max
        self.dead_nodes_remembered_max = dead_nodes_remembered_max
        self.objects: dict[ObjectID, _ObjectRecovery] = {}
        self.tasks: dict[TaskID, _TaskRecovery] = {}
        self._dead_nodes: dict[NodeID, None] = {}  # insertion-ordered, bounded
        self._doomed: deque[tuple[TaskID, str, str]] = deque()

    # ----------------------------------------------------------- the mutator

    def handle(self, event: Event) -> list[Effect]:
        handler = self._HANDLERS.get(type(event))
        if handler is None:
            raise InvalidArgumentError(f"ReconstructionPlanner cannot handle {type(event).__name__}")
        effects: list[Effect] = []
        handler(self, event, effects)
        # Failures climb from an argument to the tasks that needed it through
        # this worklist, not recursion: a lost chain can be
        # reconstruction_depth_max long.
        while self._doomed:
            task_id, kind, why = self._doomed.popleft()
            task = self.tasks.get(task_id)
            if task is not None:
                self._fail_task(task, kind, why, effects)
        return effects

    # ---------------------------------------------------------------- queries

    def is_recovering(self, object_id: ObjectID) -> bool:
        return object_id in self.objects

    def task_phase(self, task_id: TaskID) -> TaskPhase | None:
        entry = self.tasks.get(task_id)
        return entry.phase if entry else None

    def check_invariants(self) -> None:
        """Raise AssertionError if the bookkeeping is inconsistent (for tests)."""
        for oid, rec in self.objects.items():
            if rec.phase is ObjectPhase.WAITING_FOR_TASK:
                task = self.tasks.get(oid.task_id())
                assert task is not None and oid in task.objects, rec
            for requester in rec.requesters:
                if isinstance(requester, _ArgumentOf):
                    task = self.tasks.get(requester.task_id)
                    assert task is not None and oid in task.pending_args, (oid, requester)
        for tid, task in self.tasks.items():
            assert task.objects, f"task recovery {tid!r} serves no object"
            for oid in task.objects:
                assert self.objects[oid].phase is ObjectPhase.WAITING_FOR_TASK
            assert not (task.pending_args & task.ready_args.keys()), task
            if task.phase is TaskPhase.IN_FLIGHT:
                assert not task.pending_args, task
            for oid in task.pending_args:
                assert _ArgumentOf(tid) in self.objects[oid].requesters, (tid, oid)

    # ------------------------------------------------------- object recovery

    def _need(self, object_id: ObjectID, requester: Hashable, depth: int, out: list[Effect]) -> None:
        rec = self.objects.get(object_id)
        if rec is not None:
            rec.requesters.setdefault(requester, None)
            return
        if len(self.objects) >= self.objects_in_recovery_max:
            self._answer_failure(object_id, [requester], TOO_MANY_RECOVERIES,
                                 f"{_describe(object_id)}: {self.objects_in_recovery_max} objects are already "
                                 "under recovery here (objects_in_recovery_max); retry later", out)
            return
        self.objects[object_id] = _ObjectRecovery(object_id, depth, requesters={requester: None})
        out.append(LoadLocations(object_id))

    def _on_object_needed(self, event: ObjectNeeded, out: list[Effect]) -> None:
        if not isinstance(event.object_id, ObjectID) or event.object_id.is_nil():
            raise InvalidArgumentError(f"ObjectNeeded.object_id must be a non-nil ObjectID, got {event.object_id!r}")
        if isinstance(event.requester, _ArgumentOf):
            raise InvalidArgumentError("ObjectNeeded.requester must be the caller's own token")
        self._need(event.object_id, event.requester, 0, out)

    def _live(self, node_ids) -> frozenset[NodeID]:
        return frozenset(n for n in node_ids if n not in self._dead_nodes)

    def _on_locations_loaded(self, event: LocationsLoaded, out: list[Effect]) -> None:
        rec = self.objects.get(event.object_id)
        if rec is None or rec.phase is not ObjectPhase.LOCATING:
            return  # an answer to a lookup that no longer matters
        live = self._live(event.node_ids)
        if live:
            self._complete(event.object_id, live, out)
            return
        oid = event.object_id
        task_id = oid.task_id()
        out.append(EmitEvent("OBJECT_LOST", object_id=oid, task_id=task_id))
        if task_id.is_for_driver():
            self._fail_object(oid, PUT_FROM_DRIVER,
                              f"{_describe(oid)} was made by put() in the driver of job {task_id.job_id().hex()}; "
                              "no task can replay it, and every copy is gone (driver puts are rebuilt only while "
                              "a copy survives; put large inputs from inside a task to make them rebuildable)", out)
            return
        if not task_id.actor_id().is_nil_actor():
            self._fail_object(oid, ACTOR_TASK_RESULT,
                              f"{_describe(oid)} was made by actor task {task_id.hex()}; actor results are "
                              "recreated only by the actor's own recovery (replay of its calls), not by "
                              "resubmitting one call", out)
            return
        task = self.tasks.get(task_id)
        if task is None:
            task = _TaskRecovery(task_id, rec.depth)
            self.tasks[task_id] = task
            out.append(LoadLineage(task_id))
        rec.phase = ObjectPhase.WAITING_FOR_TASK
        task.objects.add(oid)

    def _on_object_sealed(self, event: ObjectSealed, out: list[Effect]) -> None:
        if event.node_id in self._dead_nodes:
            return  # a late report from a node already declared dead
        for task in list(self.tasks.values()):
            if event.object_id in task.ready_args:
                task.ready_args[event.object_id] = task.ready_args[event.object_id] | {event.node_id}
        if event.object_id in self.objects:
            self._complete(event.object_id, frozenset({event.node_id}), out)

    def _complete(self, object_id: ObjectID, node_ids: frozenset[NodeID], out: list[Effect]) -> None:
        rec = self.objects.pop(object_id)
        self._detach_from_task(object_id, rec)
        external = tuple(r for r in rec.requesters if not isinstance(r, _ArgumentOf))
        out.append(CompleteRecovery(object_id, external, node_ids))
        for requester in rec.requesters:
            if isinstance(requester, _ArgumentOf):
                self._argument_ready(requester.task_id, object_id, node_ids, out)

    def _fail_object(self, object_id: ObjectID, kind: str, message: str, out: list[Effect]) -> None:
        rec = self.objects.pop(object_id)
        self._detach_from_task(object_id, rec)
        self._answer_failure(object_id, list(rec.requesters), kind, message, out)

    def _answer_failure(self, object_id: ObjectID, requesters: list, kind: str, message: str,
                        out: list[Effect]) -> None:
        external = tuple(r for r in requesters if not isinstance(r, _ArgumentOf))
        out.append(FailRecovery(object_id, external, kind, message))
        out.append(EmitEvent("TASK_FAILED", object_id=object_id, task_id=object_id.task_id(),
                             detail=f"{kind}: {message}"))
        for requester in requesters:
            if isinstance(requester, _ArgumentOf):
                task = self.tasks.get(requester.task_id)
                if task is not None and object_id in task.pending_args:
                    self._doomed.append((task.task_id, ARGUMENT_LOST,
                                         f"its argument {_describe(object_id)} could not be rebuilt "
                                         f"({kind}: {message})"))

    def _detach_from_task(self, object_id: ObjectID, rec: _ObjectRecovery) -> None:
        """A finished object no longer waits on its task; a task recovery that
        serves nobody any more is dropped (nothing resubmitted for it)."""
        if rec.phase is not ObjectPhase.WAITING_FOR_TASK:
            return
        task = self.tasks.get(object_id.task_id())
        if task is None:
            return
        task.objects.discard(object_id)
        if not task.objects:
            self._drop_task(task)

    def _drop_task(self, task: _TaskRecovery) -> None:
        # Argument recoveries started for it go on (their results are useful
        # and may have other requesters) but stop reporting to it.
        del self.tasks[task.task_id]
        for arg in task.pending_args:
            arg_rec = self.objects.get(arg)
            if arg_rec is not None:
                arg_rec.requesters.pop(_ArgumentOf(task.task_id), None)
        task.pending_args.clear()

    # --------------------------------------------------------- task recovery

    def _fail_task(self, task: _TaskRecovery, kind: str, why: str, out: list[Effect]) -> None:
        if self.tasks.get(task.task_id) is not task:
            return  # already failed through another path
        self._drop_task(task)
        for oid in sorted(task.objects):
            if oid in self.objects:
                self._fail_object(oid, kind, f"{_describe(oid)} of task {task.task_id.hex()} cannot be "
                                              f"rebuilt: {why}", out)

    def _on_lineage_loaded(self, event: LineageLoaded, out: list[Effect]) -> None:
        task = self.tasks.get(event.task_id)
        if task is None or task.phase is not TaskPhase.LOADING_LINEAGE:
            return
        lineage = event.lineage
        if lineage is None:
            self._fail_task(task, LINEAGE_MISSING, "its lineage (TaskSpec) is not in the control store; it was "
                            "compacted (lineage retention) or never written", out)
            return
        if lineage.task_id != task.task_id:
            raise InvalidArgumentError(f"LineageLoaded for {task.task_id!r} carries the lineage of {lineage.task_id!r}")
        task.lineage = lineage
        task.next_attempt = lineage.attempts_made
        beyond = [o for o in task.objects if not o.is_put() and o.index() > lineage.num_returns]
        if beyond:
            self._fail_task(task, LINEAGE_MISMATCH, f"the task has num_returns={lineage.num_returns} but return "
                            f"index {beyond[0].index()} was asked for", out)
            return
        if lineage.attempt_running and lineage.attempt_node_id not in self._dead_nodes:
            self._wait_for_attempt(task, lineage.attempts_made - 1, lineage.attempt_node_id)
            return
        self._plan_arguments(task, out)

    def _plan_arguments(self, task: _TaskRecovery, out: list[Effect]) -> None:
        """Step 3: every argument must have a live copy before the replay."""
        lineage = task.lineage
        assert lineage is not None
        if lineage.max_retries != -1 and task.next_attempt > lineage.max_retries:
            self._fail_task(task, MAX_RETRIES_EXHAUSTED,
                            f"max_retries={lineage.max_retries} exhausted: {task.next_attempt} attempt(s) already "
                            "made (lineage replays count against max_retries, as in Ray)", out)
            return
        args = list(dict.fromkeys(lineage.arg_object_ids))
        if any(a.task_id() == task.task_id for a in args):
            self._fail_task(task, LINEAGE_MISMATCH, "the task lists one of its own outputs as an argument "
                            "(corrupt lineage)", out)
            return
        if args and task.depth + 1 > self.reconstruction_depth_max:
            self._fail_task(task, DEPTH_LIMIT, f"rebuilding it needs lost arguments deeper than "
                            f"reconstruction_depth_max={self.reconstruction_depth_max} levels", out)
            return
        task.phase = TaskPhase.WAITING_FOR_ARGS
        task.ready_args.clear()
        task.pending_args = set(args)
        for arg in args:
            self._need(arg, _ArgumentOf(task.task_id), task.depth + 1, out)
        self._maybe_resubmit(task, out)

    def _argument_ready(self, task_id: TaskID, object_id: ObjectID, node_ids: frozenset[NodeID],
                        out: list[Effect]) -> None:
        task = self.tasks.get(task_id)
        if task is None or object_id not in task.pending_args:
            return
        task.pending_args.discard(object_id)
        task.ready_args[object_id] = node_ids
        self._maybe_resubmit(task, out)

    def _maybe_resubmit(self, task: _TaskRecovery, out: list[Effect]) -> None:
        if self.tasks.get(task.task_id) is not task or task.phase is not TaskPhase.WAITING_FOR_ARGS:
            return
        if task.pending_args:
            return
        lineage = task.lineage
        assert lineage is not None
        if lineage.max_retries != -1 and task.next_attempt > lineage.max_retries:
            self._fail_task(task, MAX_RETRIES_EXHAUSTED,
                            f"max_retries={lineage.max_retries} exhausted: {task.next_attempt} attempt(s) made "
                            "(lineage replays count against max_retries, as in Ray)", out)
            return
        attempt = task.next_attempt
        self._wait_for_attempt(task, attempt, None)
        out.append(ResubmitTask(task.task_id, attempt, REPLAY))
        out.append(EmitEvent("TASK_REPLAYED", task_id=task.task_id, attempt_number=attempt,
                             detail=f"rebuilding {len(task.objects)} lost object(s)"))

    def _wait_for_attempt(self, task: _TaskRecovery, attempt: int, node_id: NodeID | None) -> None:
        for arg in task.pending_args:
            arg_rec = self.objects.get(arg)
            if arg_rec is not None:
                arg_rec.requesters.pop(_ArgumentOf(task.task_id), None)
        task.pending_args.clear()
        task.phase = TaskPhase.IN_FLIGHT
        task.in_flight_attempt, task.in_flight_node = attempt, node_id
        task.next_attempt = max(task.next_attempt, attempt + 1)

    def _replan(self, task: _TaskRecovery, why: str, out: list[Effect]) -> None:
        """Steps 5 -> 3: the attempt is lost; check the arguments again (they
        may have been lost with it) and try a new attempt."""
        out.append(EmitEvent("TASK_FAILED", task_id=task.task_id, node_id=task.in_flight_node,
                             attempt_number=task.in_flight_attempt, detail=f"replay lost, re-planning: {why}"))
        task.in_flight_attempt, task.in_flight_node = -1, None
        if task.lineage is None:  # we waited on an attempt before ever loading lineage: cannot happen
            raise AssertionError(f"task recovery {task.task_id!r} in flight without lineage")
        self._plan_arguments(task, out)

    def _on_task_resubmitted(self, event: TaskResubmitted, out: list[Effect]) -> None:
        task = self.tasks.get(event.task_id)
        if task is None or task.phase is TaskPhase.LOADING_LINEAGE:
            return  # the lineage we load will say an attempt is running
        if task.phase is TaskPhase.IN_FLIGHT and event.attempt_number < task.in_flight_attempt:
            return  # an older attempt than the one we wait for
        if event.node_id is not None and event.node_id in self._dead_nodes:
            if task.phase is TaskPhase.IN_FLIGHT and event.attempt_number == task.in_flight_attempt:
                self._replan(task, f"it was placed on node {event.node_id.hex()}, which is dead", out)
            return
        self._wait_for_attempt(task, event.attempt_number, event.node_id)

    def _on_task_succeeded(self, event: TaskSucceeded, out: list[Effect]) -> None:
        task = self.tasks.get(event.task_id)
        if task is None:
            return
        if event.node_id is not None and event.node_id in self._dead_nodes:
            if task.phase is not TaskPhase.IN_FLIGHT:
                return  # the lineage load or the argument checks under way decide
            self._replan(task, f"its results were stored on node {event.node_id.hex()}, which is dead", out)
            return
        nodes = frozenset({event.node_id}) if event.node_id is not None else frozenset()
        missing = sorted(o for o in task.objects if o not in event.produced_object_ids)
        for oid in sorted(task.objects & event.produced_object_ids):
            self._complete(oid, nodes, out)
            out.append(EmitEvent("OBJECT_RECONSTRUCTED", object_id=oid, task_id=event.task_id, node_id=event.node_id))
        for oid in missing:
            if oid in self.objects:
                self._fail_object(oid, NONDETERMINISTIC,
                                  f"{_describe(oid)}: replaying task {event.task_id.hex()} did not produce it again; "
                                  "the task is not deterministic (replay assumes it is), so this object of the "
                                  "first run cannot be rebuilt", out)
        self.tasks.pop(event.task_id, None)

    def _on_task_failed(self, event: TaskFailed, out: list[Effect]) -> None:
        task = self.tasks.get(event.task_id)
        if task is None or task.phase is not TaskPhase.IN_FLIGHT or event.attempt_number != task.in_flight_attempt:
            return
        if not event.retriable:
            self._fail_task(task, TASK_FAILED, f"attempt {event.attempt_number} failed and cannot be retried: "
                            f"{event.reason}", out)
            return
        self._replan(task, event.reason, out)

    def _on_node_died(self, event: NodeDied, out: list[Effect]) -> None:
        dead = event.node_id
        if dead in self._dead_nodes:
            return
        self._dead_nodes[dead] = None
        while len(self._dead_nodes) > self.dead_nodes_remembered_max:
            del self._dead_nodes[next(iter(self._dead_nodes))]
        for task_id in sorted(self.tasks):
            task = self.tasks.get(task_id)
            if task is None:
                continue
            if task.phase is TaskPhase.IN_FLIGHT and task.in_flight_node == dead:
                self._replan(task, f"node {dead.hex()} died while it ran", out)
            elif task.phase is TaskPhase.WAITING_FOR_ARGS:
                self._recheck_ready_args(task, dead, out)

    def _recheck_ready_args(self, task: _TaskRecovery, dead: NodeID, out: list[Effect]) -> None:
        lost = []
        for arg, nodes in list(task.ready_args.items()):
            if dead in nodes:
                task.ready_args[arg] = nodes - {dead}
                if not task.ready_args[arg]:
                    lost.append(arg)
        for arg in lost:
            del task.ready_args[arg]
            task.pending_args.add(arg)
            self._need(arg, _ArgumentOf(task.task_id), task.depth + 1, out)

    _HANDLERS = {
        ObjectNeeded: _on_object_needed,
        LocationsLoaded: _on_locations_loaded,
        LineageLoaded: _on_lineage_loaded,
        TaskResubmitted: _on_task_resubmitted,
        TaskSucceeded: _on_task_succeeded,
        TaskFailed: _on_task_failed,
        NodeDied: _on_node_died,
        ObjectSealed: _on_object_sealed,
    }

