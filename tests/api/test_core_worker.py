"""CoreWorker against a fake node manager (an in-process gRPC servicer that
records what it receives): the wire behaviour of the client alone."""

from __future__ import annotations

import gc
import os
import queue
import threading
import time

import numpy as np
import pytest

from lineagerun.api import object_ref
from lineagerun.api.object_ref import ObjectRef
from lineagerun.core.ids import JobID, ObjectID, TaskID, WorkerID
from lineagerun.objects import new_session_id, shm
from lineagerun.rpc import lineage_pb2, node_pb2, node_pb2_grpc
from lineagerun.transport.channels import make_server
from lineagerun.worker.core_worker import CoreWorker

pytestmark = pytest.mark.timeout(30)

TOKEN = "t" * 64
JOB = JobID.from_int(7)
INLINE_MAX_BYTES = 1024


class FakeNode(node_pb2_grpc.NodeManagerServicer):
    def __init__(self, store_session_id: str):
        self.store_session_id = store_session_id
        self.received: queue.SimpleQueue = queue.SimpleQueue()
        self.stream_kinds: list[list[str]] = []  # per stream message: the kinds it carried

    def Session(self, request_iterator, context):
        first = next(request_iterator)
        self.received.put(first)
        yield node_pb2.NodeMessage(registered=node_pb2.Registered(
            node_id=b"\x01" * 28, job_id=JOB.binary(), store_session_id=self.store_session_id,
            inline_object_max_bytes=INLINE_MAX_BYTES))
        for stream_message in request_iterator:
            batched = stream_message.WhichOneof("kind") == "batch"
            ones = list(stream_message.batch.messages) if batched else [stream_message]
            self.stream_kinds.append([one.WhichOneof("kind") for one in ones])
            for message in ones:  # handled in order, as the node manager does
                self.received.put(message)
                if message.WhichOneof("kind") == "get_objects":
                    get = message.get_objects
                    yield node_pb2.NodeMessage(objects_reply=node_pb2.ObjectsReply(
                        request_id=get.request_id, timed_out=True))

    def messages(self, kind: str, count: int, timeout_s: float = 5.0) -> list:
        """The next ``count`` messages of ``kind`` (others are kept in order)."""
        found, deadline_s = [], time.monotonic() + timeout_s
        while len(found) < count:
            message = self.received.get(timeout=max(0.01, deadline_s - time.monotonic()))
            if message.WhichOneof("kind") == kind:
                found.append(message)
        return found

    def all_messages(self, settle_s: float = 0.3) -> list:
        time.sleep(settle_s)
        result = []
        while not self.received.empty():
            result.append(self.received.get())
        return result


@pytest.fixture
def node(tmp_path):
    store_session_id = new_session_id()
    # Own the session like a node manager would, so another node manager
    # starting meanwhile does not clean up its files as a dead session's.
    shm.claim_session(store_session_id)
    fake = FakeNode(store_session_id)
    server = make_server(TOKEN)
    node_pb2_grpc.add_NodeManagerServicer_to_server(fake, server)
    socket = f"unix:{tmp_path}/node.sock"
    server.add_insecure_port(socket)
    server.start()
    fake.socket = socket
    yield fake
    server.stop(0)
    shm.cleanup_session(store_session_id)


@pytest.fixture
def client(node):
    worker = CoreWorker(node.socket, TOKEN, kind=node_pb2.Register.DRIVER, worker_id=WorkerID(os.urandom(28)))
    worker.connect(timeout_s=10)
    yield worker
    worker.close()
    object_ref.ref_events = None


def _spec() -> lineage_pb2.TaskSpec:
    return lineage_pb2.TaskSpec(function_id=b"\x02" * 28, num_returns=1)


def test_register_then_job_from_registered(node, client):
    register = node.messages("register", 1)[0].register
    assert register.kind == node_pb2.Register.DRIVER and register.pid == os.getpid()
    assert client.job_id == JOB
    assert client.driver_task_id == TaskID.for_driver(JOB)


def test_submissions_get_deterministic_ids_in_order(node, client):
    refs = [client.submit(_spec(), [i], {})[0] for i in range(50)]
    driver = TaskID.for_driver(JOB)
    assert [r.task_id() for r in refs] == [TaskID.for_normal_task(JOB, driver, i) for i in range(1, 51)]
    specs = [spec for m in node.all_messages() if m.WhichOneof("kind") == "submit_tasks"
             for spec in m.submit_tasks.specs]
    assert [s.task_id for s in specs] == [r.task_id().binary() for r in refs]
    assert [s.submission_index for s in specs] == list(range(1, 51))


def test_consecutive_submissions_are_batched(node, client):
    # Hold the sender back so that the submissions queue up behind a message.
    with client._outbox_cv:
        for i in range(200):
            client._outbox.append(node_pb2.ClientMessage(submit_tasks=node_pb2.SubmitTasks(specs=[_spec()])))
    batches = [m for m in node.all_messages() if m.WhichOneof("kind") == "submit_tasks"]
    assert sum(len(m.submit_tasks.specs) for m in batches) == 200
    assert len(batches) < 20


