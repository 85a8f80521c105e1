"""Small pieces of per-pair links and driver resume, without processes."""

from __future__ import annotations

import pytest

from lineagerun.exceptions import ConfigurationError
from lineagerun.node.driver_resume import SeenIds
from lineagerun.node.peer_dial import peer_dial
from lineagerun.rpc import lineage_pb2, node_pb2


def test_peer_dial_rewrites_only_the_advertised_prefix():
    dial = peer_dial("127.77.5.=127.101.5.")
    assert dial("127.77.5.3:4100") == "127.101.5.3:4100"
    assert dial("127.0.0.1:4100") == "127.0.0.1:4100"
    assert peer_dial("")("127.77.5.3:1") == "127.77.5.3:1"
    with pytest.raises(ConfigurationError, match="FROM_PREFIX=TO_PREFIX"):
        peer_dial("127.77.5.")


def test_seen_ids_are_bounded_and_forget_the_oldest_first():
    seen = SeenIds(capacity=3)
    assert [seen.first_time(x) for x in (b"a", b"b", b"a", b"c", b"d")] == [True, True, False, True, True]
    assert seen.first_time(b"a")  # forgotten (the oldest) once d came in
    assert not seen.first_time(b"d")


@pytest.fixture
def tracked_driver():
    """A node's driver sessions with one tracked (TCP) driver session."""
    from lineagerun.node.driver_resume import DriverSessions

    class FakeSession:
        pass

    drivers = DriverSessions(manager=None)
    session = FakeSession()
    drivers.track(session, b"w" * 28)
    return drivers, session


def test_a_resent_submission_keeps_only_the_tasks_not_seen_yet(tracked_driver):
    drivers, session = tracked_driver

    def submit(*ids):
        return node_pb2.ClientMessage(submit_tasks=node_pb2.SubmitTasks(
            specs=[lineage_pb2.TaskSpec(task_id=i) for i in ids]))

    assert drivers.first_time(session, submit(b"t1", b"t2")) is not None
    resent = drivers.first_time(session, submit(b"t1", b"t2", b"t3"))
    assert [s.task_id for s in resent.submit_tasks.specs] == [b"t3"]
    assert drivers.first_time(session, submit(b"t1")) is None
    put = node_pb2.ClientMessage(put_object=node_pb2.PutObject(object_id=b"o1"))
    assert drivers.first_time(session, put) is put and drivers.first_time(session, put) is None
    drivers.forget(session)
    assert drivers.first_time(session, submit(b"t1")) is not None  # untracked: passes through


def test_a_driver_resends_its_releases_kills_and_cancels_after_a_reconnect():
    from lineagerun.worker.session_resume import SessionResume

    resume = SessionResume(core_worker=None)
    release = node_pb2.ClientMessage(release_objects=node_pb2.ReleaseObjects(object_ids=[b"o1", b"o2"]))
    kill = node_pb2.ClientMessage(kill_actor=node_pb2.KillActor(actor_id=b"a" * 16, request_id=7))
    cancel = node_pb2.ClientMessage(cancel_task=node_pb2.CancelTask(task_id=b"t" * 24, request_id=8))
    for message in (release, kill, cancel):
        resume.sent(message)
    batch = node_pb2.ClientMessage(batch=node_pb2.ClientMessages(messages=[release]))
    resume.sent(batch)  # what goes in a batch is resent one by one
    assert resume.replay() == [release, kill, cancel, release]


def test_a_resent_kill_or_cancel_is_handled_once(tracked_driver):
    """A kill handled twice would kill the actor's restarted instance too."""
    drivers, session = tracked_driver
    kill = node_pb2.ClientMessage(kill_actor=node_pb2.KillActor(actor_id=b"a" * 16, request_id=7))
    cancel = node_pb2.ClientMessage(cancel_task=node_pb2.CancelTask(task_id=b"t" * 24, request_id=7))
    assert drivers.first_time(session, kill) is kill
    assert drivers.first_time(session, cancel) is cancel  # its own kind: not the kill's id
    assert drivers.first_time(session, kill) is None and drivers.first_time(session, cancel) is None
    another = node_pb2.ClientMessage(kill_actor=node_pb2.KillActor(actor_id=b"a" * 16, request_id=9))
    assert drivers.first_time(session, another) is another


def test_a_worker_reads_function_records_through_its_nodes_replica_proxies(monkeypatch, tmp_path):
    import json

    from lineagerun.control import client as client_module
    from lineagerun.core.ids import WorkerID
    from lineagerun.node.store_dial import STORE_DIAL_MAP_ENV
    from lineagerun.worker.core_worker import CoreWorker

    dial_map = tmp_path / "node-0.json"
    dial_map.write_text(json.dumps({"127.0.0.1:4000": "127.101.0.1:5000"}))
    monkeypatch.setenv(STORE_DIAL_MAP_ENV, str(dial_map))  # what a worker inherits from its chaos node
    dialled = []

    class RecordingClient:
        def __init__(self, address, token, address_map=None):
            dialled.append(address_map("127.0.0.1:4000") if address_map else "127.0.0.1:4000")

        def get(self, key):
            return None

        def close(self):
            pass

    monkeypatch.setattr(client_module, "ControlStoreClient", RecordingClient)
    worker = CoreWorker("unix:/nowhere", None, kind=node_pb2.Register.WORKER, worker_id=WorkerID(b"w" * 28))
    worker.control_store_address = "127.101.0.1:3999"
    assert worker.fetch_function(b"f" * 28) is None
    assert dialled == ["127.101.0.1:5000"]
