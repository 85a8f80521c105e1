"""Lineage of what a real embedded cluster ran (not synthetic records):
chains, trees and actors, and a task whose worker is killed mid-task
(a RETRY attempt on the record, with the failed first run and why, and a
retry slice in the timeline); post mortem, the stopped cluster's directory
gives the same lineage."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

import lineagerun
from lineagerun.api import session
from lineagerun.state import LiveSource, get_task, lineage, list_tasks, recovery_summary, timeline, write_trace
from lineagerun.state.render import render, to_tree
from tests.state.test_lineage import parse_dot

pytestmark = pytest.mark.timeout(120)
# Attempt and object records are written a moment after the results (batched).
RECORDS_WAIT_S = 15.0


@pytest.fixture(scope="module")
def cluster():
    state = session.driver_state()
    lineagerun.shutdown()
    state = lineagerun.init(num_cpus=2)
    source = LiveSource(state.cluster.control_store.address, state.cluster.token)
    try:
        yield state, source
    finally:
        source.close()
        lineagerun.shutdown()
        shutil.rmtree(state.session_dir, ignore_errors=True)


@lineagerun.remote
def load(n):
    return list(range(n))


@lineagerun.remote
def step(values):
    return [v + 1 for v in values]


@lineagerun.remote
def square(values, k):
    return [v * k for v in values]


@lineagerun.remote
def reduce_all(*parts):
    return sum(sum(p) for p in parts)


@lineagerun.remote
def number(n):
    return n


@lineagerun.remote
class Counter:
    def __init__(self, start):
        self.value = start

    def add(self, amount):
        self.value += amount
        return self.value


@lineagerun.remote(max_retries=2)
def killed_once(pid_file):
    if not os.path.exists(pid_file):
        with open(pid_file + ".tmp", "w") as out:
            out.write(str(os.getpid()))
        os.rename(pid_file + ".tmp", pid_file)
        time.sleep(60)  # killed here by the test
    return "second attempt"


def _settled(source, ref_hex: str, want_tasks: int):
    """The graph once every task has a finished attempt and its output a record."""
    deadline = time.monotonic() + RECORDS_WAIT_S
    while True:
        graph = lineage(ref_hex, source=source)
        done = len(graph.tasks) == want_tasks and all(t.state == "FINISHED" for t in graph.tasks.values()) and \
            all(o.status in ("present", "rebuilt") for o in graph.objects.values())
        if done or time.monotonic() > deadline:
            return graph
        time.sleep(0.1)


def test_chain(cluster):
    state, source = cluster
    refs = [load.remote(3)]
    for _ in range(3):
        refs.append(step.remote(refs[-1]))
    assert lineagerun.get(refs[-1], timeout=60) == [3, 4, 5]
    graph = _settled(source, refs[-1].hex(), 4)
    node = state.core_worker.node_id_hex
    tasks = [graph.tasks[r.task_id().hex()] for r in refs]
    assert [t.name.rsplit(".", 1)[-1] for t in tasks] == ["load", "step", "step", "step"]
    assert [t.depth for t in tasks] == [3, 2, 1, 0]
    for task in tasks:
        assert task.state == "FINISHED" and task.node_id == node
        assert [(a["reason"], a["state"]) for a in task.attempts] == [("FIRST_RUN", "FINISHED")]
        assert task.duration_ms is not None and task.duration_ms >= 0
    assert {(e.producer, e.consumer) for e in graph.edges} == \
        {(a.task_id().hex(), b.task_id().hex()) for a, b in zip(refs, refs[1:])}
    assert all(graph.objects[r.hex()].status == "present" for r in refs)
    tree = to_tree(graph).splitlines()
    assert tree[0].startswith(f"object {refs[-1].hex()}  present")
    assert len(tree) == 5 and all(" |  " in line for line in tree[2:])
    assert json.loads(render(graph, "json"))["roots"] == [refs[-1].task_id().hex()]
    nodes, edges = parse_dot(render(graph, "dot"))
    assert f"t:{refs[0].task_id().hex()}" in nodes and len(edges) == 2 * len(refs) - 1


def test_tree(cluster):
    _, source = cluster
    base = load.remote(4)
    maps = [square.remote(base, k) for k in range(1, 4)]
    total = reduce_all.remote(*maps)
    assert lineagerun.get(total, timeout=60) == 6 * (0 + 1 + 2 + 3)
    graph = _settled(source, total.hex(), 5)
    root = graph.tasks[total.task_id().hex()]
    assert root.depth == 0 and root.args == [m.hex() for m in maps]
    assert {graph.tasks[m.task_id().hex()].depth for m in maps} == {1}
    assert graph.tasks[base.task_id().hex()].depth == 2
    tree = to_tree(graph)
    assert tree.count(" +- ") == 3 and tree.count("(shown above)") == 2


def test_actor(cluster):
    _, source = cluster
    counter = Counter.remote(10)
    arg = number.remote(1)
    calls = [counter.add.remote(1), counter.add.remote(2), counter.add.remote(arg)]
    assert lineagerun.get(calls, timeout=60) == [11, 13, 14]
    actor_hex = counter._actor_id.hex()
    deadline = time.monotonic() + RECORDS_WAIT_S
    while True:
        graph = lineage(actor_hex, source=source)
        if len(graph.actor.calls) == 3 and all(t.state == "FINISHED" for t in graph.tasks.values()) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert graph.root_kind == "actor" and graph.actor.class_name.endswith("Counter")
    assert graph.actor.calls == [c.task_id().hex() for c in calls]
    creation = graph.tasks[graph.actor.creation_task_id]
    assert creation.name.endswith("Counter.__init__") and creation.state == "FINISHED"
    methods = [graph.tasks[c.task_id().hex()] for c in calls]
    assert [m.name.rsplit(".", 1)[-1] for m in methods] == ["add"] * 3
    assert [m.sequence_number for m in methods] == sorted(m.sequence_number for m in methods)
    assert all(m.replayed_on_restart for m in methods)  # no checkpoint: a restart replays every call
    stateful = [(e.producer, e.consumer) for e in graph.edges if e.kind == "stateful"]
    chain = [graph.actor.creation_task_id] + graph.actor.calls
    assert stateful == list(zip(chain, chain[1:]))
    # The third call's by-reference argument: its producer branches off the chain.
    assert methods[2].args == [arg.hex()]
    assert (arg.task_id().hex(), calls[2].task_id().hex(), arg.hex(), "data") in \
        {(e.producer, e.consumer, e.object_id, e.kind) for e in graph.edges}
    assert " +- " in to_tree(graph) and "number" in to_tree(graph)


def test_worker_killed_mid_task_is_a_retry_attempt(cluster, tmp_path):
    state, source = cluster
    pid_file = str(tmp_path / "pid")
    ref = killed_once.remote(pid_file)
    deadline = time.monotonic() + 30
    while not os.path.exists(pid_file):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    os.kill(int(open(pid_file).read()), signal.SIGKILL)
    assert lineagerun.get(ref, timeout=60) == "second attempt"
    task_hex = ref.task_id().hex()
    deadline = time.monotonic() + RECORDS_WAIT_S
    while True:
        task = get_task(task_hex, source=source)
        if task["state"] == "FINISHED" and task["attempts"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    first, second = task["attempts_detail"]
    assert (first["reason"], first["state"]) == ("FIRST_RUN", "FAILED")
    assert first["error"].startswith("WorkerCrashedError")
    assert (second["reason"], second["state"]) == ("RETRY", "FINISHED")
    assert first["worker_id"] and second["worker_id"] and first["worker_id"] != second["worker_id"]
    assert task["reasons"] == "first_run,retry" and task["outputs"][0]["status"] == "present"
    graph = lineage(ref.hex(), source=source)
    assert "attempts=2 [first_run:FAILED@" in to_tree(graph) and ", retry:FINISHED@" in to_tree(graph)
    rows = list_tasks(["reasons=first_run,retry"], None, source=source)
    assert task_hex in {r["task_id"] for r in rows}
    assert recovery_summary(source=source)["task_retries"] >= 1


@lineagerun.remote(max_restarts=1, checkpoint_interval=2)
class CheckpointedCounter:
    def __init__(self):
        self.value = 0

    def add(self, amount):
        self.value += amount
        return self.value

    def pid(self):
        return os.getpid()

    def __lineagerun_checkpoint__(self):
        return self.value

    def __lineagerun_restore__(self, value):
        self.value = value


def test_actor_restart_is_counted_and_its_checkpoint_marked(cluster):
    _, source = cluster
    started_ms = int(time.time() * 1000)
    counter = CheckpointedCounter.remote()
    assert [lineagerun.get(counter.add.remote(k), timeout=60) for k in range(1, 6)] == [1, 3, 6, 10, 15]
    os.kill(lineagerun.get(counter.pid.remote(), timeout=60), signal.SIGKILL)
    assert lineagerun.get(counter.add.remote(10), timeout=60) == 25  # restored and replayed: nothing lost
    deadline = time.monotonic() + RECORDS_WAIT_S
    while True:
        graph = lineage(counter._actor_id.hex(), source=source)
        summary = recovery_summary(source=source, since_ms=started_ms)
        settled = graph.actor.state == "ALIVE" and graph.actor.num_restarts == 1 and len(graph.actor.calls) == 7
        if settled and summary["actors_restarted"] == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert graph.actor.state == "ALIVE" and graph.actor.num_restarts == 1 and graph.actor.has_checkpoint
    calls = [graph.tasks[t] for t in graph.actor.calls]
    [checkpointed] = [c for c in calls if c.checkpoint]
    assert checkpointed.sequence_number == graph.actor.checkpoint_sequence_number
    assert all(c.replayed_on_restart == (c.sequence_number > checkpointed.sequence_number) for c in calls)
    assert "[checkpoint]" in to_tree(graph) and "restarts=1" in to_tree(graph).splitlines()[0]
    assert summary["actors_died"] == 1 and summary["actors_restarted"] == 1
    assert summary["by_kind"]["ACTOR_RESTARTED"]["recovery_time"]["n"] == 1
    assert summary["by_kind"]["ACTOR_CALLS_REPLAYED"]["events"] == 1
    assert summary["actor_calls_replayed"] <= 2  # at most checkpoint_interval calls replayed


def test_timeline_marks_the_retry(cluster, tmp_path):
    _, source = cluster
    pid_file = str(tmp_path / "pid")
    ref = killed_once.remote(pid_file)
    deadline = time.monotonic() + 30
    while not os.path.exists(pid_file):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    os.kill(int(open(pid_file).read()), signal.SIGKILL)
    assert lineagerun.get(ref, timeout=60) == "second attempt"
    task_hex = ref.task_id().hex()
    deadline = time.monotonic() + RECORDS_WAIT_S
    while True:
        slices = [e for e in timeline(source=source) if e["ph"] == "X" and e["args"]["task_id"] == task_hex]
        if [s["args"]["state"] for s in slices] == ["FAILED", "FINISHED"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    first, second = slices
    assert first["name"].endswith("killed_once") and first["args"]["reason"] == "FIRST_RUN"
    assert second["name"].endswith("killed_once (retry)") and second["args"]["reason"] == "RETRY"
    assert first["tid"] != second["tid"]  # another worker
    out = tmp_path / "trace.json"
    write_trace(timeline(source=source), out)
    assert json.loads(out.read_text())["traceEvents"]


def test_post_mortem_after_shutdown_matches_the_live_lineage(cluster):
    """Runs last: stops the cluster, then reads its control-store directory."""
    state, source = cluster
    refs = [load.remote(2)]
    refs.append(step.remote(refs[-1]))
    assert lineagerun.get(refs[-1], timeout=60) == [1, 2]
    live = _settled(source, refs[-1].hex(), 2).to_dict()
    lineagerun.shutdown()
    graph = lineage(refs[-1].hex(), dir=state.session_dir)
    assert graph.to_dict() == live
    assert get_task(refs[0].task_id().hex(), dir=state.session_dir)["state"] == "FINISHED"
