"""client_aio.AioWriter against a real control store (1 shard x 2
replicas): the loop's fast path, and the fallback to the synchronous retries
with the same (client_id, client_seq) so that an applied first attempt is not
applied twice."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from lineagerun.control.client import CasOp, ControlStoreClient, DeleteOp, PutOp
from lineagerun.control.client_aio import AioWriter
from lineagerun.control.client_routing import ShardRoute
from lineagerun.control.cluster import ControlStoreCluster
from lineagerun.exceptions import InvalidArgumentError

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    cluster = ControlStoreCluster(tmp_path_factory.mktemp("aio") / "cs", shards=1, replicas=2)
    cluster.start()
    client = ControlStoreClient(cluster.address, cluster.token)
    client.put(b"warm", b"")  # the configuration is cached from here on
    try:
        yield client
    finally:
        client.close()
        cluster.stop()
        assert not [p.name for p in cluster.processes() if p.alive()]


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
    """The first attempt reaches the head and is applied, then the call
    fails on the client side: the retry carries the same client_seq, so the
    CAS-on-absent is answered as applied (deduplicated), not as a conflict."""

    class LosingStub:
        def __init__(self, stub):
            self.stub = stub

        async def Write(self, request, timeout):
            await self.stub.Write(request, timeout=timeout)
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       "answer lost")

    async def body(writer):
        real_stub = writer._stub

        monkeypatch.setattr(writer, "_stub", lambda head: LosingStub(real_stub(head)))
        results = await writer.write_batch([CasOp(b"aio/once", None, b"first")])
        return results, writer.fallbacks

    results, fallbacks = run_with_writer(store, body)
    assert fallbacks == 1
    assert results[0].ok, "the retry was applied as a second CAS instead of being deduplicated"
    assert store.get(b"aio/once") == b"first"


def test_no_cached_configuration_goes_to_a_thread_not_the_loop(store, monkeypatch):
    monkeypatch.setattr(store._cache, "cached_route", lambda shard: None)

    async def body(writer):
        results = await writer.write_batch([PutOp(b"aio/cold", b"c")])
        return results, writer.fast_writes, writer.fallbacks

    results, fast, fallbacks = run_with_writer(store, body)
    assert results[0].ok and (fast, fallbacks) == (0, 1)
    assert store.get(b"aio/cold") == b"c"
