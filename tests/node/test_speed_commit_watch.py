"""The tail's commit notices (control/client_commit_watch.py) and their use
by the lineage writer (off by default; LINEAGERUN_COMMIT_WATCH=1), against a
real control store (1 shard x 2 replicas):
a spec batch is answered when the tail says it committed, never before it is
readable from the chain, and batches the watch cannot vouch for (a CAS, an
unwatched prefix) still wait for the head."""

from __future__ import annotations

import asyncio

import pytest

from lineagerun.control.client import CasOp, PutOp
from lineagerun.control.client_commit_watch import CommitWatch
from lineagerun.node.lineage_writer import LineageWriter

pytestmark = pytest.mark.timeout(90)


async def _open(watch: CommitWatch, key: bytes) -> None:
    """Until the watch of ``key``'s prefix streams (it opens on first use)."""
    for _ in range(200):
        expectation = watch.expect([(key, b"probe")], lambda: None)
        if expectation is not None:
            watch.forget(expectation)
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the commit watch never opened")


def test_watch_confirms_exactly_the_committed_value(store):
    async def main():
        watch = CommitWatch(store, (b"task/",))
        try:
            await _open(watch, b"task/x")
            hits = []
            watch.expect([(b"task/w1", b"right")], lambda: hits.append("w1"))
            watch.expect([(b"task/w2", b"mine")], lambda: hits.append("w2"))
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, store.write_batch,
                                       [PutOp(b"task/w1", b"right"), PutOp(b"task/w2", b"someone else's")])
            for _ in range(100):
                if hits:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            assert hits == ["w1"]  # w2 holds other bytes: not what that writer wrote
            assert watch.expect([(b"attempt/a", b"v")], lambda: None) is None  # prefix not watched
        finally:
            await watch.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_writer_watches_only_when_asked_to(store, monkeypatch):
    async def main():
        monkeypatch.delenv("LINEAGERUN_COMMIT_WATCH", raising=False)
        writer = LineageWriter(store)
        try:
            assert writer._watch is None  # off by default (docs/runtime.md: costs more than it saves here)
            assert [r.ok for r in await writer.write_now([PutOp(b"task/plain", b"v")])] == [True]
        finally:
            writer.close()
            await asyncio.sleep(0.1)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_writer_answers_spec_batches_from_the_tail_and_they_are_durable(store, monkeypatch):
    monkeypatch.setenv("LINEAGERUN_COMMIT_WATCH", "1")
    async def main():
        writer = LineageWriter(store)
        try:
            await _open(writer._watch, b"task/")
            loop = asyncio.get_running_loop()
            for i in range(40):
                key = b"task/spec-%d" % i
                results = await writer.write_now([PutOp(key, b"spec %d" % i), PutOp(b"call/c-%d" % i, b"c")])
                assert [r.ok for r in results] == [True, True]
                # Answered by the tail: already readable, on the tail too.
                assert await loop.run_in_executor(None, store.get, key) == b"spec %d" % i
            assert writer._watch.confirmed >= 5  # under load some lose the race to the head's answer
            # A CAS's result comes only from the head: answered correctly all the same.
            results = await writer.write_now([CasOp(b"task/spec-0", None, b"x")])
            assert not results[0].ok and results[0].current == b"spec 0"
            await writer.flush(5)
        finally:
            writer.close()
            await asyncio.sleep(0.1)

    asyncio.run(asyncio.wait_for(main(), 60))


def test_writer_keeps_answering_in_order_with_batches_in_flight(store, monkeypatch):
    monkeypatch.setenv("LINEAGERUN_COMMIT_WATCH", "1")
    async def main():
        writer = LineageWriter(store)
        try:
            await _open(writer._watch, b"task/")
            order = []
            futures = []
            for i in range(60):
                ops = [PutOp(b"task/order-%d" % i, b"v")] if i % 3 else [CasOp(b"task/order-%d" % i, None, b"v")]
                future = writer.write_now(ops)
                future.add_done_callback(lambda f, i=i: order.append(i))
                futures.append(future)
                if i % 7 == 0:
                    await asyncio.sleep(0)  # a new batch
            await asyncio.gather(*futures)
            assert order == sorted(order)
        finally:
            writer.close()
            await asyncio.sleep(0.1)

    asyncio.run(asyncio.wait_for(main(), 60))
