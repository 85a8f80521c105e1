"""The replica process's gRPC service: a thin asyncio shell around
``ReplicaCore``.

One event loop. Every RPC turns into an event; ``_handle`` feeds it to the
core and carries out the effects in order (persist, then send, then reply),
synchronously, so no two events interleave. Writes are not handled one by
one: a Write RPC parks its request and schedules one flush for the current
loop iteration, so every write that arrived meanwhile becomes one
``WritesArrived`` event: one RocksDB write batch and one ForwardBatch (group
commit).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import time
from collections import deque

import grpc

from lineagerun.control.replica.answers import Answers
from lineagerun.control.replica.identity import write_identity
from lineagerun.control.replica.replica_links import IncomingLinks, OutgoingLinks
from lineagerun.control.replica.subscriptions import Subscriptions
from lineagerun.core.chain.replica import ReplicaCore
from lineagerun.core.chain.replica_events import (
    AckArrived, ClientWrite, ConfigPushed, FailCall, Fatal, ForwardArrived, HeartbeatFailed, HeartbeatReplied,
    JoinFailed, JoinReplied, LinkLost, Persist, ReadArrived, ReplyConfig, ReplyRead, ReplyScan, ReplyWrite,
    SaveIdentity, ScanArrived, SendAck, SendForward, SendHeartbeat, SendJoin, SendSnapshot, ShardCountLearned, Tick,
    WritesArrived,
)
from lineagerun.exceptions import RpcError, UnavailableError, WrongShardError
from lineagerun.rpc import common_pb2, control_store_pb2, control_store_pb2_grpc, coordinator_pb2, coordinator_pb2_grpc
from lineagerun.transport import channels
from lineagerun.transport.errors import abort_aio, code_of, from_rpc_error

log = logging.getLogger(__name__)

TICK_MS = 10
JOIN_RPC_TIMEOUT_S = 1.5
# Writes parked for the next group commit; beyond this, Write answers
# UNAVAILABLE at once (the core's own bound covers writes waiting for commit).
PENDING_WRITES_MAX = 50_000


def now_ms() -> int:
    return int(time.monotonic() * 1000)


class ReplicaService(control_store_pb2_grpc.ControlStoreReplicaServicer):
    def __init__(self, core: ReplicaCore, storage, *, directory, coordinator_address: str, token: str):
        self.core = core
        self.storage = storage
        self.directory = directory
        self.token = token
        self.calls: dict[int, asyncio.Future] = {}
        self.call_ids = itertools.count(1)
        self.pending_writes: deque[ClientWrite] = deque()
        self.flush_scheduled = False
        self.coordinator_channel = channels.make_aio_channel(coordinator_address, token)
        self.coordinator = coordinator_pb2_grpc.ChainCoordinatorStub(self.coordinator_channel)
        self.outgoing = OutgoingLinks(self, token)
        self.incoming = IncomingLinks()
        self.subscriptions = Subscriptions(self, now_ms)
        self.answers = Answers(self)
        self.fatal_error: Exception | None = None
        self.fetching_shard_count = False
        self.stopped = asyncio.Event()
        self.background: set[asyncio.Task] = set()

    # ------------------------------------------------------------ the driver

    def handle(self, event) -> None:
        if self.fatal_error is not None:
            return
        try:
            acks = []
            for effect in self.core.handle(event):
                if type(effect) is SendAck and self.answers.listeners:
                    acks.append(effect)  # after the answers: a client waits for those, not the head
                else:
                    self._execute(effect)
            self.outgoing.retain_only(self.core.link.target if self.core.link is not None else None)
            self.answers.publish()
            for effect in acks:
                self._execute(effect)
            self.subscriptions.publish()
        except Exception as err:
            # A bug or a failing disk: the core's state may no longer match
            # what was persisted, so stop and let a restart recover from disk.
            log.exception("replica stopping: handling %s failed", type(event).__name__)
            self.fatal_error = err
            self.stopped.set()

    def _execute(self, effect) -> None:
        if isinstance(effect, Persist):
            self.storage.apply(effect)
        elif isinstance(effect, SendForward):
            self.outgoing.send(effect.to, effect.batch)
        elif isinstance(effect, SendSnapshot):
            items = list(self.storage.snapshot_items())
            log.info("sending a snapshot of %d records at seq %d to %s", len(items), effect.snapshot_seq,
                     effect.to.replica_id)
            self.outgoing.send_snapshot(effect, items)
        elif isinstance(effect, SendAck):
            self.incoming.send_ack(effect.to_id, effect.ack)
        elif isinstance(effect, (ReplyWrite, ReplyRead, ReplyScan)):
            self._resolve(effect.call_id, effect.reply)
        elif isinstance(effect, ReplyConfig):
            self._resolve(effect.call_id, effect.ack)
        elif isinstance(effect, FailCall):
            future = self.calls.pop(effect.call_id, None)
            if future is not None and not future.done():
                future.set_exception(effect.error)
        elif isinstance(effect, SendHeartbeat):
            self.spawn(self._heartbeat(effect))
        elif isinstance(effect, SendJoin):
            self.spawn(self._join(effect))
        elif isinstance(effect, SaveIdentity):
            write_identity(self.directory, effect.cluster_id, self.core.shard, self.core.me)
        elif isinstance(effect, Fatal):
            self.fatal_error = effect.error
            self.stopped.set()
        else:
            raise AssertionError(f"unknown effect {effect!r}")

    def _resolve(self, call_id, value) -> None:
        future = self.calls.pop(call_id, None)
        if future is not None and not future.done():
            future.set_result(value)

    def _new_call(self) -> tuple[int, asyncio.Future]:
        call_id = next(self.call_ids)
        future = asyncio.get_running_loop().create_future()
        self.calls[call_id] = future
        return call_id, future

    def spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def run_ticks(self) -> None:
        while not self.stopped.is_set():
            self.handle(Tick(now_ms()))
            await asyncio.sleep(TICK_MS / 1000)

    async def close(self) -> None:
        for task in list(self.background):
            task.cancel()
        await self.outgoing.close()
        await self.coordinator_channel.close()
        for future in self.calls.values():
            if not future.done():
                future.set_exception(UnavailableError("replica is shutting down; retry elsewhere"))

    # ------------------------------------------------------------ coordinator calls

    async def _heartbeat(self, effect: SendHeartbeat) -> None:
        timeout_s = max(2.5 * self.core.settings.heartbeat_interval_ms, 100) / 1000
        try:
            reply = await self.coordinator.Heartbeat(effect.request, timeout=timeout_s)
        except grpc.RpcError as err:
            log.debug("heartbeat failed: %s", from_rpc_error(err, what="Heartbeat"))
            self.handle(HeartbeatFailed(now_ms()))
            return
        self.handle(HeartbeatReplied(effect.sent_ms, reply, now_ms()))
        if self.core.num_shards == 0 and not self.fetching_shard_count and reply.config.epoch > 0:
            self.fetching_shard_count = True
            self.spawn(self._learn_shard_count())

    async def _learn_shard_count(self) -> None:
        try:
            cluster = await self.coordinator.GetConfig(coordinator_pb2.GetConfigRequest(), timeout=JOIN_RPC_TIMEOUT_S)
            if cluster.num_shards:
                self.handle(ShardCountLearned(cluster.num_shards))
        except grpc.RpcError as err:
            log.info("could not learn the shard count yet: %s", from_rpc_error(err, what="GetConfig"))
        finally:
            self.fetching_shard_count = False

    async def _join(self, effect: SendJoin) -> None:
        try:
            reply = await self.coordinator.Join(effect.request, timeout=JOIN_RPC_TIMEOUT_S)
        except grpc.RpcError as err:
            error = from_rpc_error(err, what="Join")
            if error.code == "SHARD_MISMATCH":
                self.fatal_error = error
                self.stopped.set()
                return
            log.info("join not answered yet: %s", error)
            self.handle(JoinFailed(now_ms()))
            return
        self.handle(JoinReplied(reply, now_ms()))

    # ------------------------------------------------------------ client RPCs

    async def _answer(self, future: asyncio.Future, context):
        try:
            return await future
        except RpcError as err:
            await abort_aio(context, err)

    async def Write(self, request, context):
        try:
            future = self._park_write(request)
        except RpcError as err:
            await abort_aio(context, err)
        return await self._answer(future, context)

    async def WriteStream(self, request_iterator, context):
        """Writes of one client on one stream, each parked for the group
        commit like a Write and answered under its request_id."""
        replies: asyncio.Queue = asyncio.Queue()
        outstanding = 0
        reading = True

        def answered(request_id: int, at_tail: bool, future: asyncio.Future) -> None:
            nonlocal outstanding
            outstanding -= 1
            succeeded = not future.cancelled() and future.exception() is None
            if not (at_tail and succeeded):  # the tail answers a marked write that succeeded
                replies.put_nowait(_streamed_reply(request_id, future))
            if not reading and outstanding == 0:
                replies.put_nowait(None)

        async def read() -> None:
            nonlocal outstanding, reading
            try:
                async for streamed in request_iterator:
                    try:
                        future = self._park_write(streamed.request)
                    except RpcError as err:
                        replies.put_nowait(_streamed_error(streamed.request_id, err))
                        continue
                    outstanding += 1
                    future.add_done_callback(lambda f, request_id=streamed.request_id,
                                             at_tail=streamed.request.answer_at_tail: answered(request_id, at_tail, f))
            except (grpc.RpcError, asyncio.CancelledError):
                pass
            finally:
                reading = False
                if outstanding == 0:
                    replies.put_nowait(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while True:
                reply = await replies.get()
                if reply is None:
                    break
                await context.write(reply)
        finally:
            reader.cancel()

    def _park_write(self, request) -> asyncio.Future:
        """The future of a client write, sent with the next group commit."""
        if len(self.pending_writes) >= PENDING_WRITES_MAX:
            raise UnavailableError(f"replica {self.core.me} has {len(self.pending_writes)} writes queued; retry later")
        call_id, future = self._new_call()
        self.pending_writes.append(ClientWrite(call_id, request))
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_writes)
        return future

    def _flush_writes(self) -> None:
        self.flush_scheduled = False
        writes = tuple(self.pending_writes)
        self.pending_writes.clear()
        if writes:
            self.handle(WritesArrived(writes, now_ms()))

    async def Read(self, request, context):
        call_id, future = self._new_call()
        self.handle(ReadArrived(call_id, request, now_ms()))
        return await self._answer(future, context)

    async def Scan(self, request, context):
        call_id, future = self._new_call()
        self.handle(ScanArrived(call_id, request, now_ms()))
        return await self._answer(future, context)

    async def UpdateConfig(self, request, context):
        call_id, future = self._new_call()
        self.handle(ConfigPushed(call_id, request, now_ms()))
        return await self._answer(future, context)

    async def Status(self, request, context):
        core = self.core
        return control_store_pb2.ReplicaStatus(
            replica_id=core.me, shard=core.shard, epoch=core.epoch, role=core.role(),
            applied_seq=core.applied_seq, applied_epoch=core.applied_epoch, committed_seq=core.committed_seq,
            lease_valid=core.lease_valid(now_ms()), num_keys_estimate=self.storage.num_keys_estimate(),
            cluster_id=core.cluster_id)

    async def GetChainConfig(self, request, context):
        core = self.core
        if request.shard != core.shard:
            await abort_aio(context, WrongShardError(
                f"asked for shard {request.shard}'s configuration at replica {core.me} of shard {core.shard}"))
        if core.config is None:
            await abort_aio(context, UnavailableError(f"replica {core.me} has no configuration yet"))
        return core.config

    async def Answers(self, request, context):
        async for answer in self.answers.serve(request, context):
            yield answer

    async def Subscribe(self, request, context):
        async for batch in self.subscriptions.serve(request, context):
            yield batch

    # ------------------------------------------------------------ replication

    async def Forward(self, request_iterator, context):
        acks: asyncio.Queue = asyncio.Queue()
        sender: list[str] = []

        async def read() -> None:
            try:
                async for batch in request_iterator:
                    if not sender:
                        sender.append(batch.sender_id)
                        self.incoming.register(batch.sender_id, acks)
                    self.handle(ForwardArrived(sender[0], batch, now_ms()))
            except (grpc.RpcError, asyncio.CancelledError):
                pass
            finally:
                acks.put_nowait(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while True:
                ack = await acks.get()
                if ack is None:
                    break
                yield ack
        finally:
            reader.cancel()
            if sender:
                self.incoming.unregister(sender[0], acks)

    # ------------------------------------------------------------ link callbacks

    def on_ack(self, from_id: str, ack) -> None:
        self.handle(AckArrived(from_id, ack, now_ms()))

    def on_link_lost(self, target_id: str) -> None:
        self.handle(LinkLost(target_id, now_ms()))


_ERROR_CODES = dict(common_pb2.ErrorCode.items())


def _streamed_reply(request_id: int, future: asyncio.Future) -> control_store_pb2.StreamedWriteReply:
    if future.cancelled():
        return _streamed_error(request_id, UnavailableError("the write was cancelled: the replica is stopping"))
    error = future.exception()
    if error is not None:
        return _streamed_error(request_id, error)
    return control_store_pb2.StreamedWriteReply(request_id=request_id, reply=future.result())


def _streamed_error(request_id: int, error: BaseException) -> control_store_pb2.StreamedWriteReply:
    message = str(error) or type(error).__name__
    return control_store_pb2.StreamedWriteReply(
        request_id=request_id, error_code=_ERROR_CODES.get(code_of(error), common_pb2.INTERNAL),
        error_message=message[:4000])


def print_fatal(error: Exception) -> None:
    print(f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)
