"""Actor recovery planning: a pure state machine, ``handle(event) -> effects``.

One planner holds every actor a service (the actor manager) is responsible
for. The shell feeds in what happens to an actor (registered, calls
submitted and finished, checkpoints committed, deaths) and what its control
store reads and placements returned; it carries out the effects. No I/O, no
clock, no randomness.

While ALIVE (calls are assumed to run one at a time, in sequence order, as
with ``max_concurrency=1``; replay is issued in sequence order regardless,
and its confirmations may come back in any order):

- every call reaches the planner as ``CallSubmitted(seq)`` after its
  ``ActorCallRecord`` is written, and waits in the shell until a
  ``DeliverQueuedCalls(up_to_seq)`` releases it to the actor;
- with ``checkpoint_interval = k > 0`` at most k calls are released after the
  last committed checkpoint. Once the k-th has finished the planner asks for
  ``TakeCheckpoint(after_seq)``; when ``CheckpointTaken`` says it is stored
  (and the ActorRecord names it) the next k are released. This window is what
  bounds a recovery to at most k replayed calls: no call past it ever ran.
  It costs one checkpoint round trip of stall every k calls. Without
  checkpoints every call is released at once and recovery replays the whole
  chain.

Recovery, as numbered steps:

1. ``ActorDied(actor, node)`` of the node the actor is on (older deaths are
   stale and ignored): ``UpdateActorState(RESTARTING)``, ``LoadActorRecord``
   (the durable truth: restarts so far, the last committed checkpoint).
2. ``ActorRecordLoaded``: if ``num_restarts >= max_restarts`` (and
   ``max_restarts != -1``) the actor is DEAD: ``FailPendingCalls`` with an
   ``ActorDiedError`` message, now and for every later call. Otherwise count
   the restart (``UpdateActorState(RESTARTING, num_restarts + 1)``) and
   ``PlaceActor(resources)``.
3. ``PlacementFound(node)`` -> ``RunCreation(node, is_replay=True)``: the
   constructor runs again with its recorded arguments.
4. ``CreationDone`` -> ``RestoreCheckpoint(object)`` if there is one, then
   (``RestoreDone``) ``LoadCalls(after_seq=checkpoint, limit)``.
5. ``CallsLoaded(page)``: ``ReplayCall`` for each recorded call after the
   checkpoint, strictly in sequence order, one page at a time; calls still
   waiting in the shell (submitted but never released, or submitted during
   recovery) are not replayed but delivered in step 6. A replayed call whose
   result was already delivered (its record says ``finished``, or the planner
   saw it finish) runs for its effect on the actor's state only
   (``deliver=False``); its result object is recreated under the same
   deterministic id (``ObjectID.from_index(call task id, i)``), and the
   shell stores it only if absent, so a caller holding the ref still sees one
   value. A call that had not finished is replayed with ``deliver=True``: its
   caller gets the result exactly once.
6. Last page replayed (``CallReplayed`` for every call): ``UpdateActorState
   (ALIVE)`` and ``DeliverQueuedCalls`` for the queued calls, in order,
   within the checkpoint window.

A death during steps 3-6 restarts recovery at step 2 with the record known
(it counts a restart). Every effect of steps 3-6 carries the ``incarnation``
(the restart count); events of an older incarnation are ignored, so late
reports from the instance that died cannot advance the new one.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from lineagerun.core.ids import ActorID, NodeID, ObjectID, TaskID
from lineagerun.exceptions import ActorDiedError, ActorUnavailableError, InvalidArgumentError

# Calls read per LoadCalls page: one control-store scan each; bounds the
# ReplayCall effects one event emits.
CALLS_PAGE_MAX_DEFAULT = 100
# Calls held per actor (waiting for the window, or for recovery). More means
# the actor cannot keep up; the call fails with ActorUnavailableError and the
# caller may retry, rather than the service growing without bound.
QUEUED_CALLS_MAX_DEFAULT = 10_000

ALIVE = "ALIVE"
RESTARTING = "RESTARTING"
DEAD = "DEAD"


# -------------------------------------------------------------------- events


@dataclass(frozen=True)
class ActorRecordSummary:
    """What the planner needs of an ActorRecord and its creation TaskSpec."""

    max_restarts: int  # -1 = no limit
    num_restarts: int
    checkpoint_interval: int  # 0 = never checkpoint
    checkpoint_sequence_number: int = 0  # 0: no checkpoint
    checkpoint_object_id: ObjectID | None = None
    resources: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CallSummary:
    """What the planner needs of an ActorCallRecord."""

    sequence_number: int
    task_id: TaskID
    finished: bool = False  # a result was produced (and delivered) at least once


@dataclass(frozen=True)
class ActorRegistered:
    """The actor was created (first run) and is alive on ``node_id``."""

    actor_id: ActorID
    record: ActorRecordSummary
    node_id: NodeID


@dataclass(frozen=True)
class ActorDied:
    actor_id: ActorID
    node_id: NodeID | None
    reason: str


@dataclass(frozen=True)
class ActorRecordLoaded:
    actor_id: ActorID
    record: ActorRecordSummary | None  # None: no ActorRecord in the control store


@dataclass(frozen=True)
class PlacementFound:
    actor_id: ActorID
    incarnation: int
    node_id: NodeID


@dataclass(frozen=True)
class CreationDone:
    actor_id: ActorID
    incarnation: int


@dataclass(frozen=True)
class RestoreDone:
    actor_id: ActorID
    incarnation: int


@dataclass(frozen=True)
class CallsLoaded:
    """A page of call records after ``after_seq``, at most ``limit`` of them
    (fewer means the last page)."""

    actor_id: ActorID
    incarnation: int
    calls: tuple[CallSummary, ...]


@dataclass(frozen=True)
class CallReplayed:
    actor_id: ActorID
    incarnation: int
    sequence_number: int


@dataclass(frozen=True)
class CallSubmitted:
    actor_id: ActorID
    sequence_number: int
    task_id: TaskID


@dataclass(frozen=True)
class CallFinished:
    """A released call finished on the live instance (its result delivered)."""

    actor_id: ActorID
    sequence_number: int


@dataclass(frozen=True)
class CheckpointTaken:
    """The checkpoint after ``sequence_number`` is stored and the ActorRecord names it."""

    actor_id: ActorID
    sequence_number: int
    object_id: ObjectID | None = None


@dataclass(frozen=True)
class CheckpointFailed:
    actor_id: ActorID
    sequence_number: int
    reason: str


Event = (ActorRegistered | ActorDied | ActorRecordLoaded | PlacementFound | CreationDone | RestoreDone
         | CallsLoaded | CallReplayed | CallSubmitted | CallFinished | CheckpointTaken | CheckpointFailed)


# ------------------------------------------------------------------- effects


@dataclass(frozen=True)
class UpdateActorState:
    actor_id: ActorID
    state: str  # ALIVE, RESTARTING or DEAD
    num_restarts: int
    node_id: NodeID | None = None
    reason: str = ""


@dataclass(frozen=True)
class LoadActorRecord:
    actor_id: ActorID


@dataclass(frozen=True)
class PlaceActor:
    actor_id: ActorID
    incarnation: int
    resources: Mapping[str, float]


@dataclass(frozen=True)
class RunCreation:
    actor_id: ActorID
    incarnation: int
    node_id: NodeID
    is_replay: bool = True


@dataclass(frozen=True)
class RestoreCheckpoint:
    actor_id: ActorID
    incarnation: int
    object_id: ObjectID
    sequence_number: int


@dataclass(frozen=True)
class LoadCalls:
    actor_id: ActorID
    incarnation: int
    after_seq: int
    limit: int


@dataclass(frozen=True)
class ReplayCall:
    """Run the recorded call on the new instance, in the order emitted;
    answer ``CallReplayed``. ``deliver``: its caller still waits for it."""

    actor_id: ActorID
    incarnation: int
    sequence_number: int
    task_id: TaskID
    deliver: bool


@dataclass(frozen=True)
class DeliverQueuedCalls:
    """Release the held calls with ``after_seq < seq <= up_to_seq`` to the
    actor, in order; held calls ``<= after_seq`` were run by replay and are
    dropped (replay delivered their results)."""

    actor_id: ActorID
    after_seq: int
    up_to_seq: int


@dataclass(frozen=True)
class FailPendingCalls:
    """Fail every call of the actor held, in flight, or submitted later."""

    actor_id: ActorID
    message: str

    def error(self) -> ActorDiedError:
        return ActorDiedError(self.message)


@dataclass(frozen=True)
class RejectCall:
    actor_id: ActorID
    sequence_number: int
    message: str

    def error(self) -> ActorUnavailableError:
        return ActorUnavailableError(self.message)


@dataclass(frozen=True)
class TakeCheckpoint:
    """Checkpoint the actor's state as it is after call ``after_seq``."""

    actor_id: ActorID
    after_seq: int


