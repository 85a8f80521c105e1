"""Node manager behaviour through raw Session streams, with fake workers
(tests/node/fake_worker.py) and a real control store."""

from __future__ import annotations

import os
import time

import grpc
import psutil
import pytest

from lineagerun.core.ids import ActorID, ObjectID, TaskID
from lineagerun.core.keys import actor_calls_prefix, actor_key, attempts_prefix, node_key, task_key
from lineagerun.objects import shm
from lineagerun.rpc import lineage_pb2, node_pb2
from tests.node.conftest import RawSession, no_shm_files

pytestmark = pytest.mark.timeout(60)


def test_register_submit_and_get_result(shared_node, session_factory, control_store):
    node = shared_node
    driver = session_factory(node)
    registered = driver.register()
    assert len(registered.job_id) == 4 and registered.job_id != b"\xff" * 4
    assert registered.store_session_id == node.store_session_id
    assert registered.inline_object_max_bytes > 0
    echo = driver.export("echo")
    spec = driver.spec(echo, args=[b"hello"])
    (ref,) = driver.submit(spec)
    reply = driver.get([ref])
    assert not reply.timed_out
    assert reply.objects[0].payload.inline == b"hello"
    with control_store.client() as client:
        stored = client.get(task_key(TaskID(spec.task_id)))
        assert lineage_pb2.TaskSpec.FromString(stored).task_id == spec.task_id
        node_record = lineage_pb2.NodeRecord.FromString(client.get(node_key(_node_id(node))))
    assert node_record.alive and node_record.address == node.ready["address"]
    assert node_record.resources_total["CPU"] == 2 * 10_000


def _node_id(node):
    from lineagerun.core.ids import NodeID

    return NodeID.from_hex(node.ready["node_id"])


def test_spec_is_durable_before_dispatch_and_records_follow(shared_node, session_factory, control_store):
    node = shared_node
    driver = session_factory(node)
    driver.register()
    check = driver.export("check_spec")
    specs = [driver.spec(check) for _ in range(5)]
    refs = driver.submit(*specs)
    reply = driver.get(refs)
    assert [o.payload.inline for o in reply.objects] == [b"found"] * 5
    with control_store.client() as client:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            attempts = list(client.scan_prefix(attempts_prefix(TaskID(specs[0].task_id))))
            if attempts:
                break
            time.sleep(0.05)
    attempt = lineage_pb2.TaskAttempt.FromString(attempts[0][1])
    assert attempt.state == lineage_pb2.FINISHED and attempt.reason == lineage_pb2.FIRST_RUN


def test_heartbeat_advances(shared_node, control_store):
    node = shared_node
    with control_store.client() as client:
        first = lineage_pb2.NodeRecord.FromString(client.get(node_key(_node_id(node)))).heartbeat_ms
        time.sleep(0.5)
        second = lineage_pb2.NodeRecord.FromString(client.get(node_key(_node_id(node)))).heartbeat_ms
    assert second - first >= 200


def test_get_timeout_and_wait(shared_node, session_factory):
    node = shared_node
    driver = session_factory(node)
    driver.register()
    sleep = driver.export("sleep")
    slow, fast = driver.submit(driver.spec(sleep, args=[b"1.5"]), driver.spec(sleep, args=[b"0"]))
    started = time.monotonic()
    reply = driver.get([slow], timeout_ms=200)
    assert reply.timed_out and time.monotonic() - started < 1.2
    rid = driver.next_request_id()
    driver.send(wait_objects=node_pb2.WaitObjects(request_id=rid, object_ids=[slow.binary(), fast.binary()],
                                                  num_returns=1, timeout_ms=5_000))
    ready = driver.expect("wait_reply", where=lambda m: m.request_id == rid).ready_object_ids
    assert list(ready) == [fast.binary()]
    rid = driver.next_request_id()
    driver.send(wait_objects=node_pb2.WaitObjects(request_id=rid, object_ids=[slow.binary(), fast.binary()],
                                                  num_returns=2, timeout_ms=100))
    ready = driver.expect("wait_reply", where=lambda m: m.request_id == rid).ready_object_ids
    assert list(ready) == [fast.binary()]
    assert driver.get([slow], timeout_ms=-1).objects[0].payload.inline == b"slept"


