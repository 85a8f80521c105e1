"""Actors anywhere in a multi-node cluster: placed by resources, called from
other nodes in order, found by name from a second driver, killed across
nodes, and dead (max_restarts=0) when their node dies."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import lineagerun as ray
from lineagerun.exceptions import ActorDiedError
from lineagerun.testing import Cluster
from lineagerun.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tests.cluster.conftest import assert_gone, cluster_pids

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster():
    """Head (1 CPU, the driver's node) + node A ("a") + node B ("b")."""
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1}, node_timeout_ms=1000)
    try:
        node_a = cluster.add_node(num_cpus=2, resources={"a": 4})
        node_b = cluster.add_node(num_cpus=2, resources={"b": 4})
        ray.init(address=cluster.address)
        yield cluster, node_a, node_b
    finally:
        pids = cluster_pids(cluster)
        ray.shutdown()
        cluster.shutdown()
        assert_gone(pids)


@ray.remote(num_cpus=0)  # many live at once on a 2-CPU node
class Log:
    def __init__(self, tag):
        self.tag = tag
        self.calls = []

    def add(self, caller, seq):
        self.calls.append((caller, seq))
        return seq

    def node(self):
        return ray.get_runtime_context().get_node_id()

    def calls_of(self):
        return list(self.calls)


@ray.remote
def call_many(actor, caller, count):
    refs = [actor.add.remote(caller, seq) for seq in range(count)]
    return ray.get(refs, timeout=60), ray.get_runtime_context().get_node_id()


def test_actor_is_placed_on_the_node_with_its_resource(cluster):
    _, node_a, node_b = cluster
    on_b = Log.options(resources={"b": 1}).remote("b")
    on_a = Log.options(resources={"a": 1}).remote("a")
    assert ray.get(on_b.node.remote(), timeout=60) == node_b.node_id
    assert ray.get(on_a.node.remote(), timeout=60) == node_a.node_id
    pinned = Log.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_a.node_id, soft=False))
    assert ray.get(pinned.remote("p").node.remote(), timeout=60) == node_a.node_id


def test_spread_actors_land_on_several_nodes(cluster):
    actors = [Log.options(scheduling_strategy="SPREAD").remote(f"s{i}") for i in range(3)]
    assert len(set(ray.get([a.node.remote() for a in actors], timeout=60))) >= 2
    for actor in actors:
        ray.kill(actor)


def test_infeasible_actor_fails_clearly(cluster):
    actor = Log.options(resources={"nowhere": 1}).remote("x")
    with pytest.raises(Exception, match="nowhere|infeasible|can never"):
        ray.get(actor.node.remote(), timeout=60)


def test_calls_from_other_nodes_keep_each_callers_order(cluster):
    _, node_a, node_b = cluster
    actor = Log.options(resources={"b": 1}).remote("order")
    callers = [call_many.options(resources={"a": 1}).remote(actor, f"task{i}", 40) for i in range(2)]
    mine = [actor.add.remote("driver", seq) for seq in range(40)]
    results = ray.get(callers, timeout=90)
    assert ray.get(mine, timeout=60) == list(range(40))
    for values, node in results:
        assert values == list(range(40))
        assert node == node_a.node_id  # the callers ran on another node than the actor
    calls = ray.get(actor.calls_of.remote(), timeout=60)
    assert len(calls) == 120
    for caller in ("task0", "task1", "driver"):
        assert [seq for who, seq in calls if who == caller] == list(range(40)), caller


def test_named_actor_is_found_from_a_second_driver(cluster):
    c, _, node_b = cluster
    Log.options(name="shared-log", resources={"b": 1}, lifetime="detached").remote("named")
    script = textwrap.dedent(f"""
        import lineagerun as ray
        ray.init(address={c.address!r})
        actor = ray.get_actor("shared-log")
        print(ray.get([actor.add.remote("second", i) for i in range(5)], timeout=60), ray.get(actor.node.remote()))
        ray.shutdown()
    """)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90, env=env,
                          start_new_session=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith(f"[0, 1, 2, 3, 4] {node_b.node_id}"), proc.stdout
    actor = ray.get_actor("shared-log")
    assert [c for c in ray.get(actor.calls_of.remote(), timeout=60) if c[0] == "second"] == \
        [("second", i) for i in range(5)]
    ray.kill(actor)


def test_actor_on_another_node_dies_with_its_driver(cluster):
    c, _, node_b = cluster
    script = textwrap.dedent(f"""
        import lineagerun as ray
        ray.init(address={c.address!r})

        @ray.remote(num_cpus=0, resources={{"b": 1}})
        class Holder:
            def node(self):
                return ray.get_runtime_context().get_node_id()

        holder = Holder.options(name="owned-by-second").remote()
        print(ray.get(holder.node.remote(), timeout=60))
        ray.shutdown()
    """)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90, env=env,
                          start_new_session=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith(node_b.node_id)
    deadline = time.monotonic() + 30
    while True:  # its owner (the second driver) is gone: the host kills it and drops its name
        try:
            ray.get_actor("owned-by-second")
        except ValueError:
            break
        assert time.monotonic() < deadline, "the actor outlived its driver"
        time.sleep(0.1)


def test_kill_across_nodes(cluster):
    actor = Log.options(resources={"b": 1}).remote("victim")
    assert ray.get(actor.add.remote("d", 0), timeout=60) == 0
    ray.kill(actor)
    with pytest.raises(ActorDiedError):
        for _ in range(100):  # the kill travels to the host node asynchronously
            ray.get(actor.add.remote("d", 1), timeout=60)


def test_actor_without_restarts_dies_with_its_node(cluster):
    c, _, _ = cluster
    victim = c.add_node(num_cpus=1, resources={"v": 1})
    actor = Log.options(resources={"v": 1}).remote("mortal")
    assert ray.get(actor.node.remote(), timeout=60) == victim.node_id
    c.remove_node(victim, allow_graceful=False)
    with pytest.raises(ActorDiedError):
        ray.get(actor.add.remote("d", 0), timeout=60)
    with pytest.raises(ActorDiedError):
        ray.get(actor.add.remote("d", 1), timeout=60)
