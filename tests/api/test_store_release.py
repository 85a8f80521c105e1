"""Objects leave a small store once nothing needs them: results a driver got
and dropped, puts made inside tasks and actor calls; but not a worker's put
whose ref left the worker inside a value (somebody may still hold it).

A worker's put passed on by ref (a subtask's argument, a value it returns)
stays pinned: the worker cannot know when the other side is done with it.

One cluster with a 40 MB store for the module; each loop moves several times
the store's size of 8 MB objects through it, so any object kept pinned by
mistake fills the store (ObjectStoreFullError) within a few iterations."""

from __future__ import annotations

import numpy as np
import pytest

import lineagerun
from tests.api.conftest import shutdown_and_remove_session

pytestmark = pytest.mark.timeout(120)

STORE_BYTES = 40 * 1024 * 1024
ITEMS = 1_000_000  # int64: 8 MB, far above the inline threshold
ROUNDS = 25  # 200 MB through a 40 MB store


@pytest.fixture(scope="module", autouse=True)
def small_store():
    shutdown_and_remove_session()
    lineagerun.init(num_cpus=2, object_store_memory=STORE_BYTES)
    yield
    shutdown_and_remove_session()


@lineagerun.remote
def make_array(i):
    return np.full(ITEMS, i, dtype=np.int64)


@lineagerun.remote
def put_inside(i):
    ref = lineagerun.put(np.full(ITEMS, i, dtype=np.int64))
    return int(lineagerun.get(ref)[-1])


@lineagerun.remote
def put_and_return_nested(i, runs_file):
    with open(runs_file, "a") as runs:  # a rebuild by lineage would run it again
        runs.write("run\n")
    return [lineagerun.put(np.full(ITEMS, i, dtype=np.int64))]


@lineagerun.remote
def last_item(array):
    return int(array[-1])


@lineagerun.remote
def put_then_pass_to_a_subtask(i):
    ref = lineagerun.put(np.full(ITEMS, i, dtype=np.int64))
    result = last_item.remote(ref)
    del ref  # passed on: the worker keeps it pinned (the call may wait or run elsewhere)
    return lineagerun.get(result)


@lineagerun.remote
class Producer:
    def step(self, i):
        ref = lineagerun.put(np.full(ITEMS, i, dtype=np.int64))
        return int(lineagerun.get(ref)[0])


@lineagerun.remote
class Busy:
    def sleep(self, seconds):
        import time

        time.sleep(seconds)

    def last_item(self, array):
        return int(array[-1])


def churn(rounds: int = ROUNDS) -> None:
    """Fill the store over and over with objects nobody keeps."""
    for i in range(rounds):
        assert lineagerun.get(make_array.remote(i))[0] == i


def test_results_the_driver_got_and_dropped_are_evicted():
    churn()


def test_puts_inside_tasks_are_released_when_the_task_drops_them():
    for i in range(ROUNDS):
        assert lineagerun.get(put_inside.remote(i)) == i


def test_puts_inside_actor_calls_are_released_when_the_call_drops_them():
    producer = Producer.remote()
    for i in range(ROUNDS):
        assert lineagerun.get(producer.step.remote(i)) == i
    lineagerun.kill(producer)


def test_an_argument_of_a_call_queued_behind_a_busy_actor_outlives_the_callers_ref():
    busy = Busy.remote()
    sleeping = [busy.sleep.remote(0.15) for _ in range(20)]  # more than the calls sent ahead to its worker
    argument = lineagerun.put(np.full(ITEMS, 5, dtype=np.int64))
    queued = busy.last_item.remote(argument)
    del argument  # released; the queued call's pin keeps it through the churn
    churn(10)
    assert lineagerun.get(queued, timeout=30) == 5
    lineagerun.get(sleeping)
    lineagerun.kill(busy)


def test_a_worker_put_returned_inside_a_value_is_never_released_by_the_worker(tmp_path):
    runs_file = tmp_path / "runs"
    [nested] = lineagerun.get(put_and_return_nested.remote(41, str(runs_file)))
    churn()
    value = lineagerun.get(nested)
    assert value[0] == 41 and value[-1] == 41
    assert runs_file.read_text().count("run") == 1, "the put was evicted and rebuilt by running its task again"


def test_a_worker_put_passed_to_a_subtask_and_dropped_still_reaches_it():
    for i in range(2):  # each stays pinned: 16 of the store's 40 MB
        assert lineagerun.get(put_then_pass_to_a_subtask.remote(i)) == i
    churn(8)
