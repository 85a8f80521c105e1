"""Per-pair node links of a ``Cluster(chaos=True)`` (3 nodes): cutting
exactly A <-> B (A and B still reach the third node, and the driver both),
a split into any two groups, isolating one node (every link of it, so the
scheduler declares it dead while the others stay alive), and heal."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

import lineagerun
from lineagerun.chaos.cluster_nemesis import ClusterNemesis
from lineagerun.chaos.runtime_links import connect_driver
from lineagerun.node import launcher
from lineagerun.testing import Cluster
from lineagerun.util.scheduling_strategies import NodeAffinitySchedulingStrategy

# Above the inline threshold: the object lives in its node's store and a
# task elsewhere must pull it over a node-to-node link.
ARRAY_ITEMS = 200_000


@lineagerun.remote
def make_array(seed):
    return np.full(ARRAY_ITEMS, seed, dtype=np.float64)


@lineagerun.remote(max_retries=0)
def total(array):
    return float(array.sum())


def _on(node):
    return NodeAffinitySchedulingStrategy(node.node_id, soft=False)


@pytest.fixture(scope="module")
def three_nodes():
    lineagerun.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1}, chaos=True)
    try:
        cluster.add_node(num_cpus=1, wait=False)
        cluster.add_node(num_cpus=1, wait=False)
        cluster.wait_for_nodes()
        connect_driver(cluster)
        yield cluster
    finally:
        lineagerun.shutdown()
        cluster.shutdown()


def _names(target) -> set[str]:
    return {p.name for p in target.proxies}


@pytest.mark.timeout(240)
def test_a_pair_cut_separates_exactly_two_nodes_until_heal(three_nodes):
    cluster = three_nodes
    head, a, b = cluster.list_all_nodes()
    nemesis = ClusterNemesis(cluster)
    on_b = make_array.options(scheduling_strategy=_on(b)).remote(2.0)
    on_head = make_array.options(scheduling_strategy=_on(head)).remote(1.0)
    assert lineagerun.get(total.options(scheduling_strategy=_on(head)).remote(on_b), timeout=60) == 2.0 * ARRAY_ITEMS
    assert "cut" in nemesis.cut_pair(a, b)
    try:
        assert {p.name for p in cluster.links.pairs.values() if not p.enabled} == {"pair-1-2", "pair-2-1"}
        # a still reaches the head (its objects, the head's forwarded tasks).
        assert lineagerun.get(total.options(scheduling_strategy=_on(a)).remote(on_head), timeout=60) \
            == 1.0 * ARRAY_ITEMS
        # a cannot pull b's object while the pair is cut.
        only_on_b = make_array.options(scheduling_strategy=_on(b)).remote(4.0)
        lineagerun.wait([only_on_b], timeout=60, fetch_local=False)
        blocked = total.options(scheduling_strategy=_on(a)).remote(only_on_b)
        ready, _ = lineagerun.wait([blocked], timeout=3)
        assert not ready, lineagerun.get(blocked)
    finally:
        nemesis.heal()
    assert all(p.enabled for p in cluster.links.pairs.values())
    # Healed: the same pull works (a fresh task; the blocked one may have
    # failed its pull meanwhile).
    assert lineagerun.get(total.options(scheduling_strategy=_on(a)).remote(only_on_b), timeout=90) \
        == 4.0 * ARRAY_ITEMS


def test_split_into_any_two_groups_names_the_links_between_them(three_nodes):
    cluster = three_nodes
    targets = ClusterNemesis(cluster).targets
    (head_alone,) = targets.network_targets("split:0", 0)
    # The head's group keeps its services: the other side loses them.
    assert _names(head_alone) == {"pair-0-1", "pair-1-0", "pair-0-2", "pair-2-0",
                                  "node-1-in", "node-1-cs", "node-1-gs", "node-2-in", "node-2-cs", "node-2-gs",
                                  "node-1-replica-0-0", "node-2-replica-0-0"}
    (later_half,) = targets.network_targets("split", 0)
    assert _names(later_half) == {"pair-0-2", "pair-2-0", "pair-1-2", "pair-2-1",
                                  "node-2-in", "node-2-cs", "node-2-gs", "node-2-replica-0-0"}
    (listed,) = targets.network_targets("split:1,2", 0)
    assert _names(listed) == _names(head_alone)
    (pair,) = targets.network_targets("pair:0-2", 0)
    assert _names(pair) == {"pair-0-2", "pair-2-0"}
    with pytest.raises(lineagerun.exceptions.InvalidArgumentError, match="pair"):
        targets.network_targets("pair:1", 0)
    with pytest.raises(lineagerun.exceptions.ConfigurationError, match="both sides"):
        targets.network_targets("split:0,1,2", 0)


def _refused(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_cli_cuts_a_pair_and_isolates_a_node_by_session(three_nodes):
    import click
    from click.testing import CliRunner

    from lineagerun.cli.chaos_run import nemesis as nemesis_cli

    cluster = three_nodes
    head, a, b = cluster.list_all_nodes()
    session = str(cluster.session_dir)
    cli = click.Group("chaos", commands={"nemesis": nemesis_cli})
    links = cluster.links
    try:
        result = CliRunner().invoke(cli, ["nemesis", "cut-pair", "--session", session, "--node", a.node_id[:12],
                                          "--node", b.node_id[:12]])
        assert result.exit_code == 0, result.output
        assert "pair-1-2" in result.output and "pair-2-1" in result.output
        assert {n for n, p in links.api.proxies().items() if not p.enabled} == {"pair-1-2", "pair-2-1"}
        result = CliRunner().invoke(cli, ["nemesis", "partition", "--session", session, "--node", a.node_id[:12]])
        assert result.exit_code == 0, result.output
        assert {n for n, p in links.api.proxies().items() if not p.enabled} == {
            "pair-1-2", "pair-2-1", "pair-0-1", "pair-1-0", "node-1-in", "node-1-cs", "node-1-gs",
            "node-1-replica-0-0"}
    finally:
        result = CliRunner().invoke(cli, ["nemesis", "heal", "--session", session])
    assert result.exit_code == 0 and "healed" in result.output, result.output
    assert all(p.enabled for p in links.api.proxies().values())


@lineagerun.remote
def echo(value):
    return value


@pytest.mark.timeout(120)
def test_a_task_cancelled_between_forward_attempts_is_cancelled(three_nodes):
    """A task placed on a node its submitter's node cannot reach waits
    between forward attempts (cluster_link SPILL_RETRY_DELAY_S); a cancel
    arriving then used to be lost, and the task ran after the heal."""
    cluster = three_nodes
    head, a, _ = cluster.list_all_nodes()
    nemesis = ClusterNemesis(cluster)
    assert lineagerun.get(echo.options(scheduling_strategy=_on(a)).remote(1), timeout=60) == 1
    nemesis.cut_pair(head, a)
    try:
        ref = echo.options(scheduling_strategy=_on(a)).remote(2)
        time.sleep(1.0)  # its forward to a failed, and is retried every 0.5 s
        lineagerun.cancel(ref)
        with pytest.raises(lineagerun.exceptions.TaskCancelledError):
            lineagerun.get(ref, timeout=30)
    finally:
        nemesis.heal()


@pytest.mark.timeout(240)
def test_isolating_a_node_cuts_all_its_links_and_heal_restores_them(three_nodes):
    cluster = three_nodes
    head, a, b = cluster.list_all_nodes()
    nemesis = ClusterNemesis(cluster)
    on_head = make_array.options(scheduling_strategy=_on(head)).remote(3.0)
    nemesis.partition(b)
    try:
        links = cluster.links
        cut = {p.name for p in list(links.pairs.values()) + links.proxies(links.nodes) if not p.enabled}
        assert cut == {"pair-0-2", "pair-2-0", "pair-1-2", "pair-2-1", "node-2-in", "node-2-cs", "node-2-gs",
                       "node-2-replica-0-0"}
        # Nothing reaches b (the driver, the scheduler, a, the head), and b
        # reaches neither the head's services nor the other nodes ...
        assert all(_refused(p.listen) for p in links.proxies(links.nodes) + list(links.pairs.values())
                   if not p.enabled)
        # ... while the head and a keep working together.
        assert lineagerun.get(total.options(scheduling_strategy=_on(a)).remote(on_head), timeout=60) \
            == 3.0 * ARRAY_ITEMS
    finally:
        nemesis.heal()
    assert all(p.enabled and not p.toxics() for p in list(links.pairs.values()) + links.proxies(links.nodes))
    # b works with the others again, unless the scheduler gave it up during
    # the cut (its replica links are cut too: a cut longer than the node
    # timeout gets it declared dead, and it stops once healed; hence this
    # test runs last; tests/chaos/test_isolation_death.py checks that path).
    alive = {n.node_id.hex() for n in launcher.scheduler_view(cluster.scheduler_address, cluster.token) if n.alive}
    if b.node_id in alive:
        assert lineagerun.get(total.options(scheduling_strategy=_on(b)).remote(on_head), timeout=90) \
            == 3.0 * ARRAY_ITEMS
    assert lineagerun.get(total.options(scheduling_strategy=_on(a)).remote(on_head), timeout=90) \
        == 3.0 * ARRAY_ITEMS
