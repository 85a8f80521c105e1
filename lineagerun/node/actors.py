"""Actors hosted by this node manager: their state, call queues and records.

Each actor has a dedicated worker. Calls get the actor's next sequence
number when they are submitted, their ``ActorCallRecord`` is written with the
spec, and they are sent to the actor's worker in sequence order (a call whose
by-reference arguments are not here yet holds back the calls after it). The
worker runs them in that order (several at once for max_concurrency > 1).
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass, field

from lineagerun.core.ids import ActorID, WorkerID
from lineagerun.core.keys import actor_call_key, actor_key, name_key
from lineagerun.rpc import lineage_pb2

# Calls sent to an actor's worker ahead of the ones it is running, so the
# next call is already there when one finishes (the worker keeps order).
ACTOR_CALLS_AHEAD_MAX = 16


class ActorPhase(enum.Enum):
    PENDING_CREATION = "pending_creation"
    ALIVE = "alive"
    RESTARTING = "restarting"  # its worker died; being recreated and replayed
    DEAD = "dead"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class ActorEntry:
    actor_id: bytes
    creation_task_id: bytes
    creation_spec: lineage_pb2.TaskSpec
    name: str
    namespace: str
    detached: bool
    owner: object  # the Session that created it
    node_id: bytes
    max_concurrency: int = 1
    phase: ActorPhase = ActorPhase.PENDING_CREATION
    worker_id: WorkerID | None = None
    next_sequence_number: int = 0
    queue: deque = field(default_factory=deque)  # TaskRuns not yet sent, by sequence number
    in_flight: dict = field(default_factory=dict)  # task id -> TaskRun sent to the worker
    death_kind: str = ""
    death_message: str = ""
    # Restarts (actors with max_restarts != 0; see actor_recovery_driver.py).
    num_restarts: int = 0
    checkpoint_sequence_number: int = 0  # the last call the checkpoint covers
    checkpoint_object_id: bytes = b""  # b"": no checkpoint
    held: dict = field(default_factory=dict)  # seq -> TaskRun written, not yet released by the planner
    orphaned: dict = field(default_factory=dict)  # task id -> TaskRun of a dead instance, answered by replay
    recovery_runs: dict = field(default_factory=dict)  # task id -> RecoveryRun sent to the new instance
    replay_specs: dict = field(default_factory=dict)  # seq -> TaskSpec of the page being replayed
    restart_checkpoint: bytes | None = None  # the checkpoint value to restore on the new instance
    restart_worker_ready: bool = False
    restart_incarnation: int = 0  # the restart the current worker was started for
    restart_creation_sent: bool = False
    checkpoint_wanted: object = None  # a TakeCheckpoint waiting for the calls in flight to finish
    failed_recoveries: int = 0  # restarts in a row whose instance died before the recovery completed
    died_ms: int = 0
    # Multi-node (actor_routing.py). A creation submitted here waits for its
    # placement: calls made meanwhile are deferred, then run here or follow
    # the creation to the node that hosts it.
    placed_here: bool = False
    deferred: list = field(default_factory=list)  # (session, spec) before the placement
    # Recovered on this node after its host node died ("adopted").
    adopted_run: object = None  # the creation TaskRun to schedule here (lifetime resources)
    adopting: bool = False  # its record and call records are being read
    intake: deque = field(default_factory=deque)  # (session, spec, resent) waiting for adoption to settle
    intake_draining: bool = False
    # Results of calls since the last checkpoint, stored with the next one:
    # a caller on another node may not have received them when this node dies.
    window_returns: list = field(default_factory=list)
    # Node seqs below this were fed to the recovery planner (CallSubmitted):
    # a replay reads no further, because a call recorded but not yet fed is
    # not in the planner's held list, and replaying it would run it ahead of
    # (and then drop) older held calls.
    replay_end_seq: int = 0
    owner_node_id: bytes = b""  # where it was created (ActorRecord.owner_node_id; actor_takeover.py)

    @property
    def key(self) -> bytes:
        return actor_key(ActorID(self.actor_id))

    def name_key(self) -> bytes | None:
        return name_key(self.namespace, self.name) if self.name else None

    def record(self) -> lineage_pb2.ActorRecord:
        state = {ActorPhase.PENDING_CREATION: lineage_pb2.PENDING_CREATION, ActorPhase.ALIVE: lineage_pb2.ALIVE,
                 ActorPhase.RESTARTING: lineage_pb2.RESTARTING, ActorPhase.DEAD: lineage_pb2.DEAD}[self.phase]
        record = lineage_pb2.ActorRecord(
            actor_id=self.actor_id, creation_task_id=self.creation_task_id, state=state, node_id=self.node_id,
            worker_id=self.worker_id.binary() if self.worker_id else b"", name=self.name, namespace=self.namespace,
            lifetime=lineage_pb2.DETACHED if self.detached else lineage_pb2.NON_DETACHED,
            max_restarts=self.creation_spec.max_restarts, next_sequence_number=self.next_sequence_number,
            checkpoint_interval=self.creation_spec.checkpoint_interval,
            owner_worker_id=self.creation_spec.owner_worker_id, updated_ms=now_ms(), num_restarts=self.num_restarts,
            checkpoint_sequence_number=self.checkpoint_sequence_number,
            checkpoint_object_id=self.checkpoint_object_id, owner_node_id=self.owner_node_id)
        if self.phase is ActorPhase.DEAD:
            record.death_cause.kind = self.death_kind
            record.death_cause.message = self.death_message
        return record

    @property
    def restartable(self) -> bool:
        """Whether the recovery planner drives this actor (it may restart)."""
        return self.creation_spec.max_restarts != 0

    def take_sequence_number(self) -> int:
        number = self.next_sequence_number
        self.next_sequence_number += 1
        return number

    def can_send_more(self) -> bool:
        return len(self.in_flight) < self.max_concurrency + ACTOR_CALLS_AHEAD_MAX


def call_record(spec: lineage_pb2.TaskSpec, caller_worker_id: bytes, finished: bool = False) -> tuple[bytes, bytes]:
    record = lineage_pb2.ActorCallRecord(
        actor_id=spec.actor_id, sequence_number=spec.sequence_number, task_id=spec.task_id,
        method_name=spec.method_name, caller_worker_id=caller_worker_id, finished=finished,
        submitted_ms=spec.submitted_ms)
    return actor_call_key(ActorID(spec.actor_id), spec.sequence_number), record.SerializeToString()


class ActorTable:
    def __init__(self):
        self.actors: dict[bytes, ActorEntry] = {}
        self.by_name: dict[tuple[str, str], ActorEntry] = {}
        self.by_worker: dict[WorkerID, ActorEntry] = {}

    def add(self, actor: ActorEntry) -> None:
        self.actors[actor.actor_id] = actor
        if actor.name:
            self.by_name[(actor.namespace, actor.name)] = actor

    def get(self, actor_id: bytes) -> ActorEntry | None:
        return self.actors.get(actor_id)

    def named(self, namespace: str, name: str) -> ActorEntry | None:
        actor = self.by_name.get((namespace, name))
        return actor if actor is not None and actor.phase is not ActorPhase.DEAD else None

    def bind_worker(self, actor: ActorEntry, worker_id: WorkerID) -> None:
        actor.worker_id = worker_id
        self.by_worker[worker_id] = actor

    def unbind_worker(self, actor: ActorEntry) -> None:
        if actor.worker_id is not None and self.by_worker.get(actor.worker_id) is actor:
            del self.by_worker[actor.worker_id]
        actor.worker_id = None

    def mark_dead(self, actor: ActorEntry, kind: str, message: str) -> None:
        actor.phase = ActorPhase.DEAD
        actor.death_kind, actor.death_message = kind, message
        if actor.worker_id is not None:
            self.by_worker.pop(actor.worker_id, None)
        if actor.name and self.by_name.get((actor.namespace, actor.name)) is actor:
            del self.by_name[(actor.namespace, actor.name)]
