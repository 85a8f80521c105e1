"""Remote functions, objects and errors against a real embedded cluster."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import lineagerun
from lineagerun import exceptions

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("cluster")]


@lineagerun.remote
def echo(value):
    return value


@lineagerun.remote
def add(a, b=0):
    return a + b


@lineagerun.remote
def fail_with_value_error(message):
    raise ValueError(message)


@lineagerun.remote(num_returns=3)
def three(value):
    return value, value + 1, value + 2


@lineagerun.remote
def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def test_task_round_trip():
    assert lineagerun.get(add.remote(1, b=2)) == 3


def test_get_of_a_list_keeps_order():
    refs = [echo.remote(i) for i in range(20)]
    assert lineagerun.get(refs) == list(range(20))


def test_num_returns_gives_one_ref_per_value():
    refs = three.remote(10)
    assert len(refs) == 3
    assert lineagerun.get(refs) == [10, 11, 12]


def test_user_exception_is_catchable_as_its_own_class():
    with pytest.raises(ValueError) as info:
        lineagerun.get(fail_with_value_error.remote("boom"))
    assert isinstance(info.value, exceptions.TaskError)
    assert "boom" in str(info.value)


def test_remote_traceback_names_the_remote_function():
    with pytest.raises(exceptions.TaskError) as info:
        lineagerun.get(fail_with_value_error.remote("where"))
    assert "fail_with_value_error" in info.value.traceback_str
    assert "ValueError: where" in info.value.traceback_str


def test_error_propagates_through_a_dependent_task():
    with pytest.raises(ValueError):
        lineagerun.get(echo.remote(fail_with_value_error.remote("upstream")))


def test_get_timeout_raises_get_timeout_error():
    ref = sleep_then.remote(2, "late")
    with pytest.raises(exceptions.GetTimeoutError):
        lineagerun.get(ref, timeout=0.1)
    assert lineagerun.get(ref, timeout=30) == "late"


def test_put_and_get():
    ref = lineagerun.put({"a": [1, 2, 3]})
    assert lineagerun.get(ref) == {"a": [1, 2, 3]}


def test_top_level_ref_argument_is_resolved_to_its_value():
    assert lineagerun.get(add.remote(lineagerun.put(5), b=echo.remote(6))) == 11


@lineagerun.remote
def kinds(container):
    return [type(item).__name__ for item in container]


def test_refs_inside_containers_stay_refs():
    inner = lineagerun.put(1)
    assert lineagerun.get(kinds.remote([inner, 2])) == ["ObjectRef", "int"]


@lineagerun.remote
def get_inside(container):
    return lineagerun.get(container[0]) + 1


def test_nested_ref_can_be_fetched_inside_a_task():
    assert lineagerun.get(get_inside.remote([echo.remote(41)])) == 42


@lineagerun.remote
def fan_out(n):
    return sum(lineagerun.get([echo.remote(i) for i in range(n)]))


def test_nested_tasks():
    assert lineagerun.get(fan_out.remote(10)) == 45


@lineagerun.remote
def return_ref():
    return echo.remote("inner value")


def test_ref_returned_from_a_task():
    inner = lineagerun.get(return_ref.remote())
    assert isinstance(inner, lineagerun.ObjectRef)
    assert lineagerun.get(inner) == "inner value"


def test_object_ref_hex_from_hex_key_and_repr():
    ref = lineagerun.put("by id")
    same = lineagerun.ObjectRef.from_hex(ref.hex())
    assert same == ref and {ref: 1}[same] == 1
    assert ref.hex() in repr(ref)
    assert lineagerun.get(same) == "by id"


def test_wait_returns_ready_and_not_ready_in_input_order():
    slow = sleep_then.remote(3, "slow")
    fast = [echo.remote(i) for i in range(3)]
    refs = [slow] + fast
    ready, not_ready = lineagerun.wait(refs, num_returns=3, timeout=20)
    assert ready == fast
    assert not_ready == [slow]


def test_wait_timeout_returns_what_is_ready():
    slow = sleep_then.remote(3, "slow")
    ready, not_ready = lineagerun.wait([slow], num_returns=1, timeout=0.1)
    assert ready == [] and not_ready == [slow]


def test_large_array_is_zero_copy_and_read_only():
    array = np.arange(4_000_000, dtype=np.int64)  # 32 MB: in shared memory
    value = lineagerun.get(lineagerun.put(array))
    assert np.array_equal(value, array)
    assert not value.flags.writeable
    with pytest.raises(ValueError):
        value[0] = 1
    assert not value.flags.owndata  # a view of the store's mapping, not a copy


def test_large_array_returned_by_a_task_is_read_only():
    value = lineagerun.get(echo.remote(np.ones(1_000_000)))
    assert value.sum() == 1_000_000 and not value.flags.writeable


@lineagerun.remote
def context_ids():
    ctx = lineagerun.get_runtime_context()
    return ctx.get_task_id(), ctx.get_actor_id(), ctx.get_node_id(), ctx.get_job_id()


def test_runtime_context_inside_a_task():
    ref = context_ids.remote()
    task_id, actor_id, node_id, job_id = lineagerun.get(ref)
    assert task_id == ref.task_id().hex()
    assert actor_id is None
    assert node_id == lineagerun.get_runtime_context().get_node_id()
    assert job_id == lineagerun.get_runtime_context().get_job_id()


def test_runtime_context_of_the_driver():
    ctx = lineagerun.get_runtime_context()
    assert ctx.get_task_id() is None and ctx.get_actor_id() is None
    assert len(ctx.get_node_id()) == 56 and len(ctx.get_job_id()) == 8


def test_cancel_running_task_raises_task_cancelled_error():
    ref = sleep_then.remote(30, "never")
    time.sleep(1.0)
    lineagerun.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        lineagerun.get(ref, timeout=20)


@lineagerun.remote
def spin_forever():
    while True:
        pass


def test_cancel_interrupts_a_busy_loop():
    ref = spin_forever.remote()
    time.sleep(1.0)
    lineagerun.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        lineagerun.get(ref, timeout=20)


def test_force_cancel_kills_the_worker():
    ref = spin_forever.remote()
    time.sleep(1.0)
    lineagerun.cancel(ref, force=True)
    with pytest.raises(exceptions.TaskCancelledError):
        lineagerun.get(ref, timeout=20)
    assert lineagerun.get(echo.remote("still serving"), timeout=20) == "still serving"


@lineagerun.remote(max_retries=2)
def crash_once(marker_path):
    if not os.path.exists(marker_path):
        open(marker_path, "w").close()
        os._exit(1)
    return "survived"


def test_worker_crash_is_retried(tmp_path):
    assert lineagerun.get(crash_once.remote(str(tmp_path / "crashed")), timeout=30) == "survived"


@lineagerun.remote(max_retries=0)
def always_crash():
    os._exit(1)


def test_worker_crash_without_retries_raises_worker_crashed_error():
    with pytest.raises(exceptions.WorkerCrashedError):
        lineagerun.get(always_crash.remote(), timeout=30)


def test_nodes_and_resources():
    nodes = lineagerun.nodes()
    assert len(nodes) == 1 and nodes[0]["Alive"]
    assert nodes[0]["NodeID"] == lineagerun.get_runtime_context().get_node_id()
    assert lineagerun.cluster_resources()["CPU"] == 4
    assert 0 <= lineagerun.available_resources().get("CPU", 0) <= 4
    assert lineagerun.is_initialized()


# ------------------------------------------------------------- bad input


def test_calling_a_remote_function_directly_is_a_type_error():
    with pytest.raises(TypeError, match=r"echo.remote"):
        echo(1)


def test_get_of_a_non_ref_is_a_clear_error():
    with pytest.raises(exceptions.InvalidArgumentError, match="ObjectRef"):
        lineagerun.get(42)
    with pytest.raises(exceptions.InvalidArgumentError, match="item 1"):
        lineagerun.get([lineagerun.put(1), "x"])


def test_unknown_option_is_rejected():
    with pytest.raises(exceptions.InvalidArgumentError, match="num_cpu"):
        echo.options(num_cpu=1)
    with pytest.raises(exceptions.InvalidArgumentError):
        lineagerun.remote(max_retries="many")(lambda: None)


def test_non_serialisable_argument_fails_at_the_call_site():
    with pytest.raises(exceptions.SerializationError, match="lock"):
        echo.remote(threading.Lock())


@lineagerun.remote(num_cpus=2)
def assigned_resources():
    return lineagerun.get_runtime_context().get_assigned_resources()


def test_get_assigned_resources_of_a_task_and_the_driver():
    assert lineagerun.get(assigned_resources.remote(), timeout=60) == {"CPU": 2.0}
    assert lineagerun.get_runtime_context().get_assigned_resources() == {}


@lineagerun.remote(max_calls=2, max_retries=0)  # a task lost with a retiring worker would fail
def worker_pid():
    return os.getpid()


def test_max_calls_retires_the_worker_after_that_many_calls():
    pids = [lineagerun.get(worker_pid.remote(), timeout=60) for _ in range(6)]
    # Each worker ran the function at most twice, then a fresh one took over.
    assert all(pids.count(pid) <= 2 for pid in pids)
    assert len(set(pids)) >= 3
    many = lineagerun.get([worker_pid.remote() for _ in range(20)], timeout=120)  # queued behind retiring ones too
    assert len(many) == 20 and all(many.count(pid) <= 2 for pid in many)


def test_max_calls_must_be_a_count():
    with pytest.raises(lineagerun.exceptions.InvalidArgumentError, match="max_calls"):
        worker_pid.options(max_calls=-1)
