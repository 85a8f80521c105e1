"""Actor restarts on this node: the shell that drives ``core/actor_recovery.py``.

An actor with ``max_restarts != 0`` ("restartable") has its calls go through
the recovery planner: every call, once its ``ActorCallRecord`` is written,
is fed as ``CallSubmitted`` and reaches the actor's queue only when the
planner releases it (``DeliverQueuedCalls``; with ``checkpoint_interval=k``
at most k calls after the last committed checkpoint). When the actor's
worker dies, the planner walks the recovery (record, placement, constructor,
checkpoint, replay of the recorded calls, queued calls); this module carries
out its effects with the node's worker pool, object table and control store,
and feeds back what happened.

Shell decisions (docs/fault-tolerance.md, "Actor recovery (as built)"):

- Sequence numbers: the node numbers calls from 0 (``call/`` keys,
  ``TaskSpec.sequence_number``); the planner from 1 (0 = "no checkpoint").
  Planner seq = node seq + 1. ``ActorRecord.checkpoint_sequence_number`` is
  the node seq of the last call the checkpoint covers, and a checkpoint
  exists iff ``checkpoint_object_id`` is set.
- A checkpoint is the actor's ``__lineagerun_checkpoint__()`` value,
  serialised by the worker (the control plane never unpickles it), stored
  as an ``ObjectRecord`` with ``inline_value`` under the deterministic id
  ``ObjectID.from_index(checkpoint task id, 1)``; the ``ActorRecord`` names
  it. Both are written in one waited-for batch before the planner hears
  ``CheckpointTaken``.
- Placement is this node (single node). The new instance gets a worker of
  its own, started for it and never given to the scheduler; the actor's
  lifetime resources stay held through the restart.
- The checkpoint is restored in the same ``ExecuteTask`` as the constructor
  (``restore_checkpoint``): ``RestoreCheckpoint`` is answered at once.
- Replayed calls run with ``is_replay``; a call whose caller still waits
  (``deliver``) has its results recorded (the object table keeps the first
  value of an id, so nothing is delivered twice); others run for their effect
  on the state only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections import Counter, deque
from dataclasses import dataclass, field

from lineagerun.control.client import PutOp
from lineagerun.core import actor_recovery as ar
from lineagerun.core import local_scheduler as ls
from lineagerun.core.ids import ActorID, ObjectID, TaskID
from lineagerun.core.keys import actor_call_key, event_key, object_key, task_key
from lineagerun.exceptions import InvalidArgumentError
from lineagerun.node import specs
from lineagerun.node.actor_replay_attempts import next_attempt_numbers, started_attempt
from lineagerun.node.actors import ActorEntry, ActorPhase, call_record, now_ms
from lineagerun.rpc import lineage_pb2, node_pb2

log = logging.getLogger(__name__)

CHECKPOINT_METHOD = "__lineagerun_checkpoint__"
RESTORE_METHOD = "__lineagerun_restore__"
# Control-store reads of a recovery (record, call pages, checkpoint) are
# retried this many times, RECOVERY_READ_BACKOFF_S apart, before the actor is
# declared dead: the client already retries transient errors inside.
RECOVERY_READ_ATTEMPTS_MAX = 3
RECOVERY_READ_BACKOFF_S = 0.2
# A restart whose instance dies before the recovery completes (a worker that
# cannot start, a constructor that crashes the process) is retried after
# RESTART_BACKOFF_BASE_S x 2^(n-1), at most RESTART_BACKOFF_MAX_S: with
# max_restarts=-1 it must not become a fork loop.
RESTART_BACKOFF_BASE_S = 0.1
RESTART_BACKOFF_MAX_S = 10.0


@dataclass(eq=False)
class RecoveryRun:
    """Something sent to an actor's worker on the planner's behalf."""

    kind: str  # "creation", "replay" or "checkpoint"
    run: object  # server.TaskRun
    incarnation: int
    planner_seq: int = 0
    deliver: bool = False
    attempt_number: int = 0  # of the TaskAttempt it is recorded as (REPLAY); ExecuteTask carries the incarnation


@dataclass(eq=False)
class _RecoveryState:
    planner: ar.ActorRecoveryPlanner = field(default_factory=ar.ActorRecoveryPlanner)
    events: deque = field(default_factory=deque)
    draining: bool = False
    counters: Counter = field(default_factory=Counter)
    # task id -> attempt number its next replay is recorded as (read with the
    # call pages; popped when the replay is sent: at most one page per actor).
    replay_attempts: dict = field(default_factory=dict)


def checkpoint_task_id(actor_id: ActorID, planner_seq: int) -> TaskID:
    """A task id of the actor that no call has: the checkpoint after ``planner_seq``."""
    unique = hashlib.blake2b(b"checkpoint" + actor_id.binary() + planner_seq.to_bytes(8, "big"),
                             digest_size=TaskID.UNIQUE_SIZE).digest()
    return TaskID(unique + actor_id.binary())


def _summary_of(record: lineage_pb2.ActorRecord) -> ar.ActorRecordSummary:
    has_checkpoint = bool(record.checkpoint_object_id)
    return ar.ActorRecordSummary(
        max_restarts=record.max_restarts, num_restarts=record.num_restarts,
        checkpoint_interval=record.checkpoint_interval,
        checkpoint_sequence_number=record.checkpoint_sequence_number + 1 if has_checkpoint else 0,
        checkpoint_object_id=ObjectID(record.checkpoint_object_id) if has_checkpoint else None)


class ActorRecoveryDriver:
    """Methods of NodeManager (through ActorHandlers) that drive restarts."""

    # ------------------------------------------------------------ plumbing

    def _recovery(self) -> _RecoveryState:
        state = self.__dict__.get("_recovery_state")
        if state is None:
            state = self.__dict__["_recovery_state"] = _RecoveryState()
        return state

    @property
    def recovery_counters(self) -> dict[str, int]:
        return dict(self._recovery().counters)

    def _recovery_feed(self, event) -> None:
        """Hand the planner an event; effects may feed more (queued, not nested)."""
        state = self._recovery()
        state.events.append(event)
        if state.draining:
            return
        state.draining = True
        try:
            while state.events:
                current = state.events.popleft()
                try:
                    effects = state.planner.handle(current)
                except InvalidArgumentError:
                    log.exception("actor recovery planner refused %s", current)
                    continue
                for effect in effects:
                    actor = self.actors.get(effect.actor_id.binary())
                    if actor is None:
                        continue
                    try:
                        self._RECOVERY_EFFECTS[type(effect)](self, actor, effect)
                    except Exception:  # noqa: BLE001 - one actor's bug must not stop the others' recovery
                        log.exception("actor %s: carrying out %s failed", actor.actor_id.hex(), effect)
        finally:
            state.draining = False

    def _ensure_registered(self, actor: ActorEntry) -> None:
        actor_id = ActorID(actor.actor_id)
        if actor_id not in self._recovery().planner.actors:
            spec = actor.creation_spec
            summary = ar.ActorRecordSummary(max_restarts=spec.max_restarts, num_restarts=actor.num_restarts,
                                            checkpoint_interval=spec.checkpoint_interval)
            self._recovery_feed(ar.ActorRegistered(actor_id, summary, self.node_id))

    def _forget_restartable(self, actor: ActorEntry) -> None:
        """The actor is dead for good (killed, owner gone, restarts used up)."""
        self._recovery().planner.actors.pop(ActorID(actor.actor_id), None)
        actor.recovery_runs.clear()
        actor.replay_specs.clear()

    def _read_control_store(self, fn, *args):
        """A coroutine running a blocking control-store read off the loop,
        retried: ``(True, value)`` or ``(False, last error)``."""
        async def read():
            loop = asyncio.get_running_loop()
            for attempt in range(RECOVERY_READ_ATTEMPTS_MAX):
                try:
                    return True, await loop.run_in_executor(None, fn, *args)
                except Exception as exc:  # noqa: BLE001 - retried, then the actor dies with it
                    log.warning("actor recovery read failed (attempt %d): %s", attempt + 1, exc)
                    error = exc
                    await asyncio.sleep(RECOVERY_READ_BACKOFF_S)
            return False, error
        return read()

    def _recovery_failed(self, actor: ActorEntry, why: str) -> None:
        worker_id = actor.worker_id
        self._actor_died(actor, "ActorDiedError", why)
        if worker_id is not None:
            self.pool.kill(worker_id)

    # ----------------------------------------------------------- alive path

    def _actor_call_written(self, actor: ActorEntry, run) -> None:
        """A call's spec and record are durable: queue it (through the planner
        for a restartable actor)."""
        if run.arg_ids:  # held until the call ends: its caller may drop its refs while it waits
            self.objects.pin(run.arg_ids, run.holder())
            self.reconstruction.check_wanted(run.arg_ids)
        if not actor.restartable or actor.phase is ActorPhase.DEAD:
            actor.queue.append(run)
            self._pump_actor(actor)
            return
        self._ensure_registered(actor)
        seq = run.spec.sequence_number
        actor.held[seq] = run
        actor.replay_end_seq = max(actor.replay_end_seq, seq + 1)
        actor_id = ActorID(actor.actor_id)
        self._recovery_feed(ar.CallSubmitted(actor_id, seq + 1, TaskID(run.task_id)))
        planned = self._recovery().planner.actors.get(actor_id)
        if (seq in actor.held and planned is not None and seq + 1 <= planned.released_high
                and seq + 1 not in planned.held):
            # Its record was read by a replay before this write was
            # acknowledged: the replay ran it and delivered its results.
            del actor.held[seq]
            self.tasks.pop(run.task_id, None)

    def _restartable_task_finished(self, session, message: node_pb2.TaskFinished) -> bool:
        """TaskFinished from a restartable actor's worker; False: not ours."""
        worker_id = session.worker_id
        actor = self.actors.by_worker.get(worker_id) if worker_id is not None else None
        if actor is None or not actor.restartable:
            return False
        recovery_run = actor.recovery_runs.get(message.task_id)
        if recovery_run is not None and recovery_run.run.attempt == message.attempt_number:
            del actor.recovery_runs[message.task_id]
            {"creation": self._restart_creation_finished, "replay": self._replay_finished,
             "checkpoint": self._checkpoint_finished}[recovery_run.kind](actor, recovery_run, message)
            return True
        run = self.tasks.get(message.task_id)
        if (run is None or not run.spec.is_actor_task or run.worker_id != worker_id
                or run.attempt != message.attempt_number):
            return False
        del self.tasks[message.task_id]
        self._record_results(run, message)
        if self.cluster is not None and actor.creation_spec.checkpoint_interval > 0:
            actor.window_returns.extend(run.returns)  # stored with the next checkpoint
        self.objects.release_holder(run.holder())
        actor.in_flight.pop(run.task_id, None)
        key, value = call_record(run.spec, run.spec.owner_worker_id, finished=True)
        self.writer.write_later(key, value)
        self._recovery_feed(ar.CallFinished(ActorID(actor.actor_id), run.spec.sequence_number + 1))
        self._pump_actor(actor)
        self._send_checkpoint(actor)
        return True

    def _cancel_restartable_call(self, actor: ActorEntry, run) -> None:
        """Cancelling a call of a restartable actor answers its caller with
        TaskCancelledError but the call still runs, in order: it is in the
        recorded chain, and a replay must do what the first run did."""
        message = (f"call {run.spec.method_name} ({run.task_id.hex()[:16]}) of actor {actor.actor_id.hex()} was "
                   "cancelled (it still runs: a restartable actor's calls are replayed after a restart)")
        self._fail_returns(run.returns, "TaskCancelledError", message)

    # ---------------------------------------------------------------- death

    def _actor_worker_died(self, actor: ActorEntry, worker_id, why: str) -> None:
        if not actor.restartable or actor.phase is ActorPhase.DEAD:
            self._actor_died(actor, "ActorDiedError", why)
            return
        if worker_id != actor.worker_id:
            return  # an instance that was already replaced
        self._adopted_creation_died(actor, worker_id, why)
        for run in list(actor.in_flight.values()) + list(actor.queue):
            # Released calls are recorded: the replay answers them.
            self.tasks.pop(run.task_id, None)
            self.objects.release_holder(run.holder())
            actor.orphaned[run.task_id] = run
        actor.in_flight.clear()
        actor.queue.clear()
        for recovery_run in actor.recovery_runs.values():
            if recovery_run.kind != "checkpoint":  # the replays and constructor it was running
                run = recovery_run.run
                run.attempt = recovery_run.attempt_number
                self._record_attempt(run, lineage_pb2.FAILED, ("ActorDiedError", why))
        actor.recovery_runs.clear()
        actor.replay_specs.clear()
        numbers = self._recovery().replay_attempts  # this actor's: its task ids end with its id
        for task_id in [t for t in numbers if t[TaskID.UNIQUE_SIZE:] == actor.actor_id]:
            del numbers[task_id]
        actor.checkpoint_wanted = None
        if actor.phase is ActorPhase.RESTARTING:
            actor.failed_recoveries += 1
        self.actors.unbind_worker(actor)
        actor.died_ms = actor.died_ms if actor.phase is ActorPhase.RESTARTING else now_ms()
        actor.phase = ActorPhase.RESTARTING
        self._recovery_feed(ar.ActorDied(ActorID(actor.actor_id), self.node_id, why))

    def _adopted_creation_died(self, actor: ActorEntry, worker_id, why: str) -> None:
        """An adopted actor's constructor ran through the local scheduler
        (actor_routing.py) on the worker that died: take it back from the
        scheduler (not a task failure: the restart budget decides) so the next
        restart can schedule it again; it used to stay RESTARTING for good."""
        run = actor.adopted_run
        if run is None or run.worker_id != worker_id or self.tasks.get(run.task_id) is not run:
            return
        del self.tasks[run.task_id]
        self._record_attempt(run, lineage_pb2.FAILED, ("ActorDiedError", why))
        self._apply(self.scheduler.handle(ls.TaskFinished(TaskID(run.task_id), worker_id, run.attempt)))
        self._apply(self.scheduler.handle(ls.WorkerDied(worker_id, why)))
        run.worker_id = None

    # -------------------------------------------------------------- effects

    def _on_update_actor_state(self, actor: ActorEntry, effect: ar.UpdateActorState) -> None:
        actor.num_restarts = effect.num_restarts
        if effect.state == ar.DEAD:
            if actor.phase is not ActorPhase.DEAD:
                self._recovery_failed(actor, effect.reason or "it cannot be restarted")
            return
        if effect.state == ar.RESTARTING:
            actor.phase = ActorPhase.RESTARTING
        else:
            actor.phase = ActorPhase.ALIVE
            actor.failed_recoveries = 0
            for run in actor.orphaned.values():  # not in the recorded chain: cannot be answered
                self._fail_returns(run.returns, "ActorDiedError",
                                   f"call {run.spec.sequence_number} of actor {actor.actor_id.hex()} was lost "
                                   "in a restart: its record was not found in the control store")
            actor.orphaned.clear()
        self.writer.write_later(actor.key, actor.record().SerializeToString())

    def _on_load_actor_record(self, actor: ActorEntry, effect: ar.LoadActorRecord) -> None:
        asyncio.get_running_loop().create_task(self._load_actor_record(actor))

    async def _load_actor_record(self, actor: ActorEntry) -> None:
        # Not flushed first: the best-effort lane may never be empty under load,
        # and the node's own copy (merged below) is at least as new.
        ok, raw = await self._read_control_store(self.writer.client.get, actor.key)
        mine = actor.record()  # this node wrote every version: its copy is never older
        if ok and raw:
            record = lineage_pb2.ActorRecord.FromString(raw)
            record.num_restarts = max(record.num_restarts, mine.num_restarts)
            if mine.checkpoint_object_id and (not record.checkpoint_object_id or mine.checkpoint_sequence_number
                                              > record.checkpoint_sequence_number):
                record.checkpoint_sequence_number = mine.checkpoint_sequence_number
                record.checkpoint_object_id = mine.checkpoint_object_id
        else:
            log.warning("actor %s: record not readable (%s); using the node's copy", actor.actor_id.hex(), raw)
            record = mine
        actor.checkpoint_sequence_number = record.checkpoint_sequence_number
        actor.checkpoint_object_id = record.checkpoint_object_id
        self._recovery_feed(ar.ActorRecordLoaded(ActorID(actor.actor_id), _summary_of(record)))

    def _on_place_actor(self, actor: ActorEntry, effect: ar.PlaceActor) -> None:
        self._recovery_feed(ar.PlacementFound(effect.actor_id, effect.incarnation, self.node_id))

    def _on_run_creation(self, actor: ActorEntry, effect: ar.RunCreation) -> None:
        actor.restart_incarnation = effect.incarnation
        actor.restart_checkpoint = None
        actor.restart_worker_ready = actor.restart_creation_sent = False
        if self.stopping:
            return
        if actor.checkpoint_object_id:
            asyncio.get_running_loop().create_task(self._load_checkpoint(actor, effect.incarnation))
        if actor.failed_recoveries:
            delay_s = min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_BASE_S * 2 ** (actor.failed_recoveries - 1))
            asyncio.get_running_loop().call_later(delay_s, self._start_restart_worker, actor, effect.incarnation)
        else:
            self._start_restart_worker(actor, effect.incarnation)

    def _start_restart_worker(self, actor: ActorEntry, incarnation: int) -> None:
        if (self.stopping or actor.phase is not ActorPhase.RESTARTING or actor.restart_incarnation != incarnation
                or actor.worker_id is not None):
            return
        if actor.adopted_run is not None:
            self._send_restart_creation(actor)  # through the scheduler: see actor_routing.py
            return
        worker_id = self._idle_pool_worker()
        if worker_id is None:
            self.actors.bind_worker(actor, self.pool.start())  # registers later: _actor_worker_registered
            self.writer.write_later(actor.key, actor.record().SerializeToString())
            return
        # An idle pre-started worker saves the ~0.3 s start of a Python process.
        self._apply(self.scheduler.handle(ls.WorkerDied(worker_id, "taken to host a restarted actor")))
        self.actors.bind_worker(actor, worker_id)
        self.writer.write_later(actor.key, actor.record().SerializeToString())  # which worker, for tools
        actor.restart_worker_ready = True
        self._keep_prestarted()
        self._send_restart_creation(actor)

    def _idle_pool_worker(self):
        for worker_id, entry in self.scheduler.workers.items():
            if (entry.task_id is None and not entry.blocked and worker_id in self.worker_sessions
                    and worker_id not in self.actors.by_worker and worker_id not in self._gone_workers
                    and self.pool.pid_of(worker_id) is not None):
                return worker_id
        return None

    async def _load_checkpoint(self, actor: ActorEntry, incarnation: int) -> None:
        key = object_key(ObjectID(actor.checkpoint_object_id))
        ok, raw = await self._read_control_store(self.writer.client.get, key)
        if actor.restart_incarnation != incarnation or actor.phase is not ActorPhase.RESTARTING:
            return
        if not ok or not raw:
            self._recovery_failed(actor, f"its checkpoint {actor.checkpoint_object_id.hex()} could not be read "
                                         f"from the control store ({raw or 'missing'})")
            return
        actor.restart_checkpoint = lineage_pb2.ObjectRecord.FromString(raw).inline_value
        self._send_restart_creation(actor)

    def _actor_worker_registered(self, session, worker_id) -> bool:
        """A worker started for an actor's restart registered; False: a pool worker."""
        actor = self.actors.by_worker.get(worker_id)
        if actor is None:
            return False
        actor.restart_worker_ready = True
        self._send_restart_creation(actor)
        return True

    def _send_restart_creation(self, actor: ActorEntry) -> None:
        if actor.adopted_run is not None:
            if not actor.checkpoint_object_id or actor.restart_checkpoint is not None:
                self._schedule_adopted_creation(actor)
            return
        if (actor.restart_creation_sent or not actor.restart_worker_ready
                or (actor.checkpoint_object_id and actor.restart_checkpoint is None)):
            return
        session = self.worker_sessions.get(actor.worker_id)
        if session is None:
            return
        from lineagerun.node.server import TaskRun  # server imports this module

        spec = actor.creation_spec
        incarnation = actor.restart_incarnation
        run = TaskRun(spec, [], actor.owner, attempt=incarnation, worker_id=actor.worker_id, started_ms=now_ms(),
                      attempt_reason=lineage_pb2.REPLAY)
        message = self._execute_message(spec, incarnation)
        message.function.CopyFrom(self.functions[spec.function_id])
        session.functions_sent.add(spec.function_id)
        if actor.restart_checkpoint is not None:
            message.restore_checkpoint.CopyFrom(node_pb2.ObjectPayload(
                inline=actor.restart_checkpoint, size_bytes=len(actor.restart_checkpoint)))
        actor.recovery_runs[spec.task_id] = RecoveryRun("creation", run, incarnation, attempt_number=incarnation)
        actor.restart_creation_sent = True
        self._write_recovery_attempt(run, incarnation, lineage_pb2.RUNNING)
        session.send(node_pb2.NodeMessage(execute_task=message))

    def _execute_message(self, spec: lineage_pb2.TaskSpec, incarnation: int) -> node_pb2.ExecuteTask:
        message = node_pb2.ExecuteTask(spec=spec, attempt_number=incarnation, is_replay=True)
        for arg in spec.args:
            message.args.append(self._resolve(arg))  # not here: the worker gets it itself
        for kwarg in spec.kwargs:
            message.kwargs.append(self._resolve(kwarg.arg))
        return message

    def _restart_creation_finished(self, actor: ActorEntry, recovery_run: RecoveryRun,
                                   message: node_pb2.TaskFinished) -> None:
        self._record_attempt(recovery_run.run, lineage_pb2.FAILED if message.application_error else lineage_pb2.FINISHED,
                             (message.error_kind, "the constructor or restore raised")
                             if message.application_error else None, message.duration_ms)
        if message.application_error:
            self._recovery_failed(actor, f"on restart {recovery_run.incarnation} the constructor or "
                                         f"{RESTORE_METHOD} raised {message.error_kind or 'an exception'}")
            return
        self._recovery_feed(ar.CreationDone(ActorID(actor.actor_id), recovery_run.incarnation))

    def _on_restore_checkpoint(self, actor: ActorEntry, effect: ar.RestoreCheckpoint) -> None:
        # Restored with the constructor (ExecuteTask.restore_checkpoint).
        self._recovery_feed(ar.RestoreDone(effect.actor_id, effect.incarnation))

    def _on_load_calls(self, actor: ActorEntry, effect: ar.LoadCalls) -> None:
        asyncio.get_running_loop().create_task(self._load_calls(actor, effect))

    async def _load_calls(self, actor: ActorEntry, effect: ar.LoadCalls) -> None:
        client = self.writer.client
        # Call keys are known (node seq = planner seq - 1): read them directly
        # rather than scanning the prefix from the start for every page. A
        # seq with no record (its write failed) is skipped; one whose write is
        # still in flight, or acknowledged but not yet fed to the planner, is
        # submitted later and delivered as a queued call (the old hang: read
        # here, it was replayed ahead of older held calls, which were dropped).
        end_seq = actor.replay_end_seq

        def read_page():
            records, cursor = [], effect.after_seq  # node seq of the first call after planner seq after_seq
            while len(records) < effect.limit and cursor < end_seq:
                window = range(cursor, min(end_seq, cursor + effect.limit - len(records)))
                for raw in client.get_many([actor_call_key(effect.actor_id, seq) for seq in window]):
                    if raw is not None:
                        records.append(lineage_pb2.ActorCallRecord.FromString(raw))
                cursor = window.stop
            raws = client.get_many([task_key(TaskID(r.task_id)) for r in records]) if records else []
            return records, raws, next_attempt_numbers(client, records, effect.incarnation)

        ok, result = await self._read_control_store(read_page)
        if actor.restart_incarnation != effect.incarnation or actor.phase is not ActorPhase.RESTARTING:
            return
        if not ok:
            self._recovery_failed(actor, f"its recorded calls could not be read from the control store: {result}")
            return
        records, raws, attempt_numbers = result
        self._recovery().replay_attempts.update(attempt_numbers)
        calls = []
        for record, raw in zip(records, raws):
            if raw is None:
                self._recovery_failed(actor, f"the spec of its call {record.sequence_number} "
                                             f"({record.task_id.hex()}) is not in the control store")
                return
            actor.replay_specs[record.sequence_number] = lineage_pb2.TaskSpec.FromString(raw)
            calls.append(ar.CallSummary(record.sequence_number + 1, TaskID(record.task_id), record.finished))
        self._recovery_feed(ar.CallsLoaded(effect.actor_id, effect.incarnation, tuple(calls)))

    def _on_replay_call(self, actor: ActorEntry, effect: ar.ReplayCall) -> None:
        spec = actor.replay_specs.pop(effect.sequence_number - 1, None)
        session = self.worker_sessions.get(actor.worker_id)
        if spec is None or session is None:
            return  # the new instance died meanwhile: its death restarts the recovery
        from lineagerun.node.server import TaskRun

        run = TaskRun(spec, specs.return_ids(spec), None, attempt=effect.incarnation, worker_id=actor.worker_id,
                      started_ms=now_ms(), attempt_reason=lineage_pb2.REPLAY)
        number = self._recovery().replay_attempts.pop(spec.task_id, max(1, effect.incarnation))
        actor.recovery_runs[spec.task_id] = RecoveryRun("replay", run, effect.incarnation,
                                                        effect.sequence_number, effect.deliver, number)
        self._write_recovery_attempt(run, number, lineage_pb2.RUNNING)
        session.send(node_pb2.NodeMessage(execute_task=self._execute_message(spec, effect.incarnation)))

    def _replay_finished(self, actor: ActorEntry, recovery_run: RecoveryRun,
                         message: node_pb2.TaskFinished) -> None:
        run = recovery_run.run
        run.attempt = recovery_run.attempt_number  # matched already: from here it names the TaskAttempt
        orphan = actor.orphaned.pop(run.task_id, None)
        # An orphan's caller still waits even when the planner thinks it
        # finished: with max_concurrency > 1 calls finish out of order, and
        # the planner's "finished up to" mark can pass a call still running.
        # Multi-node: a caller on another node may wait for any replayed call
        # (its host died before the answer reached it), so keep every result.
        if recovery_run.deliver or orphan is not None or self.cluster is not None:
            self._record_results(run, message)  # the first value of an id wins: delivered once
            if self.cluster is not None and actor.creation_spec.checkpoint_interval > 0:
                actor.window_returns.extend(run.returns)  # stored with the next checkpoint
            key, value = call_record(run.spec, run.spec.owner_worker_id, finished=True)
            self.writer.write_later(key, value)
        else:
            self._record_attempt(run, lineage_pb2.FINISHED, (message.error_kind, "user code raised")
                                 if message.application_error else None, message.duration_ms)
        if orphan is not None:
            self.objects.release_holder(orphan.holder())
        self._recovery_feed(ar.CallReplayed(ActorID(actor.actor_id), recovery_run.incarnation,
                                            recovery_run.planner_seq))

    def _write_recovery_attempt(self, run, number: int, state: int) -> None:
        """The attempt record of a replay or restart as it starts (best effort:
        its end is written over it with the same key)."""
        self.writer.write_later(*started_attempt(run, number, state, self.node_id.binary()))

    def _on_deliver_queued_calls(self, actor: ActorEntry, effect: ar.DeliverQueuedCalls) -> None:
        for seq in sorted(actor.held):
            planner_seq = seq + 1
            if planner_seq <= effect.after_seq:  # run (and answered) by the replay
                run = actor.held.pop(seq)
                self.tasks.pop(run.task_id, None)
            elif planner_seq <= effect.up_to_seq:
                actor.queue.append(actor.held.pop(seq))
            else:
                break
        self._pump_actor(actor)

    def _on_fail_pending_calls(self, actor: ActorEntry, effect: ar.FailPendingCalls) -> None:
        if actor.phase is not ActorPhase.DEAD:
            self._recovery_failed(actor, effect.message)
        else:
            self._fail_actor_calls(actor)

    def _on_reject_call(self, actor: ActorEntry, effect: ar.RejectCall) -> None:
        run = actor.held.pop(effect.sequence_number - 1, None)
        if run is not None:
            self.tasks.pop(run.task_id, None)
            self._fail_returns(run.returns, "ActorUnavailableError", effect.message)

    def _on_take_checkpoint(self, actor: ActorEntry, effect: ar.TakeCheckpoint) -> None:
        actor.checkpoint_wanted = effect
        self._send_checkpoint(actor)

    def _send_checkpoint(self, actor: ActorEntry) -> None:
        """Ask for the checkpoint once no released call is still running: with
        max_concurrency > 1 calls finish out of order, and the planner's
        "finished up to" mark can pass a call still running."""
        effect = actor.checkpoint_wanted
        if effect is None or actor.in_flight or actor.queue:
            return
        actor.checkpoint_wanted = None
        session = self.worker_sessions.get(actor.worker_id)
        if session is None or actor.phase is not ActorPhase.ALIVE:
            return  # its death resets the planner's pending checkpoint
        from lineagerun.node.server import TaskRun

        creation = actor.creation_spec
        task_id = checkpoint_task_id(effect.actor_id, effect.after_seq)
        spec = lineage_pb2.TaskSpec(task_id=task_id.binary(), job_id=creation.job_id, actor_id=actor.actor_id,
                                    method_name=CHECKPOINT_METHOD, num_returns=1, is_actor_task=True,
                                    sequence_number=effect.after_seq - 1,
                                    owner_worker_id=creation.owner_worker_id)
        run = TaskRun(spec, [], None, attempt=0, worker_id=actor.worker_id)
        actor.recovery_runs[spec.task_id] = RecoveryRun("checkpoint", run, actor.num_restarts, effect.after_seq)
        session.send(node_pb2.NodeMessage(execute_task=node_pb2.ExecuteTask(spec=spec, attempt_number=0)))

    def _checkpoint_finished(self, actor: ActorEntry, recovery_run: RecoveryRun,
                             message: node_pb2.TaskFinished) -> None:
        actor_id, seq = ActorID(actor.actor_id), recovery_run.planner_seq
        payload = message.returns[0].payload if message.returns else None
        if message.application_error or payload is None or payload.WhichOneof("kind") != "inline":
            self._recovery_feed(ar.CheckpointFailed(actor_id, seq, f"{CHECKPOINT_METHOD} raised "
                                                    f"{message.error_kind or 'or returned no inline value'}"))
            return
        object_id = ObjectID.from_index(TaskID(recovery_run.run.task_id), 1)
        value = payload.inline
        stored = lineage_pb2.ObjectRecord(object_id=object_id.binary(), producing_task_id=recovery_run.run.task_id,
                                          size_bytes=len(value), inline_value=value, has_inline_value=True,
                                          owner_worker_id=actor.creation_spec.owner_worker_id)
        record = actor.record()
        record.checkpoint_sequence_number, record.checkpoint_object_id = seq - 1, object_id.binary()
        results, actor.window_returns = self._result_records(actor), []
        future = self.writer.write_now(results + [PutOp(object_key(object_id), stored.SerializeToString()),
                                                  PutOp(actor.key, record.SerializeToString())])

        def written(done: asyncio.Future) -> None:
            if done.exception() is not None:
                self._recovery_feed(ar.CheckpointFailed(actor_id, seq, f"not stored: {done.exception()}"))
                return
            if actor.phase is ActorPhase.ALIVE:
                actor.checkpoint_sequence_number, actor.checkpoint_object_id = seq - 1, object_id.binary()
                # Replaces any best-effort copy of the record queued before with older checkpoint fields.
                self.writer.write_later(actor.key, actor.record().SerializeToString())
            self._recovery_feed(ar.CheckpointTaken(actor_id, seq, object_id))

        future.add_done_callback(written)

    def _on_emit_event(self, actor: ActorEntry, effect: ar.EmitEvent) -> None:
        now = now_ms()
        counters = self._recovery().counters
        counters[effect.kind] += 1
        duration_ms = 0
        if effect.kind == "ACTOR_RESTARTED" and actor.died_ms:
            duration_ms = max(0, now - actor.died_ms)
            counters["actor_recovery_ms_total"] += duration_ms
        detail = effect.detail
        if effect.kind == "ACTOR_CALLS_REPLAYED":
            counters["actor_calls_replayed"] += effect.count
            detail = f"count={effect.count}; {detail}"
        elif effect.kind == "ACTOR_RESTARTED":
            detail = f"count={effect.count}; restart {effect.count}"
        elif effect.kind == "ACTOR_CHECKPOINTED":
            detail = f"count={effect.count - 1}; {detail or 'after call ' + str(effect.count - 1)}"
        record = lineage_pb2.EventRecord(
            kind=lineage_pb2.EventKind.Value(effect.kind), time_ms=now, event_id=os.urandom(8),
            job_id=effect.actor_id.job_id().binary(), actor_id=actor.actor_id, node_id=self.node_id.binary(),
            detail=detail, duration_ms=duration_ms)
        if effect.kind == "ACTOR_CALLS_REPLAYED":
            record.count = effect.count  # the field readers use; the detail head stays for older readers
        if actor.creation_task_id:
            record.task_id = actor.creation_task_id
        self.writer.write_later(event_key(now, record.event_id), record.SerializeToString())

    _RECOVERY_EFFECTS = {
        ar.UpdateActorState: _on_update_actor_state,
        ar.LoadActorRecord: _on_load_actor_record,
        ar.PlaceActor: _on_place_actor,
        ar.RunCreation: _on_run_creation,
        ar.RestoreCheckpoint: _on_restore_checkpoint,
        ar.LoadCalls: _on_load_calls,
        ar.ReplayCall: _on_replay_call,
        ar.DeliverQueuedCalls: _on_deliver_queued_calls,
        ar.FailPendingCalls: _on_fail_pending_calls,
        ar.RejectCall: _on_reject_call,
        ar.TakeCheckpoint: _on_take_checkpoint,
        ar.EmitEvent: _on_emit_event,
    }
