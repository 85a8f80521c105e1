"""Recovery observability (issue 5): counters by event kind (generic: kinds
nobody told the summary about still show up), items an event stands for
(the ``count`` field, or the legacy ``count=N`` detail head), recovery time
p50/max, re-executions from the attempt records; ``list events`` filters;
``summary recovery`` and ``lineagerun status`` print them. Also: a task's
attempts are read by range scans (exact across a missing attempt number),
per task or per job."""

from __future__ import annotations

import importlib
import json

import pytest

from lineagerun.cli.cluster import render_status
from lineagerun.core.ids import ActorID, ObjectID
from lineagerun.exceptions import InvalidArgumentError
from lineagerun.rpc import lineage_pb2 as pb
from lineagerun.state import MemorySource, get_task, lineage, list_events, recovery_lines, recovery_summary
from lineagerun.state.recovery import event_items, percentile
from tests.state import T0_MS, Attempt, Recorder, build_scenario, node_id

pytestmark = pytest.mark.timeout(60)
# The module, not the function ``lineagerun.state.lineage`` that shadows it.
lineage_module = importlib.import_module("lineagerun.state.lineage")
UNKNOWN_KIND = 99  # a kind added to EventKind later (proto3 enums are open)


def _source(recorder: Recorder) -> MemorySource:
    source = MemorySource()
    recorder.flush(source)
    return source


@pytest.fixture(scope="module")
def scenario():
    s = build_scenario()
    r = s.recorder
    actor = ActorID.of(r.job_id, r.driver, 999).binary()
    r.event(pb.ACTOR_CALLS_REPLAYED, 500, 20, actor_id=actor, count=7, detail="calls 3..9")
    r.event(pb.ACTOR_CALLS_REPLAYED, 510, 21, actor_id=actor, count=0, detail="nothing after the checkpoint")
    r.event(pb.ACTOR_CALLS_REPLAYED, 520, 22, actor_id=actor, detail="count=5; legacy record")
    r.event(pb.ACTOR_RESTARTED, 530, 23, actor_id=actor, detail="count=3; restart 3", duration_ms=250)
    r.event(pb.OBJECT_RECONSTRUCTED, 540, 24, object_id=s.out(s.lost_task), duration_ms=150)
    r.event(pb.TASK_REPLAYED, 541, 25, task_id=s.rebuilt_task.binary(), attempt_number=1)
    r.event(UNKNOWN_KIND, 550, 26, count=2, duration_ms=40, detail="from the future")
    r.event(pb.TASK_FINISHED, 560, 27, task_id=s.chain[0].binary())
    s.source = _source(r)
    return s


def test_event_items_reads_the_field_then_the_legacy_detail():
    assert event_items(pb.EventRecord(kind=pb.ACTOR_CALLS_REPLAYED, count=4, detail="count=9; x")) == 4
    assert event_items(pb.EventRecord(kind=pb.ACTOR_CALLS_REPLAYED, count=0)) == 0
    assert event_items(pb.EventRecord(kind=pb.ACTOR_CALLS_REPLAYED, detail="count=12; calls")) == 12
    # A restart's "count=N" is its ordinal, not a quantity: one event is one restart.
    assert event_items(pb.EventRecord(kind=pb.ACTOR_RESTARTED, detail="count=3; restart 3")) == 1
    assert event_items(pb.EventRecord(kind=pb.ACTOR_CALLS_REPLAYED, detail="count=x; bad")) == 1
    assert event_items(pb.EventRecord(kind=pb.OBJECT_LOST)) == 1


def test_percentile_is_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([7], 0.5) == 7
    assert percentile([1, 2, 3, 4], 0.5) == 2
    assert percentile([1, 2, 3, 4, 5], 0.5) == 3
    assert percentile(list(range(1, 101)), 0.99) == 99


