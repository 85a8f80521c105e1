"""Tasks and objects a peer node sends on its session (a part of
``ClusterLink``, kept apart for size): forwarded tasks are run here (or
answered at once when a resubmission finds them done), actor specs go to
actor routing, and objects arrive as values or as locations to pull."""

from __future__ import annotations

from lineagerun.core.ids import ObjectID
from lineagerun.node import specs
from lineagerun.node.object_table import RemoteCopy
from lineagerun.node.peer_resubmit import resubmittable
from lineagerun.node.peers import location_of
from lineagerun.rpc import node_pb2


class PeerIntake:
    def handle_peer_message(self, session, kind: str, message) -> bool:
        """Messages whose meaning differs on a peer session; False: the
        node manager handles it as from any client."""
        if kind == "submit_tasks":
            self._accept(session, message)
            return True
        if kind == "put_object":
            self._accept_object(session, message)
            return True
        return False

    def _accept(self, session, message: node_pb2.SubmitTasks) -> None:
        from lineagerun.node.server import TaskRun

        manager = self.manager
        actor_specs = []
        for index, spec in enumerate(message.specs):
            returns = specs.return_ids(spec)
            if spec.task_id in manager.tasks:
                if resubmittable(spec):  # submitted again after its session ended: answer on this one
                    for oid in returns:
                        self._peer_returns[oid] = session
                continue
            if resubmittable(spec) and returns and all(manager.objects.is_ready(oid) for oid in returns):
                # Ran here already; its results went to a session that ended (peer_resubmit.py).
                session.send(node_pb2.NodeMessage(objects_reply=node_pb2.ObjectsReply(
                    request_id=0, objects=[manager.objects.result(oid) for oid in returns])))
                continue
            for oid in returns:
                self._peer_returns[oid] = session
            problem = specs.validate(spec, manager.functions)
            if problem is not None:
                manager._fail_returns(returns, "InvalidArgumentError", f"forwarded task rejected: {problem}")
                continue
            if spec.is_actor_task or spec.is_actor_creation:
                actor_specs.append(spec)  # actor_routing.py
                continue
            run = TaskRun(spec, returns, session, arg_ids=specs.arg_object_ids(spec))
            run.scheduled = True
            if index < len(message.attempt_numbers):  # a retry or replay the forwarding node decided
                run.attempt = message.attempt_numbers[index]
                if index < len(message.attempt_reasons):
                    run.attempt_reason = message.attempt_reasons[index]
            manager.tasks[spec.task_id] = run
            self.counters["accepted"] += 1
            manager._schedule_local(run)
        if actor_specs:
            manager._accept_actor_specs(session, actor_specs, message)

    def _accept_object(self, session, message: node_pb2.PutObject) -> None:
        if len(message.object_id) != ObjectID.SIZE:
            return
        holder = location_of(message.payload)
        if holder is None:
            self.manager.objects.add_payload(message.object_id, message.payload)
            return
        payload = message.payload
        copy = RemoteCopy(holder, self.node_of(holder), payload.size_bytes, payload.is_error,
                          tuple(payload.nested_object_ids))
        if self.manager.objects.add_remote(message.object_id, copy):
            self._object_known(message.object_id)