def test_put_get_inline_and_shm(shared_node, session_factory):
    node = shared_node
    driver = session_factory(node)
    registered = driver.register()
    inline_id = ObjectID.for_put(driver.driver_task, 1)
    driver.send(put_object=node_pb2.PutObject(object_id=inline_id.binary(), payload=node_pb2.ObjectPayload(
        inline=b"small", size_bytes=5)))
    assert driver.get([inline_id]).objects[0].payload.inline == b"small"
    shm_id = ObjectID.for_put(driver.driver_task, 2)
    data = os.urandom(300_000)
    path = shm.allocate_object_file(registered.store_session_id, shm_id.binary(), len(data))
    with open(path, "r+b") as f:
        f.write(data)
    shm.seal_object_file(registered.store_session_id, shm_id.binary())
    driver.send(put_object=node_pb2.PutObject(object_id=shm_id.binary(), payload=node_pb2.ObjectPayload(
        shm_name=os.path.basename(shm.object_path(registered.store_session_id, shm_id.binary())),
        size_bytes=len(data))))
    payload = driver.get([shm_id]).objects[0].payload
    with open(os.path.join(shm.SHM_DIR, payload.shm_name), "rb") as f:
        assert f.read() == data
    # A worker returns a shm object; another task gets it by reference.
    make_shm, echo = driver.export("shm"), driver.export("echo")
    (big,) = driver.submit(driver.spec(make_shm, args=[data[:200_000]]))
    (copy,) = driver.submit(driver.spec(echo, args=[big]))
    result = driver.get([copy]).objects[0].payload
    assert result.WhichOneof("kind") == "shm_name"
    with open(os.path.join(shm.SHM_DIR, result.shm_name), "rb") as f:
        assert f.read() == data[:200_000]


def test_worker_crash_retries_then_worker_crashed_error(node_factory, session_factory, control_store):
    node = node_factory(prestart=1)
    driver = session_factory(node)
    driver.register()
    crash = driver.export("crash")
    spec = driver.spec(crash, max_retries=2)
    (ref,) = driver.submit(spec)
    result = driver.get([ref], timeout_ms=30_000, wait_s=35).objects[0]
    assert result.error_kind == "WorkerCrashedError"
    assert "crash" in result.error_message and "3 attempt" in result.error_message
    with control_store.client() as client:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            records = [lineage_pb2.TaskAttempt.FromString(v)
                       for _, v in client.scan_prefix(attempts_prefix(TaskID(spec.task_id)))]
            if len(records) == 3 and records[-1].state == lineage_pb2.FAILED:
                break
            time.sleep(0.05)
    assert [r.attempt_number for r in records] == [0, 1, 2]
    assert [r.reason for r in records[1:]] == [lineage_pb2.RETRY, lineage_pb2.RETRY]
    # The pool replaced the dead workers: a normal task still runs.
    (ok,) = driver.submit(driver.spec(driver.export("echo"), args=[b"after"]))
    assert driver.get([ok]).objects[0].payload.inline == b"after"


def test_infeasible_task_and_invalid_spec(shared_node, session_factory):
    node = shared_node
    driver = session_factory(node)
    driver.register()
    echo = driver.export("echo")
    (gpu,) = driver.submit(driver.spec(echo, args=[b"x"], resources={"GPU": 10_000}))
    result = driver.get([gpu]).objects[0]
    assert result.error_kind == "InfeasibleTaskError" and "GPU" in result.error_message
    unknown = driver.spec(b"\x01" * 28, args=[b"x"])
    (bad,) = driver.submit(unknown)
    result = driver.get([bad]).objects[0]
    assert result.error_kind == "InvalidArgumentError" and "ExportFunction" in result.error_message


def test_cancel_queued_task(node_factory, session_factory):
    node = node_factory(num_cpus=1, prestart=1)
    driver = session_factory(node)
    driver.register()
    sleep, echo = driver.export("sleep"), driver.export("echo")
    blocker_spec, queued_spec = driver.spec(sleep, args=[b"1"]), driver.spec(echo, args=[b"never"])
    blocker, queued = driver.submit(blocker_spec, queued_spec)
    time.sleep(0.3)
    driver.send(cancel_task=node_pb2.CancelTask(task_id=queued_spec.task_id))
    result = driver.get([queued]).objects[0]
    assert result.error_kind == "TaskCancelledError"
    assert driver.get([blocker]).objects[0].payload.inline == b"slept"


def test_cancel_running_with_force_kills_worker(node_factory, session_factory):
    node = node_factory(num_cpus=1, prestart=1)
    driver = session_factory(node)
    driver.register()
    spec = driver.spec(driver.export("sleep"), args=[b"30"], max_retries=3)
    (ref,) = driver.submit(spec)
    time.sleep(0.5)
    driver.send(cancel_task=node_pb2.CancelTask(task_id=spec.task_id, force=True))
    assert driver.get([ref]).objects[0].error_kind == "TaskCancelledError"
    (ok,) = driver.submit(driver.spec(driver.export("echo"), args=[b"next"]))
    reply = driver.get([ok], timeout_ms=20_000, wait_s=25)
    assert not reply.timed_out, node.log_text()
    assert reply.objects[0].payload.inline == b"next"


