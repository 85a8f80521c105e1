"""Writes answered by the tail (``answer_at_tail`` + the ``Answers`` stream),
against real replica processes: who answers what, and that a tail that dies
or a chain that grows loses no write's answer."""

from __future__ import annotations

import asyncio
import time
import grpc
import pytest

from lineagerun.control.client import ControlStoreClient, PutOp
from lineagerun.control.cluster import ControlStoreCluster
from lineagerun.rpc import common_pb2, control_store_pb2, control_store_pb2_grpc
from lineagerun.transport.auth import call_metadata
from lineagerun.transport.channels import make_aio_channel
from tests.node.test_speed_client_aio import run_with_writer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cluster(tmp_path):
    cluster = ControlStoreCluster(tmp_path / "cs", shards=1, replicas=2)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        assert not [p.name for p in cluster.processes() if p.alive()]


@pytest.fixture
def client(cluster):
    client = ControlStoreClient(cluster.address, cluster.token)
    client.put(b"warm", b"")  # the configuration is cached from here on
    try:
        yield client
    finally:
        client.close()


def _put(shard: int, epoch: int, client_id: str, seq: int, key: bytes, at_tail: bool):
    return control_store_pb2.WriteRequest(shard=shard, epoch=epoch, client_id=client_id, client_seq=seq,
                                          answer_at_tail=at_tail, ops=[control_store_pb2.Op(
                                              put=control_store_pb2.Put(key=key, value=b"v"))])


def test_the_tail_answers_marked_writes_and_the_head_only_their_failures(client):
    route = client._cache.cached_route(0)
    token = client._cache.token()

    async def main():
        head_channel = make_aio_channel(client._cache.dial_address(route.head), None)
        tail_channel = make_aio_channel(client._cache.dial_address(route.tail), None)
        try:
            answers = control_store_pb2_grpc.ControlStoreReplicaStub(tail_channel).Answers(
                control_store_pb2.AnswersRequest(shard=route.shard, client_id="t-tail"),
                metadata=call_metadata(token))
            hello = await answers.read()
            writes = control_store_pb2_grpc.ControlStoreReplicaStub(head_channel).WriteStream(
                metadata=call_metadata(token))
            await writes.write(control_store_pb2.StreamedWrite(
                request_id=1, request=_put(route.shard, route.epoch, "t-tail", 1, b"tail/a", True)))
            from_tail = await asyncio.wait_for(answers.read(), 10)
            # Unmarked: the head answers. Marked but refused: the head answers with the error.
            await writes.write(control_store_pb2.StreamedWrite(
                request_id=2, request=_put(route.shard, route.epoch, "t-tail", 2, b"tail/b", False)))
            await writes.write(control_store_pb2.StreamedWrite(
                request_id=3, request=_put(route.shard + 9, route.epoch, "t-tail", 3, b"tail/c", True)))
            from_head = [await asyncio.wait_for(writes.read(), 10) for _ in range(2)]
            await writes.done_writing()
            ended = await asyncio.wait_for(writes.read(), 10)  # nothing else came from the head
            answers.cancel()
            return hello, from_tail, from_head, ended
        finally:
            await head_channel.close()
            await tail_channel.close()

    hello, from_tail, from_head, ended = asyncio.run(asyncio.wait_for(main(), 30))
    assert hello.request_id == 0
    assert from_tail.request_id == 1 and from_tail.error_code == common_pb2.ERROR_UNSPECIFIED
    assert len(from_tail.reply.results) == 1 and from_tail.reply.results[0].ok and from_tail.reply.seq > 0
    by_id = {reply.request_id: reply for reply in from_head}
    assert sorted(by_id) == [2, 3]
    assert by_id[2].error_code == common_pb2.ERROR_UNSPECIFIED and by_id[2].reply.results[0].ok
    assert by_id[3].error_code == common_pb2.WRONG_SHARD
    assert ended is grpc.aio.EOF
    assert client.get(b"tail/a") == b"v" and client.get(b"tail/b") == b"v" and client.get(b"tail/c") is None


def test_answers_need_the_token_and_a_client_id(client):
    route = client._cache.cached_route(0)

    async def ask(metadata, client_id):
        channel = make_aio_channel(client._cache.dial_address(route.tail), None)
        try:
            call = control_store_pb2_grpc.ControlStoreReplicaStub(channel).Answers(
                control_store_pb2.AnswersRequest(shard=route.shard, client_id=client_id), metadata=metadata)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call.read()
            return refused.value.code()
        finally:
            await channel.close()

    assert asyncio.run(ask(None, "t-x")) == grpc.StatusCode.UNAUTHENTICATED
    assert asyncio.run(ask(call_metadata(client._cache.token()), "")) == grpc.StatusCode.INVALID_ARGUMENT


async def _until_tail_ready(writer, key_prefix: bytes) -> int:
    """Writes until the writer's answers stream is up; how many it took."""
    for i in range(200):
        results = await writer.write_batch([PutOp(key_prefix + b"%d" % i, b"w")])
        assert results[0].ok
        tail = writer._tails.get(0)
        if tail is not None and tail.ready:
            return i + 1
        await asyncio.sleep(0.01)
    raise AssertionError("the tail's answers stream never opened")


def test_the_writer_marks_its_writes_once_the_tails_stream_is_up(client):
    async def body(writer):
        await _until_tail_ready(writer, b"mark/")
        fallbacks = writer.fallbacks
        results = await asyncio.gather(*(writer.write_batch([PutOp(b"mark/x%d" % i, b"%d" % i)]) for i in range(50)))
        return results, writer.fallbacks - fallbacks

    results, fallbacks = run_with_writer(client, body)
    assert all(r[0].ok for r in results) and fallbacks == 0
    assert client.get(b"mark/x49") == b"49"


def test_a_dead_tail_costs_no_write_its_answer(cluster, client):
    """The tail dies with the writer's marked writes in flight: each is
    answered (by the synchronous retry or the head), none is applied twice,
    and writes go on."""

    async def body(writer):
        await _until_tail_ready(writer, b"dead/")
        loop = asyncio.get_running_loop()
        tail_index = cluster.index_of(cluster.chain(0)[-1])[1]
        in_flight = [asyncio.ensure_future(writer.write_batch([PutOp(b"dead/f%d" % i, b"%d" % i)]))
                     for i in range(20)]
        await loop.run_in_executor(None, cluster.kill_replica, 0, tail_index)
        started_s = time.monotonic()
        after = [await writer.write_batch([PutOp(b"dead/a%d" % i, b"%d" % i)]) for i in range(5)]
        return await asyncio.gather(*in_flight), after, time.monotonic() - started_s

    first, after, elapsed_s = run_with_writer(client, body)
    assert all(r[0].ok for r in first + after)
    assert elapsed_s < 15, f"writes after the tail died took {elapsed_s:.1f} s"
    assert client.get(b"dead/f19") == b"19" and client.get(b"dead/a4") == b"4"
