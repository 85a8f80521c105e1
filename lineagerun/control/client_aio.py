"""An asyncio fast path for ``ControlStoreClient.write_batch``.

The node manager writes every task spec before the task may run, from its
event loop. Sending that write from a thread costs two thread hand-offs per
write (the loop wakes a thread, the thread wakes the loop), each waiting for
the GIL behind the loop's own work: a few hundred microseconds on a busy
node, on every task's critical path. ``AioWriter.write_batch`` sends the
first attempt from the loop itself, over an asyncio channel to the shard's
head from the cached configuration.

Anything but a clean answer (no cached route, several shards, an RPC error,
a short reply) falls back to the synchronous client's full retrying write on
an executor thread, **with the same (client_id, client_seq)**, so a first
attempt that was applied but whose answer was lost is deduplicated by the
replicas, exactly as the synchronous retries are.

The first attempt goes on one ``WriteStream`` per head rather than as a
``Write`` RPC: a unary call from grpc.aio costs ~0.55 ms round trip and
~0.35 ms of the server's CPU, a message on an open stream ~0.24 ms and
~0.14 ms (docs/runtime.md, "The hot path"). A stream that breaks or does not
answer within ``ATTEMPT_TIMEOUT_S`` is dropped (the next write opens a new
one) and its unanswered writes take the fallback above.

Once an ``Answers`` stream at the shard's tail is open, writes are marked
``answer_at_tail``: the tail answers them as soon as it commits them, one
chain hop before the head could (``client_streams.py``).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import Sequence

import grpc

from lineagerun.control.client import ATTEMPT_TIMEOUT_S, ControlStoreClient, Op, OpResult, _result
from lineagerun.control.client_streams import TailAnswers, WriteStream
from lineagerun.rpc import control_store_pb2, control_store_pb2_grpc
from lineagerun.transport.channels import make_aio_channel

log = logging.getLogger(__name__)

# Channels to heads and tails kept open; a replica that left the chain
# leaves its channel behind, closed once more than this many are open.
AIO_CHANNELS_MAX = 16
# After a tail's answers stream broke, writes are answered by the head for
# this long before the stream is opened again.
TAIL_REOPEN_DELAY_S = 1.0


class AioWriter:
    """Must be used from one event loop (the one its channels belong to)."""

    def __init__(self, client: ControlStoreClient, executor: Executor):
        self.client = client
        self._executor = executor
        self._stubs: dict[str, tuple[grpc.aio.Channel, control_store_pb2_grpc.ControlStoreReplicaStub]] = {}
        self._streams: dict[str, WriteStream] = {}  # by head address
        self._tails: dict[int, TailAnswers] = {}  # by shard
        self._tail_reopen_s: dict[int, float] = {}
        self.streams_opened = 0
        self.fast_writes = 0
        self.fallbacks = 0

    async def write_batch(self, ops: Sequence[Op]) -> list[OpResult]:
        client = self.client
        loop = asyncio.get_running_loop()
        if client._cache.cached_route(0) is None:
            # No configuration yet: fetching it (with retries) must not block the loop.
            self.fallbacks += 1
            return await loop.run_in_executor(self._executor, client.write_batch, ops)
        wire_ops, by_shard = client._prepare_write(ops)
        route = client._cache.cached_route(next(iter(by_shard))) if len(by_shard) == 1 else None
        if route is None:
            self.fallbacks += 1
            return await loop.run_in_executor(self._executor, client.write_batch, ops)
        wire = [op for _, op, _ in wire_ops]
        begun = client._begin_request()
        try:
            tail = self._tail_answers(route)
            # Built in place: the request (specs and all) is copied once, into the stream message.
            streamed = control_store_pb2.StreamedWrite(request_id=begun[0])
            request = streamed.request
            request.shard, request.epoch, request.client_id = route.shard, route.epoch, client.client_id
            request.client_seq, request.client_acked_below = begun
            request.answer_at_tail = tail is not None
            request.ops.extend(wire)
            reply = await self._stream(route.head).write(streamed, ATTEMPT_TIMEOUT_S, tail)
            if reply is not None and len(reply.results) == len(wire):
                self.fast_writes += 1
                return [_result(r) for r in reply.results]
            # The synchronous path classifies the failure and retries.
            self.fallbacks += 1
            results = await loop.run_in_executor(self._executor, client._write_shard, route.shard, wire, begun)
            return [_result(r) for r in results]
        finally:
            client._end_request(begun[0])

    def _stream(self, head: str) -> "WriteStream":
        stream = self._streams.get(head)
        if stream is None or stream.broken:
            stream = self._streams[head] = WriteStream(self._stub(head), self.client._cache.token())
            self.streams_opened += 1
        return stream

    def _tail_answers(self, route) -> TailAnswers | None:
        """The open answers stream at the shard's tail, None while there is
        none yet (one is being opened) or it broke a moment ago."""
        tail = self._tails.get(route.shard)
        if tail is not None and tail.address == route.tail and not tail.broken:
            return tail if tail.ready else None
        now_s = asyncio.get_running_loop().time()
        if tail is not None:
            del self._tails[route.shard]
            if tail.broken:  # not hammering a tail that just failed
                self._tail_reopen_s[route.shard] = now_s + TAIL_REOPEN_DELAY_S
            else:  # the chain changed
                tail.close()
        if now_s < self._tail_reopen_s.get(route.shard, 0.0):
            return None
        self._tails[route.shard] = TailAnswers(self._stub(route.tail), self.client._cache.token(), route.shard,
                                               self.client.client_id, route.tail)
        return None

    def _stub(self, address: str) -> control_store_pb2_grpc.ControlStoreReplicaStub:
        entry = self._stubs.get(address)
        if entry is None:
            cache = self.client._cache
            # No token interceptor: an intercepted stream hands every write to
            # a task of its own; the streams carry the token themselves.
            channel = make_aio_channel(cache.dial_address(address), None)
            entry = self._stubs[address] = (channel, control_store_pb2_grpc.ControlStoreReplicaStub(channel))
            while len(self._stubs) > AIO_CHANNELS_MAX:
                oldest = next(iter(self._stubs))
                old_channel, _ = self._stubs.pop(oldest)
                self._close_streams_to(oldest)
                asyncio.get_running_loop().create_task(old_channel.close())
        return entry[1]

    def _close_streams_to(self, address: str) -> None:
        stream = self._streams.pop(address, None)
        if stream is not None:
            stream.close()
        for shard, tail in list(self._tails.items()):
            if tail.address == address:
                tail.close()
                del self._tails[shard]

    async def close(self) -> None:
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.close()
        tails, self._tails = self._tails, {}
        for tail in tails.values():
            tail.close()
        stubs, self._stubs = self._stubs, {}
        for channel, _ in stubs.values():
            await channel.close()

