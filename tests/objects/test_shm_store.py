"""The node-local store on real /dev/shm files: zero-copy reads (also from
another process), eviction, pins, unlink safety, cleanup after close and
after a crash."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lineagerun.exceptions import (
    ConfigurationError,
    InvalidArgumentError,
    NotFoundError,
    ObjectLostError,
    ObjectStoreFullError,
)
from lineagerun.objects import shm
from lineagerun.objects.serialization import deserialize_from, serialize
from lineagerun.objects.shm import SHM_DIR, SessionOwner, new_session_id
from lineagerun.objects.store import (
    LocalObjectStore,
    cleanup_session,
    cleanup_stale_sessions,
    read_object,
    write_reserved,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHILD_TIMEOUT_S = 60


def oid(i: int) -> bytes:
    return i.to_bytes(4, "big") * 7  # 28 bytes, like Ray's ObjectID


def session_file_names(session_id: str) -> list[str]:
    return sorted(n for n in os.listdir(SHM_DIR) if n.startswith(f"lr-{session_id[:8]}"))


@pytest.fixture
def session_id():
    sid = new_session_id()
    yield sid
    leftovers = session_file_names(sid)
    cleanup_session(sid)
    assert leftovers == [], f"test left shared-memory files behind: {leftovers}"


@pytest.fixture
def store(session_id):
    with LocalObjectStore(session_id, 64 * 1024 * 1024) as s:
        yield s


def mapping_of(array: np.ndarray):
    """The mmap an array's memory belongs to, by following its base chain."""
    base = array
    while base is not None and not isinstance(base, memoryview):
        base = base.base
    assert base is not None, "array does not come from a buffer"
    return base.obj


def run_child(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def stop_child(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=CHILD_TIMEOUT_S)
    proc.stdout.close()
    proc.stderr.close()


def child_result(code: str, *args: str) -> dict:
    proc = run_child(code, *args)
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
        assert proc.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])
    finally:
        stop_child(proc)


# ------------------------------------------------------------- zero copy


def test_get_returns_a_read_only_array_that_shares_memory_with_the_mapping(store):
    array = np.arange(1_000_000, dtype=np.float64)
    store.put(oid(1), array)
    result = store.get(oid(1))
    np.testing.assert_array_equal(result, array)
    assert not result.flags.writeable
    mapping = mapping_of(result)
    assert np.shares_memory(result, np.frombuffer(mapping, dtype=np.uint8))
    path = shm.object_path(store.session_id, oid(1))
    with open("/proc/self/maps") as maps:
        assert path in maps.read()


def test_values_without_buffers_round_trip_through_the_store(store):
    value = {"a": [1, 2, (3, "x")], "b": None}
    store.put(oid(1), value)
    assert store.get(oid(1)) == value


def test_get_buffer_is_the_serialised_region(store):
    store.put(oid(1), {"k": np.arange(5)})
    result = deserialize_from(store.get_buffer(oid(1)))
    np.testing.assert_array_equal(result["k"], np.arange(5))


@pytest.mark.timeout(120)
def test_another_process_maps_the_same_object_without_copying(store):
    array = np.random.default_rng(7).integers(0, 1000, size=(500, 300), dtype=np.int64)
    store.put(oid(1), array)
    result = child_result("""
        import json, sys
        import numpy as np
        from lineagerun.objects import shm
        from lineagerun.objects.store import read_object
        session_id, object_id = sys.argv[1], bytes.fromhex(sys.argv[2])
        value = read_object(session_id, object_id)
        base = value
        while not isinstance(base, memoryview):
            base = base.base
        with open("/proc/self/maps") as maps:
            mapped = shm.object_path(session_id, object_id) in maps.read()
        print(json.dumps({
            "checksum": int(value.sum()), "shape": list(value.shape), "writeable": value.flags.writeable,
            "mapped": mapped, "shares_mapping": bool(np.shares_memory(value, np.frombuffer(base.obj, np.uint8))),
        }))
    """, store.session_id, oid(1).hex())
    assert result == {"checksum": int(array.sum()), "shape": [500, 300], "writeable": False,
                      "mapped": True, "shares_mapping": True}


