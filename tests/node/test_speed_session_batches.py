"""Session batches (node.proto ClientMessages / NodeMessages): a client's
batch is handled as its messages one by one, and the node manager batches
what is queued for a client only if its Register said accepts_batches."""

from __future__ import annotations

import os
import queue
import time

import pytest

from lineagerun.core.ids import ObjectID
from lineagerun.rpc import node_pb2
from lineagerun.worker.core_worker import CoreWorker

pytestmark = pytest.mark.timeout(60)

GETS = 6


def _register(session, accepts_batches: bool) -> None:
    session.send(register=node_pb2.Register(kind=node_pb2.Register.DRIVER, pid=os.getpid(),
                                            accepts_batches=accepts_batches))
    session.registered = session.expect("registered")
    from lineagerun.core.ids import JobID, TaskID

    session.job = JobID(session.registered.job_id)
    session.driver_task = TaskID.for_driver(session.job)


def _puts_then_gets_in_one_batch(session) -> list[ObjectID]:
    """One ClientMessages: GETS puts, then a get of each (answered at once)."""
    ids = [ObjectID.for_put(session.driver_task, i) for i in range(1, GETS + 1)]
    batch = node_pb2.ClientMessages()
    for i, oid in enumerate(ids):
        batch.messages.add(put_object=node_pb2.PutObject(object_id=oid.binary(), payload=node_pb2.ObjectPayload(
            inline=b"v%d" % i, size_bytes=2)))
    for i, oid in enumerate(ids):
        batch.messages.add(get_objects=node_pb2.GetObjects(request_id=100 + i, object_ids=[oid.binary()],
                                                           timeout_ms=5_000))
    session.send(batch=batch)
    return ids


def _drain(session, want: int, timeout_s: float = 15.0) -> list[node_pb2.NodeMessage]:
    """Stream messages until ``want`` objects replies were seen (batches unpacked)."""
    messages, replies = [], 0
    deadline = time.monotonic() + timeout_s
    while replies < want:
        try:
            message = session.inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"only {replies} of {want} replies within {timeout_s} s") from None
        assert message is not None, f"the stream ended: {session.error}"
        messages.append(message)
        inner = message.batch.messages if message.WhichOneof("kind") == "batch" else [message]
        replies += sum(1 for m in inner if m.WhichOneof("kind") == "objects_reply")
    return messages


def test_a_client_batch_is_handled_in_order_and_answers_come_batched(shared_node, session_factory):
    session = session_factory(shared_node)
    _register(session, accepts_batches=True)
    _puts_then_gets_in_one_batch(session)
    messages = _drain(session, GETS)
    batches = [m for m in messages if m.WhichOneof("kind") == "batch"]
    assert batches, f"six replies queued in one turn should go as a batch: {[m.WhichOneof('kind') for m in messages]}"
    replies = [m for msg in messages
               for m in (msg.batch.messages if msg.WhichOneof("kind") == "batch" else [msg])]
    assert [r.objects_reply.request_id for r in replies] == [100 + i for i in range(GETS)]
    assert [r.objects_reply.objects[0].payload.inline for r in replies] == [b"v%d" % i for i in range(GETS)]


def test_a_client_that_did_not_ask_gets_no_batches(shared_node, session_factory):
    session = session_factory(shared_node)
    _register(session, accepts_batches=False)
    _puts_then_gets_in_one_batch(session)  # sending a batch is always allowed
    messages = _drain(session, GETS)
    assert [m.WhichOneof("kind") for m in messages] == ["objects_reply"] * GETS


def test_core_worker_merges_consecutive_task_finished_into_one_batch():
    core = CoreWorker("unix:/nonexistent", None, kind=node_pb2.Register.WORKER, worker_id=_worker_id())
    for i in range(3):
        core._send(node_pb2.ClientMessage(task_finished=node_pb2.TaskFinished(task_id=b"t%d" % i)))
    core._send(node_pb2.ClientMessage(release_objects=node_pb2.ReleaseObjects(object_ids=[b"x"])))
    core._send(node_pb2.ClientMessage(put_object=node_pb2.PutObject(object_id=b"p")))
    first = core._next_message()
    assert first.WhichOneof("kind") == "batch"
    assert [m.WhichOneof("kind") for m in first.batch.messages] == ["task_finished"] * 3 + ["release_objects"]
    assert [m.task_finished.task_id for m in first.batch.messages[:3]] == [b"t0", b"t1", b"t2"]
    assert core._next_message().WhichOneof("kind") == "put_object"  # values go alone


def test_core_worker_unpacks_node_batches_in_order():
    seen = []
    core = CoreWorker("unix:/nonexistent", None, kind=node_pb2.Register.WORKER, worker_id=_worker_id(),
                      on_node_message=lambda m: seen.append(m.execute_task.attempt_number))
    batch = node_pb2.NodeMessages()
    for i in range(4):
        batch.messages.add(execute_task=node_pb2.ExecuteTask(attempt_number=i))
    core._dispatch(node_pb2.NodeMessage(batch=batch))
    assert seen == [0, 1, 2, 3]


def _worker_id():
    from lineagerun.core.ids import WorkerID

    return WorkerID(os.urandom(WorkerID.SIZE))
