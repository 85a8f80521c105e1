"""The streams of ``client_aio.AioWriter``: writes to a shard's head, and
the answers its tail gives to ``answer_at_tail`` writes.

A write's answer comes from one of the two: the head answers a write that
failed (and every write not marked ``answer_at_tail``), the tail answers
the marked writes that committed. Anything else (a stream broke, no answer
within the attempt timeout) makes ``WriteStream.write`` return None and the
caller retries the write, with the same (client_id, client_seq), on the
synchronous client's path.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from lineagerun.rpc import common_pb2, control_store_pb2, control_store_pb2_grpc
from lineagerun.transport.auth import call_metadata

log = logging.getLogger(__name__)


class StreamFailed(Exception):
    """A streamed write got no answer; it is retried on the synchronous path."""


class TailAnswers:
    """One ``Answers`` stream at a shard's tail: ``ready`` once the tail has
    registered it, from then on writes may be marked ``answer_at_tail``."""

    def __init__(self, stub: control_store_pb2_grpc.ControlStoreReplicaStub, token: str | None, shard: int,
                 client_id: str, address: str):
        self.address = address
        self.call = stub.Answers(control_store_pb2.AnswersRequest(shard=shard, client_id=client_id),
                                 metadata=call_metadata(token) if token else None)
        self.ready = False
        self.broken = False
        self._answers: dict[int, asyncio.Future] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    def expect(self, request_id: int, answer: asyncio.Future) -> None:
        self._answers[request_id] = answer

    def forget(self, request_id: int) -> None:
        self._answers.pop(request_id, None)

    async def _read(self) -> None:
        try:
            async for streamed in self.call:
                if streamed.request_id == 0:
                    self.ready = True
                    continue
                answer = self._answers.get(streamed.request_id)
                if answer is not None and not answer.done():
                    answer.set_result(streamed)
        except (grpc.RpcError, asyncio.CancelledError) as err:
            log.debug("answers stream at %s ended: %s", self.address, err)
        finally:
            self.ready = False
            self.broken = True
            for answer in self._answers.values():
                if not answer.done():
                    answer.set_exception(StreamFailed(f"the answers stream at the tail {self.address} ended"))

    def close(self) -> None:
        self.ready = False
        if not self.broken:
            self.broken = True
            self.call.cancel()
        self._reader.cancel()


class WriteStream:
    """One ``WriteStream`` call to a head: writes go out one at a time, in
    order, and are answered under their client_seq (by the head, or by
    ``tail`` for a write marked ``answer_at_tail``)."""

    def __init__(self, stub: control_store_pb2_grpc.ControlStoreReplicaStub, token: str | None):
        self.call = stub.WriteStream(metadata=call_metadata(token) if token else None)
        self.broken = False
        self._answers: dict[int, asyncio.Future] = {}
        self._sending = asyncio.Lock()  # gRPC takes one message at a time per call
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def write(self, streamed: control_store_pb2.StreamedWrite, timeout_s: float,
                    tail: TailAnswers | None = None) -> control_store_pb2.WriteReply | None:
        """The answer to ``streamed`` (whose request_id must be its
        client_seq); None if it failed, a stream broke or no answer came
        within ``timeout_s`` (the caller retries elsewhere)."""
        if self.broken:
            return None
        loop = asyncio.get_running_loop()
        request_id = streamed.request_id
        answer = self._answers[request_id] = loop.create_future()
        if tail is not None:
            tail.expect(request_id, answer)
        expiry = loop.call_later(timeout_s, self._expire, answer, tail)
        try:
            async with self._sending:
                await self.call.write(streamed)
            answered = await answer
        except (grpc.RpcError, asyncio.InvalidStateError) as err:
            log.debug("streamed write %d failed: %s", request_id, err)
            self.close()
            return None
        except StreamFailed as err:
            log.debug("streamed write %d not answered: %s", request_id, err)
            return None
        finally:
            expiry.cancel()
            self._answers.pop(request_id, None)
            if tail is not None:
                tail.forget(request_id)
        if answered.error_code:
            log.debug("streamed write %d refused: %s %s", request_id,
                      common_pb2.ErrorCode.Name(answered.error_code), answered.error_message)
            return None
        return answered.reply

    def _expire(self, answer: asyncio.Future, tail: TailAnswers | None) -> None:
        """No answer in time: the streams it depends on are dropped (which
        also ends a send stuck behind a full link) and it is retried."""
        if not answer.done():
            answer.set_exception(StreamFailed("no answer within the attempt timeout"))
            self.close()
            if tail is not None:
                tail.close()

    def _answer(self, streamed: control_store_pb2.StreamedWriteReply) -> None:
        answer = self._answers.get(streamed.request_id)
        if answer is not None and not answer.done():
            answer.set_result(streamed)

    async def _read(self) -> None:
        try:
            async for streamed in self.call:
                self._answer(streamed)
        except (grpc.RpcError, asyncio.CancelledError):
            pass
        finally:
            self.broken = True
            for answer in self._answers.values():
                if not answer.done():
                    answer.set_exception(StreamFailed("the write stream ended"))

    def close(self) -> None:
        if not self.broken:
            self.broken = True
            self.call.cancel()
        self._reader.cancel()

