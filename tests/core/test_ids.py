import pickle
import subprocess
import sys

import pytest

from lineagerun.core.ids import (
    OBJECT_INDEX_MAX,
    ActorID,
    FunctionID,
    JobID,
    NodeID,
    ObjectID,
    TaskID,
    WorkerID,
)
from lineagerun.exceptions import InvalidArgumentError

JOB = JobID.from_int(7)
DRIVER = TaskID.for_driver(JOB)


def test_sizes_follow_ray_layout():
    assert (JobID.SIZE, ActorID.SIZE, TaskID.SIZE, ObjectID.SIZE) == (4, 16, 24, 28)
    assert NodeID.SIZE == WorkerID.SIZE == 28


@pytest.mark.timeout(60)
def test_same_inputs_give_same_ids_in_another_process():
    code = (
        "from lineagerun.core.ids import *\n"
        "j = JobID.from_int(7); d = TaskID.for_driver(j)\n"
        "t = TaskID.for_normal_task(j, d, 3); a = ActorID.of(j, d, 4)\n"
        "print(t.hex(), a.hex(), TaskID.for_actor_task(j, t, 9, a).hex(), ObjectID.from_index(t, 2).hex())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         start_new_session=True).stdout.split()
    task = TaskID.for_normal_task(JOB, DRIVER, 3)
    actor = ActorID.of(JOB, DRIVER, 4)
    assert out == [task.hex(), actor.hex(), TaskID.for_actor_task(JOB, task, 9, actor).hex(),
                   ObjectID.from_index(task, 2).hex()]


def test_derived_ids_are_pinned():
    # Changing the derivation breaks replay of lineage already stored: these
    # values may only change together with the personalisation string.
    job = JobID.from_int(1)
    driver = TaskID.for_driver(job)
    assert TaskID.for_normal_task(job, driver, 0).hex() == "ba81b61823fe8629" + "ff" * 12 + "00000001"
    assert ActorID.of(job, driver, 0).hex() == "cc7fbd2c44876be36d90350100000001"


def test_submission_index_parent_and_job_each_change_the_task_id():
    base = TaskID.for_normal_task(JOB, DRIVER, 0)
    other_job = JobID.from_int(8)
    variants = {
        TaskID.for_normal_task(JOB, DRIVER, 1),
        TaskID.for_normal_task(JOB, base, 0),
        TaskID.for_normal_task(other_job, TaskID.for_driver(other_job), 0),
    }
    assert base not in variants and len(variants) == 3


def test_many_submissions_give_distinct_ids():
    ids = {TaskID.for_normal_task(JOB, DRIVER, i) for i in range(20_000)}
    assert len(ids) == 20_000


def test_normal_and_actor_task_of_same_submission_differ():
    actor = ActorID.of(JOB, DRIVER, 0)
    assert TaskID.for_actor_task(JOB, DRIVER, 1, actor) != TaskID.for_normal_task(JOB, DRIVER, 1)


def test_task_id_embeds_actor_and_job():
    actor = ActorID.of(JOB, DRIVER, 0)
    call = TaskID.for_actor_task(JOB, DRIVER, 1, actor)
    assert call.actor_id() == actor and call.job_id() == JOB and actor.job_id() == JOB
    assert TaskID.for_normal_task(JOB, DRIVER, 1).actor_id() == ActorID.nil_from_job(JOB)


def test_actor_creation_and_driver_tasks_are_recognised():
    actor = ActorID.of(JOB, DRIVER, 0)
    creation = TaskID.for_actor_creation(actor)
    assert creation.is_for_actor_creation() and not creation.is_for_driver()
    assert DRIVER.is_for_driver() and not DRIVER.is_for_actor_creation()
    assert creation.actor_id() == actor
    assert not TaskID.for_normal_task(JOB, DRIVER, 0).is_for_actor_creation()


def test_object_ids_of_returns_and_puts():
    task = TaskID.for_normal_task(JOB, DRIVER, 0)
    ret, put = ObjectID.from_index(task, 1), ObjectID.for_put(task, 1)
    assert ret != put
    assert ret.task_id() == task == put.task_id()
    assert (ret.is_put(), ret.index()) == (False, 1)
    assert (put.is_put(), put.index()) == (True, 1)


def test_object_index_bounds():
    task = TaskID.for_normal_task(JOB, DRIVER, 0)
    assert ObjectID.from_index(task, OBJECT_INDEX_MAX).index() == OBJECT_INDEX_MAX
    for bad in (0, -1, OBJECT_INDEX_MAX + 1, True, 1.0):
        with pytest.raises(InvalidArgumentError, match="return_index"):
            ObjectID.from_index(task, bad)
        with pytest.raises(InvalidArgumentError, match="put_index"):
            ObjectID.for_put(task, bad)


def test_return_ids_sort_by_index():
    task = TaskID.for_normal_task(JOB, DRIVER, 0)
    ids = [ObjectID.from_index(task, i) for i in (300, 2, 1, 256)]
    assert [o.index() for o in sorted(ids)] == [1, 2, 256, 300]


@pytest.mark.parametrize("cls", [JobID, ActorID, TaskID, ObjectID, NodeID, WorkerID, FunctionID])
def test_hex_round_trip(cls):
    value = cls(bytes(range(cls.SIZE)))
    assert cls.from_hex(value.hex()) == value
    assert cls.from_binary(value.binary()) == value
    assert pickle.loads(pickle.dumps(value)) == value


@pytest.mark.parametrize("bad, match", [
    ("abc", "hex digits, got 3"),
    ("zz" * 24, "not hexadecimal"),
    ("00 " * 16, "not hexadecimal"),
    (b"00" * 24, "takes a str"),
    ("00" * 25, "hex digits, got 50"),
])
def test_bad_hex_is_refused_clearly(bad, match):
    with pytest.raises(InvalidArgumentError, match=match):
        TaskID.from_hex(bad)


def test_wrong_binary_size_is_refused():
    with pytest.raises(InvalidArgumentError, match="exactly 28 bytes, got 3"):
        NodeID(b"abc")
    with pytest.raises(InvalidArgumentError, match="from_hex"):
        NodeID("ab" * 28)


def test_derivations_refuse_wrong_types():
    with pytest.raises(InvalidArgumentError, match="parent_task_id must be a TaskID"):
        TaskID.for_normal_task(JOB, JOB, 0)
    with pytest.raises(InvalidArgumentError, match="parent_submission_index"):
        TaskID.for_normal_task(JOB, DRIVER, -1)


def test_nil_ids():
    assert TaskID.nil().is_nil() and not DRIVER.is_nil()
    assert TaskID.nil().hex() == "ff" * 24
    assert repr(ObjectID.nil()) == "ObjectID.nil()"


def test_ids_of_different_types_are_never_equal():
    raw = bytes(28)
    assert NodeID(raw) != WorkerID(raw)
    assert len({NodeID(raw), WorkerID(raw)}) == 2
    with pytest.raises(TypeError):
        _ = NodeID(raw) < WorkerID(raw)


def test_ids_are_immutable_and_ordered():
    a, b = NodeID(bytes(28)), NodeID(b"\x01" * 28)
    assert a < b and sorted([b, a]) == [a, b]
    with pytest.raises(AttributeError):
        a._binary = b"x"


def test_repr_is_compact():
    task = TaskID.for_normal_task(JOB, DRIVER, 0)
    assert len(repr(task)) < 20
    assert repr(ObjectID.for_put(task, 3)).endswith(":put3)")
    assert repr(JOB) == "JobID(00000007)"


def test_job_id_from_int_is_big_endian():
    assert JobID.from_int(1).binary() == b"\x00\x00\x00\x01"
    assert JobID.from_int(258).to_int() == 258
    with pytest.raises(InvalidArgumentError):
        JobID.from_int(2**32 - 1)  # would be the nil job


def test_driver_worker_id_derives_from_job():
    assert WorkerID.for_driver(JOB).binary()[:4] == JOB.binary()


def test_function_id_is_a_content_hash():
    assert FunctionID.for_body(b"abc") == FunctionID.for_body(b"abc")
    assert FunctionID.for_body(b"abc") != FunctionID.for_body(b"abd")
