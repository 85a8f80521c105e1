import random

import pytest

from lineagerun.core import keys
from lineagerun.core.ids import ActorID, FunctionID, JobID, NodeID, ObjectID, TaskID
from lineagerun.exceptions import InvalidArgumentError

JOB = JobID.from_int(3)
DRIVER = TaskID.for_driver(JOB)
TASK = TaskID.for_normal_task(JOB, DRIVER, 0)
ACTOR = ActorID.of(JOB, DRIVER, 1)
NODE = NodeID(bytes(range(28)))


def test_no_prefix_is_a_prefix_of_another():
    for a in keys.ALL_PREFIXES:
        for b in keys.ALL_PREFIXES:
            assert a == b or not b.startswith(a)


@pytest.mark.parametrize("key, parsed", [
    (keys.function_key(FunctionID.for_body(b"f")), keys.FunctionKey(FunctionID.for_body(b"f"))),
    (keys.task_key(TASK), keys.TaskKey(TASK)),
    (keys.attempt_key(TASK, 5), keys.AttemptKey(TASK, 5)),
    (keys.object_key(ObjectID.for_put(TASK, 2)), keys.ObjectKey(ObjectID.for_put(TASK, 2))),
    (keys.actor_key(ACTOR), keys.ActorKey(ACTOR)),
    (keys.actor_call_key(ACTOR, 2**40), keys.ActorCallKey(ACTOR, 2**40)),
    (keys.node_key(NODE), keys.NodeKey(NODE)),
    (keys.event_key(1_700_000_000_000, b"w1:7"), keys.EventKey(1_700_000_000_000, b"w1:7")),
    (keys.name_key("ns", "counter"), keys.NameKey("ns", "counter")),
    (keys.name_key("", "ü"), keys.NameKey("", "ü")),
])
def test_every_key_parses_back(key, parsed):
    assert keys.parse_key(key) == parsed


def test_actor_calls_sort_by_sequence_number_under_the_actor():
    seqs = [0, 1, 2, 255, 256, 65536, 2**63]
    shuffled = seqs[:]
    random.Random(1).shuffle(shuffled)
    built = sorted(keys.actor_call_key(ACTOR, s) for s in shuffled)
    assert [keys.parse_key(k).sequence_number for k in built] == seqs
    assert all(k.startswith(keys.actor_calls_prefix(ACTOR)) for k in built)
    other = ActorID.of(JOB, DRIVER, 2)
    assert not keys.actor_call_key(other, 1).startswith(keys.actor_calls_prefix(ACTOR))


def test_attempts_sort_by_attempt_number_under_the_task():
    built = sorted(keys.attempt_key(TASK, n) for n in (10, 2, 300, 0))
    assert [keys.parse_key(k).attempt_number for k in built] == [0, 2, 10, 300]
    assert all(k.startswith(keys.attempts_prefix(TASK)) for k in built)


def test_events_sort_by_time():
    built = sorted(keys.event_key(t, b"e") for t in (1000, 5, 2**40, 999))
    assert [keys.parse_key(k).time_ms for k in built] == [5, 999, 1000, 2**40]
    assert keys.event_key_from(999) <= keys.event_key(999, b"\x00") < keys.event_key_from(1000)


def test_lineage_keys_share_the_job_prefix():
    prefix = keys.job_prefix(keys.TASK_PREFIX, JOB)
    assert keys.task_key(TASK).startswith(prefix)
    assert keys.task_key(TaskID.for_actor_creation(ACTOR)).startswith(prefix)
    assert keys.object_key(ObjectID.from_index(TASK, 1)).startswith(keys.job_prefix(keys.OBJECT_PREFIX, JOB))
    with pytest.raises(InvalidArgumentError, match="not a job-scoped table"):
        keys.job_prefix(keys.NODE_PREFIX, JOB)


def test_named_actors_list_by_namespace():
    assert keys.name_key("ns", "a").startswith(keys.namespace_prefix("ns"))
    assert not keys.name_key("ns2", "a").startswith(keys.namespace_prefix("ns"))


@pytest.mark.parametrize("bad", [
    b"nope/123",
    b"task/" + b"x" * 5,
    b"call/" + b"y" * 10,
    b"event/" + b"\x00" * 8,  # no event id
    b"name/ns-without-separator",
    b"name/ns\x00",
    "task/abc",
])
def test_malformed_keys_are_refused(bad):
    with pytest.raises(InvalidArgumentError):
        keys.parse_key(bad)


def test_job_part_must_match_the_id():
    key = keys.task_key(TASK)
    forged = keys.TASK_PREFIX + JobID.from_int(4).binary() + key[len(keys.TASK_PREFIX) + 4:]
    with pytest.raises(InvalidArgumentError, match="job part does not match"):
        keys.parse_key(forged)


@pytest.mark.parametrize("call", [
    lambda: keys.attempt_key(TASK, -1),
    lambda: keys.attempt_key(TASK, 2**32),
    lambda: keys.actor_call_key(ACTOR, 2**64),
    lambda: keys.event_key(-5, b"e"),
    lambda: keys.event_key(5, b""),
    lambda: keys.event_key(5, b"e" * 65),
    lambda: keys.name_key("a\x00b", "n"),
    lambda: keys.name_key("ns", ""),
    lambda: keys.task_key(ACTOR),
])
def test_builders_refuse_bad_input(call):
    with pytest.raises(InvalidArgumentError):
        call()
