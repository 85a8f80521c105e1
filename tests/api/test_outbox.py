"""worker/outbox.py: how queued client messages are packed into stream
messages, without processes."""

from __future__ import annotations

from collections import deque

from lineagerun.rpc import lineage_pb2, node_pb2
from lineagerun.worker import outbox as outbox_module
from lineagerun.worker.outbox import next_stream_message


def _submit(n: int) -> node_pb2.ClientMessage:
    return node_pb2.ClientMessage(submit_tasks=node_pb2.SubmitTasks(
        specs=[lineage_pb2.TaskSpec(task_id=b"%d" % i) for i in range(n)]))


def _kinds(message: node_pb2.ClientMessage) -> list[str]:
    if message.WhichOneof("kind") == "batch":
        return [m.WhichOneof("kind") for m in message.batch.messages]
    return [message.WhichOneof("kind")]


def test_a_lone_message_goes_as_it_is():
    queued = deque([_submit(1)])
    message = next_stream_message(queued)
    assert message.WhichOneof("kind") == "submit_tasks" and not queued


def test_submissions_merge_and_what_follows_rides_along_up_to_a_value():
    get = node_pb2.ClientMessage(get_objects=node_pb2.GetObjects(request_id=1))
    put = node_pb2.ClientMessage(put_object=node_pb2.PutObject(object_id=b"p"))
    queued = deque([_submit(2), _submit(3), get, put, get])
    first = next_stream_message(queued)
    assert _kinds(first) == ["submit_tasks", "get_objects"]
    assert len(first.batch.messages[0].submit_tasks.specs) == 5
    assert _kinds(next_stream_message(queued)) == ["put_object"]
    assert _kinds(next_stream_message(queued)) == ["get_objects"] and not queued


def test_a_stream_message_carries_one_bounded_submission(monkeypatch):
    """Thousands of queued submissions never make one huge message: one
    SubmitTasks of at most SUBMIT_BATCH_MAX specs per stream message."""
    monkeypatch.setattr(outbox_module, "SUBMIT_BATCH_MAX", 4)
    finished = node_pb2.ClientMessage(task_finished=node_pb2.TaskFinished(task_id=b"t"))
    queued = deque([_submit(1) for _ in range(6)] + [finished, _submit(1)])
    first = next_stream_message(queued)
    assert first.WhichOneof("kind") == "submit_tasks" and len(first.submit_tasks.specs) == 4
    second = next_stream_message(queued)
    assert _kinds(second) == ["submit_tasks", "task_finished"]
    assert len(second.batch.messages[0].submit_tasks.specs) == 2
    assert _kinds(next_stream_message(queued)) == ["submit_tasks"] and not queued
