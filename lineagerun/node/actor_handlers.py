"""The node manager's actor handling (a part of ``NodeManager``, kept apart
for size): creation finished, call dispatch in sequence order, death, kill,
lookup by name. Restarts of actors with ``max_restarts != 0`` are driven by
``actor_recovery_driver.py``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from lineagerun.core.ids import ActorID, TaskID
from lineagerun.core.keys import actor_key, name_key, task_key
from lineagerun.core.resources import ResourceSet
from lineagerun.node.actor_recovery_driver import ActorRecoveryDriver
from lineagerun.node.actor_routing import ActorRouting
from lineagerun.node import specs
from lineagerun.node.actors import ActorEntry, ActorPhase
from lineagerun.node.object_table import remote_call_holder
from lineagerun.node.scheduler import ActorResourcesReleased, ActorWorkerDetached
from lineagerun.node.session import Session
from lineagerun.rpc import lineage_pb2, node_pb2

if TYPE_CHECKING:
    from lineagerun.node.server import TaskRun


class ActorHandlers(ActorRecoveryDriver, ActorRouting):
    """Methods of NodeManager that deal with actors (uses its state)."""

    def _creation_finished(self, run: TaskRun, message: node_pb2.TaskFinished) -> None:
        actor = self.actors.get(run.spec.actor_id)
        worker_id = run.worker_id
        lifetime = ResourceSet.from_units(dict(run.spec.resources))
        if message.application_error:
            lifetime = ResourceSet()
        self._apply(self.scheduler.handle(ActorWorkerDetached(TaskID(run.task_id), worker_id, run.attempt,
                                                              run.spec.actor_id, lifetime)))
        if actor is None or actor.phase is ActorPhase.DEAD:
            self.pool.kill(worker_id)
            return
        if self._adopted_creation_finished(actor, run, message):
            self._keep_prestarted()
            return
        if message.application_error:
            self._actor_died(actor, "ActorDiedError",
                             f"the actor's constructor raised {message.error_kind or 'an exception'}")
            self.pool.kill(worker_id)
            return
        actor.phase = ActorPhase.ALIVE
        self.writer.write_later(actor.key, actor.record().SerializeToString())
        if actor.restartable:
            self._ensure_registered(actor)
        self._keep_prestarted()
        self._pump_actor(actor)


    def _pump_actor(self, actor: ActorEntry) -> None:
        if actor.phase is ActorPhase.DEAD:
            self._fail_actor_calls(actor)
            return
        if actor.phase is not ActorPhase.ALIVE:
            return
        session = self.worker_sessions.get(actor.worker_id)
        if session is None:
            return
        while actor.queue and actor.can_send_more():
            run = actor.queue[0]
            waiting = [oid for oid in run.arg_ids if not self.objects.is_ready(oid)]
            if waiting:
                self._actor_waiting.setdefault(waiting[0], set()).add(actor.actor_id)
                if self.cluster is not None:
                    self.cluster.want_args(waiting)  # sent by a caller on another node
                return
            actor.queue.popleft()
            run.worker_id, run.attempt = actor.worker_id, 0
            if self._send_execute(run, session):
                actor.in_flight[run.task_id] = run
            else:
                self.tasks.pop(run.task_id, None)

    def _fail_actor_calls(self, actor: ActorEntry) -> None:
        message = f"actor {actor.actor_id.hex()} is dead: {actor.death_message}"
        pending = (list(actor.in_flight.values()) + list(actor.queue) + list(actor.held.values())
                   + list(actor.orphaned.values()))
        waiting = [spec for _, spec in actor.deferred] + [spec for _, spec, _ in actor.intake]
        actor.deferred, actor.intake = [], type(actor.intake)()
        for spec in waiting:  # never numbered: nothing recorded
            self._fail_returns(specs.return_ids(spec), "ActorDiedError", message)
            self.objects.release_holder(remote_call_holder(spec.task_id))  # a call that waited for a relocation
        for run in pending:
            self.tasks.pop(run.task_id, None)
            self.objects.release_holder(run.holder())
            self._fail_returns(run.returns, "ActorDiedError", message)
            if run.worker_id is not None:
                self._record_attempt(run, lineage_pb2.FAILED, ("ActorDiedError", message))
        actor.in_flight.clear()
        actor.queue.clear()
        actor.held.clear()
        actor.orphaned.clear()

    def _actor_died(self, actor: ActorEntry, kind: str, message: str) -> None:
        if actor.phase is ActorPhase.DEAD:
            return
        self.actors.mark_dead(actor, kind, message)
        if actor.restartable:
            self._forget_restartable(actor)
        self._apply(self.scheduler.handle(ActorResourcesReleased(actor.actor_id)))
        self.writer.write_later(actor.key, actor.record().SerializeToString())
        if actor.name:
            self.writer.write_later(actor.name_key(), None)
        creation = self.tasks.get(actor.creation_task_id)
        if creation is not None and creation.worker_id is None:
            self._cancel(creation, force=False)
        self._fail_actor_calls(actor)

    def _kill_actor(self, actor: ActorEntry, why: str) -> None:
        worker_id = actor.worker_id
        self._actor_died(actor, "ActorDiedError", why)
        if worker_id is not None:
            if not self.pool.kill(worker_id):
                session = self.worker_sessions.get(worker_id)
                if session is not None:
                    session.send(node_pb2.NodeMessage(exit=True))

    def _on_kill_actor(self, session: Session, message: node_pb2.KillActor) -> None:
        actor = self.actors.get(message.actor_id)
        if actor is None and self.cluster is not None:
            self._kill_remote_actor(message)  # hosted on another node
            return
        if actor is None or actor.phase is ActorPhase.DEAD:
            return
        if message.exiting and session.worker_id is not None and session.worker_id == actor.worker_id:
            self._kill_actor(actor, "it exited: one of its methods called lineagerun.actor.exit_actor()")
            return
        if not message.no_restart and actor.restartable:
            if actor.phase is ActorPhase.ALIVE and actor.worker_id is not None:
                self.pool.kill(actor.worker_id)  # restarted as after a crash
            return
        self._kill_actor(actor, "it was killed (lineagerun.kill)")

    def _on_get_actor(self, session: Session, message: node_pb2.GetActorRequest) -> None:
        namespace = message.namespace or session.namespace
        actor = self.actors.named(namespace, message.name)
        if actor is not None:
            session.send(node_pb2.NodeMessage(actor_info=node_pb2.ActorInfo(
                request_id=message.request_id, actor=actor.record(), found=True,
                creation_spec=actor.creation_spec)))
            return
        asyncio.get_running_loop().create_task(self._get_actor_remote(session, message, namespace))

    async def _get_actor_remote(self, session: Session, message: node_pb2.GetActorRequest, namespace: str) -> None:
        reply = node_pb2.ActorInfo(request_id=message.request_id, found=False)
        try:
            client = self.writer.client
            loop = asyncio.get_running_loop()
            actor_id = await loop.run_in_executor(None, client.get, name_key(namespace, message.name))
            if actor_id:
                raw = await loop.run_in_executor(None, client.get, actor_key(ActorID(actor_id)))
                if raw:
                    record = lineage_pb2.ActorRecord.FromString(raw)
                    if record.state != lineage_pb2.DEAD:
                        reply.actor.CopyFrom(record)
                        reply.found = True
                        spec = await loop.run_in_executor(None, client.get, task_key(TaskID(record.creation_task_id)))
                        if spec:
                            reply.creation_spec.ParseFromString(spec)
        except Exception as exc:  # noqa: BLE001 - answered as a request error
            session.send(node_pb2.NodeMessage(request_error=node_pb2.RequestError(
                request_id=message.request_id, error_kind=type(exc).__name__, message=str(exc))))
            return
        session.send(node_pb2.NodeMessage(actor_info=reply))
