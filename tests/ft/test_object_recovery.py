"""Lost objects rebuilt from lineage and tasks retried after a node dies
(issue 5; RELIABILITY.md R1, R2, R5): real processes, lineagerun.testing.Cluster.

One cluster for the module: a head without CPUs (the driver's node, so every
task runs on a worker node) and one worker node with the resource "w" the
tasks need; a test runs its work there, adds a spare node, and kills the
first one (so the spare is the next test's victim). Each
task appends its pid to a file per (test, task index), so a test can tell
how often each task really ran.
"""

from __future__ import annotations

import concurrent.futures
import os
import time

import numpy as np
import psutil
import pytest

import lineagerun as ray
from lineagerun.control.client import ControlStoreClient
from lineagerun.core.ids import TaskID
from lineagerun.core.keys import attempts_prefix, object_key
from lineagerun.state.recovery_events import object_recovery_summary
from lineagerun.node.reconstruction_records import RECORD_MISSING_MAX_MS
from lineagerun.rpc import lineage_pb2
from lineagerun.testing import Cluster
from tests.cluster.conftest import assert_gone, cluster_pids

NODE_TIMEOUT_MS = 1000
ARRAY_BYTES = 1024 * 1024
# A recovery waits for node death detection (NODE_TIMEOUT_MS) and replays;
# a loaded 2-core machine makes both slow.
GET_TIMEOUT_S = int(os.environ.get("LR_TEST_GET_TIMEOUT_S", "60"))


@pytest.fixture(scope="module")
def cluster():
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0}, node_timeout_ms=NODE_TIMEOUT_MS)
    pids: set[int] = set()
    try:
        cluster.add_node(num_cpus=1, resources={"w": 1})
        ray.init(address=cluster.address)
        yield cluster
    finally:
        pids = cluster_pids(cluster)
        for node in cluster.removed_nodes:
            pids.add(node.pid)
        ray.shutdown()
        cluster.shutdown()
        assert_gone(pids)


@pytest.fixture(scope="module")
def control_store(cluster):
    client = ControlStoreClient(cluster.address, cluster.token)
    yield client
    client.close()


def _start(seed: int) -> np.ndarray:
    return (np.arange(ARRAY_BYTES, dtype=np.uint32) * (seed + 3) % 251).astype(np.uint8)


def _step(previous: np.ndarray, index: int) -> np.ndarray:
    return ((previous.astype(np.uint16) * 7 + index) % 256).astype(np.uint8)


def _ran(marks: str, index: int) -> None:
    with open(os.path.join(marks, str(index)), "a") as f:
        f.write(f"{os.getpid()}\n")


def _runs(marks: str, index: int) -> list[int]:
    try:
        with open(os.path.join(marks, str(index))) as f:
            return [int(line) for line in f.read().split()]
    except FileNotFoundError:
        return []


@ray.remote(resources={"w": 1})
def start(marks: str, seed: int):
    _ran(marks, 0)
    return _start(seed)


@ray.remote(resources={"w": 1})
def step(marks: str, previous, index: int):
    _ran(marks, index)
    return _step(previous, index)


def _node_of_pid(cluster: Cluster, pid: int):
    parents = {p.pid for p in psutil.Process(pid).parents()}
    return next(n for n in cluster.worker_nodes if n.pid in parents)


def _add_spare(cluster: Cluster):
    """Add a node that can run the work; returns the node it replaces."""
    (victim,) = cluster.worker_nodes
    cluster.add_node(num_cpus=1, resources={"w": 1})
    return victim


def _attempts(client: ControlStoreClient, task_id: TaskID) -> list[lineage_pb2.TaskAttempt]:
    return [lineage_pb2.TaskAttempt.FromString(v) for _, v in client.scan_prefix(attempts_prefix(task_id))]


def _chain(marks: str, length: int, seed: int) -> list:
    refs = [start.remote(marks, seed)]
    for index in range(1, length):
        refs.append(step.remote(marks, refs[-1], index))
    return refs


