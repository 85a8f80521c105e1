"""Lost objects rebuilt by replay on the embedded single-node session
(issue 5; docs/fault-tolerance.md "Objects on a single node").

The real ways a node loses its only copy of an object while a ref still
names it: the store evicts a released primary copy that a borrowed ref (a
ref inside another object, ``ObjectRef.from_hex``) still needs, or the
object's shared-memory file is removed from outside. A worker never holds
the only copy of an object in its own memory (puts and results go to the
node manager as they are made): its death loses nothing.

A small object store (8 MiB) and 1 MiB arrays make eviction happen on demand.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import psutil
import pytest

import lineagerun as ray
from lineagerun.api import session
from lineagerun.control.client import ControlStoreClient
from lineagerun.core.keys import task_key
from lineagerun.exceptions import ObjectReconstructionFailedError
from lineagerun.objects import shm

STORE_BYTES = 8 * 1024 * 1024
ARRAY_BYTES = 1024 * 1024


@pytest.fixture(scope="module")
def small_store():
    ray.shutdown()
    state = ray.init(num_cpus=1, object_store_memory=STORE_BYTES)
    yield state
    ray.shutdown()
    if state.cluster is not None:
        shutil.rmtree(state.session_dir, ignore_errors=True)


def _array(seed: int) -> np.ndarray:
    return ((np.arange(ARRAY_BYTES, dtype=np.uint32) * (seed + 3)) % 251).astype(np.uint8)


def _ran(marks: str, name: str) -> None:
    with open(os.path.join(marks, name), "a") as f:
        f.write(f"{os.getpid()}\n")


def _runs(marks: str, name: str) -> int:
    try:
        with open(os.path.join(marks, name)) as f:
            return len(f.read().split())
    except FileNotFoundError:
        return 0


@ray.remote
def make(seed: int, marks: str) -> np.ndarray:
    _ran(marks, f"make{seed}")
    return _array(seed)


@ray.remote
def add_one(x: np.ndarray, marks: str) -> np.ndarray:
    _ran(marks, "add_one")
    return (x + 1).astype(np.uint8)


def _file_of(ref) -> str:
    return shm.object_path(session.driver_state().core_worker.store_session_id, ref.binary())


def _evict(*refs_hex: str, deadline_s: float = 30.0) -> None:
    """Put (and drop) arrays until the named objects' files are gone."""
    paths = [_file_of(ray.ObjectRef.from_hex(h)) for h in refs_hex]
    end = time.monotonic() + deadline_s
    seed = 100
    while any(os.path.exists(p) for p in paths):
        assert time.monotonic() < end, "the objects were never evicted"
        filler = ray.put(_array(seed))
        del filler
        seed += 1
        time.sleep(0.06)  # the driver releases dropped refs every 50 ms


@pytest.mark.timeout(120)
def test_evicted_chain_is_rebuilt_through_nested_and_hex_refs(small_store, tmp_path):
    marks = str(tmp_path)
    first = make.remote(1, marks)
    second = add_one.remote(first, marks)
    assert ray.wait([second], timeout=60)[0] == [second]  # not get: a get pins its objects for 5 s
    holder = ray.put([first])  # a borrowed ref inside a value outlives the owner's ref
    second_hex = second.hex()
    del first, second
    _evict(ray.get(holder)[0].hex(), second_hex)

    started = time.monotonic()
    rebuilt_second = ray.get(ray.ObjectRef.from_hex(second_hex), timeout=60)
    print(f"2-task chain of 1 MiB arrays rebuilt after eviction in {time.monotonic() - started:.3f} s")
    assert np.array_equal(rebuilt_second, (_array(1) + 1).astype(np.uint8))
    assert _runs(marks, "add_one") == 2  # replayed once
    assert _runs(marks, "make1") == 2  # its lost argument replayed first
    rebuilt_first = ray.get(ray.get(holder)[0], timeout=60)
    assert np.array_equal(rebuilt_first, _array(1))
    assert _runs(marks, "make1") == 2  # the replay's copy is used, not a third run


