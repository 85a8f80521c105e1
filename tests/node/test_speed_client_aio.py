"""client_aio.AioWriter against a real control store (1 shard x 2
replicas): the loop's fast path, and the fallback to the synchronous retries
with the same (client_id, client_seq) so that an applied first attempt is not
applied twice."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from lineagerun.control.client import CasOp, DeleteOp, PutOp
from lineagerun.control.client_aio import AioWriter
from lineagerun.control.client_routing import ShardRoute
from lineagerun.exceptions import InvalidArgumentError

pytestmark = pytest.mark.timeout(90)


def run_with_writer(client, body):
    async def main():
        from concurrent.futures import ThreadPoolExecutor

        executor = ThreadPoolExecutor(2)
        writer = AioWriter(client, executor)
        try:
            return await asyncio.wait_for(body(writer), 30)
        finally:
            await writer.close()
            executor.shutdown(wait=True)

    return asyncio.run(main())


def test_fast_path_writes_with_results_like_the_sync_client(store):
    async def body(writer):
        results = await writer.write_batch([PutOp(b"aio/a", b"1"), CasOp(b"aio/a", None, b"2"),
                                            CasOp(b"aio/b", None, b"3"), DeleteOp(b"aio/none")])
        return results, writer.fast_writes, writer.fallbacks

    results, fast, fallbacks = run_with_writer(store, body)
    assert [r.ok for r in results] == [True, False, True, True]
    assert results[1].current == b"1"
    assert (fast, fallbacks) == (1, 0)
    assert store.get(b"aio/a") == b"1" and store.get(b"aio/b") == b"3"


def test_bad_input_fails_at_the_call_site(store):
    async def body(writer):
        with pytest.raises(InvalidArgumentError):
            await writer.write_batch([PutOp(b"", b"x")])
        return True

    assert run_with_writer(store, body)


def test_unreachable_head_falls_back_to_the_sync_retries(store, monkeypatch):
    real = store._cache.cached_route

    def stale(shard):
        route = real(shard)
        return ShardRoute(route.shard, route.epoch, "127.0.0.1:1", route.tail)  # nothing listens there

    monkeypatch.setattr(store._cache, "cached_route", stale)

    async def body(writer):
        results = await writer.write_batch([PutOp(b"aio/fallback", b"v")])
        return results, writer.fallbacks

    results, fallbacks = run_with_writer(store, body)
    assert results[0].ok and fallbacks == 1
    assert store.get(b"aio/fallback") == b"v"


def test_an_applied_attempt_whose_answer_is_lost_is_not_applied_again(store, monkeypatch):
    """The first attempt reaches the head and is applied, then its answer
    is lost: the retry carries the same client_seq, so the CAS-on-absent is
    answered as applied (deduplicated), not as a conflict."""

    class LosingStream:
        broken = False

        def __init__(self, stream):
            self.stream = stream

        async def write(self, streamed, timeout_s, tail=None):
            await self.stream.write(streamed, timeout_s, tail)
            return None  # as if the stream broke before the answer came

        def close(self):
            self.stream.close()

    async def body(writer):
        real_stream = writer._stream
        monkeypatch.setattr(writer, "_stream", lambda head: LosingStream(real_stream(head)))
        results = await writer.write_batch([CasOp(b"aio/once", None, b"first")])
        return results, writer.fallbacks

    results, fallbacks = run_with_writer(store, body)
    assert fallbacks == 1
    assert results[0].ok, "the retry was applied as a second CAS instead of being deduplicated"
    assert store.get(b"aio/once") == b"first"


def test_writes_share_one_stream_per_head(store):
    async def body(writer):
        results = await asyncio.gather(*(writer.write_batch([PutOp(b"aio/s%d" % i, b"%d" % i)]) for i in range(20)))
        more = await writer.write_batch([PutOp(b"aio/s-last", b"x")])
        return results + [more], writer.streams_opened, writer.fast_writes

    results, opened, fast = run_with_writer(store, body)
    assert all(r[0].ok for r in results)
    assert (opened, fast) == (1, 21)
    assert store.get(b"aio/s7") == b"7"


def test_a_refused_streamed_write_is_answered_with_its_typed_code_and_the_stream_goes_on(store):
    """A write the head refuses comes back under its request id with the
    error's code; the writes after it on the same stream still land."""
    from lineagerun.rpc import common_pb2, control_store_pb2, control_store_pb2_grpc
    from lineagerun.transport.auth import call_metadata
    from lineagerun.transport.channels import make_aio_channel

    route = store._cache.cached_route(0)

    async def main():
        channel = make_aio_channel(store._cache.dial_address(route.head), None)
        try:
            call = control_store_pb2_grpc.ControlStoreReplicaStub(channel).WriteStream(
                metadata=call_metadata(store._cache.token()))
            bad = control_store_pb2.WriteRequest(shard=route.shard + 7, epoch=route.epoch, client_id="t-stream",
                                                 client_seq=1, ops=[control_store_pb2.Op(
                                                     put=control_store_pb2.Put(key=b"aio/x", value=b"x"))])
            good = control_store_pb2.WriteRequest(shard=route.shard, epoch=route.epoch, client_id="t-stream",
                                                  client_seq=2, ops=[control_store_pb2.Op(
                                                      put=control_store_pb2.Put(key=b"aio/after", value=b"y"))])
            await call.write(control_store_pb2.StreamedWrite(request_id=11, request=bad))
            first = await call.read()
            await call.write(control_store_pb2.StreamedWrite(request_id=12, request=good))
            second = await call.read()
            await call.done_writing()
            return first, second
        finally:
            await channel.close()

    first, second = asyncio.run(asyncio.wait_for(main(), 30))
    assert first.request_id == 11 and first.error_code == common_pb2.WRONG_SHARD
    assert "shard" in first.error_message and not first.HasField("reply")
    assert second.request_id == 12 and second.error_code == common_pb2.ERROR_UNSPECIFIED
    assert len(second.reply.results) == 1 and second.reply.results[0].ok
    assert store.get(b"aio/after") == b"y"