@pytest.mark.timeout(120)
def test_another_process_can_write_an_object_the_store_reserved(store):
    size = serialize(np.arange(1000, dtype=np.int32)).total_bytes
    path = store.create(oid(1), size, "worker-1")
    result = child_result("""
        import json, sys
        import numpy as np
        from lineagerun.objects.serialization import serialize
        from lineagerun.objects.store import write_reserved
        write_reserved(sys.argv[1], serialize(np.arange(1000, dtype=np.int32)))
        print(json.dumps({"ok": True}))
    """, path)
    assert result == {"ok": True}
    store.seal(oid(1))
    np.testing.assert_array_equal(store.get(oid(1)), np.arange(1000, dtype=np.int32))


# ------------------------------------------------------ eviction and pins


def small_store(session_id, object_count: int, **kwargs) -> tuple[LocalObjectStore, int]:
    size = serialize(np.zeros(4096, dtype=np.uint8)).total_bytes
    return LocalObjectStore(session_id, size * object_count, **kwargs), size


def test_eviction_removes_least_recently_used_objects_and_their_files(session_id):
    evicted = []
    store, _size = small_store(session_id, 3, on_evicted=evicted.append)
    with store:
        for i in (1, 2, 3):
            store.put(oid(i), np.full(4096, i, dtype=np.uint8))
        store.get(oid(1))  # now 2 is the least recently used
        store.put(oid(4), np.full(4096, 4, dtype=np.uint8))
        assert evicted == [oid(2)]
        assert not store.contains(oid(2)) and store.contains(oid(1))
        assert not os.path.exists(shm.object_path(session_id, oid(2)))
        store.put(oid(5), np.full(4096, 5, dtype=np.uint8))
        assert evicted == [oid(2), oid(3)]
        assert store.stats().evicted_count_total == 2


def test_pinned_objects_survive_eviction(session_id):
    store, _size = small_store(session_id, 2)
    with store:
        store.put(oid(1), np.zeros(4096, dtype=np.uint8))
        store.pin(oid(1), "task-7")
        store.put(oid(2), np.zeros(4096, dtype=np.uint8))
        store.put(oid(3), np.zeros(4096, dtype=np.uint8))
        assert store.contains(oid(1)) and not store.contains(oid(2))


def test_store_full_of_pinned_objects_refuses_with_a_clear_error(session_id):
    store, size = small_store(session_id, 2)
    with store:
        for i in (1, 2):
            store.put(oid(i), np.zeros(4096, dtype=np.uint8))
            store.pin(oid(i), "worker-1")
        with pytest.raises(ObjectStoreFullError, match=f"{2 * size} bytes are pinned"):
            store.put(oid(3), np.zeros(4096, dtype=np.uint8))
        assert not os.path.exists(shm.object_path(session_id, oid(3), sealed=False))
        store.release("worker-1")
        store.put(oid(3), np.zeros(4096, dtype=np.uint8))


def test_object_larger_than_capacity_is_refused(session_id):
    with LocalObjectStore(session_id, 1024 * 1024) as store:
        with pytest.raises(ObjectStoreFullError, match="larger than the object store's whole capacity"):
            store.put(oid(1), np.zeros(2 * 1024 * 1024, dtype=np.uint8))
        assert session_file_names(session_id) == [f"lr-{session_id[:8]}.owner"]


def test_get_with_holder_pins_until_release(session_id):
    store, _size = small_store(session_id, 1)
    with store:
        store.put(oid(1), np.zeros(4096, dtype=np.uint8))
        store.get(oid(1), holder="driver")
        with pytest.raises(ObjectStoreFullError):
            store.put(oid(2), np.zeros(4096, dtype=np.uint8))
        store.release("driver")
        store.put(oid(2), np.zeros(4096, dtype=np.uint8))


# ------------------------------------------------------- unlink safety


def test_deleted_object_stays_valid_for_a_reader_holding_it(store):
    store.put(oid(1), np.arange(100_000, dtype=np.int64))
    result = store.get(oid(1))
    store.delete(oid(1))
    assert not os.path.exists(shm.object_path(store.session_id, oid(1)))
    assert int(result.sum()) == sum(range(100_000))
    with pytest.raises(NotFoundError):
        store.get(oid(1))


def test_evicted_object_stays_valid_for_a_reader_holding_it(session_id):
    store, _size = small_store(session_id, 1)
    with store:
        store.put(oid(1), np.full(4096, 7, dtype=np.uint8))
        result = store.get(oid(1))
        store.put(oid(2), np.zeros(4096, dtype=np.uint8))
        assert not store.contains(oid(1))
        assert int(result.sum()) == 7 * 4096


def test_values_stay_valid_after_close(session_id):
    store = LocalObjectStore(session_id, 1024 * 1024)
    store.put(oid(1), np.arange(1000))
    result = store.get(oid(1))
    store.close()
    assert int(result.sum()) == sum(range(1000))


