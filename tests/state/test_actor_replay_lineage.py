"""Replayed actor calls in lineage (issue 7 on real runtime data): after an
actor's worker process is killed (one node) or its node is killed (a
cluster), the calls replayed from lineage are new attempts of the same
calls (reason REPLAY, the next attempt number, the node and worker that
replayed them), and the re-run constructor is a REPLAY attempt of the
creation task. Tree, JSON and timeline show them; the recovery summary's
attempt counts agree with the actor events."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

import lineagerun
from lineagerun.state import LiveSource, lineage, recovery_lines, recovery_summary, timeline
from lineagerun.state.render import render, to_tree
from lineagerun.testing import Cluster
from lineagerun.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tests.cluster.conftest import assert_gone, cluster_pids

RECORDS_WAIT_S = 20.0
NODE_TIMEOUT_MS = 1000
CALLS = 4


@lineagerun.remote(max_restarts=2)
class Counter:
    def __init__(self, start):
        self.value = start

    def add(self, amount):
        self.value += amount
        return self.value

    def where(self):
        return os.getpid(), lineagerun.get_runtime_context().get_node_id()


def _wait(read, ready, timeout_s=RECORDS_WAIT_S):
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if ready(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _reasons(task) -> list[tuple[int, str, str]]:
    return [(a["attempt_number"], a["reason"], a["state"]) for a in task.attempts]


def _replays_settled(source, ref_hex: str, replays: int):
    """The lineage of a call's result once it shows ``replays`` finished replays."""
    def ready(graph):
        task = next(iter(t for t in graph.tasks.values() if ref_hex in t.outputs), None)
        return task is not None and [r for _, r, s in _reasons(task) if s == "FINISHED"].count("REPLAY") >= replays
    return _wait(lambda: lineage(ref_hex, source=source), ready)


# ------------------------------------------------------------ process kill


@pytest.fixture(scope="module")
def local():
    lineagerun.shutdown()
    state = lineagerun.init(num_cpus=2)
    source = LiveSource(state.cluster.control_store.address, state.cluster.token)
    try:
        yield state, source
    finally:
        source.close()
        lineagerun.shutdown()
        shutil.rmtree(state.session_dir, ignore_errors=True)


@pytest.mark.timeout(120)
def test_a_process_kill_records_each_replayed_call_as_a_replay_attempt(local):
    _, source = local
    started_ms = int(time.time() * 1000)
    counter = Counter.remote(10)
    calls = [counter.add.remote(k) for k in range(1, CALLS + 1)]
    assert lineagerun.get(calls, timeout=60) == [11, 13, 16, 20]
    pids = []
    for kill in range(2):
        pid, _ = lineagerun.get(counter.where.remote(), timeout=60)
        assert pid not in pids
        pids.append(pid)
        os.kill(pid, signal.SIGKILL)
        assert lineagerun.get(counter.add.remote(0), timeout=60) == 20  # replayed: nothing lost
    first = calls[0].hex()
    graph = _replays_settled(source, first, 2)
    task = graph.tasks[calls[0].task_id().hex()]
    # Attempt 0 ran on the first worker; each restart replayed it once more.
    assert _reasons(task) == [(0, "FIRST_RUN", "FINISHED"), (1, "REPLAY", "FINISHED"), (2, "REPLAY", "FINISHED")]
    workers = [a["worker_id"] for a in task.attempts]
    assert all(workers) and len(set(workers)) == 3, task.attempts
    assert all(a["start_ms"] and a["end_ms"] >= a["start_ms"] for a in task.attempts)
    # The constructor ran again at each restart: REPLAY attempts 1 and 2 of the creation task.
    actor = _wait(lambda: lineage(counter._actor_id.hex(), source=source),
                  lambda g: len(g.tasks[g.actor.creation_task_id].attempts) == 3)
    creation = actor.tasks[actor.actor.creation_task_id]
    assert _reasons(creation) == [(0, "FIRST_RUN", "FINISHED"), (1, "REPLAY", "FINISHED"),
                                  (2, "REPLAY", "FINISHED")]
    assert actor.actor.num_restarts == 2
    # Tree, JSON and timeline show the replays.
    tree = to_tree(graph)
    assert "attempts=3 [first_run:FINISHED@" in tree and ", replay:FINISHED@" in tree, tree
    data = json.loads(render(graph, "json"))
    [entry] = [t for t in data["tasks"] if t["task_id"] == calls[0].task_id().hex()]
    assert [a["reason"] for a in entry["attempts"]] == ["FIRST_RUN", "REPLAY", "REPLAY"]
    slices = [e for e in timeline(source=source) if e["ph"] == "X"
              and e["args"]["task_id"] == calls[0].task_id().hex()]
    assert [s["args"]["replay"] for s in slices] == [False, True, True]
    assert slices[1]["name"].endswith("Counter.add (replay)") and slices[1]["tid"] != slices[0]["tid"]
    # The summary's attempt counts agree with the actor events.
    summary = _wait(lambda: recovery_summary(source=source, since_ms=started_ms - 1000),
                    lambda s: s["actors_restarted"] == 2 and s["actor_call_replay_attempts"]
                    == s["actor_calls_replayed"])
    assert summary["actors_restarted"] == summary["actor_restart_attempts"] == 2
    # Each recovery replays the whole chain (no checkpoint): 4 adds and where(), then also add(0) and
    # where(); the add(0) sent right after a kill is replayed by that kill's recovery too if it reached
    # the dying worker before its death was seen (a timing matter: either kill, or both).
    assert summary["actor_call_replay_attempts"] == summary["actor_calls_replayed"]
    assert (CALLS + 1) + (CALLS + 3) <= summary["actor_calls_replayed"] <= (CALLS + 2) + (CALLS + 4)
    assert summary["task_replays"] >= summary["actor_call_replay_attempts"] + 2
    text = "\n".join(recovery_lines(summary))
    assert f"of the replays: {summary['actor_call_replay_attempts']} actor call(s) and 2 constructor run(s)" in text


