"""The read side of a session's objects: ``get`` (blocking or as a
future, for ``ObjectRef.future()`` and ``await ref``) and ``wait``.

A mixin of ``CoreWorker`` (core_worker.py): it uses the session's request
futures (``_request``/``_request_future``), outbox, ref tracking and
``_completions`` (one thread that makes a future's value and completes it:
never the session's reader thread, since a done-callback that calls
``get`` there would wait for the thread that has to answer it, and making a
large value there would hold up every other answer). Own
small puts are answered from ``_local_objects`` without a round trip; a
reply naming files of the node's shared-memory store is acknowledged with
``ObjectsMapped`` once they are mapped, so the node can drop its pins.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from lineagerun import exceptions
from lineagerun.api.object_ref import ObjectRef
from lineagerun.rpc import node_pb2
from lineagerun.worker import payloads

class ObjectReads:
    def _local_payloads(self, refs: list[ObjectRef]) -> tuple[dict[bytes, Any], list[bytes]]:
        """What this process holds of ``refs`` (by id; None: ask the node), and the ids to ask for."""
        payloads_by_id: dict[bytes, Any] = {}
        missing = []
        for ref in refs:
            payload = self._local_objects.get(ref.binary())
            if payload is not None:
                payloads_by_id[ref.binary()] = payload
            elif ref.binary() not in payloads_by_id:
                missing.append(ref.binary())
                payloads_by_id[ref.binary()] = None
        return payloads_by_id, missing

    def get(self, refs: list[ObjectRef], timeout_s: float | None) -> list[Any]:
        payloads_by_id, missing = self._local_payloads(refs)
        reply = None
        if missing:
            timeout_ms = -1 if timeout_s is None else max(0, int(timeout_s * 1000))
            try:
                with self.blocking():
                    reply = self._request(lambda rid: node_pb2.ClientMessage(
                        get_objects=node_pb2.GetObjects(request_id=rid, object_ids=missing, timeout_ms=timeout_ms)),
                        self._client_timeout(timeout_s))
            except TimeoutError:
                reply = node_pb2.ObjectsReply(timed_out=True)
            if reply.timed_out:
                raise exceptions.GetTimeoutError(
                    f"get timed out after {timeout_s} s: {len(missing)} of {len(refs)} objects not ready")
        return self._values(refs, payloads_by_id, reply)

    def _values(self, refs: list[ObjectRef], payloads_by_id: dict[bytes, Any],
                reply: node_pb2.ObjectsReply | None) -> list[Any]:
        in_store: set[bytes] = set()  # ids the reply's payloads name in the shared-memory store
        if reply is not None:
            for result in reply.objects:
                payloads_by_id[result.object_id] = result
            in_store = {result.object_id for result in reply.objects
                        if result.payload.WhichOneof("kind") == "shm_name"}
            if in_store and self._ref_events is not None:
                with self._outbox_cv:
                    self._in_store.update(ref.binary() for ref in refs if ref._tracked and ref.binary() in in_store)
        try:
            return [self._value_of(ref, payloads_by_id[ref.binary()]) for ref in refs]
        finally:
            if in_store:
                self._mapped(reply.request_id)

    def get_future(self, ref: ObjectRef) -> Future:
        """A future of ``ref``'s value, as Ray's ``ObjectRef.future()``:
        asked of the node now; when the answer comes, the value is made and
        the future completed on this session's completion thread (no thread
        waits for the object meanwhile)."""
        out: Future = Future()
        payloads_by_id, missing = self._local_payloads([ref])

        def settle(reply: node_pb2.ObjectsReply | None) -> None:
            if out.done():
                return  # cancelled (an asyncio wait_for that timed out)
            try:
                out.set_result(self._values([ref], payloads_by_id, reply)[0])
            except BaseException as err:  # noqa: BLE001 - the value's error is the future's
                out.set_exception(err)

        if not missing:
            settle(None)
            return out
        try:
            answer = self._request_future(lambda rid: node_pb2.ClientMessage(
                get_objects=node_pb2.GetObjects(request_id=rid, object_ids=missing, timeout_ms=-1, not_blocking=True)))
        except BaseException as err:  # noqa: BLE001 - e.g. the session is closed
            out.set_exception(err)
            return out

        def answered(done: Future) -> None:
            error = done.exception()
            if error is None:
                try:
                    self._completions.submit(settle, done.result())
                    return
                except RuntimeError as closed:  # the session closed meanwhile
                    error = closed
            if not out.done():
                out.set_exception(error)

        answer.add_done_callback(answered)
        return out

    def _mapped(self, request_id: int) -> None:
        """The files of a get reply are mapped: the node may evict them once
        released (a mapping outlives its file)."""
        try:
            self._send(node_pb2.ClientMessage(objects_mapped=node_pb2.ObjectsMapped(request_id=request_id)))
        except exceptions.LineagerunError:
            pass  # the session ended: the node dropped its pins with it

    def get_one(self, ref: ObjectRef, timeout_s: float | None = None) -> Any:
        return self.get([ref], timeout_s)[0]

    def _value_of(self, ref: ObjectRef, item) -> Any:
        if item is None:
            raise exceptions.ObjectLostError(ref.hex(), "the node manager did not return it")
        if isinstance(item, node_pb2.ObjectResult):
            if item.error_kind and not item.HasField("payload"):
                raise payloads.error_from_result(item)
            if item.error_kind and not item.payload.WhichOneof("kind"):
                raise payloads.error_from_result(item)
            item = item.payload
        value = payloads.from_payload(item, ref.hex())
        if item.is_error:
            if isinstance(value, exceptions.TaskError):
                value = value.as_instanceof_cause()
            raise value
        return value

    def wait(self, refs: list[ObjectRef], num_returns: int, timeout_s: float | None,
             fetch_local: bool) -> list[bytes]:
        timeout_ms = -1 if timeout_s is None else max(0, int(timeout_s * 1000))
        ids = list(dict.fromkeys(ref.binary() for ref in refs))
        try:
            with self.blocking():
                reply = self._request(lambda rid: node_pb2.ClientMessage(wait_objects=node_pb2.WaitObjects(
                    request_id=rid, object_ids=ids, num_returns=num_returns, timeout_ms=timeout_ms,
                    fetch_local=fetch_local)), self._client_timeout(timeout_s))
        except TimeoutError:
            return []  # the node did not answer in time (a TCP driver's link is down): nothing known ready
        return list(reply.ready_object_ids)

    def _client_timeout(self, timeout_s: float | None) -> float | None:
        """The node enforces get/wait timeouts; a TCP driver whose link may
        be down enforces them too, a little later."""
        if timeout_s is None or self._resume is None:
            return None
        from lineagerun.worker.session_resume import CLIENT_TIMEOUT_SLACK_S

        return timeout_s + CLIENT_TIMEOUT_SLACK_S
