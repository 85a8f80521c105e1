"""``Answers``: a client's ``answer_at_tail`` writes answered where they commit.

In chain replication a write commits at the tail, and the head learns it
only when the tail's acknowledgement has travelled back up the chain. A
client holding an ``Answers`` stream at the tail marks its streamed writes
``answer_at_tail``: the head then answers them only if they fail, and the
tail answers each one as soon as it applies it, one hop sooner.

Any replica can serve the stream (it answers an entry once the entry is at
or below its committed seq), so a tail that becomes a middle when a replica
joins behind it still answers, a little later. A stream that breaks or a
replica that restarts loses nothing: the client retries the unanswered
writes with the same (client_id, client_seq), and the head answers those
from its deduplication records.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from lineagerun.exceptions import BadRequestError, UnavailableError, WrongShardError
from lineagerun.control.replica.stream_queue import end_with, stream_from
from lineagerun.rpc import control_store_pb2
from lineagerun.transport.errors import abort_aio

# Answers queued for one slow client before its stream is cut off (it then
# retries the unanswered writes).
ANSWERS_QUEUED_MAX = 10_000
# Entries read per publish step.
PUBLISH_ENTRIES_MAX = 1_000


@dataclass(eq=False)
class _Listener:
    client_id: str
    next_seq: int
    queue: asyncio.Queue


class Answers:
    def __init__(self, service):
        self.service = service
        self.listeners: set[_Listener] = set()

    async def serve(self, request, context):
        core = self.service.core
        if request.shard != core.shard:
            await abort_aio(context, WrongShardError(
                f"answers for shard {request.shard} asked of replica {core.me} of shard {core.shard}"))
        if not request.client_id:
            await abort_aio(context, BadRequestError("an Answers stream needs the client_id whose writes it answers"))
        listener = _Listener(request.client_id, core.committed_seq + 1, asyncio.Queue(ANSWERS_QUEUED_MAX))
        # Every answer_at_tail write sent after this message is created after
        # it, so its entry's seq is at or above next_seq: none is missed.
        listener.queue.put_nowait(control_store_pb2.StreamedWriteReply(request_id=0))
        self.listeners.add(listener)
        try:
            async for item in stream_from(listener.queue, context):
                yield item
        finally:
            self.listeners.discard(listener)

    def publish(self) -> None:
        if not self.listeners:
            return
        core = self.service.core
        for listener in list(self.listeners):
            while listener.next_seq <= core.committed_seq:
                count = min(PUBLISH_ENTRIES_MAX, core.committed_seq - listener.next_seq + 1)
                entries = core.entries_from(listener.next_seq, count)
                if not entries:
                    # Caught up by a snapshot: those entries are not held here;
                    # their writes are answered by the client's retries.
                    listener.next_seq = core.committed_seq + 1
                    break
                listener.next_seq = entries[-1].seq + 1
                if not self._answer(listener, entries):
                    break

    def _answer(self, listener: _Listener, entries) -> bool:
        for entry in entries:
            if entry.answer_at_tail and entry.client_id == listener.client_id:
                reply = control_store_pb2.WriteReply(epoch=entry.epoch, seq=entry.seq, results=entry.results)
                try:
                    listener.queue.put_nowait(control_store_pb2.StreamedWriteReply(
                        request_id=entry.client_seq, reply=reply))
                except asyncio.QueueFull:
                    self._cut_off(listener)
                    return False
        return True

    def _cut_off(self, listener: _Listener) -> None:
        self.listeners.discard(listener)
        end_with(listener.queue, UnavailableError("answers read too slowly; the client retries its writes"))