def test_delete_of_a_pinned_object_waits_for_the_unpin(store):
    store.put(oid(1), np.arange(10))
    store.pin(oid(1), "task")
    store.delete(oid(1))
    assert not store.contains(oid(1))
    assert os.path.exists(shm.object_path(store.session_id, oid(1)))
    store.unpin(oid(1), "task")
    assert not os.path.exists(shm.object_path(store.session_id, oid(1)))


# ------------------------------------------------------------ lifecycle


def test_close_leaves_no_files(session_id):
    store = LocalObjectStore(session_id, 16 * 1024 * 1024)
    for i in range(5):
        store.put(oid(i), np.arange(1000 * (i + 1)))
    store.create(oid(99), 1000, "worker-1")  # a creation cut short by close
    assert len(session_file_names(session_id)) == 7
    store.close()
    assert session_file_names(session_id) == []
    with pytest.raises(InvalidArgumentError, match="closed"):
        store.put(oid(100), 1)


def test_released_creator_aborts_its_unsealed_object(store):
    path = store.create(oid(1), 4096, "worker-1")
    assert os.path.exists(path)
    store.release("worker-1")
    assert not os.path.exists(path)
    assert store.stats().used_bytes == 0
    with pytest.raises(NotFoundError):
        store.seal(oid(1))


def test_get_of_an_unsealed_object_says_so(store):
    store.create(oid(1), 4096, "worker-1")
    with pytest.raises(NotFoundError, match="still being created"):
        store.get(oid(1))
    store.abort(oid(1))


def test_get_of_a_missing_object_is_not_found(store):
    with pytest.raises(NotFoundError, match="not in this node's object store"):
        store.get(oid(1))


def test_file_removed_behind_the_stores_back_is_reported_lost(store):
    store.put(oid(1), np.arange(10))
    os.unlink(shm.object_path(store.session_id, oid(1)))
    with pytest.raises(ObjectLostError, match="removed by something other than the object store"):
        store.get(oid(1))
    assert not store.contains(oid(1)) and store.stats().used_bytes == 0


def test_put_of_an_existing_id_keeps_the_stored_object(store):
    size = store.put(oid(1), np.arange(10))
    assert store.put(oid(1), np.arange(10)) == size
    assert store.stats().object_count == 1


def test_place_keeps_small_values_inline_and_stores_large_ones(store):
    small = store.place(oid(1), {"x": 1})
    assert small.inline_bytes is not None and not store.contains(oid(1))
    assert deserialize_from(small.inline_bytes) == {"x": 1}
    large = store.place(oid(2), np.zeros(200_000, dtype=np.uint8))
    assert large.inline_bytes is None and store.contains(oid(2))


def test_read_object_from_the_same_process(store):
    store.put(oid(1), "hello")
    assert read_object(store.session_id, oid(1)) == "hello"


def test_a_second_store_for_a_live_session_is_refused(store):
    with pytest.raises(ConfigurationError, match="already owned by live process"):
        LocalObjectStore(store.session_id, 1024)


def test_capacity_larger_than_dev_shm_is_refused(session_id):
    with pytest.raises(ConfigurationError, match="larger than /dev/shm"):
        LocalObjectStore(session_id, 1 << 60)


def test_bad_session_id_is_refused():
    with pytest.raises(InvalidArgumentError, match="session ids are 8 to 64 lowercase hex digits"):
        LocalObjectStore("my session", 1024)


# ------------------------------------------------------- crash cleanup


def test_owner_check_tells_a_reused_pid_from_the_owner():
    me = shm.current_owner()
    assert shm.owner_is_alive(me)
    assert not shm.owner_is_alive(SessionOwner(me.pid, me.create_time - 100))


def test_store_takes_over_a_session_whose_owner_died(session_id):
    tag = session_id[:8]
    with open(os.path.join(SHM_DIR, f"lr-{tag}.owner"), "w") as f:
        f.write("999999999 1.0\n")  # a pid that cannot exist
    stale = shm.allocate_object_file(session_id, oid(1), 100)
    with LocalObjectStore(session_id, 1024 * 1024):
        assert not os.path.exists(stale)
        assert shm.read_owner(session_id).pid == os.getpid()


