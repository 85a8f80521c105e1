"""Node-to-node sessions: a node manager forwarding tasks to another.

A node manager that forwards a task to another one opens, once per peer, an
ordinary ``NodeManager.Session`` stream to the peer's TCP address (token on
the call, as every RPC) and registers with ``kind = PEER_KIND``. On that
stream, in order:

- ``ExportFunction`` before the first task naming a function (as a driver);
- ``PutObject`` per by-reference argument: the value itself when it is
  inline, else a *location*: ``ObjectPayload.shm_name = "@host:port"`` (the
  node manager holding a sealed copy; ``@`` never starts a store file name),
  with the object's size, ``is_error`` and nested ids;
- ``SubmitTasks``: tasks the global scheduler placed on that peer. The peer
  queues them and never spills them again; their specs are already durable
  (the forwarding node wrote them before spilling).

The peer answers every return value of a forwarded task, once it exists,
with an unsolicited ``ObjectsReply`` (``request_id = 0``): inline values as
bytes, values in its store as the ``@host:port`` location, node-detected
errors as ``error_kind``. The forwarding node (the owner's node) records
them and pulls a large value only when a get or a task needs it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

import grpc

from lineagerun.rpc import node_pb2, node_pb2_grpc
from lineagerun.transport.channels import make_aio_channel

log = logging.getLogger(__name__)

# Register.Kind of a node manager's session to another (node.proto has
# DRIVER = 1 and WORKER = 2; proto3 enums are open, so 3 travels as is).
PEER_KIND = 3
# Prefix of a location in ObjectPayload.shm_name on a peer session.
LOCATION_PREFIX = "@"
# Messages queued for one peer before the sender is told the peer is too
# slow (the task is then spilled again rather than buffered without bound).
PEER_OUTBOX_MAX = 100_000
REGISTER_TIMEOUT_S = 10.0
# A request on a peer session (beyond its own timeout) before giving up on it.
PEER_REQUEST_TIMEOUT_S = 10.0


def location_payload(address: str, size_bytes: int, is_error: bool, nested) -> node_pb2.ObjectPayload:
    return node_pb2.ObjectPayload(shm_name=LOCATION_PREFIX + address, size_bytes=size_bytes, is_error=is_error,
                                  nested_object_ids=list(nested))


def location_of(payload: node_pb2.ObjectPayload) -> str | None:
    """The ``host:port`` a peer payload points at, or None for a value."""
    if payload.WhichOneof("kind") == "shm_name" and payload.shm_name.startswith(LOCATION_PREFIX):
        return payload.shm_name[len(LOCATION_PREFIX):]
    return None


class PeerConnection:
    """One outgoing peer session. ``on_results(peer, results)`` gets the
    return values the peer sends back; ``on_closed(peer)`` when the stream
    ends (peer gone, or ``close``)."""

    def __init__(self, address: str, token: str | None, own_node_id: bytes, *,
                 on_results: Callable[["PeerConnection", list], None],
                 on_closed: Callable[["PeerConnection"], None], root_cert: bytes | None = None,
                 dial: Callable[[str], str] | None = None):
        self.address = address
        self.node_id: bytes = b""
        self.functions_sent: set[bytes] = set()
        self.closed = False
        self._own_node_id = own_node_id
        self._on_results = on_results
        self._on_closed = on_closed
        # dial: a chaos cluster routes each node pair through its own proxy (peer_dial.py).
        self._channel = make_aio_channel(dial(address) if dial else address, token, root_cert=root_cert)
        self._outbox: asyncio.Queue = asyncio.Queue(PEER_OUTBOX_MAX)
        self._requests_pending: dict[int, asyncio.Future] = {}
        self._next_request_id = 0
        self._registered = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def ready(self) -> None:
        """Wait until the peer accepted the registration (raise if it did not,
        or if the session ended meanwhile)."""
        await asyncio.wait_for(asyncio.shield(self._registered), REGISTER_TIMEOUT_S)
        # The session can end while this waits for its turn on the loop
        # (registration long done, then a partition drops the stream): the
        # caller's next send() would fail and its tasks, recorded as sent,
        # would wait for results that never come (a 90 s chaos stall).
        if self.closed:
            raise ConnectionError(f"peer {self.address} closed the session")

    def send(self, message: node_pb2.ClientMessage) -> bool:
        """Queue a message in order; False if the connection is closed or full."""
        if self.closed:
            return False
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            return False
        return True

    async def get_objects(self, object_ids: list[bytes], timeout_ms: int = 0) -> list:
        """The peer's ``ObjectResult``s for ``object_ids`` (values inline,
        stored ones as ``@host:port`` locations; "not on this node" as
        ``ObjectLostError``)."""
        self._next_request_id += 1
        request_id = self._next_request_id
        future = asyncio.get_running_loop().create_future()
        self._requests_pending[request_id] = future
        message = node_pb2.ClientMessage(get_objects=node_pb2.GetObjects(
            request_id=request_id, object_ids=object_ids, timeout_ms=timeout_ms))
        try:
            if not self.send(message):
                raise ConnectionError(f"peer {self.address} is closed")
            reply = await asyncio.wait_for(future, max(timeout_ms / 1000, 0) + PEER_REQUEST_TIMEOUT_S)
        finally:
            self._requests_pending.pop(request_id, None)
        if reply.timed_out:
            raise TimeoutError(f"peer {self.address} did not have {len(object_ids)} object(s) in time")
        return list(reply.objects)

    async def _requests(self):
        yield node_pb2.ClientMessage(register=node_pb2.Register(
            kind=PEER_KIND, worker_id=self._own_node_id, pid=os.getpid()))
        while True:
            message = await self._outbox.get()
            if message is None:
                return
            yield message

    async def _run(self) -> None:
        stub = node_pb2_grpc.NodeManagerStub(self._channel)
        try:
            call = stub.Session(self._requests())
            async for reply in call:
                kind = reply.WhichOneof("kind")
                if kind == "registered":
                    self.node_id = reply.registered.node_id
                    if not self._registered.done():
                        self._registered.set_result(None)
                elif kind == "objects_reply" and reply.objects_reply.request_id == 0:
                    self._on_results(self, list(reply.objects_reply.objects))
                elif kind == "objects_reply":
                    future = self._requests_pending.get(reply.objects_reply.request_id)
                    if future is not None and not future.done():
                        future.set_result(reply.objects_reply)
                elif kind == "request_error":
                    log.warning("peer %s refused a message: %s: %s", self.address,
                                reply.request_error.error_kind, reply.request_error.message)
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
            if not self._registered.done():
                self._registered.set_exception(ConnectionError(f"peer {self.address}: {exc}"))
            if isinstance(exc, asyncio.CancelledError):
                raise
        except Exception:  # noqa: BLE001 - a broken peer must not take the node down
            log.exception("peer session to %s failed", self.address)
        finally:
            if not self._registered.done():
                self._registered.set_exception(ConnectionError(f"peer {self.address} closed the session"))
            if not self._registered.cancelled():
                self._registered.exception()  # retrieved: no "never retrieved" warning
            for future in self._requests_pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"peer {self.address} closed the session"))
            if not self.closed and self.node_id:  # a registered session the peer or the link ended
                log.info("peer session to %s ended; %d queued message(s) not sent", self.address,
                         self._outbox.qsize())
            self.closed = True
            self._on_closed(self)

    async def close(self) -> None:
        self.closed = True
        try:
            self._outbox.put_nowait(None)
        except asyncio.QueueFull:
            pass
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass
        await self._channel.close()


class PeerPool:
    """One ``PeerConnection`` per peer address, opened on first use and
    replaced when it closes."""

    def __init__(self, token: str | None, own_node_id: bytes, *,
                 on_results: Callable[[PeerConnection, list], None],
                 on_closed: Callable[[PeerConnection], None] | None = None, root_cert: bytes | None = None,
                 dial: Callable[[str], str] | None = None):
        self._token = token
        self._dial = dial
        self._own_node_id = own_node_id
        self._on_results = on_results
        self._on_closed = on_closed
        self._root_cert = root_cert
        self.connections: dict[str, PeerConnection] = {}

    def get(self, address: str) -> PeerConnection:
        peer = self.connections.get(address)
        if peer is None or peer.closed:
            peer = PeerConnection(address, self._token, self._own_node_id, on_results=self._on_results,
                                  on_closed=self._closed, root_cert=self._root_cert, dial=self._dial)
            self.connections[address] = peer
        return peer

    def _closed(self, peer: PeerConnection) -> None:
        if self.connections.get(peer.address) is peer:
            del self.connections[peer.address]
        if self._on_closed is not None:
            self._on_closed(peer)

    async def close(self) -> None:
        peers, self.connections = list(self.connections.values()), {}
        for peer in peers:
            await peer.close()
