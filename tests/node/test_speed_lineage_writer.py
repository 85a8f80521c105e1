"""LineageWriter (node/lineage_writer.py): waited-for batches pipelined and
completed in order, best-effort records riding waited-for batches, one value
of a key in flight at a time. A fake synchronous client stands in for the
control store (the writer calls it on its threads)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from lineagerun.control.client import DeleteOp, OpResult, PutOp
from lineagerun.exceptions import ControlStoreUnavailableError
from lineagerun.node import lineage_writer
from lineagerun.node.lineage_writer import LineageWriter

pytestmark = pytest.mark.timeout(30)


class FakeClient:
    """Records every write_batch; a test may hold calls (gates) or fail them."""

    def __init__(self):
        self.calls: list[list] = []
        self.lock = threading.Lock()
        self.gates: list[threading.Event] = []  # the n-th call waits for gates[n] if there is one
        self.fail_calls: set[int] = set()
        self.in_flight = 0
        self.in_flight_max = 0

    def write_batch(self, ops):
        with self.lock:
            index = len(self.calls)
            self.calls.append(list(ops))
            self.in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self.in_flight)
        try:
            if index < len(self.gates):
                assert self.gates[index].wait(10)
            if index in self.fail_calls:
                raise ControlStoreUnavailableError("fake outage")
            return [OpResult(True, False, None) for _ in ops]
        finally:
            with self.lock:
                self.in_flight -= 1


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def keys(ops):
    return [op.key for op in ops]


def test_writes_of_one_turn_go_as_one_batch_and_each_caller_gets_its_results():
    async def main():
        client = FakeClient()
        writer = LineageWriter(client)
        first = writer.write_now([PutOp(b"a", b"1"), PutOp(b"b", b"2")])
        second = writer.write_now([DeleteOp(b"c")])
        assert len(await first) == 2 and len(await second) == 1
        assert [keys(c) for c in client.calls] == [[b"a", b"b", b"c"]]
        writer.close()

    run(main())


def test_batches_are_pipelined_but_complete_in_the_order_asked_for():
    async def main():
        client = FakeClient()
        client.gates = [threading.Event(), threading.Event()]
        writer = LineageWriter(client)
        order = []
        first = writer.write_now([PutOp(b"first", b"")])
        first.add_done_callback(lambda _: order.append("first"))
        await asyncio.sleep(0.05)  # the first batch is sent (and held)
        second = writer.write_now([PutOp(b"second", b"")])
        second.add_done_callback(lambda _: order.append("second"))
        await asyncio.sleep(0.05)
        assert len(client.calls) == 2, "the second batch must not wait for the first one's answer"
        client.gates[1].set()  # the second is answered first...
        await asyncio.sleep(0.05)
        assert order == [], "...but its caller waits for the first batch"
        client.gates[0].set()
        await asyncio.gather(first, second)
        assert order == ["first", "second"]
        writer.close()

    run(main())


def test_at_most_now_in_flight_max_batches_are_sent_at_once():
    async def main():
        client = FakeClient()
        client.gates = [threading.Event() for _ in range(lineage_writer.NOW_IN_FLIGHT_MAX + 2)]
        writer = LineageWriter(client)
        futures = []
        for i in range(lineage_writer.NOW_IN_FLIGHT_MAX + 2):
            futures.append(writer.write_now([PutOp(b"k%d" % i, b"")]))
            await asyncio.sleep(0.02)
        assert len(client.calls) == lineage_writer.NOW_IN_FLIGHT_MAX
        for gate in client.gates:
            gate.set()
        await asyncio.gather(*futures)
        # what waited went out after, in one batch
        assert len(client.calls) == lineage_writer.NOW_IN_FLIGHT_MAX + 1
        assert client.in_flight_max <= lineage_writer.NOW_IN_FLIGHT_MAX
        writer.close()

    run(main())


def test_best_effort_records_ride_the_next_waited_for_batch_after_its_ops():
    async def main():
        client = FakeClient()
        writer = LineageWriter(client)
        writer.write_later(b"attempt", b"x")
        writer.write_later(b"object", b"y")
        await writer.write_now([PutOp(b"spec", b"s")])
        assert [keys(c) for c in client.calls] == [[b"spec", b"attempt", b"object"]]
        assert writer.later_ridden == 2
        await writer.flush(5)
        assert len(client.calls) == 1, "nothing left to flush on its own"
        writer.close()

    run(main())


def test_best_effort_records_are_flushed_alone_when_no_spec_comes(monkeypatch):
    monkeypatch.setattr(lineage_writer, "LATER_DELAY_S", 0.01)

    async def main():
        client = FakeClient()
        writer = LineageWriter(client)
        writer.write_later(b"k", b"1")
        writer.write_later(b"k", b"2")  # replaces the pending value
        writer.write_later(b"gone", None)
        await asyncio.sleep(0.2)
        assert len(client.calls) == 1
        [ops] = client.calls
        assert ops[0] == PutOp(b"k", b"2") and ops[1] == DeleteOp(b"gone")
        writer.close()

    run(main())


def test_a_newer_value_of_a_key_waits_for_the_one_in_flight(monkeypatch):
    monkeypatch.setattr(lineage_writer, "LATER_DELAY_S", 0.01)

    async def main():
        client = FakeClient()
        client.gates = [threading.Event()]
        writer = LineageWriter(client)
        writer.write_later(b"actor", b"ALIVE")
        spec = writer.write_now([PutOp(b"spec1", b"")])  # carries ALIVE, held
        await asyncio.sleep(0.05)
        writer.write_later(b"actor", b"DEAD")
        writer.write_later(b"other", b"o")
        second = writer.write_now([PutOp(b"spec2", b"")])
        await asyncio.sleep(0.05)
        assert keys(client.calls[1]) == [b"spec2", b"other"], "DEAD must not be in flight beside ALIVE"
        client.gates[0].set()
        await asyncio.gather(spec, second)
        await writer.flush(5)
        assert client.calls[-1] == [PutOp(b"actor", b"DEAD")]
        writer.close()

    run(main())


def test_a_failed_batch_fails_its_waiters_and_drops_its_riders(caplog):
    async def main():
        client = FakeClient()
        client.fail_calls = {0}
        writer = LineageWriter(client)
        writer.write_later(b"attempt", b"x")
        failed = writer.write_now([PutOp(b"spec", b"")])
        with pytest.raises(ControlStoreUnavailableError):
            await failed
        assert await writer.write_now([PutOp(b"spec2", b"")])  # the writer goes on
        assert keys(client.calls[1]) == [b"spec2"]
        writer.close()

    run(main())
    assert "dropped 1 lineage records" in caplog.text


def test_pending_best_effort_records_are_bounded(monkeypatch):
    monkeypatch.setattr(lineage_writer, "LATER_PENDING_MAX", 3)

    async def main():
        client = FakeClient()
        writer = LineageWriter(client)
        for i in range(5):
            writer.write_later(b"k%d" % i, b"")
        writer.write_later(b"k0", b"newer")  # a pending key is still replaced
        assert writer.later_dropped == 2
        await writer.flush(5)
        assert sorted(keys(client.calls[0])) == [b"k0", b"k1", b"k2"]
        writer.close()

    run(main())


def test_a_batch_is_bounded_in_ops_and_bytes(monkeypatch):
    monkeypatch.setattr(lineage_writer, "BATCH_OPS_MAX", 3)
    monkeypatch.setattr(lineage_writer, "BATCH_BYTES_MAX", 100)

    async def main():
        client = FakeClient()
        writer = LineageWriter(client)
        futures = [writer.write_now([PutOp(b"a%d" % i, b"")]) for i in range(4)]
        futures.append(writer.write_now([PutOp(b"big", b"x" * 200)]))  # alone: over the byte bound
        futures.append(writer.write_now([PutOp(b"z", b"")]))
        await asyncio.gather(*futures)
        sizes = [len(c) for c in client.calls]
        assert sizes == [3, 1, 1, 1], sizes
        assert all(len(c) <= 3 for c in client.calls)
        assert [b"big"] in [keys(c) for c in client.calls]
        writer.close()

    run(main())