@pytest.mark.timeout(120)
def test_evicted_driver_put_fails_naming_object_task_and_reason(small_store):
    value = ray.put(_array(7))
    value_hex = value.hex()
    del value
    _evict(value_hex)
    with pytest.raises(ObjectReconstructionFailedError) as info:
        ray.get(ray.ObjectRef.from_hex(value_hex), timeout=60)
    message = str(info.value)
    assert value_hex in message
    assert "put() in the driver" in message
    assert "evicted" in message  # how it was lost


@pytest.mark.timeout(120)
def test_evicted_result_without_retries_left_fails_naming_the_task(small_store, tmp_path):
    marks = str(tmp_path)
    ref = make.options(max_retries=0).remote(3, marks)
    ray.wait([ref], timeout=60)
    ref_hex, task_hex = ref.hex(), ref.task_id().hex()
    del ref
    _evict(ref_hex)
    with pytest.raises(ObjectReconstructionFailedError) as info:
        ray.get(ray.ObjectRef.from_hex(ref_hex), timeout=60)
    message = str(info.value)
    assert ref_hex in message and task_hex in message
    assert "max_retries=0 exhausted" in message
    assert _runs(marks, "make3") == 1


@pytest.mark.timeout(120)
def test_removed_shm_file_is_rebuilt_while_the_owner_holds_the_ref(small_store, tmp_path):
    marks = str(tmp_path)
    ref = make.remote(5, marks)
    assert np.array_equal(ray.get(ref), _array(5))
    os.unlink(_file_of(ref))  # an external /dev/shm cleaner
    assert np.array_equal(ray.get(ref, timeout=60), _array(5))
    assert _runs(marks, "make5") == 2
    assert os.path.exists(_file_of(ref))
    assert np.array_equal(ray.get(ref, timeout=60), _array(5))
    assert _runs(marks, "make5") == 2  # the owner's ref pins the rebuilt copy: no third run


@pytest.mark.timeout(120)
def test_argument_of_a_queued_task_is_not_evicted_when_its_ref_goes(small_store, tmp_path):
    marks = str(tmp_path)
    arg = make.remote(9, marks)
    ray.wait([arg], timeout=30)  # not get: a get pins its objects for a few seconds

    @ray.remote
    def hold(seconds: float) -> int:
        time.sleep(seconds)
        return 1

    busy = hold.remote(1.5)  # the only CPU: the next task queues behind it
    out = add_one.remote(arg, marks)
    arg_path = _file_of(arg)
    del arg
    for seed in range(200, 212):  # more than the store holds, all released
        filler = ray.put(_array(seed))
        del filler
        time.sleep(0.06)
    assert os.path.exists(arg_path)  # pinned for the queued task
    assert ray.get(busy) == 1
    assert np.array_equal(ray.get(out, timeout=60), (_array(9) + 1).astype(np.uint8))
    assert _runs(marks, "make9") == 1