# --------------------------------------------------------------- node kill


@pytest.mark.timeout(180)
def test_a_node_kill_records_the_replays_on_the_new_node():
    lineagerun.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1}, node_timeout_ms=NODE_TIMEOUT_MS)
    try:
        victim = cluster.add_node(num_cpus=1)
        cluster.add_node(num_cpus=1)
        lineagerun.init(address=cluster.address)
        source = LiveSource(cluster.address, cluster.token)
        try:
            _node_kill_case(cluster, victim, source)
        finally:
            source.close()
    finally:
        pids = cluster_pids(cluster)
        lineagerun.shutdown()
        cluster.shutdown()
        assert_gone(pids)


def _node_kill_case(cluster, victim, source) -> None:
    started_ms = int(time.time() * 1000)
    on_victim = NodeAffinitySchedulingStrategy(victim.node_id, soft=True)
    counter = Counter.options(scheduling_strategy=on_victim).remote(10)
    calls = [counter.add.remote(k) for k in range(1, CALLS + 1)]
    assert lineagerun.get(calls, timeout=60) == [11, 13, 16, 20]
    assert lineagerun.get(counter.where.remote(), timeout=60)[1] == victim.node_id
    # The first runs' attempt records are written a moment after the results.
    before = _wait(lambda: lineage(calls[-1].hex(), source=source),
                   lambda g: all(t.attempts and t.attempts[0]["state"] == "FINISHED" for t in g.tasks.values()))
    assert all(t.node_id == victim.node_id for t in before.tasks.values())
    cluster.remove_node(victim, allow_graceful=False)
    assert lineagerun.get(counter.add.remote(0), timeout=90) == 20  # restarted elsewhere, chain replayed
    _, new_node = lineagerun.get(counter.where.remote(), timeout=60)
    assert new_node != victim.node_id
    graph = _replays_settled(source, calls[0].hex(), 1)
    task = graph.tasks[calls[0].task_id().hex()]
    assert _reasons(task) == [(0, "FIRST_RUN", "FINISHED"), (1, "REPLAY", "FINISHED")]
    first, replay = task.attempts
    assert first["node_id"] == victim.node_id and replay["node_id"] == new_node
    assert replay["worker_id"] and replay["worker_id"] != first["worker_id"]
    actor = _wait(lambda: lineage(counter._actor_id.hex(), source=source),
                  lambda g: len(g.tasks[g.actor.creation_task_id].attempts) == 2)
    creation = actor.tasks[actor.actor.creation_task_id]
    assert _reasons(creation) == [(0, "FIRST_RUN", "FINISHED"), (1, "REPLAY", "FINISHED")]
    assert [a["node_id"] for a in creation.attempts] == [victim.node_id, new_node]
    tree = to_tree(graph)
    assert "attempts=2 [first_run:FINISHED@" in tree and ", replay:FINISHED@" in tree, tree
    data = json.loads(render(graph, "json"))
    [entry] = [t for t in data["tasks"] if t["task_id"] == calls[0].task_id().hex()]
    assert [(a["reason"], a["node_id"]) for a in entry["attempts"]] == [("FIRST_RUN", victim.node_id),
                                                                        ("REPLAY", new_node)]
    slices = [e for e in timeline(source=source) if e["ph"] == "X"
              and e["args"]["task_id"] == calls[0].task_id().hex()]
    assert [s["args"]["replay"] for s in slices] == [False, True] and slices[0]["pid"] != slices[1]["pid"]
    summary = _wait(lambda: recovery_summary(source=source, since_ms=started_ms - 1000),
                    lambda s: s["actors_restarted"] == 1 and s["actor_call_replay_attempts"]
                    == s["actor_calls_replayed"])
    assert summary["actors_restarted"] == summary["actor_restart_attempts"] == 1
    assert summary["actor_call_replay_attempts"] == summary["actor_calls_replayed"] >= CALLS + 1
