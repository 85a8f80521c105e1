"""The node manager's object requests (a part of ``NodeManager``, kept apart
for size): get, wait, put, release, and the pins that keep a get's
shared-memory files until the client has mapped them."""

from __future__ import annotations

import asyncio

from lineagerun.core import local_scheduler as ls
from lineagerun.core.ids import ObjectID, TaskID
from lineagerun.node.object_table import GET_PIN_GRACE_S
from lineagerun.node.session import Session
from lineagerun.rpc import node_pb2


def get_pin_holder(session: Session, request_id: int) -> str:
    return f"get:{session.serial}:{request_id}"


class ObjectRequests:
    def _on_get_objects(self, session: Session, message: node_pb2.GetObjects) -> None:
        request_id = message.request_id
        ids = list(message.object_ids)
        self.reconstruction.check_wanted(ids)  # a peer asking for a lost copy starts its rebuild too
        if self.cluster is not None and not session.is_peer:
            self.cluster.want(ids)

        blocked = []

        def reply(results):
            if blocked:
                self._unblock(session)
            if results is None:
                session.send(node_pb2.NodeMessage(objects_reply=node_pb2.ObjectsReply(
                    request_id=request_id, timed_out=True)))
                return
            if any(result.payload.WhichOneof("kind") == "shm_name" for result in results):
                # The client maps the files after the reply arrives; until it
                # says so (ObjectsMapped), or the grace period ends, they stay.
                holder = get_pin_holder(session, request_id)
                self.objects.pin(ids, holder)
                asyncio.get_running_loop().call_later(GET_PIN_GRACE_S, self.objects.release_holder, holder)
            session.send(node_pb2.NodeMessage(objects_reply=node_pb2.ObjectsReply(
                request_id=request_id, objects=results)))

        if not self.objects.get(ids, message.timeout_ms, reply, owner=session.holder()) and not message.not_blocking:
            blocked.append(True)
            self._block(session)

    def _on_wait_objects(self, session: Session, message: node_pb2.WaitObjects) -> None:
        request_id = message.request_id
        ids = list(message.object_ids)
        num_returns = min(max(message.num_returns, 1), len(ids)) if ids else 0
        if self.cluster is not None and not session.is_peer and message.fetch_local:
            self.cluster.want(ids)
        elif self.cluster is not None and not session.is_peer:
            self.cluster.reconstruction.need_if_lost(ids)
        elif not session.is_peer:
            self.reconstruction.check_wanted(ids)

        blocked = []

        def reply(ready):
            if blocked:
                self._unblock(session)
            session.send(node_pb2.NodeMessage(wait_reply=node_pb2.WaitReply(
                request_id=request_id, ready_object_ids=ready)))

        if not self.objects.wait(ids, num_returns, message.timeout_ms, reply,
                                 fetch_local=message.fetch_local or self.cluster is None, owner=session.holder()):
            blocked.append(True)
            self._block(session)

    def _block(self, session: Session) -> None:
        session.blocked_requests += 1
        if session.blocked_requests == 1 and session.worker_id in self.scheduler.workers:
            self._apply(self.scheduler.handle(ls.WorkerBlocked(session.worker_id)))

    def _unblock(self, session: Session) -> None:
        session.blocked_requests -= 1
        if session.blocked_requests == 0 and session.worker_id in self.scheduler.workers:
            self._apply(self.scheduler.handle(ls.WorkerUnblocked(session.worker_id)))

    def _on_put_object(self, session: Session, message: node_pb2.PutObject) -> None:
        if len(message.object_id) != ObjectID.SIZE:
            session.send(node_pb2.NodeMessage(request_error=node_pb2.RequestError(
                error_kind="InvalidArgumentError",
                message=f"PutObject: object ids are {ObjectID.SIZE} bytes, got {len(message.object_id)}")))
            return
        self.objects.add_payload(message.object_id, message.payload)
        producer = message.object_id[:TaskID.SIZE]
        self._record_object(message.object_id, producer, session.worker_id.binary() if session.worker_id else b"",
                            True)

    def _on_objects_mapped(self, session: Session, message: node_pb2.ObjectsMapped) -> None:
        self.objects.release_holder(get_pin_holder(session, message.request_id))

    def _on_release_objects(self, session: Session, message: node_pb2.ReleaseObjects) -> None:
        self.objects.release_primary(message.object_ids)
        if self.cluster is not None:
            self.cluster.release(message.object_ids)  # copies on the nodes that made them