def test_function_is_exported_once_before_its_tasks(node, client):
    first = client.export_function(b"body", "f", "m", False)
    assert client.export_function(b"body", "f", "m", False) == first
    spec = _spec()
    spec.function_id = first
    client.submit(spec, [], {})
    kinds = [m.WhichOneof("kind") for m in node.all_messages() if m.WhichOneof("kind") != "register"]
    assert kinds == ["export_function", "submit_tasks"]


def test_large_argument_is_put_into_shared_memory_before_the_task(node, client):
    client.submit(_spec(), [np.zeros(10_000)], {})
    messages = [m for m in node.all_messages() if m.WhichOneof("kind") in ("put_object", "submit_tasks")]
    assert [m.WhichOneof("kind") for m in messages] == ["put_object", "submit_tasks"]
    put = messages[0].put_object
    assert put.payload.shm_name == shm_file(node, put.object_id)
    assert os.path.getsize(f"/dev/shm/{put.payload.shm_name}") == put.payload.size_bytes
    assert messages[1].submit_tasks.specs[0].args[0].object_id == put.object_id
    assert ObjectID(put.object_id).is_put()


def shm_file(node, object_id: bytes) -> str:
    return os.path.basename(shm.object_path(node.store_session_id, object_id))


def test_nested_refs_are_listed_with_an_inline_argument(node, client):
    inner = ObjectRef(ObjectID.from_index(TaskID.for_driver(JOB), 1))
    client.submit(_spec(), [[inner, 1]], {})
    spec = node.messages("submit_tasks", 1)[0].submit_tasks.specs[0]
    assert spec.args[0].value and list(spec.args[0].nested_object_ids) == [inner.binary()]


def test_dropped_ref_is_released_after_the_submission_naming_it(node, client):
    client.track_refs()
    ref = client.put(b"x" * 2000)  # above the fake's inline threshold
    returned = client.submit(_spec(), [ref], {})[0]
    object_id = ref.binary()
    del ref
    gc.collect()
    messages = node.all_messages(0.5)
    kinds = [m.WhichOneof("kind") for m in messages]
    released = messages[kinds.index("release_objects")].release_objects
    assert list(released.object_ids) == [object_id]  # not the live return ref
    assert kinds.index("release_objects") > kinds.index("submit_tasks")
    assert returned


def test_queued_messages_go_as_one_stream_message_but_values_alone(node, client):
    """What is queued when the sender takes the next message goes as one
    batch (a get right after a remote() costs one stream write, not two);
    puts and function exports go alone (they can be large)."""
    spec = lineage_pb2.TaskSpec(task_id=b"\x02" * 24)
    queued = [node_pb2.ClientMessage(submit_tasks=node_pb2.SubmitTasks(specs=[spec])),
              node_pb2.ClientMessage(get_objects=node_pb2.GetObjects(request_id=10 ** 6, timeout_ms=1)),
              node_pb2.ClientMessage(release_objects=node_pb2.ReleaseObjects(object_ids=[b"\x03" * 28])),
              node_pb2.ClientMessage(put_object=node_pb2.PutObject(object_id=b"\x04" * 28)),
              node_pb2.ClientMessage(cancel_task=node_pb2.CancelTask(task_id=b"\x05" * 24))]
    node.all_messages(0.2)
    before = len(node.stream_kinds)
    with client._outbox_cv:  # the sender finds all five queued at once
        client._outbox.extend(queued)
        client._outbox_cv.notify()
    node.all_messages(0.5)
    assert node.stream_kinds[before:before + 3] == [["submit_tasks", "get_objects", "release_objects"],
                                                    ["put_object"], ["cancel_task"]]


def test_get_timeout_raises_get_timeout_error(client):
    from lineagerun.exceptions import GetTimeoutError

    with pytest.raises(GetTimeoutError):
        client.get([ObjectRef(ObjectID.from_index(TaskID.for_driver(JOB), 1))], 0.01)


def test_own_small_put_is_read_without_a_round_trip(node, client):
    ref = client.put({"k": 1})
    assert client.get([ref], None) == [{"k": 1}]
    assert not [m for m in node.all_messages(0.1) if m.WhichOneof("kind") == "get_objects"]


def test_session_end_fails_pending_requests(node, client):
    from lineagerun.worker.core_worker import SessionClosedError

    results = []

    def get_forever():
        try:
            client.wait([ObjectRef(ObjectID.from_index(TaskID.for_driver(JOB), 1))], 1, None, True)
        except Exception as exc:  # noqa: BLE001
            results.append(exc)

    thread = threading.Thread(target=get_forever)
    thread.start()
    node.messages("wait_objects", 1)
    client.close()
    thread.join(5)
    assert results and isinstance(results[0], SessionClosedError)
