"""The worker's executor on its own: ExecuteTask in, TaskFinished out."""

from __future__ import annotations

import cloudpickle
import numpy as np
import pytest

from lineagerun import exceptions
from lineagerun.core.ids import FunctionID, JobID, ObjectID, TaskID
from lineagerun.objects import new_session_id, shm
from lineagerun.rpc import lineage_pb2, node_pb2
from lineagerun.worker import payloads
from lineagerun.worker.executor import Executor

pytestmark = pytest.mark.timeout(30)

JOB = JobID.from_int(3)


class FakeCore:
    def __init__(self):
        self.store_session_id = new_session_id()
        self.inline_max_bytes = 1024
        self.node_id_hex = "ab" * 28
        self.worker_id = None
        self.exported_bodies = {}
        self.sent = []

    def send(self, message):
        self.sent.append(message.task_finished)

    def fetch_function(self, function_id):
        return None


@pytest.fixture
def core():
    fake = FakeCore()
    yield fake
    shm.cleanup_session(fake.store_session_id)


def _execute(function, *args, num_returns=1, index=1) -> node_pb2.ExecuteTask:
    body = cloudpickle.dumps(function)
    function_id = FunctionID.for_body(body).binary()
    task_id = TaskID.for_normal_task(JOB, TaskID.for_driver(JOB), index)
    spec = lineage_pb2.TaskSpec(task_id=task_id.binary(), job_id=JOB.binary(), function_id=function_id,
                                num_returns=num_returns)
    for value in args:
        spec.args.add(value=payloads.serialize_value(value).to_bytes())
    execute = node_pb2.ExecuteTask(spec=spec, function=lineage_pb2.FunctionRecord(
        function_id=function_id, body=body, name=function.__name__))
    for _ in args:
        execute.args.add()  # empty: the worker reads the inline value from the spec
    return execute


def _value(result: node_pb2.ObjectResult):
    return payloads.from_payload(result.payload)


def add(a, b):
    return a + b


def test_small_result_comes_back_inline(core):
    Executor(core)._run(_execute(add, 2, 3))
    finished = core.sent[0]
    assert finished.returns[0].payload.WhichOneof("kind") == "inline"
    assert _value(finished.returns[0]) == 5
    assert finished.returns[0].object_id == ObjectID.from_index(TaskID(finished.task_id), 1).binary()


def big():
    return np.arange(100_000)


def test_large_result_is_written_to_shared_memory(core):
    Executor(core)._run(_execute(big))
    payload = core.sent[0].returns[0].payload
    assert payload.WhichOneof("kind") == "shm_name"
    value = payloads.from_payload(payload)
    assert value[-1] == 99_999 and not value.flags.writeable


def raises():
    raise ValueError("bad value")


def test_exception_becomes_a_task_error_for_every_return(core):
    Executor(core)._run(_execute(raises, num_returns=2))
    finished = core.sent[0]
    assert finished.application_error and finished.error_kind == "builtins.ValueError"
    assert len(finished.returns) == 2
    error = _value(finished.returns[0])
    assert finished.returns[0].payload.is_error
    assert isinstance(error, exceptions.TaskError) and isinstance(error, ValueError)
    assert "raises" in error.traceback_str and "bad value" in error.traceback_str


def pair():
    return 1, 2


def test_num_returns_unpacks_a_tuple(core):
    Executor(core)._run(_execute(pair, num_returns=2))
    assert [_value(r) for r in core.sent[0].returns] == [1, 2]


def test_wrong_number_of_returns_is_an_error(core):
    Executor(core)._run(_execute(pair, num_returns=3))
    error = _value(core.sent[0].returns[0])
    assert isinstance(error, exceptions.TaskError) and "num_returns=3" in str(error)


def test_error_argument_fails_the_task_with_that_error(core):
    execute = _execute(add, 1, 2)
    upstream = exceptions.TaskError("upstream", "Traceback: boom", ValueError("boom"))
    execute.args[0].payload.CopyFrom(payloads.error_payload(upstream))
    Executor(core)._run(execute)
    finished = core.sent[0]
    assert not finished.application_error
    error = _value(finished.returns[0])
    assert isinstance(error, ValueError) and error.function_name == "upstream"


def test_function_body_is_kept_when_an_argument_fails(core):
    executor = Executor(core)
    execute = _execute(add, 1, 2)
    execute.args[0].payload.CopyFrom(payloads.error_payload(exceptions.LineagerunError("x")))
    executor._run(execute)
    second = _execute(add, 1, 2, index=2)
    second.ClearField("function")  # the node manager sends a body once per worker
    executor._run(second)
    assert _value(core.sent[1].returns[0]) == 3
