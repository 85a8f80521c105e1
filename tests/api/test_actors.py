"""Actors against a real embedded cluster."""

from __future__ import annotations

import asyncio
import time

import pytest

import lineagerun
from lineagerun import exceptions

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("cluster")]


@lineagerun.remote
class Counter:
    def __init__(self, start=0):
        self.value = start
        self.seen = []

    def add(self, amount):
        self.value += amount
        self.seen.append(amount)
        return self.value

    def history(self):
        return self.seen

    def context(self):
        ctx = lineagerun.get_runtime_context()
        return ctx.get_actor_id(), ctx.get_task_id()

    def fail(self):
        raise KeyError("missing")


def test_actor_method_round_trip():
    counter = Counter.remote(10)
    assert lineagerun.get(counter.add.remote(5)) == 15


def test_actor_calls_run_in_submission_order():
    counter = Counter.remote()
    refs = [counter.add.remote(i) for i in range(100)]
    lineagerun.get(refs)
    assert lineagerun.get(counter.history.remote()) == list(range(100))


def test_actor_method_error_is_catchable_and_actor_survives():
    counter = Counter.remote()
    with pytest.raises(KeyError):
        lineagerun.get(counter.fail.remote())
    assert lineagerun.get(counter.add.remote(1)) == 1


def test_actor_runtime_context_has_the_actor_id():
    counter = Counter.remote()
    actor_id, task_id = lineagerun.get(counter.context.remote())
    assert actor_id == counter._actor_id.hex()
    assert task_id is not None


def test_calling_an_actor_class_directly_is_a_type_error():
    with pytest.raises(TypeError, match="remote"):
        Counter()


def test_unknown_actor_option_is_rejected():
    with pytest.raises(exceptions.InvalidArgumentError):
        Counter.options(num_returns=2)


def test_named_actor_is_found_by_get_actor():
    Counter.options(name="named-counter").remote(100)
    found = lineagerun.get_actor("named-counter")
    assert lineagerun.get(found.add.remote(1)) == 101


@pytest.mark.skipif("namespace" not in __import__("lineagerun.rpc.lineage_pb2", fromlist=["x"]).TaskOptions.DESCRIPTOR
                    .fields_by_name, reason="needs TaskOptions.namespace in lineage.proto (requested in the report)")
def test_named_actor_in_a_namespace():
    Counter.options(name="spaced", namespace="other").remote(7)
    assert lineagerun.get(lineagerun.get_actor("spaced", namespace="other").add.remote(0)) == 7
    with pytest.raises(ValueError):
        lineagerun.get_actor("spaced")


def test_get_actor_of_an_unknown_name_raises_value_error():
    with pytest.raises(ValueError, match="no-such-actor"):
        lineagerun.get_actor("no-such-actor")


def test_detached_actor_is_created_and_found():
    Counter.options(name="detached-counter", lifetime="detached").remote(3)
    handle = lineagerun.get_actor("detached-counter")
    assert lineagerun.get(handle.add.remote(0)) == 3
    lineagerun.kill(handle)


def test_killed_actor_raises_actor_died_error():
    counter = Counter.remote()
    assert lineagerun.get(counter.add.remote(1)) == 1
    lineagerun.kill(counter)
    with pytest.raises(exceptions.ActorDiedError):
        lineagerun.get(counter.add.remote(1), timeout=20)


@lineagerun.remote
def use_handle(counter):
    return lineagerun.get(counter.add.remote(2))


def test_actor_handle_passed_to_a_task():
    counter = Counter.remote()
    assert lineagerun.get(use_handle.remote(counter)) == 2


@lineagerun.remote
class AsyncActor:
    async def slow(self, seconds):
        await asyncio.sleep(seconds)
        return seconds


def test_async_actor_runs_calls_concurrently():
    actor = AsyncActor.remote()
    lineagerun.get(actor.slow.remote(0))
    start_s = time.monotonic()
    assert lineagerun.get([actor.slow.remote(1.0) for _ in range(5)]) == [1.0] * 5
    assert time.monotonic() - start_s < 3.0


@lineagerun.remote
class Sleeper:
    def nap(self, seconds):
        time.sleep(seconds)
        return seconds


def test_max_concurrency_runs_calls_in_threads():
    actor = Sleeper.options(max_concurrency=4).remote()
    lineagerun.get(actor.nap.remote(0))
    start_s = time.monotonic()
    lineagerun.get([actor.nap.remote(1.0) for _ in range(4)])
    assert time.monotonic() - start_s < 2.5


@lineagerun.remote
class Pair:
    @lineagerun.method(num_returns=2)
    def split(self, value):
        return value, -value


def test_method_num_returns():
    pair = Pair.remote()
    first, second = pair.split.remote(3)
    assert lineagerun.get([first, second]) == [3, -3]
    assert len(pair.split.options(num_returns=2).remote(1)) == 2


def test_unknown_method_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_method"):
        Pair.remote().no_such_method


@lineagerun.remote
class Holder:
    def assigned(self):
        return lineagerun.get_runtime_context().get_assigned_resources()


def test_get_assigned_resources_of_actors():
    assert lineagerun.get(Holder.remote().assigned.remote(), timeout=60) == {}  # Ray's simple actor holds none
    assert lineagerun.get(Holder.options(num_cpus=1).remote().assigned.remote(), timeout=60) == {"CPU": 1.0}
