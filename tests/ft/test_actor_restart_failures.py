"""A restart that fails: the new instance's worker process dies in the
constructor (or restore, or replay). That counts as another restart against
``max_restarts`` and is retried; when the budget is spent the actor is DEAD
and every pending caller gets ActorDiedError. Both after a process kill (one
node) and after a node kill (the actor is recovered on another node: the
"adopted" path, which used to stay RESTARTING for good)."""

from __future__ import annotations

import os
import signal
import time

import pytest

import lineagerun
from lineagerun.control.client import ControlStoreClient
from lineagerun.core.keys import actor_key
from lineagerun.exceptions import ActorDiedError
from lineagerun.rpc import lineage_pb2
from lineagerun.state import LiveSource, lineage
from lineagerun.testing import Cluster
from lineagerun.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tests.cluster.conftest import assert_gone, cluster_pids

RECORDS_WAIT_S = 20.0
PENDING_CALLS = 5


@lineagerun.remote
class Fragile:
    """Its constructor kills its own process in the incarnations listed in
    ``die_in`` (0 = the first run), counted in ``marker`` (a file)."""

    def __init__(self, marker, die_in):
        with open(marker, "a+") as counts:
            counts.seek(0)
            incarnation = len(counts.read().splitlines())
            counts.write(f"{os.getpid()}\n")
        if incarnation in die_in:
            os.kill(os.getpid(), signal.SIGKILL)
        self.applied = []

    def add(self, seq):
        self.applied.append(seq)
        return list(self.applied)

    def pid(self):
        return os.getpid()


def _incarnations(marker) -> int:
    with open(marker) as counts:
        return len(counts.read().splitlines())


def _wait(read, ready, timeout_s=RECORDS_WAIT_S):
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if ready(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _record(client, actor) -> lineage_pb2.ActorRecord:
    return lineage_pb2.ActorRecord.FromString(client.get(actor_key(actor._actor_id)))


def _creation_attempts(source, actor, count: int) -> list[tuple[str, str]]:
    def read():
        graph = lineage(actor._actor_id.hex(), source=source)
        return [(a["reason"], a["state"]) for a in graph.tasks[graph.actor.creation_task_id].attempts]
    return _wait(read, lambda attempts: len(attempts) >= count and "RUNNING" not in {s for _, s in attempts})


def _check_recovered(client, source, actor, marker, first_seq: int) -> None:
    """Calls from ``first_seq`` on are sent while the actor recovers: its
    constructor dies once in restart 1, restart 2 completes the recovery, and
    every call is applied once, in order, after the replayed ones."""
    pending = [actor.add.remote(seq) for seq in range(first_seq, first_seq + PENDING_CALLS)]
    results = lineagerun.get(pending, timeout=90)
    assert results == [list(range(seq + 1)) for seq in range(first_seq, first_seq + PENDING_CALLS)]
    assert _incarnations(marker) == 3
    record = _wait(lambda: _record(client, actor), lambda r: r.state == lineage_pb2.ALIVE and r.num_restarts == 2)
    assert (record.state, record.num_restarts) == (lineage_pb2.ALIVE, 2)
    assert _creation_attempts(source, actor, 3) == [("FIRST_RUN", "FINISHED"), ("REPLAY", "FAILED"),
                                                    ("REPLAY", "FINISHED")]


def _check_dead(client, actor, marker, pending: list) -> None:
    """max_restarts=1: the one restart died in its constructor; nothing is left."""
    for ref in pending:
        with pytest.raises(ActorDiedError):
            lineagerun.get(ref, timeout=90)
    with pytest.raises(ActorDiedError, match="max_restarts=1"):
        lineagerun.get(actor.add.remote(99), timeout=60)
    record = _wait(lambda: _record(client, actor), lambda r: r.state == lineage_pb2.DEAD)
    assert record.state == lineage_pb2.DEAD and record.num_restarts == 1
    assert _incarnations(marker) == 2


# ------------------------------------------------------------ one node


@pytest.fixture(scope="module")
def local():
    lineagerun.shutdown()
    state = lineagerun.init(num_cpus=2)
    client = ControlStoreClient(state.cluster.control_store.address, state.cluster.token)
    source = LiveSource(state.cluster.control_store.address, state.cluster.token)
    try:
        yield client, source
    finally:
        source.close()
        client.close()
        lineagerun.shutdown()


@pytest.mark.timeout(120)
def test_constructor_death_in_a_restart_counts_as_a_restart_and_is_retried(local, tmp_path):
    client, source = local
    marker = str(tmp_path / "incarnations")
    actor = Fragile.options(max_restarts=3).remote(marker, (1,))
    assert lineagerun.get(actor.add.remote(0), timeout=60) == [0]
    os.kill(lineagerun.get(actor.pid.remote(), timeout=60), signal.SIGKILL)
    _check_recovered(client, source, actor, marker, 1)


@pytest.mark.timeout(120)
def test_constructor_death_with_the_budget_spent_fails_every_pending_call(local, tmp_path):
    client, _ = local
    marker = str(tmp_path / "incarnations")
    actor = Fragile.options(max_restarts=1).remote(marker, (1,))
    assert lineagerun.get(actor.add.remote(0), timeout=60) == [0]
    os.kill(lineagerun.get(actor.pid.remote(), timeout=60), signal.SIGKILL)
    _check_dead(client, actor, marker, [actor.add.remote(seq) for seq in range(1, PENDING_CALLS + 1)])


# ------------------------------------------------------------ node kill


@pytest.fixture(scope="module")
def cluster():
    """Head (the driver's node) + one node that stays; each test adds its victim."""
    lineagerun.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1}, node_timeout_ms=1000)
    client = source = None
    try:
        cluster.add_node(num_cpus=1)
        lineagerun.init(address=cluster.address)
        client = ControlStoreClient(cluster.control_store.address, cluster.token)
        source = LiveSource(cluster.address, cluster.token)
        yield cluster, client, source
    finally:
        for closable in (source, client):
            if closable is not None:
                closable.close()
        pids = cluster_pids(cluster)
        lineagerun.shutdown()
        cluster.shutdown()
        assert_gone(pids)


def _on_victim(cluster, marker, max_restarts):
    victim = cluster.add_node(num_cpus=1)
    actor = Fragile.options(max_restarts=max_restarts, scheduling_strategy=NodeAffinitySchedulingStrategy(
        victim.node_id, soft=True)).remote(marker, (1,))
    assert lineagerun.get(actor.add.remote(0), timeout=60) == [0]
    return victim, actor


@pytest.mark.timeout(180)
def test_constructor_death_after_a_node_kill_is_retried_on_a_live_node(cluster, tmp_path):
    cluster, client, source = cluster
    marker = str(tmp_path / "incarnations")
    victim, actor = _on_victim(cluster, marker, 3)
    assert lineagerun.get([actor.add.remote(seq) for seq in range(1, 3)], timeout=60)[-1] == [0, 1, 2]
    cluster.remove_node(victim, allow_graceful=False)
    _check_recovered(client, source, actor, marker, 3)


@pytest.mark.timeout(180)
def test_constructor_death_after_a_node_kill_with_the_budget_spent_fails_every_pending_call(cluster, tmp_path):
    cluster, client, _ = cluster
    marker = str(tmp_path / "incarnations")
    victim, actor = _on_victim(cluster, marker, 1)
    cluster.remove_node(victim, allow_graceful=False)
    _check_dead(client, actor, marker, [actor.add.remote(seq) for seq in range(1, PENDING_CALLS + 1)])
