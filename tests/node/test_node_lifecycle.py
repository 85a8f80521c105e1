"""Node manager: eviction, driver disconnect, name clashes."""

from __future__ import annotations

import os
import time

import pytest

from lineagerun.core.ids import ObjectID
from lineagerun.objects import shm
from lineagerun.rpc import node_pb2
from tests.node.test_node_basic import _call, _create_actor

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024


def _put_shm(driver, index: int, size: int) -> ObjectID:
    object_id = ObjectID.for_put(driver.driver_task, index)
    session_id = driver.registered.store_session_id
    path = shm.allocate_object_file(session_id, object_id.binary(), size)
    with open(path, "r+b") as f:
        f.write(b"\x07" * 4096)
    shm.seal_object_file(session_id, object_id.binary())
    driver.send(put_object=node_pb2.PutObject(object_id=object_id.binary(), payload=node_pb2.ObjectPayload(
        shm_name=os.path.basename(shm.object_path(session_id, object_id.binary())), size_bytes=size)))
    return object_id


def test_released_objects_are_evicted_and_pinned_ones_fill_the_store(node_factory, session_factory):
    node = node_factory(prestart=0)  # store capacity: 64 MiB (conftest)
    driver = session_factory(node)
    driver.register()
    first = _put_shm(driver, 1, 30 * MIB)
    driver.send(release_objects=node_pb2.ReleaseObjects(object_ids=[first.binary()]))
    second = _put_shm(driver, 2, 30 * MIB)
    third = _put_shm(driver, 3, 30 * MIB)  # needs the room of the released first object
    reply = driver.get([second, third, first])
    assert reply.objects[0].payload.shm_name and reply.objects[1].payload.shm_name
    # A driver's put cannot be replayed: its loss says so (reconstruction_driver.py).
    assert reply.objects[2].error_kind == "ObjectReconstructionFailedError"
    assert "put() in the driver" in reply.objects[2].error_message
    assert not os.path.exists(shm.object_path(driver.registered.store_session_id, first.binary()))
    fourth = _put_shm(driver, 4, 30 * MIB)  # second and third are pinned: no room
    result = driver.get([fourth]).objects[0]
    assert result.error_kind == "ObjectStoreFullError"
    assert not os.path.exists(shm.object_path(driver.registered.store_session_id, fourth.binary()))


def test_driver_disconnect_kills_its_actors(node_factory, session_factory):
    node = node_factory(prestart=1)
    owner = session_factory(node)
    owner.register()
    actor_id, _ = _create_actor(owner, name="temp")
    (one,) = owner.submit(_call(owner, actor_id, "incr"))
    assert owner.get([one]).objects[0].payload.inline == b"1"
    workers_before = {p.pid for p in node.children()}
    owner.close()
    other = session_factory(node)
    other.register()
    deadline = time.monotonic() + 10
    found = True
    while found and time.monotonic() < deadline:
        rid = other.next_request_id()
        other.send(get_actor=node_pb2.GetActorRequest(request_id=rid, name="temp"))
        found = other.expect("actor_info", where=lambda m: m.request_id == rid).found
        time.sleep(0.05)
    assert not found
    # The actor's worker is gone; the pool was refilled to its prestarted size.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(workers_before - {p.pid for p in node.children()}) < 1:
        time.sleep(0.05)
    assert workers_before - {p.pid for p in node.children()}


def test_actor_name_taken(node_factory, session_factory):
    node = node_factory(prestart=2)
    driver = session_factory(node)
    driver.register()
    _, first_ready = _create_actor(driver, name="dup")
    assert not driver.get([first_ready]).objects[0].error_kind
    _, second_ready = _create_actor(driver, name="dup")
    result = driver.get([second_ready]).objects[0]
    assert result.error_kind == "InvalidArgumentError" and "dup" in result.error_message


def test_actor_worker_crash_fails_running_and_later_calls(node_factory, session_factory):
    node = node_factory(prestart=1)
    driver = session_factory(node)
    driver.register()
    actor_id, _ = _create_actor(driver)
    crash, after = _call(driver, actor_id, "crash"), _call(driver, actor_id, "incr")
    crashed, queued = driver.submit(crash, after)
    reply = driver.get([crashed, queued])
    assert [o.error_kind for o in reply.objects] == ["ActorDiedError", "ActorDiedError"]
    (later,) = driver.submit(_call(driver, actor_id, "incr"))
    result = driver.get([later]).objects[0]
    assert result.error_kind == "ActorDiedError" and "died" in result.error_message


def test_broken_worker_module_backs_off_instead_of_fork_looping(node_factory, session_factory):
    node = node_factory(prestart=2, extra=["--worker-module", "tests.node.no_such_worker_module"])
    driver = session_factory(node)
    driver.register()
    (ref,) = driver.submit(driver.spec(driver.export("echo"), args=[b"x"]))
    time.sleep(3)
    assert driver.get([ref], timeout_ms=0).timed_out  # still queued, node alive
    started = len(list((node.session_dir / "logs").glob("worker-*.err")))
    assert 3 <= started <= 12, started
    assert node.popen.poll() is None
