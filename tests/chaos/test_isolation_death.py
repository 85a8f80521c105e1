"""Isolating a node of a ``Cluster(chaos=True)`` cuts its control-store
links too (issue 6, R7): the node's heartbeat records stop, the scheduler
declares it dead within the failure timeout, its tasks are retried on the
other nodes, and after heal the node is fenced (it sees its own record
declared dead and stops; its record stays dead)."""

from __future__ import annotations

import time

import pytest

import lineagerun
from lineagerun.chaos.cluster_nemesis import ClusterNemesis
from lineagerun.node import launcher
from lineagerun.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tests.cluster.conftest import connected_cluster

NODE_TIMEOUT_MS = 1000
# Declared dead within the timeout plus a tick, a record round trip and load.
DECLARED_DEAD_WITHIN_S = 8.0
# A fenced node stops within a few heartbeats of the heal.
FENCED_STOP_WITHIN_S = 15.0
TASK_SLEEP_S = 3.0


@lineagerun.remote
def square_on_node(x, sleep_s):
    time.sleep(sleep_s)
    return x * x, lineagerun.get_runtime_context().get_node_id()


def _alive(node_id: str) -> bool:
    return next(n["Alive"] for n in lineagerun.nodes() if n["NodeID"] == node_id)


def _wait(predicate, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what} not within {timeout_s} s")
        time.sleep(0.05)
    return time.monotonic() - started


def _two_more_nodes(cluster) -> None:
    cluster.add_node(num_cpus=1, wait=False)
    cluster.add_node(num_cpus=1, wait=False)
    cluster.wait_for_nodes()


@pytest.fixture
def three_nodes():
    # The cluster's processes are taken before a fenced node stops: its workers must be gone too.
    with connected_cluster(_two_more_nodes, head_node_args={"num_cpus": 1}, chaos=True,
                           node_timeout_ms=NODE_TIMEOUT_MS) as cluster:
        yield cluster


@pytest.mark.timeout(120)
def test_each_node_has_its_own_link_to_each_replica_and_isolation_cuts_it(three_nodes):
    cluster = three_nodes
    links = cluster.links
    names = [{p.name for p in n.store.values()} for n in links.nodes]
    assert names == [{f"node-{i}-replica-0-0"} for i in range(3)]
    # The node's map sends the replica's advertised address to its own proxy.
    (advertised,) = links.replicas.values()
    assert advertised in {r.address for r in cluster.control_store.config().shards[0].chain}
    victim = links.nodes[2]
    (target,) = ClusterNemesis(cluster).targets.network_targets("node:2", 0)
    assert "node-2-replica-0-0" in {p.name for p in target.proxies}
    assert "node-1-replica-0-0" not in {p.name for p in target.proxies}
    (split,) = ClusterNemesis(cluster).targets.network_targets("split", 0)
    assert "node-2-replica-0-0" in {p.name for p in split.proxies}
    (store,) = ClusterNemesis(cluster).targets.network_targets("control-store", 0)
    assert {f"node-{i}-replica-0-0" for i in range(3)} <= {p.name for p in store.proxies}
    assert victim.store_dial_map.exists()
    # A restarted replica keeps its port, so every node's proxy to it stays valid.
    cluster.control_store.kill_replica(0, 0)
    cluster.control_store.restart_replica(0, 0)
    cluster.control_store.wait_for_member(0, 0, timeout_s=30)
    assert [r.address for r in cluster.control_store.config().shards[0].chain] == [advertised]
    assert lineagerun.get(square_on_node.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        cluster.list_all_nodes()[2].node_id, soft=False)).remote(5, 0.0), timeout=60)[0] == 25


@pytest.mark.timeout(120)
def test_an_isolated_node_is_declared_dead_its_tasks_rerun_and_it_is_fenced_after_heal(three_nodes):
    cluster = three_nodes
    head, other, victim = cluster.list_all_nodes()
    nemesis = ClusterNemesis(cluster)
    on_victim = NodeAffinitySchedulingStrategy(victim.node_id, soft=True)
    refs = [square_on_node.options(scheduling_strategy=on_victim).remote(x, TASK_SLEEP_S) for x in (3, 4)]
    spread = [square_on_node.remote(x, 0.0) for x in range(5)]
    time.sleep(1.0)  # the victim's tasks are running
    nemesis.partition(victim)
    try:
        dead_after_s = _wait(lambda: not _alive(victim.node_id), DECLARED_DEAD_WITHIN_S,
                             "the isolated node declared dead")
        print(f"isolated node declared dead after {dead_after_s:.2f} s")
        assert _alive(head.node_id) and _alive(other.node_id)
        results = lineagerun.get(refs + spread, timeout=60)
    finally:
        nemesis.heal()
    assert [value for value, _ in results] == [9, 16] + [x * x for x in range(5)]
    # The victim's tasks could not finish there (3 s tasks, dead after ~1 s
    # of isolation): they ran again on a live node.
    assert all(node != victim.node_id for _, node in results[:2]), (dead_after_s, results)
    # Healed: the node learns it was declared dead and stops; nothing it
    # writes makes it alive again.
    _wait(lambda: not victim.alive(), FENCED_STOP_WITHIN_S, "the fenced node stopped")
    view = {n.node_id.hex(): n for n in launcher.scheduler_view(cluster.scheduler_address, cluster.token)}
    assert not view[victim.node_id].alive
    assert not _alive(victim.node_id)
    assert lineagerun.get([square_on_node.remote(x, 0.0) for x in range(4)], timeout=60) \
        and all(_alive(n.node_id) for n in (head, other))


def test_a_node_dial_map_file_is_reread_when_replaced_and_passes_unknown_addresses(tmp_path):
    from lineagerun.control.dial_map import DialMapFile, write_dial_map
    from lineagerun.node.store_dial import STORE_DIAL_MAP_ENV, store_dial

    path = tmp_path / "node-0.json"
    dial = store_dial(str(path))
    assert isinstance(dial, DialMapFile) and store_dial("") is None
    assert dial("127.0.0.1:5000") == "127.0.0.1:5000"          # no file yet: direct
    write_dial_map(path, {"127.0.0.1:5000": "127.0.0.1:6000"})
    assert dial("127.0.0.1:5000") == "127.0.0.1:6000"
    assert dial("127.0.0.1:5001") == "127.0.0.1:5001"          # not named: direct
    write_dial_map(path, {"127.0.0.1:5000": "127.0.0.1:6000", "127.0.0.1:5001": "127.0.0.1:6001"})
    assert dial("127.0.0.1:5001") == "127.0.0.1:6001"          # a replica added: reread at once
    path.write_text("not json")
    with pytest.raises(lineagerun.exceptions.ConfigurationError, match="not JSON"):
        dial("127.0.0.1:5000")
    assert STORE_DIAL_MAP_ENV == "LINEAGERUN_STORE_DIAL_MAP"
