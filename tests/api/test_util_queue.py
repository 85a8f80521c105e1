"""``lineagerun.util.queue.Queue``, as Ray's ``ray.util.queue.Queue``."""

from __future__ import annotations

import asyncio
import queue as std_queue
import time

import pytest

import lineagerun
from lineagerun import exceptions
from lineagerun.util.queue import Empty, Full, Queue

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("cluster")]


@lineagerun.remote
def produce(q, items):
    for item in items:
        q.put(item)
    return len(items)


@lineagerun.remote
def consume(q, count):
    return [q.get(timeout=30) for _ in range(count)]


def test_fifo_across_tasks():
    q = Queue()
    assert lineagerun.get(produce.remote(q, list(range(10))), timeout=60) == 10
    assert len(q) == 10 and q.qsize() == 10 and not q.empty()
    assert lineagerun.get(consume.remote(q, 10), timeout=60) == list(range(10))
    assert q.empty()
    q.shutdown()


def test_a_blocked_get_waits_for_a_put():
    q = Queue()
    waiting = consume.remote(q, 2)
    time.sleep(0.3)
    q.put("a")
    q.put("b")
    assert lineagerun.get(waiting, timeout=60) == ["a", "b"]
    q.shutdown()


def test_nowait_and_timeouts_raise_empty_and_full():
    q = Queue(maxsize=2)
    q.put_nowait(1)
    q.put(2)
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait(3)
    with pytest.raises(std_queue.Full):  # the standard library's class catches it too
        q.put(3, timeout=0.1)
    assert [q.get_nowait(), q.get()] == [1, 2]
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(std_queue.Empty):
        q.get(timeout=0.1)
    q.shutdown()


def test_batches_go_all_or_nothing():
    q = Queue(maxsize=3)
    q.put_nowait_batch([1, 2])
    with pytest.raises(Full):
        q.put_nowait_batch([3, 4])
    assert q.size() == 2
    with pytest.raises(Empty):
        q.get_nowait_batch(3)
    assert q.get_nowait_batch(2) == [1, 2]
    q.shutdown()


def test_async_put_and_get():
    q = Queue()

    async def main():
        await q.put_async("x")
        return await q.get_async(timeout=5)

    assert asyncio.run(main()) == "x"
    q.shutdown()


def test_bad_arguments_are_refused():
    with pytest.raises(exceptions.InvalidArgumentError, match="maxsize"):
        Queue(maxsize=-1)
    q = Queue()
    with pytest.raises(exceptions.InvalidArgumentError, match="timeout"):
        q.get(timeout=-1)
    with pytest.raises(exceptions.InvalidArgumentError, match="iterable"):
        q.put_nowait_batch(5)
    q.shutdown()