def test_recovery_summary_counts_every_kind(scenario):
    summary = recovery_summary(source=scenario.source)
    assert summary["objects_lost"] == 2 and summary["objects_rebuilt"] == 2
    assert summary["actor_calls_replayed"] == 7 + 0 + 5
    assert summary["actors_restarted"] == 2          # the scenario's restart and ours
    assert summary["nodes_died"] == 1 and summary["workers_died"] == 1
    # Re-executions from the attempt records: 1 retry (chain) and 4 replays.
    assert (summary["task_retries"], summary["task_replays"], summary["tasks_reexecuted"]) == (1, 4, 5)
    assert summary["reexecutions_from"] == "attempts"
    assert summary["attempts"]["scanned"] == scenario.attempts_total
    # Routine kinds are not recovery; the unknown kind is.
    kinds = summary["by_kind"]
    assert "TASK_STARTED" not in kinds and "TASK_FINISHED" not in kinds
    assert kinds["KIND_99"] == {"events": 1, "items": 2, "recovery_time": {"n": 1, "p50_ms": 40, "max_ms": 40}}
    assert kinds["ACTOR_CALLS_REPLAYED"]["events"] == 3 and kinds["ACTOR_CALLS_REPLAYED"]["items"] == 12
    assert kinds["OBJECT_RECONSTRUCTED"]["recovery_time"] == {"n": 2, "p50_ms": 50, "max_ms": 150}
    # Recovery time over every timed recovery event: 50, 250, 150, 40.
    assert summary["recovery_time"] == {"n": 4, "p50_ms": 50, "max_ms": 250}
    assert summary["events"] == sum(k["events"] for k in kinds.values()) == 13
    json.dumps(summary)  # plain data


def test_without_attempts_reexecutions_come_from_events(scenario):
    summary = recovery_summary(source=scenario.source, attempts=False)
    assert summary["reexecutions_from"] == "events" and "attempts" not in summary
    assert (summary["task_retries"], summary["task_replays"]) == (0, 1)


def test_since_keeps_later_records(scenario):
    summary = recovery_summary(source=scenario.source, since_ms=T0_MS + 350)
    assert summary["objects_lost"] == 0 and summary["actor_calls_replayed"] == 12
    assert summary["actors_restarted"] == 2
    assert summary["task_replays"] == 1  # replays started at +0, +300 and +320 are older; +400 stays
    with pytest.raises(InvalidArgumentError, match="since_ms"):
        recovery_summary(source=scenario.source, since_ms=-1)


def test_list_events_filters_recovery_kinds_and_counts(scenario):
    recovery = list_events(["recovery=true"], None, source=scenario.source)
    assert all(row["kind"] not in ("TASK_STARTED", "TASK_FINISHED") for row in recovery)
    assert len(recovery) == 13
    either = list_events(["kind=object_lost|OBJECT_RECONSTRUCTED"], None, source=scenario.source)
    assert [row["kind"] for row in either] == ["OBJECT_LOST", "OBJECT_LOST", "OBJECT_RECONSTRUCTED",
                                               "OBJECT_RECONSTRUCTED"]
    neither = list_events(["kind!=object_lost|OBJECT_RECONSTRUCTED", "recovery=true"], None, source=scenario.source)
    assert len(neither) == 9
    replayed = list_events(["kind=ACTOR_CALLS_REPLAYED"], None, source=scenario.source)
    assert [row["count"] for row in replayed] == [7, 0, 5]
    assert list_events(["kind=KIND_99"], None, source=scenario.source)[0]["count"] == 2
    assert list_events(["job_id=00000001", "kind=NODE_DIED"], None, source=scenario.source)[0]["node_id"] == \
        node_id(1).hex()


