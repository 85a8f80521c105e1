"""``lineagerun.util``: ActorPool, as_completed and map_unordered, as Ray's."""

from __future__ import annotations

import time

import pytest

import lineagerun
from lineagerun import exceptions
from lineagerun.util import ActorPool, as_completed, map_unordered

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("cluster")]


@lineagerun.remote
def nap(seconds):
    time.sleep(seconds)
    return seconds


@lineagerun.remote
class Doubler:
    def double(self, value):
        return 2 * value

    def nap(self, seconds):
        time.sleep(seconds)
        return seconds


def test_as_completed_yields_every_value_earliest_first():
    refs = [nap.remote(s) for s in (0.9, 0.1, 0.5)]
    assert list(as_completed(refs, chunk_size=1)) == [0.1, 0.5, 0.9]


def test_as_completed_can_yield_refs():
    refs = [nap.remote(0.0) for _ in range(5)]
    got = list(as_completed(refs, chunk_size=2, yield_obj_refs=True))
    assert sorted(r.hex() for r in got) == sorted(r.hex() for r in refs)


def test_map_unordered_limits_tasks_in_flight():
    values = [0.05] * 12
    results = list(map_unordered(nap, values, backpressure_size=3, chunk_size=1))
    assert results == values


def test_bad_sizes_and_functions_are_refused():
    with pytest.raises(exceptions.InvalidArgumentError, match="chunk_size"):
        list(as_completed([], chunk_size=0))
    with pytest.raises(exceptions.InvalidArgumentError, match="backpressure_size"):
        list(map_unordered(nap, [1], backpressure_size=0))
    with pytest.raises(exceptions.InvalidArgumentError, match="remote function"):
        list(map_unordered(len, [1]))


def test_actor_pool_map_keeps_order_and_uses_every_actor():
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    assert list(pool.map(lambda actor, v: actor.double.remote(v), range(7))) == [2 * v for v in range(7)]


def test_actor_pool_map_unordered_returns_fastest_first():
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    got = list(pool.map_unordered(lambda actor, s: actor.nap.remote(s), [0.8, 0.05, 0.05]))
    assert sorted(got) == [0.05, 0.05, 0.8] and got[-1] == 0.8


def test_actor_pool_submit_waits_for_a_free_actor():
    pool = ActorPool([Doubler.remote()])
    for value in (1, 2, 3):
        pool.submit(lambda actor, v: actor.double.remote(v), value)
    assert not pool.has_free()
    assert [pool.get_next() for _ in range(3)] == [2, 4, 6]
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()


def test_actor_pool_timeout_and_ignore():
    pool = ActorPool([Doubler.remote()])
    pool.submit(lambda actor, s: actor.nap.remote(s), 1.0)
    pool.submit(lambda actor, v: actor.double.remote(v), 21)
    with pytest.raises(exceptions.GetTimeoutError):
        pool.get_next(timeout=0.05)
    with pytest.raises(exceptions.GetTimeoutError, match="ignored"):
        pool.get_next(timeout=0.05, ignore_if_timedout=True)
    assert pool.get_next() == 42  # the nap was given up; the next submission comes next


def test_actor_pool_push_and_pop_idle():
    first, second = Doubler.remote(), Doubler.remote()
    pool = ActorPool([first])
    assert pool.pop_idle() is first and pool.pop_idle() is None
    pool.push(second)
    with pytest.raises(exceptions.InvalidArgumentError, match="already belongs"):
        pool.push(second)
    pool.submit(lambda actor, v: actor.double.remote(v), 5)
    assert pool.get_next() == 10


def test_actor_pool_without_actors_says_so():
    pool = ActorPool([])
    pool.submit(lambda actor, v: actor.double.remote(v), 1)
    with pytest.raises(exceptions.InvalidArgumentError, match="no actors"):
        pool.get_next()


def test_a_dead_actor_leaves_the_pool():
    doomed, healthy = Doubler.remote(), Doubler.remote()
    lineagerun.kill(doomed)
    pool = ActorPool([healthy, doomed])  # submit takes the last idle one first: doomed
    pool.submit(lambda actor, v: actor.double.remote(v), 1)
    pool.submit(lambda actor, v: actor.double.remote(v), 2)
    pool.submit(lambda actor, v: actor.double.remote(v), 3)
    with pytest.raises(exceptions.ActorDiedError):
        pool.get_next()
    assert [pool.get_next(), pool.get_next()] == [4, 6]  # both on the healthy actor
    assert pool.pop_idle() is healthy and pool.pop_idle() is None


def test_push_refuses_another_handle_of_a_busy_actor():
    Doubler.options(name="pooled").remote()
    pool = ActorPool([lineagerun.get_actor("pooled")])
    pool.submit(lambda actor, s: actor.nap.remote(s), 0.2)
    with pytest.raises(exceptions.InvalidArgumentError, match="already belongs"):
        pool.push(lineagerun.get_actor("pooled"))
    assert pool.get_next() == 0.2


def test_fn_that_raises_keeps_the_actor_in_the_pool():
    pool = ActorPool([Doubler.remote()])
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda actor, v: 1 / 0, 1)
    with pytest.raises(exceptions.InvalidArgumentError, match="ObjectRef"):
        pool.submit(lambda actor, v: b"not a ref", 1)
    assert pool.has_free()
