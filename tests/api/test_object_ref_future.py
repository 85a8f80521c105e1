"""``ObjectRef.future()`` and ``await ref``, as Ray: the value (or its error)
without a thread blocked on it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import numpy as np
import pytest

import lineagerun
from lineagerun import exceptions

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("cluster")]


@lineagerun.remote
def add(a, b):
    return a + b


@lineagerun.remote
def slow(value, seconds):
    time.sleep(seconds)
    return value


@lineagerun.remote
def fails():
    raise KeyError("missing thing")


def test_future_resolves_to_the_value():
    future = add.remote(2, 3).future()
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=30) == 5


def test_future_of_a_failed_task_raises_the_task_error():
    future = fails.remote().future()
    with pytest.raises(KeyError) as raised:
        future.result(timeout=30)
    assert isinstance(raised.value, exceptions.TaskError)
    assert "missing thing" in str(raised.value)


def test_future_of_a_put_array_is_zero_copy():
    array = np.arange(1_000_000, dtype=np.int64)
    value = lineagerun.put(array).future().result(timeout=30)
    assert np.array_equal(value, array)
    assert not value.flags.writeable  # read from the shared-memory store, as get


def test_futures_complete_on_their_own_as_objects_become_ready():
    done_order = []
    refs = [slow.remote(index, 0.6 - 0.25 * index) for index in range(3)]
    futures = [ref.future() for ref in refs]
    for index, future in enumerate(futures):
        future.add_done_callback(lambda f, index=index: done_order.append(index))
    results = [f.result(timeout=30) for f in futures]
    assert results == [0, 1, 2]
    assert done_order[0] == 2  # the shortest task's future completed first


def test_many_pending_futures_do_not_hold_threads():
    threads_before = threading.active_count()
    refs = [slow.remote(index, 0.3) for index in range(64)]
    futures = [ref.future() for ref in refs]
    assert threading.active_count() <= threads_before + 2
    assert [f.result(timeout=60) for f in futures] == list(range(64))


def test_await_in_driver_asyncio_code():
    async def main():
        one = await add.remote(1, 1)
        both = await asyncio.gather(add.remote(1, 2), add.remote(3, 4))
        return one, both

    assert asyncio.run(main()) == (2, [3, 7])


@lineagerun.remote
class Gatherer:
    async def total(self, refs):
        return sum(await asyncio.gather(*refs))

    async def first_error(self, refs):
        try:
            await refs[0]
        except KeyError as err:  # a TaskError that is also a KeyError, as from get
            return f"caught {type(err).__name__}"
        return "no error"


def test_await_in_an_async_actor():
    gatherer = Gatherer.remote()
    refs = [add.remote(i, i) for i in range(40)]
    assert lineagerun.get(gatherer.total.remote(refs), timeout=60) == sum(2 * i for i in range(40))
    assert lineagerun.get(gatherer.first_error.remote([fails.remote()]), timeout=60) == "caught TaskError(KeyError)"


@lineagerun.remote
def waits_on_a_future(refs, seconds):
    future = refs[0].future()
    time.sleep(seconds)  # still running: its CPU is not lent to other tasks
    return future.result(timeout=30)


def test_a_task_holding_a_future_keeps_its_cpu():
    total = lineagerun.cluster_resources()["CPU"]
    slow_ref = slow.remote("late", 4.0)
    holder = waits_on_a_future.remote([slow_ref], 2.0)
    deadline = time.monotonic() + 10
    while lineagerun.available_resources().get("CPU", 0) > total - 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.8)  # the holder has asked for the object by now
    assert lineagerun.available_resources().get("CPU", 0) == total - 2
    assert lineagerun.get(holder, timeout=30) == "late"


def test_a_done_callback_may_call_get():
    other = add.remote(10, 10)
    seen = []
    done = threading.Event()

    def callback(future):
        seen.append(future.result() + lineagerun.get(other, timeout=30))  # on the completion thread
        done.set()

    add.remote(1, 1).future().add_done_callback(callback)
    assert done.wait(30) and seen == [22]


def test_an_await_that_times_out_leaves_the_object_gettable():
    ref = slow.remote("eventually", 0.8)

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ref, timeout=0.1)

    asyncio.run(main())
    assert lineagerun.get(ref, timeout=30) == "eventually"
