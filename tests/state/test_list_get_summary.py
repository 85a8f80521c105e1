"""list / get / summary against a live control store: filters, limits
(which stop the scans early), every attempt of a task, actor call chains,
counts by function and state."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineagerun.core.ids import TaskID
from lineagerun.exceptions import InvalidArgumentError, NotFoundError
from lineagerun.rpc import lineage_pb2 as pb
from lineagerun.state import (
    LiveSource, get_actor, get_object, get_task, list_actors, list_events, list_nodes, list_objects, list_tasks,
    summarize_actors, summarize_tasks,
)
from lineagerun.state.source import SCAN_PAGE_KEYS
from tests.state import Attempt, Recorder, assert_stopped, build_scenario, node_id, start_cluster

pytestmark = pytest.mark.timeout(120)
BULK_TASKS = 2_500


class CountingSource:
    """Counts the records a call pulls through the scans."""

    def __init__(self, inner):
        self.inner, self.scanned, self.description, self.local = inner, 0, inner.description, False

    def get_many(self, keys_):
        return self.inner.get_many(keys_)

    def scan(self, prefix, page_keys=SCAN_PAGE_KEYS):
        for item in self.inner.scan(prefix, page_keys):
            self.scanned += 1
            yield item

    def close(self):
        pass


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("list-cs"), shards=2)
    try:
        scenario = build_scenario(job=1)
        bulk = Recorder(job=2)
        fid = bulk.function("bulk")
        for i in range(BULK_TASKS):
            bulk.task(fid, [], attempts=[Attempt(state=pb.FAILED if i % 10 == 0 else pb.FINISHED)])
        with cluster.client() as client:
            scenario.recorder.flush(client)
            bulk.flush(client)
        source = LiveSource(cluster.address, cluster.token)
        yield scenario, source
        source.close()
    finally:
        assert_stopped(cluster)


def test_list_tasks_in_key_order_with_latest_state(store):
    s, source = store
    rows = list_tasks(filters=["job_id=00000001"], limit=None, source=source)
    assert len(rows) == s.tasks_total
    assert [r["task_id"] for r in rows] == sorted(r["task_id"] for r in rows)
    by_id = {r["task_id"]: r for r in rows}
    retried = by_id[s.chain[2].hex()]
    assert (retried["state"], retried["attempts"], retried["reasons"]) == ("FINISHED", 2, "first_run,retry")
    assert retried["node_id"] == node_id(2).hex() and retried["name"] == "step"
    assert by_id[s.actor_calls[3].hex()]["reasons"] == "first_run,replay"
    assert by_id[s.actor_calls[3].hex()]["kind"] == "actor_task"
    assert by_id[s.actor_creation.hex()]["name"] == "Counter.__init__"


def test_filters(store):
    s, source = store
    steps = list_tasks(["name=step"], limit=None, source=source)
    assert {r["task_id"] for r in steps} == {t.hex() for t in s.chain[1:4]}
    not_steps = list_tasks(["job_id=00000001", "name!=step"], limit=None, source=source)
    assert len(not_steps) == s.tasks_total - 3
    failed = list_tasks({"state": "failed", "job_id": "00000002"}, limit=None, source=source)
    assert len(failed) == BULK_TASKS // 10 and {r["name"] for r in failed} == {"bulk"}
    replayed = list_tasks(["reasons=first_run,replay"], limit=None, source=source)
    assert {r["task_id"] for r in replayed} >= {s.rebuilt_task.hex(), s.actor_calls[3].hex()}
    with pytest.raises(InvalidArgumentError, match="filterable keys are .*state"):
        list_tasks(["colour=red"], source=source)
    with pytest.raises(InvalidArgumentError, match="key=value"):
        list_tasks(["state"], source=source)
    with pytest.raises(InvalidArgumentError, match="limit"):
        list_tasks(limit=0, source=source)


def test_limit_stops_the_scans_early(store):
    _, source = store
    counting = CountingSource(source)
    rows = list_tasks(limit=5, source=counting)
    assert len(rows) == 5
    # task/ and attempt/ scans each fetch one page per shard, not 2,500+ records.
    assert counting.scanned <= 4 * SCAN_PAGE_KEYS
    counting.scanned = 0
    everything = list_tasks(limit=None, source=counting)
    assert len(everything) == BULK_TASKS + build_scenario().tasks_total
    assert counting.scanned >= 2 * BULK_TASKS


def test_get_task_shows_every_attempt_and_its_outputs(store):
    s, source = store
    task = get_task(s.rebuilt_task.hex(), source=source)
    assert [(a["reason"], a["node_id"]) for a in task["attempts_detail"]] == [
        ("FIRST_RUN", node_id(1).hex()), ("REPLAY", node_id(2).hex())]
    assert task["outputs"] == [{"object_id": s.out(s.rebuilt_task).hex(), "status": "rebuilt"}]
    retried = get_task(s.chain[2].hex(), source=source)
    assert retried["attempts_detail"][0]["error"] == "WorkerCrashedError: died"
    assert retried["args"] == [f"ref {s.out(s.chain[1]).hex()}"] and retried["resources"] == "CPU=1"
    with pytest.raises(NotFoundError, match="no task"):
        get_task(TaskID(b"\x07" * 8 + s.chain[0].binary()[8:]).hex(), source=source)
    with pytest.raises(InvalidArgumentError, match="task ids are 48 hex digits"):
        get_task(s.actor.hex(), source=source)


def test_actors_objects_nodes_events(store):
    s, source = store
    (actor,) = list_actors(source=source)
    assert (actor["class_name"], actor["name"], actor["state"], actor["num_restarts"]) == ("Counter", "counter",
                                                                                          "ALIVE", 1)
    detail = get_actor(s.actor.hex(), source=source)
    assert [c["method_name"] for c in detail["calls"]] == ["incr", "incr", "add", "get"]
    assert [c["checkpoint"] for c in detail["calls"]] == [False, True, False, False]
    assert [c["attempts"] for c in detail["calls"]] == [1, 1, 1, 2]
    lost = list_objects(["status=lost"], limit=None, source=source)
    assert [o["object_id"] for o in lost] == [s.out(s.lost_task).hex()]
    assert get_object(s.out(s.rebuilt_task).hex(), source=source)["status"] == "rebuilt"
    assert get_object(s.put_object.hex(), source=source)["is_put"] is True
    nodes = list_nodes(source=source)
    assert len(nodes) == 3 and [n["node_id"] for n in list_nodes(["alive=false"], source=source)] == [node_id(1).hex()]
    assert nodes[0]["resources"] == "CPU=4"
    events = list_events(limit=None, source=source)
    assert [e["time_ms"] for e in events] == sorted(e["time_ms"] for e in events) and len(events) == 7
    assert [e["kind"] for e in list_events(["kind=OBJECT_LOST"], source=source)] == ["OBJECT_LOST"] * 2
    assert len(list_events(limit=2, source=source)) == 2


def test_summaries(store):
    s, source = store
    summary = summarize_tasks(source=source)
    assert summary["total"] == s.tasks_total + BULK_TASKS
    assert summary["retries"] == 1 and summary["replays"] == 4  # make, use, Counter.get, Counter.__init__
    by_name = {row["name"]: row for row in summary["by_name"]}
    assert by_name["step"]["total"] == 3 and by_name["step"]["retries"] == 1 and by_name["step"]["FINISHED"] == 3
    assert by_name["bulk"]["FAILED"] == BULK_TASKS // 10
    assert by_name["Counter.incr"]["total"] == 2
    assert summary["by_state"]["FAILED"] == BULK_TASKS // 10
    actors = summarize_actors(source=source)
    assert actors["total"] == 1 and actors["restarts"] == 1
    assert actors["by_class"] == [{"class_name": "Counter", "total": 1, "restarts": 1, "ALIVE": 1}]


def test_orphan_attempts_and_missing_functions_still_list(store):
    """An attempt written before its spec (or a spec whose function record
    is gone) must not break listing."""
    _, source = store
    from lineagerun.state import MemorySource

    memory = MemorySource()
    r = Recorder(job=3)
    tid = r.task(b"\x01" * 28, [])
    r.attempt(TaskID(b"\x00" * 8 + tid.binary()[8:]), 0, Attempt())
    r.flush(memory)
    rows = list_tasks(limit=None, source=memory)
    assert len(rows) == 2
    assert {r_["name"] for r_ in rows} == {"fn:" + "01" * 6, "(no record)"}
    # A dropped (best-effort) attempt record leaves a gap; get shows the rest.
    r.attempt(tid, 2, Attempt(pb.RETRY))
    r.flush(memory)
    assert [a["attempt_number"] for a in get_task(tid.hex(), source=memory)["attempts_detail"]] == [0, 2]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.booleans(), st.integers(0, 3)), max_size=25,
                unique_by=lambda t: t[0]))
def test_the_merged_scan_joins_specs_and_attempts_like_a_lookup(tasks):
    """Random tables with specs missing (orphan attempts) and 0-3 attempts:
    the one-pass merge gives each spec exactly its attempts, in key order."""
    from lineagerun.state import MemorySource
    from lineagerun.state.timeline import tasks_with_attempts

    recorder = Recorder(job=9)
    expected = {}
    for unique, has_spec, attempts in tasks:
        tid = TaskID(unique.to_bytes(8, "big") + recorder.driver.binary()[8:])
        if has_spec:
            recorder.task(b"\x01" * 28, [], task_id=tid, attempts=[])
        for number in range(attempts):
            recorder.attempt(tid, number, Attempt(start_ms=number))
        if has_spec or attempts:
            expected[tid.binary()] = (has_spec, attempts)
    memory = MemorySource()
    recorder.flush(memory)
    seen = []
    for spec, attempts in tasks_with_attempts(memory):
        task_id = bytes(spec.task_id) if spec is not None else bytes(attempts[0].task_id)
        assert all(bytes(a.task_id) == task_id for a in attempts)
        assert [a.attempt_number for a in attempts] == list(range(len(attempts)))
        seen.append((task_id, (spec is not None, len(attempts))))
    assert [t for t, _ in seen] == sorted(expected)
    assert dict(seen) == expected
