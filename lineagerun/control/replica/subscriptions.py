"""``Subscribe``: committed changes under a prefix, streamed by the tail.

A subscriber first gets the retained log's entries from ``from_seq`` on, then
every entry as it commits. A ``from_seq`` the retained log no longer covers
is refused with one ``ChangeBatch`` carrying ``compacted_seq`` (the client
rescans the prefix), never answered by silently starting later. The stream fails with NOT_TAIL or STALE_EPOCH as
soon as the replica stops being the tail of the epoch it started in, and with
UNAVAILABLE when the subscriber reads too slowly; the client resubscribes
(from the last ``committed_seq`` it saw) elsewhere.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from lineagerun.exceptions import (
    BadRequestError, NotTailError, StaleEpochError, UnavailableError, ValueTooLargeError, WrongShardError,
)
from lineagerun.control.replica.stream_queue import end_with, stream_from
from lineagerun.rpc import control_store_pb2
from lineagerun.transport.errors import abort_aio

# Change batches queued for one slow subscriber before it is cut off.
SUBSCRIBER_BATCHES_MAX = 1_000
# Entries read per publish step (bounds one step's work and one message).
PUBLISH_ENTRIES_MAX = 1_000


@dataclass(eq=False)
class _Subscriber:
    prefix: bytes
    epoch: int
    next_seq: int
    queue: asyncio.Queue


def changes_of(entries, prefix: bytes) -> list[control_store_pb2.Change]:
    out = []
    for entry in entries:
        for m in entry.mutations:
            if m.key.startswith(prefix):
                out.append(control_store_pb2.Change(key=m.key, deleted=m.deleted, value=m.value, seq=entry.seq))
    return out


class Subscriptions:
    def __init__(self, service, clock_ms):
        self.service = service
        self.clock_ms = clock_ms
        self.subscribers: set[_Subscriber] = set()

    def _refusal(self, request):
        core = self.service.core
        if request.shard != core.shard:
            return WrongShardError(f"subscription for shard {request.shard} reached shard {core.shard}")
        if len(request.prefix) > core.settings.max_key_bytes:
            return ValueTooLargeError(f"prefix over the key limit of {core.settings.max_key_bytes} bytes")
        return core.read_refusal(request.min_epoch, self.clock_ms())

    async def serve(self, request, context):
        error = self._refusal(request)
        if error is not None:
            await abort_aio(context, error)
        core = self.service.core
        if request.from_seq > core.committed_seq + 1:
            await abort_aio(context, BadRequestError(
                f"from_seq {request.from_seq} is beyond the committed seq {core.committed_seq}"))
        if request.from_seq and request.from_seq <= core.log_base[0]:
            # Starting later would drop the changes in between without a
            # word; the client rescans instead (etcd's compacted watch).
            yield control_store_pb2.ChangeBatch(epoch=core.epoch, committed_seq=core.committed_seq,
                                                compacted_seq=core.log_base[0])
            return
        start = request.from_seq or core.committed_seq + 1
        sub = _Subscriber(bytes(request.prefix), core.epoch, start, asyncio.Queue(SUBSCRIBER_BATCHES_MAX))
        # The opening announcement goes first: it promises only what precedes
        # ``start``; the replayed batches queued after it carry the rest.
        sub.queue.put_nowait(control_store_pb2.ChangeBatch(epoch=core.epoch, committed_seq=start - 1))
        self.subscribers.add(sub)
        try:
            self._publish_to(sub)
            async for item in stream_from(sub.queue, context):
                yield item
        finally:
            self.subscribers.discard(sub)

    def publish(self) -> None:
        for sub in list(self.subscribers):
            self._publish_to(sub)

    def _publish_to(self, sub: _Subscriber) -> None:
        core = self.service.core
        if core.epoch != sub.epoch or not core.is_tail():
            error = (StaleEpochError(f"shard moved to epoch {core.epoch}; resubscribe") if core.is_tail()
                     else NotTailError(f"replica {core.me} is no longer the tail; resubscribe at the new tail"))
            self._fail(sub, error)
            return
        while sub.next_seq <= core.committed_seq:
            count = min(PUBLISH_ENTRIES_MAX, core.committed_seq - sub.next_seq + 1)
            entries = core.entries_from(sub.next_seq, count)
            if not entries:
                break
            sub.next_seq = entries[-1].seq + 1
            batch = control_store_pb2.ChangeBatch(epoch=core.epoch, changes=changes_of(entries, sub.prefix),
                                                  committed_seq=entries[-1].seq)
            if batch.changes:
                try:
                    sub.queue.put_nowait(batch)
                except asyncio.QueueFull:
                    self._fail(sub, UnavailableError("subscriber too slow; resubscribe from its last committed_seq"))
                    return

    def _fail(self, sub: _Subscriber, error: Exception) -> None:
        self.subscribers.discard(sub)
        end_with(sub.queue, error)
