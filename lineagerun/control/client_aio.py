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
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import Sequence

import grpc

from lineagerun.control.client import ATTEMPT_TIMEOUT_S, ControlStoreClient, Op, OpResult, _result
from lineagerun.rpc import control_store_pb2, control_store_pb2_grpc
from lineagerun.transport.channels import make_aio_channel

log = logging.getLogger(__name__)

# Channels to heads kept open; a head that changed leaves its channel behind,
# closed once more than this many are open.
AIO_CHANNELS_MAX = 4


class AioWriter:
    """Must be used from one event loop (the one its channels belong to)."""

    def __init__(self, client: ControlStoreClient, executor: Executor):
        self.client = client
        self._executor = executor
        self._stubs: dict[str, tuple[grpc.aio.Channel, control_store_pb2_grpc.ControlStoreReplicaStub]] = {}
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
            request = control_store_pb2.WriteRequest(
                shard=route.shard, epoch=route.epoch, client_id=client.client_id, client_seq=begun[0],
                client_acked_below=begun[1], ops=wire)
            try:
                reply = await self._stub(route.head).Write(request, timeout=ATTEMPT_TIMEOUT_S)
                if len(reply.results) == len(wire):
                    self.fast_writes += 1
                    return [_result(r) for r in reply.results]
            except grpc.RpcError as err:  # the synchronous path classifies and retries it
                log.debug("write to shard %d from the loop failed (%s); retrying on a thread", route.shard,
                          err.code() if hasattr(err, "code") else err)
            self.fallbacks += 1
            results = await loop.run_in_executor(self._executor, client._write_shard, route.shard, wire, begun)
            return [_result(r) for r in results]
        finally:
            client._end_request(begun[0])

    def _stub(self, head: str) -> control_store_pb2_grpc.ControlStoreReplicaStub:
        entry = self._stubs.get(head)
        if entry is None:
            cache = self.client._cache
            channel = make_aio_channel(cache.dial_address(head), cache.token())
            entry = self._stubs[head] = (channel, control_store_pb2_grpc.ControlStoreReplicaStub(channel))
            while len(self._stubs) > AIO_CHANNELS_MAX:
                oldest = next(iter(self._stubs))
                old_channel, _ = self._stubs.pop(oldest)
                asyncio.get_running_loop().create_task(old_channel.close())
        return entry[1]

    async def close(self) -> None:
        stubs, self._stubs = self._stubs, {}
        for channel, _ in stubs.values():
            await channel.close()
