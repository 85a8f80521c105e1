"""One client (driver or worker) of the node manager and its Session stream."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import grpc

from lineagerun.core.ids import WorkerID
from lineagerun.node.driver_resume import DriverSessions, over_tcp
from lineagerun.node.peers import LOCATION_PREFIX, PEER_KIND, location_payload
from lineagerun.rpc import node_pb2, node_pb2_grpc

log = logging.getLogger(__name__)

# Messages queued for one client sent as one NodeMessage.batch at most (only
# to clients whose Register says accepts_batches).
OUT_BATCH_MAX = 256
# A session's reader lets the loop turn after this many messages.
READ_YIELD_EVERY = 4
# A reset connection ends a stream's reads (EOF) and cancels the call, in
# either order: a tracked TCP driver's stream whose reads end is looked at
# again after this long before its end counts as the driver's goodbye.
EOF_SETTLE_S = 0.05


@dataclass(eq=False)
class Session:
    serial: int
    kind: int = node_pb2.Register.KIND_UNSPECIFIED
    worker_id: WorkerID | None = None
    pid: int = 0
    job_id: bytes = b""
    namespace: str = ""
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    functions_sent: set = field(default_factory=set)
    closed: bool = False
    blocked_requests: int = 0  # get/wait requests of a worker not answered yet
    # A peer (another node manager) cannot map this node's shared-memory
    # files: objects in the store are sent to it as a location, this address.
    location_address: str = ""
    accepts_batches: bool = False  # Register.accepts_batches
    # A TCP driver's session outlives a broken stream (driver_resume.py):
    # each stream serving it has its generation; a broken one is parked.
    generation: int = 0
    stream_broken: bool = False
    peer_node_id: bytes = b""  # a peer session: the node id it registered with (actor_takeover.py)
    resume_worker_id: bytes = b""  # a TCP driver tracked for resuming (driver_resume.py)

    @property
    def is_worker(self) -> bool:
        return self.kind == node_pb2.Register.WORKER

    @property
    def is_driver(self) -> bool:
        return self.kind == node_pb2.Register.DRIVER

    @property
    def is_peer(self) -> bool:
        return self.kind == PEER_KIND

    def send(self, message: node_pb2.NodeMessage) -> None:
        if not self.closed:
            if self.is_peer and message.WhichOneof("kind") == "objects_reply":
                self._locate_stored(message.objects_reply.objects)
            self.out.put_nowait(message)

    def _locate_stored(self, results) -> None:
        for result in results:
            payload = result.payload
            if payload.WhichOneof("kind") == "shm_name" and not payload.shm_name.startswith(LOCATION_PREFIX):
                payload.CopyFrom(location_payload(self.location_address, payload.size_bytes, payload.is_error,
                                                  payload.nested_object_ids))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.out.put_nowait(None)

    def holder(self) -> str:
        return f"session:{self.serial}"


class NodeManagerServicer(node_pb2_grpc.NodeManagerServicer):
    """Thin shell: reads client messages into the manager, writes its replies."""

    def __init__(self, manager):
        self.manager = manager
        self._serial = 0
        self.drivers = DriverSessions(manager)

    async def Session(self, request_iterator, context):
        self._serial += 1
        session = Session(self._serial)
        requests = request_iterator.__aiter__()
        try:
            first = await requests.__anext__()
        except (StopAsyncIteration, asyncio.CancelledError, grpc.aio.AioRpcError):
            return
        resumed = self.drivers.resume(first)
        if resumed is not None:
            session, first = resumed, None
        generation, out = session.generation, session.out
        tcp = resumed is None and over_tcp(context)
        reader = asyncio.get_running_loop().create_task(
            self._read(session, requests, first, generation, tcp, context))
        try:
            while True:
                message = await out.get()
                if message is None:
                    break
                if session.accepts_batches and not out.empty():
                    message, end = _take_batch(message, out)
                    await context.write(message)
                    if end:
                        break
                    continue
                await context.write(message)
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            session.stream_broken = True
        finally:
            reader.cancel()
            if session.generation == generation:  # else a newer stream serves it
                session.closed = True
                if not (session.stream_broken and self.drivers.park(session)):
                    self.drivers.forget(session)
                    self.manager.session_closed(session)

    async def _read(self, session: Session, request_iterator, first, generation: int, tcp: bool,
                    context) -> None:
        try:
            if first is not None:
                self._handle(session, first)
                if tcp and session.is_driver and len(first.register.worker_id) == WorkerID.SIZE:
                    self.drivers.track(session, first.register.worker_id)
            handled = 0
            async for message in request_iterator:
                handled += 1
                if handled % READ_YIELD_EVERY == 0:
                    # Buffered messages are read without a loop turn; without
                    # this, a burst of submissions starves the completions
                    # (spec writes, other sessions) queued behind it.
                    await asyncio.sleep(0)
                if message.WhichOneof("kind") == "batch":
                    await self._handle_batch(session, message.batch.messages)
                else:
                    self._handle(session, message)
            if session.resume_worker_id and session.generation == generation:
                await asyncio.sleep(EOF_SETTLE_S)
                if context.cancelled() and session.generation == generation:  # the link broke: no goodbye
                    session.stream_broken = True
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            if session.generation == generation:
                session.stream_broken = True
        except Exception:  # noqa: BLE001
            log.exception("session %d reader failed", session.serial)
        finally:
            if session.generation == generation:
                session.close()

    async def _handle_batch(self, session: Session, messages) -> None:
        """A batch's messages in order, with two loop turns after a
        submission that others follow (one for the lineage writer to start
        the spec batch, one for that batch's send), so the spec write goes
        out before they are handled: ``get(f.remote())`` sends the get with
        the submission, and the get's handling is not on the task's path."""
        last = len(messages) - 1
        for index, one in enumerate(messages):
            self._handle(session, one)
            if index < last and one.WhichOneof("kind") == "submit_tasks":
                await asyncio.sleep(0)
                await asyncio.sleep(0)

    def _handle(self, session: Session, message: node_pb2.ClientMessage) -> None:
        """One message (a batch's are handed here one by one)."""
        if message.WhichOneof("kind") == "register" and message.register.accepts_batches:
            session.accepts_batches = True
        if session.is_driver:  # a resumed TCP driver resends what may have arrived
            message = self.drivers.first_time(session, message)
            if message is None:
                return
        try:
            self.manager.handle_message(session, message)
        except Exception:  # noqa: BLE001 - one bad message must not end the node
            log.exception("handling a %s message failed", message.WhichOneof("kind"))


def _take_batch(first: node_pb2.NodeMessage, out: asyncio.Queue) -> tuple[node_pb2.NodeMessage, bool]:
    """``first`` and what is queued behind it as one message; True: the
    session's end (None) was among them."""
    batch = node_pb2.NodeMessages()
    batch.messages.append(first)
    end = False
    while not out.empty() and len(batch.messages) < OUT_BATCH_MAX:
        message = out.get_nowait()
        if message is None:
            end = True
            break
        batch.messages.append(message)
    return node_pb2.NodeMessage(batch=batch), end