def test_a_stream_without_the_token_is_refused(store):
    from lineagerun.rpc import control_store_pb2, control_store_pb2_grpc
    from lineagerun.transport.channels import make_aio_channel

    route = store._cache.cached_route(0)

    async def main():
        channel = make_aio_channel(store._cache.dial_address(route.head), None)
        try:
            # Refused when the call arrives, before any write: a write racing
            # the refusal would fail on this side with a status of its own.
            call = control_store_pb2_grpc.ControlStoreReplicaStub(channel).WriteStream()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call.read()
            with pytest.raises((grpc.aio.AioRpcError, asyncio.InvalidStateError)):
                await call.write(control_store_pb2.StreamedWrite(request_id=1, request=control_store_pb2.WriteRequest(
                    shard=route.shard, client_id="t-no-token", client_seq=1,
                    ops=[control_store_pb2.Op(put=control_store_pb2.Put(key=b"aio/intruder", value=b"x"))])))
            return refused.value.code()
        finally:
            await channel.close()

    assert asyncio.run(asyncio.wait_for(main(), 30)) == grpc.StatusCode.UNAUTHENTICATED
    assert store.get(b"aio/intruder") is None


def test_an_unanswered_stream_is_dropped_and_its_write_retried(store, monkeypatch):
    """No answer within the attempt timeout: the write takes the synchronous
    path and the next write opens a new stream."""
    import lineagerun.control.client_aio as client_aio
    import lineagerun.control.client_streams as client_streams

    monkeypatch.setattr(client_aio, "ATTEMPT_TIMEOUT_S", 0.3)

    class MuteStream(client_streams.WriteStream):
        def _answer(self, streamed):  # the answer never reaches the writer
            return None

    async def body(writer):
        real = client_streams.WriteStream
        monkeypatch.setattr(client_aio, "WriteStream", MuteStream)
        first = await writer.write_batch([PutOp(b"aio/mute", b"1")])
        monkeypatch.setattr(client_aio, "WriteStream", real)
        second = await writer.write_batch([PutOp(b"aio/heard", b"2")])
        return first, second, writer.fallbacks, writer.streams_opened, writer.fast_writes

    first, second, fallbacks, opened, fast = run_with_writer(store, body)
    assert first[0].ok and second[0].ok
    assert (fallbacks, opened, fast) == (1, 2, 1)
    assert store.get(b"aio/mute") == b"1" and store.get(b"aio/heard") == b"2"


def test_no_cached_configuration_goes_to_a_thread_not_the_loop(store, monkeypatch):
    monkeypatch.setattr(store._cache, "cached_route", lambda shard: None)

    async def body(writer):
        results = await writer.write_batch([PutOp(b"aio/cold", b"c")])
        return results, writer.fast_writes, writer.fallbacks

    results, fast, fallbacks = run_with_writer(store, body)
    assert results[0].ok and (fast, fallbacks) == (0, 1)
    assert store.get(b"aio/cold") == b"c"