@pytest.mark.timeout(120)
def test_files_of_a_killed_process_are_removed_by_cleanup_stale_sessions(store):
    dead_session = new_session_id()
    proc = run_child("""
        import sys, time
        import numpy as np
        from lineagerun.objects.store import LocalObjectStore
        store = LocalObjectStore(sys.argv[1], 16 * 1024 * 1024)
        store.put(b"a" * 28, np.arange(100_000))
        store.put(b"b" * 28, {"x": 1})
        store.create(b"c" * 28, 4096, "worker-1")  # killed while writing this one
        print("ready", flush=True)
        time.sleep(600)
    """, dead_session)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        assert len(session_file_names(dead_session)) == 4
        store.put(oid(1), np.arange(10))  # a live session, which must survive
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=CHILD_TIMEOUT_S)
        assert len(session_file_names(dead_session)) == 4  # a crash leaves them behind
        cleaned = cleanup_stale_sessions()
        assert dead_session[:8] in cleaned and store.session_id[:8] not in cleaned
        assert session_file_names(dead_session) == []
        assert store.contains(oid(1)) and os.path.exists(shm.object_path(store.session_id, oid(1)))
    finally:
        stop_child(proc)
        cleanup_session(dead_session)


def test_cleanup_stale_sessions_consults_the_alive_check(session_id):
    with LocalObjectStore(session_id, 1024 * 1024) as store:
        store.put(oid(1), 1)
        seen = []
        cleanup_stale_sessions(lambda owner: seen.append(owner) or True)
        assert SessionOwner(os.getpid(), shm.current_owner().create_time) in seen
        assert store.contains(oid(1)) and len(session_file_names(session_id)) == 2


def test_write_reserved_fills_a_file_made_by_create(store):
    serialized = serialize([1, np.ones(3)])
    path = store.create(oid(1), serialized.total_bytes, "w")
    write_reserved(path, serialized)
    store.seal(oid(1))
    result = store.get(oid(1))
    assert result[0] == 1 and np.array_equal(result[1], np.ones(3))


def test_write_reserved_refuses_an_object_of_another_size(store):
    path = store.create(oid(1), 10_000, "w")
    with pytest.raises(InvalidArgumentError, match="reserved for 10000 bytes"):
        write_reserved(path, serialize(1))
    store.abort(oid(1))


@pytest.mark.timeout(60)
def test_concurrent_puts_gets_and_evictions_keep_files_and_bookkeeping_in_step(session_id):
    import threading

    store, _size = small_store(session_id, 4)
    errors = []

    def worker(first: int):
        try:
            for i in range(first, first + 60):
                store.put(oid(i), np.full(4096, i % 251, dtype=np.uint8))
                for j in (i, i - 1, i - 7):
                    try:
                        value = store.get(oid(j))
                        assert int(value[0]) == j % 251
                    except NotFoundError:
                        pass  # evicted meanwhile: expected in a store of 4 objects
        except BaseException as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    with store:
        threads = [threading.Thread(target=worker, args=(k * 1000 + 10,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        store._core.check_invariants()
        stored = {f"lr-{session_id[:8]}-{object_id.hex()}" for object_id in store._core.object_ids()}
        assert set(session_file_names(session_id)) == stored | {f"lr-{session_id[:8]}.owner"}
        assert store.stats().evicted_count_total == 4 * 60 - len(stored)


def test_arrow_table_from_the_store_points_into_the_mapping(store):
    import pyarrow as pa

    table = pa.table({"x": np.arange(10_000, dtype=np.int64), "s": [str(i) for i in range(10_000)]})
    store.put(oid(1), table)
    result = store.get(oid(1))
    assert result.equals(table)
    data_address = result.column("x").chunk(0).buffers()[1].address
    with open("/proc/self/maps") as maps:
        regions = [line.split()[0] for line in maps if shm.object_path(store.session_id, oid(1)) in line]
    spans = [tuple(int(bound, 16) for bound in region.split("-")) for region in regions]
    assert any(start <= data_address < end for start, end in spans)


def test_a_value_read_from_the_store_can_be_stored_again(store):
    store.put(oid(1), {"a": np.arange(100)})
    store.put(oid(2), store.get(oid(1)))
    np.testing.assert_array_equal(store.get(oid(2))["a"], np.arange(100))


def test_a_retry_can_write_an_object_whose_earlier_writer_died_mid_write(session_id):
    # The killed attempt left its unsealed file behind; the retry replaces it.
    first = shm.allocate_object_file(session_id, oid(7), 100)
    try:
        again = shm.allocate_object_file(session_id, oid(7), 200)
        assert again == first and os.path.getsize(again) == 200
    finally:
        os.unlink(first)