@dataclass(frozen=True)
class EmitEvent:
    kind: str  # an EventKind name
    actor_id: ActorID
    node_id: NodeID | None = None
    count: int = 0
    detail: str = ""


Effect = (UpdateActorState | LoadActorRecord | PlaceActor | RunCreation | RestoreCheckpoint | LoadCalls
          | ReplayCall | DeliverQueuedCalls | FailPendingCalls | RejectCall | TakeCheckpoint | EmitEvent)


# --------------------------------------------------------------------- state


class Phase(enum.Enum):
    ALIVE = "alive"
    LOADING_RECORD = "loading_record"
    PLACING = "placing"
    CREATING = "creating"
    RESTORING = "restoring"
    LOADING_CALLS = "loading_calls"
    REPLAYING = "replaying"
    DEAD = "dead"


RECOVERY_PHASES = frozenset({Phase.PLACING, Phase.CREATING, Phase.RESTORING, Phase.LOADING_CALLS, Phase.REPLAYING})


@dataclass
class _Actor:
    actor_id: ActorID
    phase: Phase
    record: ActorRecordSummary | None = None
    node_id: NodeID | None = None
    num_restarts: int = 0
    checkpoint_seq: int = 0
    checkpoint_object_id: ObjectID | None = None
    held: deque[int] = field(default_factory=deque)  # submitted, not released; increasing
    released_high: int = 0  # highest seq released to (or replayed on) the live instance
    released_since_checkpoint: int = 0
    finished_high: int = 0  # every call <= this has delivered its result
    checkpoint_pending: bool = False
    death_reason: str = ""
    # Replay of the current recovery.
    to_replay: deque[int] = field(default_factory=deque)  # emitted, not yet confirmed
    replayed: int = 0
    last_loaded_seq: int = 0
    last_page_seen: bool = False