def _wait_for_file(path: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


@ray.remote
def hold_cpu(marks: str) -> int:
    _ran(marks, "hold_cpu")
    _wait_for_file(os.path.join(marks, "go"))
    return 1


@ray.remote
def make_when_told(seed: int, marks: str) -> np.ndarray:
    _wait_for_file(os.path.join(marks, "make"))
    _ran(marks, f"make{seed}")
    return _array(seed)


@pytest.mark.timeout(120)
def test_argument_evicted_between_its_arrival_and_the_dispatch_is_rebuilt_first(small_store, tmp_path):
    marks = str(tmp_path)
    arg = make_when_told.remote(13, marks)  # runs on the only CPU
    busy = hold_cpu.remote(marks)  # next in line, holds the CPU until told to go
    out = add_one.remote(arg, marks)  # queued while its argument does not exist yet
    arg_hex = arg.hex()
    del arg
    state = session.driver_state()
    client = ControlStoreClient(state.cluster.control_store.address, state.cluster.token)
    try:
        deadline = time.monotonic() + 30
        while client.get(task_key(out.task_id())) is None:  # its spec is durable: it is queued
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        client.close()
    time.sleep(0.2)
    open(os.path.join(marks, "make"), "w").close()
    deadline = time.monotonic() + 30
    while not _runs(marks, "hold_cpu"):  # the argument exists; the consumer waits for the CPU
        assert time.monotonic() < deadline
        time.sleep(0.02)
    _evict(arg_hex)
    assert _runs(marks, "add_one") == 0
    open(os.path.join(marks, "go"), "w").close()
    assert ray.get(busy, timeout=60) == 1
    assert np.array_equal(ray.get(out, timeout=60), (_array(13) + 1).astype(np.uint8))
    assert _runs(marks, "make13") == 2  # rebuilt before the consumer ran
    assert _runs(marks, "add_one") == 1


@ray.remote
def put_inside(marks: str) -> list:
    _ran(marks, "put_inside")
    return [ray.put(b"small value"), ray.put(_array(11)), os.getpid()]


@pytest.mark.timeout(120)
def test_a_dead_worker_held_no_only_copy(small_store, tmp_path):
    marks = str(tmp_path)
    small, large, pid = ray.get(put_inside.remote(marks))
    worker = psutil.Process(pid)  # one handle: a second lookup fails once the node has reaped it
    worker.kill()
    worker.wait(timeout=10)
    assert ray.get(small, timeout=30) == b"small value"
    assert np.array_equal(ray.get(large, timeout=30), _array(11))
    assert _runs(marks, "put_inside") == 1


def test_forget_object_drops_a_vanished_object_whatever_its_pins():
    from lineagerun.core.object_store import (
        CreateObject,
        ForgetObject,
        ObjectStoreCore,
        PinObject,
        ReleaseHolder,
        SealObject,
    )

    core = ObjectStoreCore(100)
    for oid in (b"a", b"b"):
        core.handle(CreateObject(oid, 40, "creator"))
        core.handle(SealObject(oid))
    core.handle(PinObject(b"a", "primary"))
    core.handle(PinObject(b"a", "task:1"))
    assert core.pinned_by(b"a", "primary") and not core.pinned_by(b"b", "primary")
    assert core.handle(ForgetObject(b"a")) == []  # its file is already gone
    core.check_invariants()
    assert core.used_bytes == 40 and not core.pinned_by(b"a", "primary")
    assert core.handle(ReleaseHolder("task:1")) == []  # the old holder's release changes nothing
    assert core.handle(ForgetObject(b"a")) == []
    core.handle(ForgetObject(b"b"))  # unpinned (in the LRU) works too
    core.check_invariants()
    assert core.used_bytes == 0
    core.handle(CreateObject(b"a", 100, "creator"))  # the rebuilt copy fits again
    core.check_invariants()


@ray.remote
def small_value(seed: int, size: int, marks: str) -> bytes:
    _ran(marks, f"small{seed}")
    return bytes([seed]) * size


@pytest.mark.timeout(120)
def test_released_inline_values_dropped_from_node_memory_come_back(small_store, tmp_path):
    """The node keeps the inline values of the last 20,000 released objects;
    older ones are dropped and, asked for through a borrowed ref, come back
    from their object record (up to 4 KiB) or by replay."""
    marks = str(tmp_path)
    tiny = small_value.remote(1, 100, marks)
    medium = small_value.remote(2, 50_000, marks)  # inline (< 100 KiB) but too large for the record
    assert len(ray.wait([tiny, medium], num_returns=2, timeout=60)[0]) == 2
    holder = ray.put([tiny, medium])
    del tiny, medium
    for batch in range(25):  # 25,000 released small objects after them
        refs = [ray.put(batch * 1000 + i) for i in range(1000)]
        del refs
        time.sleep(0.06)  # the driver releases dropped refs every 50 ms
    inner_tiny, inner_medium = ray.get(holder)
    assert ray.get(inner_medium, timeout=60) == b"\x02" * 50_000
    assert _runs(marks, "small2") == 2  # dropped, then replayed
    assert ray.get(inner_tiny, timeout=60) == b"\x01" * 100
    assert _runs(marks, "small1") == 1  # dropped, then read back from its record