def _create_actor(driver: RawSession, name: str = "", max_concurrency: int = 1):
    cls = driver.export("Counter", is_actor_class=True)
    index = driver._submitted
    driver._submitted += 1
    actor_id = ActorID.of(driver.job, driver.driver_task, index)
    spec = lineage_pb2.TaskSpec(
        task_id=TaskID.for_actor_creation(actor_id).binary(), job_id=driver.job.binary(),
        parent_task_id=driver.driver_task.binary(), submission_index=index, function_id=cls,
        actor_id=actor_id.binary(), is_actor_creation=True, num_returns=1, max_concurrency=max_concurrency,
        options=lineage_pb2.TaskOptions(name=name))
    (ready,) = driver.submit(spec)
    return actor_id, ready


def _call(driver: RawSession, actor_id: ActorID, method: str):
    index = driver._submitted
    driver._submitted += 1
    task_id = TaskID.for_actor_task(driver.job, driver.driver_task, index, actor_id)
    spec = lineage_pb2.TaskSpec(task_id=task_id.binary(), job_id=driver.job.binary(),
                                parent_task_id=driver.driver_task.binary(), submission_index=index,
                                actor_id=actor_id.binary(), method_name=method, is_actor_task=True,
                                num_returns=1)
    return spec


def test_actor_calls_in_order_with_records(shared_node, session_factory, control_store):
    node = shared_node
    driver = session_factory(node)
    driver.register()
    actor_id, ready = _create_actor(driver)
    calls = [_call(driver, actor_id, "incr") for _ in range(20)]
    refs = []
    for start in range(0, 20, 7):  # several batches
        refs += driver.submit(*calls[start:start + 7])
    reply = driver.get(refs)
    assert [o.payload.inline for o in reply.objects] == [str(i).encode() for i in range(1, 21)]
    assert not driver.get([ready]).objects[0].error_kind
    with control_store.client() as client:
        records = [lineage_pb2.ActorCallRecord.FromString(v)
                   for _, v in client.scan_prefix(actor_calls_prefix(actor_id))]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            actor = lineage_pb2.ActorRecord.FromString(client.get(actor_key(actor_id)))
            if actor.state == lineage_pb2.ALIVE:
                break
            time.sleep(0.05)
    assert [r.sequence_number for r in records] == list(range(20))
    assert [r.task_id for r in records] == [c.task_id for c in calls]
    assert actor.state == lineage_pb2.ALIVE


def test_named_actor_lookup_and_kill(shared_node, session_factory):
    node = shared_node
    driver = session_factory(node)
    driver.register(namespace="ns1")
    actor_id, _ = _create_actor(driver, name="counter")
    (first,) = driver.submit(_call(driver, actor_id, "incr"))
    assert driver.get([first]).objects[0].payload.inline == b"1"
    other = session_factory(node)
    other.register(namespace="ns1")
    rid = other.next_request_id()
    other.send(get_actor=node_pb2.GetActorRequest(request_id=rid, name="counter"))
    info = other.expect("actor_info", where=lambda m: m.request_id == rid)
    assert info.found and info.actor.actor_id == actor_id.binary() and info.actor.state == lineage_pb2.ALIVE
    assert info.creation_spec.task_id == TaskID.for_actor_creation(actor_id).binary()
    rid = other.next_request_id()
    other.send(get_actor=node_pb2.GetActorRequest(request_id=rid, name="counter", namespace="elsewhere"))
    assert not other.expect("actor_info", where=lambda m: m.request_id == rid).found
    driver.send(kill_actor=node_pb2.KillActor(actor_id=actor_id.binary(), no_restart=True))
    (later,) = driver.submit(_call(driver, actor_id, "incr"))
    result = driver.get([later]).objects[0]
    assert result.error_kind == "ActorDiedError"


def test_cluster_info(shared_node, session_factory):
    node = shared_node
    driver = session_factory(node)
    driver.register()
    rid = driver.next_request_id()
    driver.send(cluster_info=node_pb2.ClusterInfoRequest(request_id=rid))
    (view,) = driver.expect("cluster_info", where=lambda m: m.request_id == rid).nodes
    assert view.resources_total["CPU"] == 2 and view.resources_total["widget"] == 3
    assert 0 <= view.resources_available["CPU"] <= 2


def test_wrong_token_refused(shared_node, session_factory):
    node = shared_node
    intruder = session_factory(node, token="not-the-token")
    intruder.send(register=node_pb2.Register(kind=node_pb2.Register.DRIVER, pid=os.getpid()))
    deadline = time.monotonic() + 10
    while intruder.error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert isinstance(intruder.error, grpc.RpcError)
    assert intruder.error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_sigterm_leaves_no_processes_or_shm_files(node_factory, session_factory):
    node = node_factory(prestart=2)
    driver = session_factory(node)
    driver.register()
    (big,) = driver.submit(driver.spec(driver.export("shm"), args=[b"z" * 150_000]))
    assert driver.get([big]).objects[0].payload.shm_name
    assert no_shm_files(node.store_session_id)
    children = node.children()
    assert len(children) >= 2
    driver.close()
    assert node.stop() == 0
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert no_shm_files(node.store_session_id) == []