class ActorRecoveryPlanner:
    def __init__(self, *, calls_page_max: int = CALLS_PAGE_MAX_DEFAULT,
                 queued_calls_max: int = QUEUED_CALLS_MAX_DEFAULT):
        for name, value in (("calls_page_max", calls_page_max), ("queued_calls_max", queued_calls_max)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be an int >= 1, got {value!r}")
        self.calls_page_max = calls_page_max
        self.queued_calls_max = queued_calls_max
        self.actors: dict[ActorID, _Actor] = {}

    def handle(self, event: Event) -> list[Effect]:
        handler = self._HANDLERS.get(type(event))
        if handler is None:
            raise InvalidArgumentError(f"ActorRecoveryPlanner cannot handle {type(event).__name__}")
        if not isinstance(event.actor_id, ActorID):
            raise InvalidArgumentError(f"{type(event).__name__}.actor_id must be an ActorID, got {event.actor_id!r}")
        out: list[Effect] = []
        handler(self, event, out)
        return out

    # ---------------------------------------------------------------- queries

    def phase_of(self, actor_id: ActorID) -> Phase | None:
        actor = self.actors.get(actor_id)
        return actor.phase if actor else None

    def check_invariants(self) -> None:
        for actor in self.actors.values():
            assert list(actor.held) == sorted(set(actor.held)), actor
            assert actor.finished_high <= actor.released_high or actor.phase is not Phase.ALIVE, actor
            if actor.record is not None and actor.record.checkpoint_interval > 0 and actor.phase is Phase.ALIVE:
                assert actor.released_since_checkpoint <= actor.record.checkpoint_interval, actor
            if actor.phase is Phase.DEAD:
                assert not actor.held, actor

    # ------------------------------------------------------------ alive path

    def _window_left(self, actor: _Actor) -> int | None:
        interval = actor.record.checkpoint_interval if actor.record else 0
        if interval <= 0:
            return None  # no window: release everything
        return interval - actor.released_since_checkpoint

    def _take_from_held(self, actor: _Actor) -> int:
        """Move the held calls the window allows to released; how many."""
        left = self._window_left(actor)
        count = len(actor.held) if left is None else max(0, min(left, len(actor.held)))
        for _ in range(count):
            actor.released_high = actor.held.popleft()
        actor.released_since_checkpoint += count
        return count

    def _release(self, actor: _Actor, out: list[Effect]) -> None:
        if actor.phase is Phase.ALIVE and actor.held and self._take_from_held(actor):
            out.append(DeliverQueuedCalls(actor.actor_id, 0, actor.released_high))

    def _maybe_checkpoint(self, actor: _Actor, out: list[Effect]) -> None:
        left = self._window_left(actor)
        if (actor.phase is Phase.ALIVE and left is not None and left <= 0 and not actor.checkpoint_pending
                and actor.finished_high >= actor.released_high):
            actor.checkpoint_pending = True
            out.append(TakeCheckpoint(actor.actor_id, actor.released_high))

    def _on_registered(self, event: ActorRegistered, out: list[Effect]) -> None:
        if event.actor_id in self.actors:
            return
        self.actors[event.actor_id] = _Actor(
            event.actor_id, Phase.ALIVE, record=event.record, node_id=event.node_id,
            num_restarts=event.record.num_restarts, checkpoint_seq=event.record.checkpoint_sequence_number,
            checkpoint_object_id=event.record.checkpoint_object_id,
            released_high=event.record.checkpoint_sequence_number,
            finished_high=event.record.checkpoint_sequence_number)

    def _on_call_submitted(self, event: CallSubmitted, out: list[Effect]) -> None:
        actor = self.actors.get(event.actor_id)
        if actor is None:
            raise InvalidArgumentError(f"call {event.sequence_number} of unknown actor {event.actor_id.hex()}: "
                                       "feed ActorRegistered (or ActorDied) for it first")
        if actor.phase is Phase.DEAD:
            out.append(FailPendingCalls(actor.actor_id, self._dead_message(actor)))
            return
        seq = event.sequence_number
        if seq <= actor.released_high:
            return  # a duplicate submission
        if actor.held and seq <= actor.held[-1]:
            if seq in actor.held:
                return
            raise InvalidArgumentError(f"call {seq} of actor {actor.actor_id.hex()} submitted after call "
                                       f"{actor.held[-1]}: sequence numbers must grow")
        if len(actor.held) >= self.queued_calls_max:
            out.append(RejectCall(actor.actor_id, seq, f"actor {actor.actor_id.hex()} has {self.queued_calls_max} "
                                  "calls queued (queued_calls_max); retry later"))
            return
        actor.held.append(seq)
        self._release(actor, out)

    def _on_call_finished(self, event: CallFinished, out: list[Effect]) -> None:
        actor = self.actors.get(event.actor_id)
        if actor is None or actor.phase is not Phase.ALIVE or event.sequence_number > actor.released_high:
            return  # a late report from an instance that died, or nonsense
        actor.finished_high = max(actor.finished_high, event.sequence_number)
        self._maybe_checkpoint(actor, out)

    def _on_checkpoint_taken(self, event: CheckpointTaken, out: list[Effect]) -> None:
        actor = self.actors.get(event.actor_id)
        if actor is None or actor.phase is not Phase.ALIVE or event.sequence_number <= actor.checkpoint_seq:
            return
        actor.checkpoint_seq, actor.checkpoint_object_id = event.sequence_number, event.object_id
        actor.checkpoint_pending = False
        if event.sequence_number >= actor.released_high:  # the window was closed behind it: all covered
            actor.released_since_checkpoint = 0
        out.append(EmitEvent("ACTOR_CHECKPOINTED", actor.actor_id, actor.node_id, event.sequence_number))
        self._release(actor, out)

    def _on_checkpoint_failed(self, event: CheckpointFailed, out: list[Effect]) -> None:
        actor = self.actors.get(event.actor_id)
        if actor is None or actor.phase is not Phase.ALIVE or not actor.checkpoint_pending:
            return
        # Availability over the bound: the window opens again, and the next
        # recovery may replay up to two intervals. Said in the event.
        actor.checkpoint_pending = False
        actor.released_since_checkpoint = 0
        out.append(EmitEvent("ACTOR_CHECKPOINTED", actor.actor_id, actor.node_id, event.sequence_number,
                             f"checkpoint after call {event.sequence_number} failed ({event.reason}); the next "
                             "recovery may replay more than checkpoint_interval calls"))
        self._release(actor, out)

    # -------------------------------------------------------------- recovery

    def _dead_message(self, actor: _Actor) -> str:
        return f"actor {actor.actor_id.hex()} is dead: {actor.death_reason}"

    def _on_died(self, event: ActorDied, out: list[Effect]) -> None:
        actor = self.actors.get(event.actor_id)
        if actor is None:
            actor = self.actors[event.actor_id] = _Actor(event.actor_id, Phase.LOADING_RECORD, node_id=event.node_id)
        elif actor.phase in (Phase.DEAD, Phase.LOADING_RECORD, Phase.PLACING):
            return  # already handled, or no instance exists right now that could die
        elif event.node_id is not None and actor.node_id is not None and event.node_id != actor.node_id:
            return  # a late report about an instance that was already replaced
        actor.death_reason = event.reason
        out.append(EmitEvent("ACTOR_DIED", actor.actor_id, event.node_id, detail=event.reason))
        if actor.phase in (Phase.ALIVE, Phase.LOADING_RECORD):
            # The record is the durable truth (restarts so far, last checkpoint).
            actor.phase = Phase.LOADING_RECORD
            out.append(LoadActorRecord(actor.actor_id))
            return
        self._restart_or_die(actor, out)  # died during recovery: the record is known

    def _on_record_loaded(self, event: ActorRecordLoaded, out: list[Effect]) -> None:
        actor = self.actors.get(event.actor_id)
        if actor is None or actor.phase is not Phase.LOADING_RECORD:
            return
        if event.record is None:
            actor.death_reason = actor.death_reason or "its ActorRecord is not in the control store"
            self._die(actor, out)
            return
        actor.record = event.record
        actor.num_restarts = event.record.num_restarts
        actor.checkpoint_seq = event.record.checkpoint_sequence_number
        actor.checkpoint_object_id = event.record.checkpoint_object_id
        actor.finished_high = max(actor.finished_high, actor.checkpoint_seq)
        self._restart_or_die(actor, out)

    def _restart_or_die(self, actor: _Actor, out: list[Effect]) -> None:
        record = actor.record
        assert record is not None
        if record.max_restarts != -1 and actor.num_restarts >= record.max_restarts:
            actor.death_reason = (f"{actor.death_reason}; max_restarts={record.max_restarts} "
                                  f"and {actor.num_restarts} restart(s) made")
            self._die(actor, out)
            return
        actor.num_restarts += 1
        actor.phase = Phase.PLACING
        actor.node_id = None
        actor.to_replay.clear()
        actor.replayed, actor.last_loaded_seq, actor.last_page_seen = 0, actor.checkpoint_seq, False
        actor.checkpoint_pending = False
        out.append(UpdateActorState(actor.actor_id, RESTARTING, actor.num_restarts, None, actor.death_reason))
        out.append(PlaceActor(actor.actor_id, actor.num_restarts, dict(record.resources)))

    def _die(self, actor: _Actor, out: list[Effect]) -> None:
        actor.phase = Phase.DEAD
        actor.held.clear()
        out.append(UpdateActorState(actor.actor_id, DEAD, actor.num_restarts, None, actor.death_reason))
        out.append(FailPendingCalls(actor.actor_id, self._dead_message(actor)))

    def _current(self, event, phase: Phase) -> _Actor | None:
        actor = self.actors.get(event.actor_id)
        if actor is None or actor.phase is not phase or event.incarnation != actor.num_restarts:
            return None
        return actor

    def _on_placement_found(self, event: PlacementFound, out: list[Effect]) -> None:
        actor = self._current(event, Phase.PLACING)
        if actor is None:
            return
        actor.phase, actor.node_id = Phase.CREATING, event.node_id
        out.append(RunCreation(actor.actor_id, actor.num_restarts, event.node_id, True))

    def _on_creation_done(self, event: CreationDone, out: list[Effect]) -> None:
        actor = self._current(event, Phase.CREATING)
        if actor is None:
            return
        if actor.checkpoint_seq and actor.checkpoint_object_id is not None:
            actor.phase = Phase.RESTORING
            out.append(RestoreCheckpoint(actor.actor_id, actor.num_restarts, actor.checkpoint_object_id,
                                         actor.checkpoint_seq))
            return
        self._load_calls(actor, out)

    def _on_restore_done(self, event: RestoreDone, out: list[Effect]) -> None:
        actor = self._current(event, Phase.RESTORING)
        if actor is not None:
            self._load_calls(actor, out)

    def _load_calls(self, actor: _Actor, out: list[Effect]) -> None:
        actor.phase = Phase.LOADING_CALLS
        out.append(LoadCalls(actor.actor_id, actor.num_restarts, actor.last_loaded_seq, self.calls_page_max))

    def _on_calls_loaded(self, event: CallsLoaded, out: list[Effect]) -> None:
        actor = self._current(event, Phase.LOADING_CALLS)
        if actor is None:
            return
        if len(event.calls) > self.calls_page_max:
            raise InvalidArgumentError(f"CallsLoaded carries {len(event.calls)} calls, more than the "
                                       f"limit {self.calls_page_max} asked for")
        held = set(actor.held)
        previous = actor.last_loaded_seq
        for call in event.calls:
            seq = call.sequence_number
            if seq <= previous:
                raise InvalidArgumentError(f"CallsLoaded for actor {actor.actor_id.hex()}: call {seq} is not after "
                                           f"{previous}; pages must be in sequence order after after_seq")
            previous = seq
            if seq in held:
                continue  # never ran: delivered after the replay, as a queued call
            deliver = not call.finished and seq > actor.finished_high
            actor.to_replay.append(seq)
            out.append(ReplayCall(actor.actor_id, actor.num_restarts, seq, call.task_id, deliver))
        actor.last_loaded_seq = previous
        actor.last_page_seen = len(event.calls) < self.calls_page_max
        actor.phase = Phase.REPLAYING
        self._after_replays(actor, out)

    def _on_call_replayed(self, event: CallReplayed, out: list[Effect]) -> None:
        actor = self._current(event, Phase.REPLAYING)
        if actor is None or event.sequence_number not in actor.to_replay:
            return  # stale, or a duplicate
        # Confirmations may come out of order: an actor with max_concurrency
        # > 1 runs the replayed calls of a page on several threads. Ignoring
        # an early one left the recovery waiting forever (the old hang).
        seq = event.sequence_number
        actor.to_replay.remove(seq)
        actor.replayed += 1
        actor.released_high = max(actor.released_high, seq)
        actor.finished_high = max(actor.finished_high, seq)
        self._after_replays(actor, out)

    def _after_replays(self, actor: _Actor, out: list[Effect]) -> None:
        if actor.to_replay:
            return
        if not actor.last_page_seen:
            self._load_calls(actor, out)
            return
        actor.phase = Phase.ALIVE
        replayed_high = max(actor.released_high, actor.checkpoint_seq)
        actor.released_high = actor.finished_high = replayed_high
        actor.released_since_checkpoint = actor.replayed
        out.append(UpdateActorState(actor.actor_id, ALIVE, actor.num_restarts, actor.node_id))
        out.append(EmitEvent("ACTOR_RESTARTED", actor.actor_id, actor.node_id, actor.num_restarts))
        out.append(EmitEvent("ACTOR_CALLS_REPLAYED", actor.actor_id, actor.node_id, actor.replayed,
                             f"after checkpoint {actor.checkpoint_seq}"))
        # Held calls run by replay (recorded, then found in the scan) are dropped by the shell.
        while actor.held and actor.held[0] <= replayed_high:
            actor.held.popleft()
        self._take_from_held(actor)
        out.append(DeliverQueuedCalls(actor.actor_id, replayed_high, actor.released_high))
        self._maybe_checkpoint(actor, out)

    _HANDLERS = {
        ActorRegistered: _on_registered,
        ActorDied: _on_died,
        ActorRecordLoaded: _on_record_loaded,
        PlacementFound: _on_placement_found,
        CreationDone: _on_creation_done,
        RestoreDone: _on_restore_done,
        CallsLoaded: _on_calls_loaded,
        CallReplayed: _on_call_replayed,
        CallSubmitted: _on_call_submitted,
        CallFinished: _on_call_finished,
        CheckpointTaken: _on_checkpoint_taken,
        CheckpointFailed: _on_checkpoint_failed,
    }