def _expected_chain(length: int, seed: int) -> np.ndarray:
    value = _start(seed)
    for index in range(1, length):
        value = _step(value, index)
    return value


@pytest.mark.timeout(180)
def test_r1_chain_on_killed_node_is_rebuilt_bit_identical(cluster, control_store, tmp_path):
    marks = str(tmp_path)
    refs = _chain(marks, 10, seed=1)
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=GET_TIMEOUT_S, fetch_local=False)
    assert len(ready) == 10
    victim = _add_spare(cluster)
    on_victim = [i for i in range(10) if _node_of_pid(cluster, _runs(marks, i)[0]) is victim]
    assert on_victim == list(range(10))

    killed_at = time.monotonic()
    cluster.remove_node(victim, allow_graceful=False)
    value = ray.get(refs[-1], timeout=GET_TIMEOUT_S)
    print(f"chain rebuilt {time.monotonic() - killed_at:.2f} s after the kill ({len(on_victim)} tasks were lost)")

    assert value.tobytes() == _expected_chain(10, seed=1).tobytes()
    for index in range(10):
        runs = _runs(marks, index)
        assert len(runs) <= 2, (index, runs)  # each lost task re-executed at most once
        if index in on_victim:
            assert len(runs) == 2, (index, runs)
    deadline = time.monotonic() + 10  # records are written in batches
    while True:
        attempts = {i: _attempts(control_store, refs[i].task_id()) for i in on_victim}
        if all(any(a.reason == lineage_pb2.REPLAY and a.state == lineage_pb2.FINISHED for a in attempts[i])
               for i in on_victim) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for index in on_victim:
        numbers = sorted(a.attempt_number for a in attempts[index])
        assert numbers == [0, 1], (index, numbers)
        replay = next(a for a in attempts[index] if a.attempt_number == 1)
        assert replay.reason == lineage_pb2.REPLAY and replay.state == lineage_pb2.FINISHED, replay
    deadline = time.monotonic() + 10
    while True:  # recovery is observable: events (and their counts) in the control store
        summary = object_recovery_summary(control_store)
        if summary["objects_rebuilt"] >= 10 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert summary["objects_lost"] >= 10 and summary["tasks_replayed"] >= 10, summary
    assert summary["objects_rebuilt"] >= 10 and all(ms >= 0 for ms in summary["recovery_ms"]), summary


