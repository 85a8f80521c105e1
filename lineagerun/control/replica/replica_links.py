"""The replica's Forward streams: the one it opens to its successor (or
joiner) and the ones its predecessor opened to it.

A stream is ordered and reliable while it lasts. When it breaks, whatever was
queued for it is dropped and the core is told (``LinkLost``): it starts the
link over with a hello and re-sends from where the successor really is.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import grpc

from lineagerun.control import dial_map
from lineagerun.core.chain.replica_events import SendSnapshot
from lineagerun.rpc import common_pb2, control_store_pb2, control_store_pb2_grpc
from lineagerun.transport import channels

log = logging.getLogger(__name__)

RECONNECT_DELAY_S = 0.05
# Bounds one snapshot chunk (one message, one write batch at the receiver).
SNAPSHOT_CHUNK_ITEMS_MAX = 1_000
SNAPSHOT_CHUNK_BYTES_MAX = 4 * 1024 * 1024


def snapshot_chunks(effect: SendSnapshot, shard: int, sender_id: str, items: list[tuple[bytes, bytes]]):
    def chunk(part, begin, end):
        return control_store_pb2.ForwardBatch(
            shard=shard, epoch=effect.epoch, sender_id=sender_id, committed_seq=effect.committed_seq,
            snapshot_items=[control_store_pb2.KeyValue(key=k, value=v) for k, v in part],
            snapshot_begin=begin, snapshot_end=end, snapshot_seq=effect.snapshot_seq,
            snapshot_epoch=effect.snapshot_epoch)

    part: list[tuple[bytes, bytes]] = []
    size = 0
    begin = True
    for key, value in items:
        if part and (len(part) >= SNAPSHOT_CHUNK_ITEMS_MAX or size + len(key) + len(value) > SNAPSHOT_CHUNK_BYTES_MAX):
            yield chunk(part, begin, False)
            begin, part, size = False, [], 0
        part.append((key, value))
        size += len(key) + len(value)
    yield chunk(part, begin, True)


class _Outgoing:
    def __init__(self, service, target: common_pb2.ReplicaInfo, token: str):
        self.service = service
        self.target = target
        self.queue: deque = deque()
        self.ready = asyncio.Event()
        self.closed = False
        self.channel = channels.make_aio_channel(dial_map.dial_address(target.address), token)
        self.stub = control_store_pb2_grpc.ControlStoreReplicaStub(self.channel)
        self.task = asyncio.get_running_loop().create_task(self._run())

    def push(self, item) -> None:
        self.queue.append(item)
        self.ready.set()

    async def _requests(self):
        while not self.closed:
            if not self.queue:
                self.ready.clear()
                await self.ready.wait()
                continue
            item = self.queue.popleft()
            if isinstance(item, tuple):  # (SendSnapshot, items)
                effect, items = item
                for chunk in snapshot_chunks(effect, self.service.core.shard, self.service.core.me, items):
                    yield chunk
            else:
                yield item

    async def _run(self) -> None:
        target_id = self.target.replica_id
        while not self.closed:
            call = self.stub.Forward(self._requests())
            try:
                async for ack in call:
                    self.service.on_ack(target_id, ack)
            except grpc.RpcError as err:
                log.debug("forward stream to %s broke: %s", target_id, err.code())
            except asyncio.CancelledError:
                call.cancel()
                raise
            if self.closed:
                break
            self.queue.clear()
            self.service.on_link_lost(target_id)
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def close(self) -> None:
        self.closed = True
        self.ready.set()
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, Exception):
            pass
        await self.channel.close()


class OutgoingLinks:
    def __init__(self, service, token: str):
        self.service = service
        self.token = token
        self.links: dict[str, _Outgoing] = {}

    def _link(self, target: common_pb2.ReplicaInfo) -> _Outgoing:
        link = self.links.get(target.replica_id)
        if link is None or link.target.address != target.address:
            if link is not None:
                self._close_later(link)
            link = self.links[target.replica_id] = _Outgoing(self.service, target, self.token)
        return link

    def send(self, target: common_pb2.ReplicaInfo, batch: control_store_pb2.ForwardBatch) -> None:
        self._link(target).push(batch)

    def send_snapshot(self, effect: SendSnapshot, items: list[tuple[bytes, bytes]]) -> None:
        self._link(effect.to).push((effect, items))

    def retain_only(self, target: common_pb2.ReplicaInfo | None) -> None:
        for rid in list(self.links):
            link = self.links[rid]
            if target is None or rid != target.replica_id or link.target.address != target.address:
                del self.links[rid]
                self._close_later(link)

    def _close_later(self, link: _Outgoing) -> None:
        self.service.spawn(link.close())

    async def close(self) -> None:
        links, self.links = list(self.links.values()), {}
        for link in links:
            await link.close()


class IncomingLinks:
    """Ack queues of the streams predecessors opened to us, by sender id
    (the newest stream of a sender wins)."""

    def __init__(self):
        self.acks: dict[str, asyncio.Queue] = {}

    def register(self, sender_id: str, queue: asyncio.Queue) -> None:
        old = self.acks.get(sender_id)
        if old is not None and old is not queue:
            old.put_nowait(None)  # ends the older stream
        self.acks[sender_id] = queue

    def unregister(self, sender_id: str, queue: asyncio.Queue) -> None:
        if self.acks.get(sender_id) is queue:
            del self.acks[sender_id]

    def send_ack(self, to_id: str, ack: control_store_pb2.ForwardAck) -> None:
        queue = self.acks.get(to_id)
        if queue is not None:
            queue.put_nowait(ack)
