"""Chrome trace / Perfetto JSON: valid, one slice per attempt on its node and
worker, replays marked, a flow per dependency, an instant per fault."""

from __future__ import annotations

import json

import pytest

from lineagerun.rpc import lineage_pb2 as pb
from lineagerun.state import LiveSource, MemorySource, timeline, trace_document
from lineagerun.state.lineage import arg_object_ids
from tests.state import T0_MS, assert_stopped, build_scenario, node_id, start_cluster, worker_id

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("timeline-cs"), shards=1)
    try:
        scenario = build_scenario()
        ops = list(scenario.recorder.ops)
        with cluster.client() as client:
            scenario.recorder.flush(client)
        with LiveSource(cluster.address, cluster.token) as source:
            events = timeline(source=source)
        yield scenario, events, ops
    finally:
        assert_stopped(cluster)


def test_trace_is_valid_json_with_the_chrome_fields(trace):
    _, events, _ = trace
    document = json.loads(json.dumps(trace_document(events)))
    assert document["displayTimeUnit"] == "ms"
    for event in document["traceEvents"]:
        assert {"name", "ph", "pid", "tid"} <= set(event), event
        assert event["ph"] in ("X", "s", "f", "i", "M")
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int)
        if event["ph"] != "M":
            assert isinstance(event["ts"], int) and event["ts"] >= T0_MS * 1000
        if event["ph"] == "X":
            assert event["dur"] > 0


def test_one_slice_per_attempt_on_its_node_and_worker(trace):
    s, events, _ = trace
    slices = [e for e in events if e["ph"] == "X"]
    assert len(slices) == s.attempts_total
    assert len({(e["args"]["task_id"], e["args"]["attempt"]) for e in slices}) == s.attempts_total
    nodes = {e["pid"]: e["args"]["node_id"] for e in events if e["name"] == "process_name"}
    workers = {(e["pid"], e["tid"]): e["args"]["worker_id"] for e in events if e["name"] == "thread_name"}
    retried = [e for e in slices if e["args"]["task_id"] == s.chain[2].hex()]
    assert [(e["name"], nodes[e["pid"]], workers[e["pid"], e["tid"]]) for e in retried] == [
        ("step", node_id(1).hex(), worker_id(1).hex()), ("step (retry)", node_id(2).hex(), worker_id(2).hex())]
    assert retried[0]["args"]["state"] == "FAILED" and retried[0]["args"]["error"].startswith("WorkerCrashedError")
    replays = [e for e in slices if e["args"]["replay"]]
    assert {e["args"]["task_id"] for e in replays} == {
        s.rebuilt_task.hex(), s.consumer_of_rebuilt.hex(), s.actor_calls[3].hex(), s.actor_creation.hex()}
    assert all(e["name"].endswith("(replay)") and e["args"]["reason"] == "REPLAY" for e in replays)
    make = [e for e in slices if e["args"]["task_id"] == s.rebuilt_task.hex()]
    assert [e["ts"] for e in make] == [(T0_MS + 10) * 1000, (T0_MS + 300) * 1000]
    assert all(e["dur"] == 10_000 for e in make)


def test_a_flow_per_dependency_from_producer_to_consumer(trace):
    s, events, ops = trace
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    finishes = {e["id"]: e for e in events if e["ph"] == "f"}
    assert set(starts) == set(finishes)
    specs = [pb.TaskSpec.FromString(v) for k, v in ops if k.startswith(b"task/")]
    task_ids = {bytes(spec.task_id) for spec in specs}
    expected = sum(1 for spec in specs for oid in arg_object_ids(spec) if oid[:24] in task_ids)
    assert len(starts) == expected
    slices = {e["args"]["task_id"]: e for e in events if e["ph"] == "X"}  # the latest attempt wins
    reduce_flows = [i for i, f in finishes.items() if (f["pid"], f["tid"], f["ts"]) == (
        slices[s.tree_reduce.hex()]["pid"], slices[s.tree_reduce.hex()]["tid"], slices[s.tree_reduce.hex()]["ts"])]
    assert len(reduce_flows) == 4
    for flow_id in reduce_flows:
        assert starts[flow_id]["args"]["object_id"] in {s.out(m).hex() for m in s.tree_maps}
        assert finishes[flow_id]["bp"] == "e" and finishes[flow_id]["ts"] >= starts[flow_id]["ts"]


def test_fault_events_are_instants(trace):
    s, events, _ = trace
    instants = [e for e in events if e["ph"] == "i"]
    assert sorted(e["name"] for e in instants) == sorted([
        "WORKER_DIED", "NODE_DIED", "OBJECT_LOST", "OBJECT_LOST", "OBJECT_RECONSTRUCTED", "ACTOR_RESTARTED"])
    nodes = {e["pid"]: e["args"] for e in events if e["name"] == "process_name"}
    node_death = next(e for e in instants if e["name"] == "NODE_DIED")
    assert nodes[node_death["pid"]]["node_id"] == node_id(1).hex()
    assert nodes[node_death["pid"]]["name"] == "node " + node_id(1).hex()[:12]
    assert node_death["args"]["detail"] == "missed heartbeats" and node_death["s"] == "p"
    assert next(e for e in instants if e["name"] == "OBJECT_RECONSTRUCTED")["s"] == "g"
    assert set(nodes) == {e["pid"] for e in events if e["ph"] in ("X", "i")}
    threads = {(e["pid"], e["tid"]) for e in events if e["name"] == "thread_name"}
    assert threads == {(e["pid"], e["tid"]) for e in events if e["ph"] in ("X", "i")}
    assert all(isinstance(e["pid"], int) and isinstance(e["tid"], int) for e in events)


def test_written_file_is_the_trace_document(trace, tmp_path, monkeypatch):
    import sys

    from lineagerun.state import write_trace

    timeline_module = sys.modules["lineagerun.state.timeline"]  # the package's `timeline` is the function

    _, events, _ = trace
    monkeypatch.setattr(timeline_module, "WRITE_CHUNK_EVENTS", 7)  # several chunks
    write_trace(events, tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text()) == json.loads(json.dumps(trace_document(events)))


def test_nothing_to_show_is_an_empty_list():
    assert timeline(source=MemorySource()) == []