def test_recovery_lines_and_status(scenario):
    summary = recovery_summary(source=scenario.source)
    text = "\n".join(recovery_lines(summary))
    assert "5 task re-execution(s) (1 retry, 4 replay)" in text
    assert "2 object(s) lost, 2 rebuilt" in text and "12 actor call(s) replayed" in text
    assert "p50 50 ms, max 250 ms over 4 timed" in text
    assert "KIND_99" in text
    report = {"address": "127.0.0.1:1", "scheduler": "127.0.0.1:2", "nodes": [], "chains": [], "pending_tasks": 0,
              "recovery": summary}
    assert "12 actor call(s) replayed" in render_status(report)
    report = dict(report, recovery_error="ControlStoreUnavailableError: down")
    del report["recovery"]
    assert "recovery counters unavailable: ControlStoreUnavailableError" in render_status(report)
    empty = recovery_summary(source=MemorySource())
    assert recovery_lines(empty) == ["recovery: nothing lost, retried or replayed"]


# ------------------------------------------------------------ attempt scans


class RemoteLike(MemorySource):
    """A MemorySource that the catalog treats as remote, counting scans."""
    local = False

    def __init__(self, items=None):
        super().__init__(items)
        self.scans: list[bytes] = []

    def scan(self, prefix, page_keys=1000):
        self.scans.append(prefix)
        return super().scan(prefix, page_keys)


def _gappy_store(source_cls, tasks: int):
    r = Recorder(job=3)
    fid = r.function("gappy")
    ids = [r.task(fid, [], attempts=[Attempt()]) for _ in range(tasks)]
    # Attempt 1 of the first task was never written (best effort); 0 and 2 were.
    r.attempt(ids[0], 2, Attempt(pb.REPLAY, node=2))
    source = source_cls()
    r.flush(source)
    return source, ids


@pytest.mark.parametrize("source_cls", [MemorySource, RemoteLike])
def test_attempts_after_a_missing_number_are_read(source_cls):
    source, ids = _gappy_store(source_cls, 3)
    graph = lineage(ObjectID.from_index(ids[0], 1).hex(), source=source)
    task = graph.tasks[ids[0].hex()]
    assert [(a["attempt_number"], a["reason"]) for a in task.attempts] == [(0, "FIRST_RUN"), (2, "REPLAY")]
    assert graph.objects[ObjectID.from_index(ids[0], 1).hex()].status == "rebuilt"
    assert [a["attempt_number"] for a in get_task(ids[0].hex(), source=source)["attempts_detail"]] == [0, 2]


def test_many_tasks_of_a_job_on_a_remote_store_are_one_scan(monkeypatch):
    monkeypatch.setattr(lineage_module, "JOB_ATTEMPT_SCAN_TASKS_MIN", 4)
    source, ids = _gappy_store(RemoteLike, 10)
    found = lineage_module.Catalog(source).attempts([t.binary() for t in ids])
    attempt_scans = [p for p in source.scans if p.startswith(b"attempt/")]
    assert len(attempt_scans) == 1 and len(attempt_scans[0]) == len(b"attempt/") + 4
    assert [a.attempt_number for a in found[ids[0].binary()]] == [0, 2]
    assert all(len(found[t.binary()]) == 1 for t in ids[1:])


def test_a_job_scan_past_its_budget_reads_the_rest_task_by_task(monkeypatch):
    monkeypatch.setattr(lineage_module, "JOB_ATTEMPT_SCAN_TASKS_MIN", 2)
    monkeypatch.setattr(lineage_module, "JOB_ATTEMPT_SCAN_RECORDS_PER_TASK_MAX", 1)
    source, ids = _gappy_store(RemoteLike, 20)
    wanted = sorted(t.binary() for t in ids)[::5]  # 4 tasks among 20: the scan stops after 4 records
    found = lineage_module.Catalog(source).attempts(wanted)
    expected = {t: [a.attempt_number for a in lineage_module.Catalog(MemorySource(source._items)).attempts_of(t)]
                for t in wanted}
    assert {t: [a.attempt_number for a in v] for t, v in found.items()} == expected
    assert sum(p.startswith(b"attempt/") and len(p) > len(b"attempt/") + 4 for p in source.scans) >= 1
