"""The node manager: sessions in, local scheduler, workers, objects, lineage.

Everything runs on one asyncio event loop; nothing here blocks it (the
control store is written through ``LineageWriter``'s thread). Task flow:
SubmitTasks -> validate -> spec (and call record) in the turn's batched
write -> once acknowledged, the local scheduler (or the actor's queue) ->
ExecuteTask to a worker -> TaskFinished -> object table (answers waiters) ->
attempt and object records, written later in batches.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field

from lineagerun.control.client import CasOp, PutOp
from lineagerun.core import local_scheduler as ls
from lineagerun.core.ids import FunctionID, JobID, NodeID, ObjectID, TaskID, WorkerID
from lineagerun.core.keys import attempt_key, function_key, name_key, object_key, task_key
from lineagerun.core.object_store import INLINE_THRESHOLD_BYTES
from lineagerun.core.resources import RESOURCE_UNIT_SCALING, ResourceSet
from lineagerun.node import driver_exit, specs
from lineagerun.node.actor_handlers import ActorHandlers
from lineagerun.node.actors import ActorEntry, ActorPhase, ActorTable, call_record, now_ms
from lineagerun.node.lineage_writer import LineageWriter
from lineagerun.node.object_requests import ObjectRequests
from lineagerun.node.object_table import NodeObjectStore, ObjectTable, routed_holder
from lineagerun.node.reconstruction_local import local_reconstruction
from lineagerun.node.scheduler import NodeScheduler
from lineagerun.node.session import Session
from lineagerun.node.worker_pool import WorkerPool
from lineagerun.rpc import lineage_pb2, node_pb2

log = logging.getLogger(__name__)

# Workers dying before they register, in a row, before starts back off
# (exponentially, up to WORKER_START_BACKOFF_MAX_S).
WORKER_START_FAILURES_BEFORE_BACKOFF = 3
WORKER_START_BACKOFF_MAX_S = 10.0

# Inline values up to this size are also copied into their ObjectRecord, so
# a small result survives the node (as Ray's inline objects in the owner).
RECORD_INLINE_VALUE_MAX_BYTES = 4 * 1024


@dataclass(eq=False)
class TaskRun:
    spec: lineage_pb2.TaskSpec
    returns: list[bytes]
    owner: Session | None
    attempt: int = 0
    worker_id: WorkerID | None = None
    started_ms: int = 0
    cancelled: bool = False
    scheduled: bool = False  # handed to the scheduler or an actor queue
    attempt_reason: int = 0  # lineage_pb2.AttemptReason of this attempt; 0: FIRST_RUN or RETRY by number
    arg_ids: list[bytes] = field(default_factory=list)

    @property
    def task_id(self) -> bytes:
        return self.spec.task_id

    def holder(self) -> str:
        return f"task:{self.spec.task_id.hex()}"


class NodeManager(ActorHandlers, ObjectRequests):
    def __init__(self, *, node_id: NodeID, total: ResourceSet, store: NodeObjectStore, writer: LineageWriter,
                 pool: WorkerPool, session_dir: str, control_store_address: str, prestart_workers: int,
                 worker_pool_size_max: int):
        self.node_id = node_id
        self.store = store
        self.writer = writer
        self.pool = pool
        self.session_dir = session_dir
        self.control_store_address = control_store_address
        self.prestart_workers = prestart_workers
        # second_slot: a busy worker is sent its next task to hide the idle gap
        # (local_scheduler.py). Only tasks without object arguments wait there
        # (queueable): an argument would stay pinned while the task ahead runs,
        # and one lost meanwhile could not be rebuilt before the dispatch.
        self.scheduler = NodeScheduler(node_id, total, worker_pool_size_max=worker_pool_size_max,
                                       queue_length_spill_threshold=10**9, second_slot=True)
        # Single node: the cluster is this node, so infeasible means infeasible.
        self.scheduler.handle(ls.ClusterViewUpdated({node_id: total}))
        self.objects = ObjectTable(store, self._object_available)
        self.actors = ActorTable()
        self.tasks: dict[bytes, TaskRun] = {}
        self.functions: dict[bytes, lineage_pb2.FunctionRecord] = {}
        self.worker_sessions: dict[WorkerID, Session] = {}
        self.sessions: set[Session] = set()
        self._available_pending: list[bytes] = []
        self._actor_waiting: dict[bytes, set[bytes]] = {}  # object id -> actor ids whose next call waits on it
        self._gone_workers: set[WorkerID] = set()
        self.address = ""
        self.stopping = False
        self._start_failures = 0  # workers in a row that died before registering
        self._start_delayed = 0
        self.cluster = None  # a ClusterLink when the node is part of a multi-node cluster
        # Lost objects and retries (reconstruction_driver.py); ClusterLink replaces this one.
        self.reconstruction = local_reconstruction(self)
        pool.on_exit = lambda worker_id: self._worker_gone(worker_id, "its process exited")

    # =============================================================== sessions

    def handle_message(self, session: Session, message: node_pb2.ClientMessage) -> None:
        kind = message.WhichOneof("kind")
        if session.kind == node_pb2.Register.KIND_UNSPECIFIED and kind != "register":
            session.send(node_pb2.NodeMessage(request_error=node_pb2.RequestError(
                error_kind="InvalidArgumentError", message=f"the first message must be Register, got {kind}")))
            session.close()
            return
        if session.is_peer and self.cluster is not None \
                and self.cluster.handle_peer_message(session, kind, getattr(message, kind)):
            return
        handler = getattr(self, f"_on_{kind}", None)
        if handler is None:
            log.warning("ignoring a client message of unknown kind %r", kind)
            return
        handler(session, getattr(message, kind))

    def _on_register(self, session: Session, message: node_pb2.Register) -> None:
        session.kind, session.pid, session.namespace = message.kind, message.pid, message.namespace
        job_id = message.job_id
        if message.kind == node_pb2.Register.DRIVER and not job_id:
            job_id = _new_job_id()
        session.job_id = job_id
        session.location_address = self.address
        if message.kind == node_pb2.Register.PEER:
            session.peer_node_id = message.worker_id  # a peer registers with its node id (actor_takeover.py)
        self.sessions.add(session)
        session.send(node_pb2.NodeMessage(registered=node_pb2.Registered(
            node_id=self.node_id.binary(), job_id=job_id, session_dir=self.session_dir,
            store_session_id=self.store.session_id, inline_object_max_bytes=INLINE_THRESHOLD_BYTES,
            control_store_address=self.control_store_address)))
        if message.kind == node_pb2.Register.WORKER and len(message.worker_id) == WorkerID.SIZE:
            worker_id = WorkerID(message.worker_id)
            session.worker_id = worker_id
            self.worker_sessions[worker_id] = session
            log.debug("worker %s registered", worker_id.hex()[:12])
            self._start_failures = 0
            if self._actor_worker_registered(session, worker_id):
                return  # started for an actor's restart: never the scheduler's
            self._apply(self.scheduler.handle(ls.WorkerRegistered(worker_id)))

    def session_closed(self, session: Session) -> None:
        self.sessions.discard(session)
        self.objects.release_holder(session.holder())
        self.objects.drop_waiters(session.holder())
        if session.worker_id is not None and self.worker_sessions.get(session.worker_id) is session:
            self._worker_gone(session.worker_id, "its session ended")
        if session.is_driver:
            self._driver_gone(session)

    def _driver_gone(self, session: Session) -> None:
        actor_ids = driver_exit.owned_actor_ids(self, session)
        if self.cluster is not None:
            self._owner_gone_remote(session)  # its actors on other nodes
        for actor in list(self.actors.actors.values()):
            if actor.owner is session and not actor.detached and actor.phase is not ActorPhase.DEAD:
                self._kill_actor(actor, "its owner (the driver) disconnected")
        for run in list(self.tasks.values()):
            if run.owner is session and run.worker_id is None and not run.spec.is_actor_task:
                actor = self.actors.get(run.spec.actor_id) if run.spec.is_actor_creation else None
                if actor is None or not actor.detached:
                    self._cancel(run, force=False)
        driver_exit.release_driver_work(self, session, actor_ids)  # its running tasks, its objects

    # ============================================================ submission

    def _on_export_function(self, session: Session, message: node_pb2.ExportFunction) -> None:
        record = message.function
        if record.function_id in self.functions:
            return
        if len(record.function_id) != FunctionID.SIZE:
            log.warning("ignoring an ExportFunction with a %d-byte function id", len(record.function_id))
            return
        self.functions[record.function_id] = record
        key = function_key(FunctionID(record.function_id))
        self.writer.write_now([PutOp(key, record.SerializeToString())]).add_done_callback(_log_failure)

    def _on_submit_tasks(self, session: Session, message: node_pb2.SubmitTasks) -> None:
        ops, runs, name_claims = [], [], {}
        for spec in message.specs:
            if spec.task_id in self.tasks:
                continue  # a resubmission of a task already here
            problem = specs.validate(spec, self.functions)
            if problem is not None:
                self._fail_returns(specs.return_ids(spec), "InvalidArgumentError", f"task rejected: {problem}")
                continue
            run = TaskRun(spec, specs.return_ids(spec), session, arg_ids=specs.arg_object_ids(spec))
            if not spec.submitted_ms:
                spec.submitted_ms = now_ms()
            if spec.is_actor_task and not self._prepare_call(run, session, ops):
                continue
            if spec.is_actor_creation and not self._prepare_creation(run, session, ops, name_claims):
                continue
            ops.append(PutOp(task_key(TaskID(spec.task_id)), spec.SerializeToString()))
            self.tasks[spec.task_id] = run
            runs.append(run)
            if run.arg_ids:  # the submitter may release them while the spec is written
                self.objects.pin(run.arg_ids, _submitted_holder(run))
        if not ops:
            return
        future = self.writer.write_now(ops)
        future.add_done_callback(lambda f: self._specs_written(runs, name_claims, f))

    def _prepare_call(self, run: TaskRun, session: Session, ops: list) -> bool:
        if self._call_taken_elsewhere(run, session):
            return False  # actor on another node, or not placed yet (actor_routing.py)
        actor = self.actors.get(run.spec.actor_id)
        if actor is None or actor.phase is ActorPhase.DEAD:
            why = actor.death_message if actor else "no actor with this id lives on this node"
            self._fail_returns(run.returns, "ActorDiedError",
                               f"actor {run.spec.actor_id.hex()} is dead: {why}")
            return False
        run.spec.sequence_number = actor.take_sequence_number()
        caller = session.worker_id.binary() if session.worker_id else run.spec.owner_worker_id
        ops.append(PutOp(*call_record(run.spec, caller)))
        return True

    def _prepare_creation(self, run: TaskRun, session: Session, ops: list, name_claims: dict) -> bool:
        spec = run.spec
        name, namespace, detached = specs.actor_naming(spec, session.namespace)
        if spec.actor_id in self.actors.actors:
            self._fail_returns(run.returns, "InvalidArgumentError", f"actor {spec.actor_id.hex()} already exists")
            return False
        if name and self.actors.named(namespace, name) is not None:
            self._fail_returns(run.returns, "InvalidArgumentError",
                               f"an actor named {name!r} already exists in namespace {namespace!r}")
            return False
        actor = ActorEntry(spec.actor_id, spec.task_id, spec, name, namespace, detached, session,
                           self.node_id.binary(), max_concurrency=max(1, spec.max_concurrency),
                           owner_node_id=self.node_id.binary())
        self.actors.add(actor)
        if name:
            name_claims[len(ops)] = actor
            ops.append(CasOp(name_key(namespace, name), None, spec.actor_id))
        ops.append(PutOp(actor.key, actor.record().SerializeToString()))
        return True

    def _specs_written(self, runs: list[TaskRun], name_claims: dict, future: asyncio.Future) -> None:
        try:
            self._schedule_written(runs, name_claims, future)
        finally:
            for run in runs:
                if run.arg_ids:
                    self.objects.release_holder(_submitted_holder(run))

    def _schedule_written(self, runs: list[TaskRun], name_claims: dict, future: asyncio.Future) -> None:
        error = future.exception()
        if error is not None:
            for run in runs:
                self.tasks.pop(run.task_id, None)
                self._fail_returns(run.returns, "ControlStoreUnavailableError",
                                   f"the task's spec could not be written to the control store: {error}")
            return
        results = future.result()
        for index, actor in name_claims.items():
            if not results[index].ok:
                message = f"an actor named {actor.name!r} already exists in namespace {actor.namespace!r}"
                self.actors.mark_dead(actor, "InvalidArgumentError", message)
                run = self.tasks.pop(actor.creation_task_id, None)
                if run is not None:
                    run.cancelled = True
                    self._fail_returns(run.returns, "InvalidArgumentError", message)
        for run in runs:
            if run.cancelled or run.task_id not in self.tasks:
                continue
            run.scheduled = True
            if run.spec.is_actor_task:
                actor = self.actors.get(run.spec.actor_id)
                self._actor_call_written(actor, run)
            else:
                self._schedule(run)

    def _schedule(self, run: TaskRun) -> None:
        if self.cluster is not None:
            self.cluster.route(run)  # keep, spill or fail it; kept ones come back to _schedule_local
            return
        self._schedule_local(run)

    def _schedule_local(self, run: TaskRun) -> None:
        if run.spec.is_actor_creation:
            self._actor_creation_kept(run)  # its deferred calls run here too
        if run.arg_ids:
            self.reconstruction.check_wanted(run.arg_ids)  # lost ones are rebuilt, then it runs
            self.objects.pin(run.arg_ids, run.holder())  # kept until it ends, as the driver's refs may go
            if self.cluster is not None:
                self.objects.release_holder(routed_holder(run.task_id))
        missing = {oid for oid in run.arg_ids if not self.objects.is_ready(oid)}
        if missing and self.cluster is not None:
            self.cluster.want_args(missing)
        self._submit_to_scheduler(run, missing)

    def _submit_to_scheduler(self, run: TaskRun, missing: set[bytes]) -> None:
        """The scheduler holds it until its missing arguments are announced
        (``ObjectsAvailable`` from _flush_available), then runs it."""
        spec = run.spec
        max_retries = 0 if spec.is_actor_creation else spec.options.max_retries
        event = ls.TaskSubmitted(TaskID(run.task_id), specs.demand(spec),
                                 frozenset(ObjectID(oid) for oid in missing), specs.strategy_of(spec), max_retries,
                                 run.attempt, allow_spill=False,
                                 queueable=not (spec.is_actor_creation or run.arg_ids))
        self._apply(self.scheduler.handle(event))

    # ============================================================== effects

    def _apply(self, effects: list) -> None:
        for effect in effects:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("effect %s", effect)
            if isinstance(effect, ls.DispatchTask):
                self._dispatch(effect)
            elif isinstance(effect, ls.StartWorker):
                self._start_worker()
            elif isinstance(effect, ls.FailTask):
                self._task_failed(effect)
            elif isinstance(effect, ls.RetryTask):
                self._task_retried(effect)
            elif isinstance(effect, ls.CancelOnWorker):
                self._cancel_on_worker(effect.task_id.binary(), effect.worker_id, effect.force)
            elif isinstance(effect, ls.TaskCancelled):
                self._task_cancelled(effect.task_id.binary())
            elif isinstance(effect, ls.SpillTask):
                run = self.tasks.pop(effect.task_id.binary(), None)
                if run is not None:
                    self.objects.release_holder(run.holder())
                    self._fail_returns(run.returns, "InfeasibleTaskError",
                                       f"task cannot run on this node and there is no other node: {effect.reason}")
            # FetchArgs: none; _schedule_local asked the cluster for them (want_args).

    def _dispatch(self, effect: ls.DispatchTask) -> None:
        run = self.tasks.get(effect.task_id.binary())
        session = self.worker_sessions.get(effect.worker_id)
        if run is None or session is None:
            self._apply(self.scheduler.handle(ls.TaskFinished(effect.task_id, effect.worker_id,
                                                              effect.attempt_number)))
            return
        run.worker_id, run.attempt = effect.worker_id, effect.attempt_number
        lost = self._argument_lost_meanwhile(run) if run.arg_ids else set()
        if lost:
            self._apply(self.scheduler.handle(ls.TaskFinished(effect.task_id, effect.worker_id,
                                                              effect.attempt_number)))
            self._submit_to_scheduler(run, lost)  # a new lifecycle, waiting for the rebuilt copies
            return
        if not self._send_execute(run, session):
            self.tasks.pop(run.task_id, None)
            self.objects.release_holder(run.holder())
            self._apply(self.scheduler.handle(ls.TaskFinished(effect.task_id, effect.worker_id,
                                                              effect.attempt_number)))
            return
        if run.spec.is_actor_creation:
            actor = self.actors.get(run.spec.actor_id)
            self.actors.bind_worker(actor, effect.worker_id)

    def _argument_lost_meanwhile(self, run: TaskRun) -> set[bytes]:
        """An argument that arrived after the task was queued (so not pinned
        for it) was evicted or its file removed before the dispatch: the
        task waits again until it is rebuilt (reconstruction_driver.py).
        Returns the lost ones (empty: none)."""
        self.reconstruction.check_wanted(run.arg_ids)
        lost = {oid for oid in run.arg_ids if not self.objects.is_ready(oid)}
        if not lost:
            return lost
        log.info("task %s waits again: %d argument(s) lost before its dispatch", run.task_id.hex()[:16],
                 len(lost))
        run.worker_id = None
        if self.cluster is not None:
            self.cluster.want_args(lost)
        return lost

    def _send_execute(self, run: TaskRun, session: Session) -> bool:
        """Send the task to the worker; False (returns errored) if an argument failed."""
        for oid in run.arg_ids:
            failure = self.objects.error_of(oid)
            if failure is not None:
                self._fail_returns(run.returns, failure[0], failure[1])
                self._record_attempt(run, lineage_pb2.FAILED, failure)
                return False
        spec = run.spec
        message = node_pb2.ExecuteTask(spec=spec, attempt_number=run.attempt)
        for arg in spec.args:
            message.args.append(self._resolve(arg))
        for kwarg in spec.kwargs:
            message.kwargs.append(self._resolve(kwarg.arg))
        if not spec.is_actor_task and spec.function_id not in session.functions_sent:
            message.function.CopyFrom(self.functions[spec.function_id])
            session.functions_sent.add(spec.function_id)
        if spec.is_actor_creation:
            self._decorate_creation(run, message)  # an actor recovered here from a dead node
        self.objects.pin(run.arg_ids, run.holder())
        run.started_ms = now_ms()
        session.send(node_pb2.NodeMessage(execute_task=message))
        return True

    def _resolve(self, arg: lineage_pb2.TaskArg) -> node_pb2.ResolvedArg:
        if arg.WhichOneof("kind") == "value":
            return node_pb2.ResolvedArg(payload=node_pb2.ObjectPayload(
                inline=arg.value, size_bytes=len(arg.value), nested_object_ids=arg.nested_object_ids))
        return node_pb2.ResolvedArg(payload=self.objects.result(arg.object_id).payload)

    def _task_failed(self, effect: ls.FailTask) -> None:
        run = self.tasks.pop(effect.task_id.binary(), None)
        if run is None:
            return
        name = specs.function_name(run.spec, self.functions)
        if effect.kind == ls.FAIL_INFEASIBLE:
            kind, message = "InfeasibleTaskError", (
                f"task {name} ({run.task_id.hex()[:16]}) can never run: it needs {specs.demand(run.spec).to_dict()} "
                f"and this node has {self.scheduler.resources.total.to_dict()} in total ({effect.reason})")
        else:
            kind, message = "WorkerCrashedError", (
                f"task {name} ({run.task_id.hex()[:16]}) failed: its worker died; {effect.reason}")
        self._record_attempt(run, lineage_pb2.FAILED, (kind, message))
        self._fail_returns(run.returns, kind, message)
        self.objects.release_holder(run.holder())
        if run.spec.is_actor_creation:
            actor = self.actors.get(run.spec.actor_id)
            if actor is not None:
                self._actor_died(actor, "ActorDiedError", f"the actor's creation task failed: {message}")

    def _task_retried(self, effect: ls.RetryTask) -> None:
        run = self.tasks.get(effect.task_id.binary())
        if run is None:
            return
        self.objects.release_holder(run.holder())
        self._record_attempt(run, lineage_pb2.FAILED, ("WorkerCrashedError", effect.reason))
        run.worker_id, run.attempt = None, effect.attempt_number
        attempt = lineage_pb2.TaskAttempt(task_id=run.task_id, attempt_number=effect.attempt_number,
                                          reason=lineage_pb2.RETRY, node_id=self.node_id.binary(),
                                          state=lineage_pb2.PENDING_NODE, start_ms=now_ms(),
                                          error=lineage_pb2.ErrorInfo(kind="WorkerCrashedError",
                                                                      message=effect.reason))
        self.writer.write_later(attempt_key(TaskID(run.task_id), effect.attempt_number),
                                attempt.SerializeToString())

    # ============================================================ completion

    def _on_task_finished(self, session: Session, message: node_pb2.TaskFinished) -> None:
        if self._restartable_task_finished(session, message):
            return
        run = self.tasks.get(message.task_id)
        worker_id = session.worker_id
        if self.cluster is not None:
            self.cluster.task_finished(message.duration_ms)
        if run is not None and run.worker_id == worker_id and run.attempt == message.attempt_number:
            del self.tasks[message.task_id]
            self._record_results(run, message)
            self.objects.release_holder(run.holder())
            if run.spec.is_actor_task:
                actor = self.actors.get(run.spec.actor_id)
                if actor is not None:
                    actor.in_flight.pop(run.task_id, None)
                    key, value = call_record(run.spec, run.spec.owner_worker_id, finished=True)
                    self.writer.write_later(key, value)
                    self._pump_actor(actor)
                return
            if run.spec.is_actor_creation:
                self._creation_finished(run, message)
                return
        if worker_id is not None and worker_id not in self.actors.by_worker:
            self._apply(self.scheduler.handle(ls.TaskFinished(TaskID(message.task_id), worker_id,
                                                              message.attempt_number, message.retire_worker)))
            if message.retire_worker and worker_id not in self.scheduler.workers:
                # Its function's max_calls: the scheduler let it go once idle; a fresh one takes over.
                self._worker_gone(worker_id, "it ran its function's max_calls calls")

    def _on_task_handed_back(self, session: Session, message: node_pb2.TaskHandedBack) -> None:
        """The worker gives back a task it had not started (its running task
        is about to block): the scheduler queues it again, first."""
        if session.worker_id is None or session.worker_id not in self.scheduler.workers:
            return
        self._apply(self.scheduler.handle(ls.TaskHandedBack(TaskID(message.task_id), session.worker_id,
                                                            message.attempt_number)))

    def _record_results(self, run: TaskRun, message: node_pb2.TaskFinished) -> None:
        for result in message.returns:
            if result.HasField("payload"):
                self.objects.add_payload(result.object_id, result.payload)
            else:
                self.objects.add_error(result.object_id, result.error_kind or "TaskError",
                                       result.error_message or "the task reported an error without a message")
            self._record_object(result.object_id, run.task_id, run.spec.owner_worker_id, False)
        # A replay's returns may have been here already.
        self.reconstruction.objects_arrived([r.object_id for r in message.returns], self.node_id.binary())
        state = lineage_pb2.FINISHED
        error = (message.error_kind, "user code raised") if message.application_error else None
        self._record_attempt(run, state, error, message.duration_ms)

    def _record_attempt(self, run: TaskRun, state: int, error: tuple[str, str] | None,
                        duration_ms: int = 0) -> None:
        end_ms = now_ms()
        attempt = lineage_pb2.TaskAttempt(
            task_id=run.task_id, attempt_number=run.attempt,
            reason=run.attempt_reason or (lineage_pb2.FIRST_RUN if run.attempt == 0 else lineage_pb2.RETRY),
            node_id=self.node_id.binary(), worker_id=run.worker_id.binary() if run.worker_id else b"",
            state=state, start_ms=run.started_ms or end_ms - duration_ms, end_ms=end_ms)
        if error is not None:
            attempt.error.kind, attempt.error.message = error
        self.writer.write_later(attempt_key(TaskID(run.task_id), run.attempt), attempt.SerializeToString())

    def _record_object(self, object_id: bytes, producer: bytes, owner: bytes, is_put: bool) -> None:
        entry = self.objects.entries.get(object_id)
        if entry is None or len(object_id) != ObjectID.SIZE:
            return
        record = lineage_pb2.ObjectRecord(object_id=object_id, producing_task_id=producer, is_put=is_put,
                                          owner_worker_id=owner)
        if entry.payload is not None:
            record.size_bytes = entry.payload.size_bytes or len(entry.payload.inline)
            record.locations.append(self.node_id.binary())
            inline = entry.payload.inline
            if entry.payload.WhichOneof("kind") == "inline" and len(inline) <= RECORD_INLINE_VALUE_MAX_BYTES:
                record.inline_value, record.has_inline_value = inline, True
        self.writer.write_later(object_key(ObjectID(object_id)), record.SerializeToString())

    def _fail_returns(self, return_ids: list[bytes], kind: str, message: str) -> None:
        # A retry's or replay's failure is handled by recovery.
        return_ids = self.reconstruction.intercept_failures(return_ids, kind, message)
        for oid in return_ids:
            self.objects.add_error(oid, kind, message)

    def _object_available(self, object_id: bytes) -> None:
        if not self._available_pending:
            asyncio.get_running_loop().call_soon(self._flush_available)
        self._available_pending.append(object_id)

    def _flush_available(self) -> None:
        pending, self._available_pending = self._available_pending, []
        self._apply(self.scheduler.handle(ls.ObjectsAvailable(frozenset(ObjectID(oid) for oid in pending))))
        if self.cluster is not None:
            self.cluster.objects_ready(pending)
        for oid in pending:
            for actor_id in self._actor_waiting.pop(oid, ()):
                actor = self.actors.get(actor_id)
                if actor is not None:
                    self._pump_actor(actor)

    # ============================================================== workers

    def _worker_gone(self, worker_id: WorkerID, why: str) -> None:
        log.debug("worker %s gone: %s", worker_id.hex()[:12], why)
        if worker_id in self._gone_workers:
            return
        self._gone_workers.add(worker_id)
        if len(self._gone_workers) > 100_000:
            self._gone_workers.clear()  # bound; a duplicate notice of a long-gone worker is harmless
        self.pool.kill(worker_id)
        session = self.worker_sessions.pop(worker_id, None)
        if session is not None:
            session.close()
        actor = self.actors.by_worker.get(worker_id)
        if actor is not None and actor.phase in (ActorPhase.ALIVE, ActorPhase.RESTARTING):
            self._actor_worker_died(actor, worker_id, f"its worker process died ({why})")
        else:
            for run in self.tasks.values():
                if run.worker_id == worker_id:
                    self.objects.release_holder(run.holder())
            registered = worker_id in self.scheduler.workers
            self._apply(self.scheduler.handle(ls.WorkerDied(worker_id, why)))
            if not registered and session is None:
                self._start_failures += 1
                self._apply(self.scheduler.handle(ls.WorkerStartFailed(why)))
        self._keep_prestarted()

    def _keep_prestarted(self) -> None:
        """Replace dead (or actor-bound) workers up to the prestarted count."""
        if self.stopping:
            return
        pooled = sum(1 for w in self.pool.processes
                     if w not in self.actors.by_worker and w not in self._gone_workers)
        for _ in range(self.prestart_workers - pooled):
            self._start_worker()

    def _start_worker(self) -> None:
        """Start a worker, backing off while workers keep dying before they
        register (a broken worker must not become a fork loop)."""
        if self.stopping:
            return
        if self._start_failures >= WORKER_START_FAILURES_BEFORE_BACKOFF:
            excess = self._start_failures - WORKER_START_FAILURES_BEFORE_BACKOFF
            delay_s = min(WORKER_START_BACKOFF_MAX_S, 0.5 * 2 ** excess)
            if not self._start_delayed:
                log.error("%d workers in a row died before registering; next start in %.1f s (see %s/logs)",
                          self._start_failures, delay_s, self.session_dir)
            self._start_delayed += 1
            asyncio.get_running_loop().call_later(delay_s, self._delayed_start)
            return
        self.pool.start()

    def _delayed_start(self) -> None:
        self._start_delayed -= 1
        if not self.stopping:
            self.pool.start()

    # ========================================================== get / wait

    # ================================================================ cancel

    def _on_cancel_task(self, session: Session, message: node_pb2.CancelTask) -> None:
        run = self.tasks.get(message.task_id)
        if run is not None:
            self._cancel(run, message.force)
        elif self.cluster is not None:
            self.cluster.cancel(message.task_id, message.force)  # forwarded to another node

    def _cancel(self, run: TaskRun, force: bool) -> None:
        if self.cluster is not None and self.cluster.cancel(run.task_id, force):
            return
        if run.spec.is_actor_task:
            actor = self.actors.get(run.spec.actor_id)
            if actor is not None and actor.restartable:
                self._cancel_restartable_call(actor, run)
            elif actor is not None and run in actor.queue:
                actor.queue.remove(run)
                self._task_cancelled(run.task_id)
            elif actor is not None and run.task_id in actor.in_flight:
                self._cancel_on_worker(run.task_id, actor.worker_id, False)
                self._task_cancelled(run.task_id)
            return
        if not run.scheduled:
            run.cancelled = True
            self._task_cancelled(run.task_id)
            return
        self._apply(self.scheduler.handle(ls.CancelTask(TaskID(run.task_id), force)))

    def _cancel_on_worker(self, task_id: bytes, worker_id: WorkerID, force: bool) -> None:
        if force and self.pool.kill(worker_id):
            return
        session = self.worker_sessions.get(worker_id)
        if session is not None:
            session.send(node_pb2.NodeMessage(cancel_running=node_pb2.CancelRunning(task_id=task_id, force=force)))

    def _task_cancelled(self, task_id: bytes) -> None:
        run = self.tasks.pop(task_id, None)
        if run is None:
            return
        if run.spec.is_actor_task:
            actor = self.actors.get(run.spec.actor_id)
            if actor is not None:
                actor.in_flight.pop(task_id, None)
        message = f"task {specs.function_name(run.spec, self.functions)} ({task_id.hex()[:16]}) was cancelled"
        self._fail_returns(run.returns, "TaskCancelledError", message)
        self._record_attempt(run, lineage_pb2.CANCELLED, ("TaskCancelledError", message))
        self.objects.release_holder(run.holder())
        if run.spec.is_actor_creation:
            actor = self.actors.get(run.spec.actor_id)
            if actor is not None:
                self._actor_died(actor, "ActorDiedError", "its creation task was cancelled")

    # ================================================================= info

    def _on_cluster_info(self, session: Session, message: node_pb2.ClusterInfoRequest) -> None:
        if self.cluster is not None:
            self.cluster.cluster_info(session, message.request_id)
            return
        view = node_pb2.NodeView(node_id=self.node_id.binary(), address=self.address, alive=True)
        for name, units in self.scheduler.resources.total.units_dict().items():
            view.resources_total[name] = units / RESOURCE_UNIT_SCALING
        for name, units in self.scheduler.resources.available.units_dict().items():
            view.resources_available[name] = units / RESOURCE_UNIT_SCALING
        session.send(node_pb2.NodeMessage(cluster_info=node_pb2.ClusterInfoReply(
            request_id=message.request_id, nodes=[view])))

    # ============================================================= shutdown

    async def stop(self) -> None:
        self.stopping = True
        for session in list(self.sessions):
            if session.is_worker:
                session.send(node_pb2.NodeMessage(exit=True))
        await self.pool.stop_all()
        for session in list(self.sessions):
            session.close()


def _submitted_holder(run: TaskRun) -> str:
    """Pins a task's arguments from its arrival until its spec is written
    (then the run's own holder, or the forward to another node, keeps them)."""
    return f"submitted:{run.spec.task_id.hex()}"


def _new_job_id() -> bytes:
    while True:
        raw = os.urandom(JobID.SIZE)
        if raw != b"\xff" * JobID.SIZE:  # the nil job id
            return raw


def _log_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("control-store write failed: %s", future.exception())