@ray.remote(resources={"w": 1})
def mapper(marks: str, index: int):
    _ran(marks, index)
    time.sleep(0.15)
    return np.full(ARRAY_BYTES // 8, index + 1, dtype=np.uint64)


@ray.remote(resources={"w": 1})
def reducer(*parts):
    return int(sum(int(p.sum()) for p in parts))


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.timeout(180)
def test_r2_map_reduce_with_a_node_killed_mid_run(cluster, tmp_path):
    marks = str(tmp_path)
    victim = _add_spare(cluster)
    cluster.remove_node(cluster.worker_nodes[-1], allow_graceful=True)  # all maps start on the victim
    cluster.wait_for_nodes()
    maps = [mapper.remote(marks, i) for i in range(8)]
    total = reducer.remote(*maps)
    _wait_for(lambda: len(_runs(marks, 2)) == 1, GET_TIMEOUT_S, "the third map to start")
    cluster.add_node(num_cpus=1, resources={"w": 1})
    cluster.remove_node(victim, allow_graceful=False)
    expected = sum((i + 1) * (ARRAY_BYTES // 8) for i in range(8))
    assert ray.get(total, timeout=GET_TIMEOUT_S) == expected
    for index in range(8):
        assert 1 <= len(_runs(marks, index)) <= 2, (index, _runs(marks, index))
    # Every CPU slot is free again: nothing of the recovery is left holding one.
    _wait_for(lambda: ray.available_resources() == ray.cluster_resources(), 20, "resources to be free")


@ray.remote(resources={"w": 1})
def slow_on_replay(marks: str, previous, index: int):
    again = bool(_runs(marks, index))
    _ran(marks, index)
    if again:
        time.sleep(0.3)  # a window for the test to kill the node running the replay
    return _step(previous, index)


@pytest.mark.timeout(240)
def test_r5_node_dies_while_a_replay_runs(cluster, tmp_path):
    marks = str(tmp_path)
    refs = [start.remote(marks, 5)]
    for index in range(1, 8):
        refs.append(slow_on_replay.remote(marks, refs[-1], index))
    ray.wait(refs, num_returns=len(refs), timeout=GET_TIMEOUT_S, fetch_local=False)
    victim = _add_spare(cluster)
    cluster.add_node(num_cpus=1, resources={"w": 1})
    cluster.remove_node(victim, allow_graceful=False)
    getter = concurrent.futures.ThreadPoolExecutor(1)
    result = getter.submit(ray.get, refs[-1], timeout=GET_TIMEOUT_S)  # the get starts the recovery

    def replaying():
        for index in range(1, 8):
            runs = _runs(marks, index)
            if len(runs) == 2:
                return runs[1]
        return None

    replayer = _wait_for(replaying, GET_TIMEOUT_S, "a replay to start")
    second_victim = _node_of_pid(cluster, replayer)
    cluster.remove_node(second_victim, allow_graceful=False)  # the double fault
    value = result.result(timeout=GET_TIMEOUT_S)
    getter.shutdown()
    expected = _start(5)
    for index in range(1, 8):
        expected = _step(expected, index)
    assert value.tobytes() == expected.tobytes()


@pytest.mark.timeout(180)
def test_overlapping_recoveries_of_one_object_replay_its_task_once(cluster, tmp_path):
    marks = str(tmp_path)
    ref = start.remote(marks, 9)
    ray.wait([ref], timeout=GET_TIMEOUT_S, fetch_local=False)
    victim = _add_spare(cluster)
    cluster.remove_node(victim, allow_graceful=False)
    # Tasks needing it (on another node) and the driver's get all want it at once.
    consumers = [step.remote(marks, ref, index) for index in (1, 2, 3)]
    getter = concurrent.futures.ThreadPoolExecutor(1)
    got = getter.submit(ray.get, ref, timeout=GET_TIMEOUT_S)
    values = ray.get(consumers, timeout=GET_TIMEOUT_S)
    assert got.result(timeout=GET_TIMEOUT_S).tobytes() == _start(9).tobytes()
    getter.shutdown()
    for index, value in zip((1, 2, 3), values):
        assert value.tobytes() == _step(_start(9), index).tobytes()
    assert len(_runs(marks, 0)) == 2, _runs(marks, 0)  # the first run and one replay


@ray.remote(resources={"w": 1})
def long_first_run(marks: str, index: int):
    _ran(marks, index)
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(marks, "killed")) and time.monotonic() < deadline:
        time.sleep(0.02)  # runs until its node is killed; a retry after that returns at once
    return index * 10


@pytest.mark.timeout(180)
def test_task_on_a_dying_node_is_retried_elsewhere_or_fails_naming_it(cluster, control_store, tmp_path):
    marks = str(tmp_path)
    retried = long_first_run.remote(marks, 1)
    no_retries = long_first_run.options(max_retries=0).remote(marks, 2)
    _wait_for(lambda: _runs(marks, 1) or _runs(marks, 2), GET_TIMEOUT_S, "a task to start")
    victim = _add_spare(cluster)
    cluster.remove_node(victim, allow_graceful=False)
    open(os.path.join(marks, "killed"), "w").close()
    assert ray.get(retried, timeout=GET_TIMEOUT_S) == 10
    with pytest.raises(ray.exceptions.NodeDiedError) as failure:
        ray.get(no_retries, timeout=GET_TIMEOUT_S)
    text = str(failure.value)
    assert "long_first_run" in text and no_retries.task_id().hex()[:16] in text, text
    assert victim.node_id[:16] in text and "max_retries=0" in text, text
    attempts = _wait_for(lambda: [a for a in _attempts(control_store, retried.task_id())
                                  if a.reason == lineage_pb2.RETRY and a.state == lineage_pb2.FINISHED],
                         10, "the retry's attempt record")
    assert attempts[0].attempt_number >= 1


@ray.remote(resources={"w": 1}, max_retries=0)
def unretriable(marks: str):
    _ran(marks, 0)
    return np.ones(ARRAY_BYTES, dtype=np.uint8)


@pytest.mark.timeout(180)
def test_lost_object_without_retries_left_fails_naming_object_task_and_why(cluster, tmp_path):
    marks = str(tmp_path)
    ref = unretriable.remote(marks)
    ray.wait([ref], timeout=GET_TIMEOUT_S, fetch_local=False)
    victim = _add_spare(cluster)
    cluster.remove_node(victim, allow_graceful=False)
    with pytest.raises(ray.exceptions.ObjectReconstructionFailedError) as failure:
        ray.get(ref, timeout=GET_TIMEOUT_S)
    text = str(failure.value)
    assert ref.hex() in text and ref.task_id().hex() in text, text
    assert "max_retries=0" in text and "died" in text, text
    assert len(_runs(marks, 0)) == 1


@ray.remote(resources={"w": 1})
def puts_inside(marks: str):
    _ran(marks, 0)
    return [ray.put(_start(7))]


@pytest.mark.timeout(180)
def test_put_inside_a_task_is_rebuilt_by_replaying_the_task(cluster, tmp_path):
    marks = str(tmp_path)
    (inner,) = ray.get(puts_inside.remote(marks), timeout=GET_TIMEOUT_S)
    victim = _add_spare(cluster)
    cluster.remove_node(victim, allow_graceful=False)
    value = ray.get(inner, timeout=GET_TIMEOUT_S)
    assert value.tobytes() == _start(7).tobytes()
    assert len(_runs(marks, 0)) == 2


@pytest.mark.timeout(180)
def test_nested_ref_whose_record_was_never_written_is_rebuilt(cluster, control_store, tmp_path):
    """The node that ran the task died before writing the obj/ record of the
    put it returned in a list: the ref is known only from the list, and the
    lookup finds no record (here deleted before the kill, which is the same
    for every reader). Its task is found from the id and replayed."""
    marks = str(tmp_path)
    (inner,) = ray.get(puts_inside.remote(marks), timeout=GET_TIMEOUT_S)
    key = object_key(inner.object_id())
    _wait_for(lambda: control_store.get(key) is not None, 10, "the put's record")
    victim = _add_spare(cluster)
    control_store.delete(key)
    cluster.remove_node(victim, allow_graceful=False)
    started = time.monotonic()
    value = ray.get(inner, timeout=GET_TIMEOUT_S)
    assert value.tobytes() == _start(7).tobytes()
    assert len(_runs(marks, 0)) == 2
    # The dead node is named by the task's attempt record: no waiting for the
    # RECORD_MISSING_MAX_MS bound (death detection and one replay only).
    assert time.monotonic() - started < RECORD_MISSING_MAX_MS / 1000 + 5


@pytest.mark.timeout(180)
def test_nested_ref_with_no_record_and_no_attempt_is_rebuilt_within_the_bound(cluster, control_store, tmp_path):
    """As above, but the node also died before writing the task's attempt
    record: the task is known to have ended because its return is here, so
    the put is taken as lost once RECORD_MISSING_MAX_MS passed without a record."""
    marks = str(tmp_path)
    outer = puts_inside.remote(marks)
    (inner,) = ray.get(outer, timeout=GET_TIMEOUT_S)
    key = object_key(inner.object_id())
    prefix = attempts_prefix(inner.task_id())
    _wait_for(lambda: control_store.get(key) is not None and list(control_store.scan_prefix(prefix)),
              10, "the put's and the attempt's records")
    victim = _add_spare(cluster)
    control_store.delete(key)
    for attempt, _ in control_store.scan_prefix(prefix):
        control_store.delete(attempt)
    cluster.remove_node(victim, allow_graceful=False)
    started = time.monotonic()
    value = ray.get(inner, timeout=GET_TIMEOUT_S)
    print(f"rebuilt {time.monotonic() - started:.2f} s after the kill; attempts "
          f"{[(a.attempt_number, a.reason, a.state) for a in _attempts(control_store, inner.task_id())]}")
    assert value.tobytes() == _start(7).tobytes()
    assert len(_runs(marks, 0)) == 2


@ray.remote(resources={"w": 1})
def gate(marks: str, open_path: str):
    _ran(marks, 1)
    while not os.path.exists(open_path):
        time.sleep(0.05)
    return 1


@ray.remote(resources={"w": 1})
def behind_gate(marks: str, opened: int):
    _ran(marks, 2)
    return opened + 1


@ray.remote(resources={"w": 1})
def submits_behind_a_gate(marks: str, open_path: str):
    _ran(marks, 0)
    return [behind_gate.remote(marks, gate.remote(marks, open_path))]


@pytest.mark.timeout(240)
def test_nested_ref_of_a_task_that_died_queued_with_its_submitter_is_rebuilt(cluster, control_store, tmp_path):
    """A task submitted from inside a task waits on its node for an argument
    (a gate that runs there) when the node dies: it never ran anywhere, so
    it has no attempt record and no object record, and the only ref to its
    result is nested in the submitter's return value. Once
    RECORD_MISSING_MAX_MS passed, its submitter's attempt naming the dead
    node makes it lost, and it is replayed with its argument (it used to be
    looked up forever)."""
    marks = str(tmp_path / "marks")
    os.makedirs(marks)
    open_path = str(tmp_path / "open")
    outer = submits_behind_a_gate.remote(marks, open_path)
    (behind,) = ray.get(outer, timeout=GET_TIMEOUT_S)
    _wait_for(lambda: _runs(marks, 1), GET_TIMEOUT_S, "the gate to run")
    # The submitter's attempt record names the node (batched: written within
    # tens of ms of its end; without it the node cannot tell and keeps looking).
    _wait_for(lambda: _attempts(control_store, outer.task_id()), 10, "the submitter's attempt record")
    (victim,) = cluster.worker_nodes
    cluster.remove_node(victim, allow_graceful=False)
    cluster.add_node(num_cpus=1, resources={"w": 1})  # after the kill: nothing moved there before it
    with open(open_path, "w"):
        pass
    assert _runs(marks, 2) == [] and not list(control_store.scan_prefix(attempts_prefix(behind.task_id())))
    started = time.monotonic()
    assert ray.get(behind, timeout=GET_TIMEOUT_S + RECORD_MISSING_MAX_MS / 1000) == 2
    print(f"rebuilt {time.monotonic() - started:.2f} s after the kill")
    assert len(_runs(marks, 2)) == 1 and len(_runs(marks, 1)) == 2


@pytest.mark.timeout(180)
def test_wait_without_fetching_rebuilds_a_lost_object(cluster, tmp_path):
    marks = str(tmp_path)
    ref = start.remote(marks, 11)
    ray.wait([ref], timeout=GET_TIMEOUT_S, fetch_local=False)
    victim = _add_spare(cluster)
    cluster.remove_node(victim, allow_graceful=False)
    # Until the driver's node hears of the death, the copy on the victim
    # counts as ready; then the lost object is rebuilt by non-fetching waits
    # alone (no get).
    _wait_for(lambda: ray.wait([ref], timeout=0.05, fetch_local=False)[0] == [ref] and len(_runs(marks, 0)) == 2,
              GET_TIMEOUT_S, "a wait to rebuild the object")
    assert len(_runs(marks, 0)) == 2
    assert ray.get(ref, timeout=GET_TIMEOUT_S).tobytes() == _start(11).tobytes()
