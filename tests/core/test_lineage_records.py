"""Protobuf round trips of the control-plane records (lineage.proto)."""

import pytest

from lineagerun.core import keys
from lineagerun.core.ids import ActorID, FunctionID, JobID, NodeID, ObjectID, TaskID, WorkerID
from lineagerun.core.resources import ResourceSet
from lineagerun.rpc import lineage_pb2 as pb

JOB = JobID.from_int(9)
DRIVER = TaskID.for_driver(JOB)
TASK = TaskID.for_normal_task(JOB, DRIVER, 4)
ACTOR = ActorID.of(JOB, DRIVER, 5)
NODE = NodeID(b"\x11" * 28)
WORKER = WorkerID(b"\x22" * 28)


def round_trip(message):
    data = message.SerializeToString(deterministic=True)
    copy = type(message)()
    copy.ParseFromString(data)
    assert copy == message
    return copy


def test_function_record_keeps_the_body_opaque():
    body = b"\x80\x05not-unpickled-by-the-control-plane"
    record = round_trip(pb.FunctionRecord(function_id=FunctionID.for_body(body).binary(), name="f", module="m",
                                          body=body, job_id=JOB.binary()))
    assert record.body == body and FunctionID(record.function_id) == FunctionID.for_body(body)


def test_task_spec_of_a_normal_task():
    arg_ref = ObjectID.from_index(TaskID.for_normal_task(JOB, DRIVER, 1), 1)
    spec = pb.TaskSpec(
        task_id=TASK.binary(), job_id=JOB.binary(), parent_task_id=DRIVER.binary(), submission_index=4,
        function_id=FunctionID.for_body(b"f").binary(),
        args=[pb.TaskArg(value=b"inline"), pb.TaskArg(object_id=arg_ref.binary())],
        kwargs=[pb.KeywordArg(name="k", arg=pb.TaskArg(value=b"v", nested_object_ids=[arg_ref.binary()]))],
        num_returns=2, resources=ResourceSet({"CPU": 0.5, "gpu_x": 1}).units_dict(),
        options=pb.TaskOptions(max_retries=-1, retry_exception_names=["builtins.ValueError"],
                               scheduling_strategy=pb.SchedulingStrategy(
                                   node_affinity=pb.NodeAffinity(node_id=NODE.binary(), soft=True))),
        owner_worker_id=WORKER.binary(), submitted_ms=1_700_000_000_000,
    )
    copy = round_trip(spec)
    assert TaskID(copy.task_id) == TASK
    assert copy.args[0].WhichOneof("kind") == "value" and copy.args[1].WhichOneof("kind") == "object_id"
    assert ObjectID(copy.args[1].object_id) == arg_ref
    assert ResourceSet.from_units(dict(copy.resources)) == ResourceSet({"CPU": 0.5, "gpu_x": 1})
    assert copy.options.max_retries == -1
    assert copy.options.scheduling_strategy.WhichOneof("kind") == "node_affinity"


def test_task_spec_of_an_actor_call():
    call = TaskID.for_actor_task(JOB, DRIVER, 6, ACTOR)
    spec = round_trip(pb.TaskSpec(task_id=call.binary(), actor_id=ACTOR.binary(), method_name="incr",
                                  sequence_number=17, is_actor_task=True, num_returns=1))
    assert spec.is_actor_task and spec.sequence_number == 17 and ActorID(spec.actor_id) == ACTOR


def test_actor_creation_spec_carries_actor_options():
    spec = round_trip(pb.TaskSpec(task_id=TaskID.for_actor_creation(ACTOR).binary(), is_actor_creation=True,
                                  checkpoint_interval=10, max_restarts=-1, max_task_retries=2, max_concurrency=1))
    assert (spec.checkpoint_interval, spec.max_restarts) == (10, -1)


def test_task_attempt_records_reason_and_error():
    attempt = round_trip(pb.TaskAttempt(
        task_id=TASK.binary(), attempt_number=2, reason=pb.REPLAY, node_id=NODE.binary(),
        worker_id=WORKER.binary(), state=pb.FAILED, start_ms=1, end_ms=2,
        error=pb.ErrorInfo(kind="WorkerCrashedError", message="worker died", traceback="")))
    assert attempt.reason == pb.REPLAY and attempt.state == pb.FAILED
    assert pb.AttemptReason.Name(attempt.reason) == "REPLAY"


def test_object_record_with_locations_and_inline_value():
    oid = ObjectID.for_put(TASK, 1)
    record = round_trip(pb.ObjectRecord(object_id=oid.binary(), producing_task_id=TASK.binary(), size_bytes=3,
                                        is_put=True, locations=[NODE.binary()], inline_value=b"abc",
                                        has_inline_value=True))
    assert [NodeID(n) for n in record.locations] == [NODE] and record.is_put


def test_actor_record_with_checkpoint():
    record = round_trip(pb.ActorRecord(
        actor_id=ACTOR.binary(), creation_task_id=TaskID.for_actor_creation(ACTOR).binary(),
        state=pb.RESTARTING, node_id=NODE.binary(), name="counter", namespace="ns", lifetime=pb.DETACHED,
        max_restarts=-1, num_restarts=3, next_sequence_number=101, checkpoint_sequence_number=100,
        checkpoint_object_id=ObjectID.for_put(TASK, 9).binary(), checkpoint_interval=10))
    assert record.next_sequence_number == 101 and record.state == pb.RESTARTING


def test_actor_call_record():
    record = round_trip(pb.ActorCallRecord(actor_id=ACTOR.binary(), sequence_number=7,
                                           task_id=TaskID.for_actor_task(JOB, DRIVER, 7, ACTOR).binary(),
                                           method_name="incr", caller_worker_id=WORKER.binary()))
    assert keys.parse_key(keys.actor_call_key(ActorID(record.actor_id), record.sequence_number)) == \
        keys.ActorCallKey(ACTOR, 7)


def test_node_record():
    record = round_trip(pb.NodeRecord(node_id=NODE.binary(), address="127.0.0.1:1234", alive=True,
                                      resources_total=ResourceSet({"CPU": 4}).units_dict(), heartbeat_ms=5,
                                      incarnation=2))
    assert ResourceSet.from_units(dict(record.resources_total)) == ResourceSet({"CPU": 4})


def test_event_record():
    record = round_trip(pb.EventRecord(kind=pb.ACTOR_CALLS_REPLAYED, time_ms=10, event_id=b"e1",
                                       actor_id=ACTOR.binary(), detail="replayed 3 calls", duration_ms=120))
    assert pb.EventKind.Name(record.kind) == "ACTOR_CALLS_REPLAYED"


def test_unknown_fields_survive_a_round_trip():
    # A newer writer's extra fields must not be lost by an older reader that
    # rewrites the record (e.g. a CAS on an ActorRecord).
    newer = pb.NodeRecord(node_id=NODE.binary()).SerializeToString() + b"\xf8\x3f\x01"  # field 1023, varint 1
    older = pb.NodeRecord()
    older.ParseFromString(newer)
    assert older.SerializeToString().endswith(b"\xf8\x3f\x01")


@pytest.mark.parametrize("name", ["FunctionRecord", "TaskSpec", "TaskAttempt", "ObjectRecord", "ActorRecord",
                                  "ActorCallRecord", "NodeRecord", "EventRecord"])
def test_empty_records_parse(name):
    cls = getattr(pb, name)
    assert cls.FromString(b"") == cls()
