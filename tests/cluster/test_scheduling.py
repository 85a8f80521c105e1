"""Bottom-up scheduling, routing by resources, object transfer and
locality on a three-node cluster."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections import Counter

import numpy as np
import pytest

import lineagerun as ray
from lineagerun.exceptions import InfeasibleTaskError
from lineagerun.util.scheduling_strategies import NodeAffinitySchedulingStrategy

MB = 1024 * 1024


@ray.remote
def where(x=None):
    return ray.get_runtime_context().get_node_id()


@ray.remote
def busy_where(seconds):
    time.sleep(seconds)
    return ray.get_runtime_context().get_node_id()


@ray.remote
def array_sum(a):
    return ray.get_runtime_context().get_node_id(), float(a.sum()), a.shape


@ray.remote
def make_array(megabytes, value):
    return np.full(megabytes * MB // 8, value, dtype=np.float64)


@pytest.mark.timeout(60)
def test_nodes_and_cluster_resources(three_nodes):
    cluster, head, node_a, node_b = three_nodes
    nodes = {n["NodeID"]: n for n in ray.nodes()}
    assert set(nodes) == {head.node_id, node_a.node_id, node_b.node_id}
    assert all(n["Alive"] for n in nodes.values())
    assert nodes[node_a.node_id]["Resources"] == {"CPU": 2.0, "a": 1.0}
    assert nodes[node_b.node_id]["NodeManagerPort"] == int(node_b.address.rsplit(":", 1)[1])
    assert ray.cluster_resources() == {"CPU": 5.0, "GPU": 1.0, "a": 1.0, "b": 1.0}
    assert ray.available_resources()["CPU"] <= 5.0


@pytest.mark.timeout(60)
def test_custom_resources_route_tasks(three_nodes):
    _, head, node_a, node_b = three_nodes
    on_a = [where.options(resources={"a": 1}).remote(i) for i in range(4)]
    on_b = [where.options(resources={"b": 0.5}).remote(i) for i in range(4)]
    assert set(ray.get(on_a, timeout=30)) == {node_a.node_id}
    assert set(ray.get(on_b, timeout=30)) == {node_b.node_id}
    assert ray.get(where.options(num_gpus=1).remote(), timeout=30) == node_b.node_id
    # No resource: the driver's node (the head) runs it.
    assert ray.get(where.remote(), timeout=30) == head.node_id


@pytest.mark.timeout(60)
def test_spread_lands_on_every_node(three_nodes):
    _, head, node_a, node_b = three_nodes
    refs = [where.options(scheduling_strategy="SPREAD").remote(i) for i in range(6)]
    counts = Counter(ray.get(refs, timeout=30))
    assert set(counts) == {head.node_id, node_a.node_id, node_b.node_id}, counts


@pytest.mark.timeout(60)
def test_node_affinity(three_nodes):
    _, _, node_a, node_b = three_nodes
    strategy = NodeAffinitySchedulingStrategy(node_b.node_id, soft=False)
    assert ray.get(where.options(scheduling_strategy=strategy).remote(), timeout=30) == node_b.node_id
    strategy = NodeAffinitySchedulingStrategy(node_a.node_id, soft=True)
    assert ray.get(where.options(scheduling_strategy=strategy).remote(), timeout=30) == node_a.node_id


@pytest.mark.timeout(90)
def test_long_queue_spills_to_other_nodes(three_nodes):
    """The head has 1 CPU; 150 tasks of 20 ms queue past its spill
    threshold (100), and the rest run elsewhere."""
    _, head, node_a, node_b = three_nodes
    refs = [busy_where.remote(0.02) for _ in range(150)]
    counts = Counter(ray.get(refs, timeout=60))
    assert sum(counts.values()) == 150
    assert counts[node_a.node_id] + counts[node_b.node_id] > 0, counts


@pytest.mark.timeout(60)
def test_infeasible_task_fails_fast(three_nodes):
    started = time.monotonic()
    with pytest.raises(InfeasibleTaskError, match="no alive node"):
        ray.get(where.options(resources={"nowhere": 1}).remote(), timeout=30)
    with pytest.raises(InfeasibleTaskError):
        ray.get(where.options(num_cpus=64).remote(), timeout=30)
    assert time.monotonic() - started < 10


@pytest.mark.timeout(120)
def test_100mb_argument_is_transferred(three_nodes):
    _, _, _, node_b = three_nodes
    array = np.arange(100 * MB // 8, dtype=np.float64)
    ref = ray.put(array)  # on the head (the driver's node)
    node, total, shape = ray.get(array_sum.options(resources={"b": 1}).remote(ref), timeout=90)
    assert node == node_b.node_id
    assert shape == array.shape and total == float(array.sum())


@pytest.mark.timeout(120)
def test_locality_runs_task_where_its_100mb_argument_is(three_nodes):
    _, _, node_a, _ = three_nodes
    ref = make_array.options(resources={"a": 1}).remote(100, 2.0)
    ready, _ = ray.wait([ref], timeout=60, fetch_local=False)  # made on A, not pulled here
    assert ready == [ref]
    # No resource asks for node A: only the argument's location does.
    node, total, _ = ray.get(array_sum.remote(ref), timeout=90)
    assert node == node_a.node_id
    assert total == 2.0 * (100 * MB // 8)
    # And the driver can still get it (pulled to the head).
    value = ray.get(ref, timeout=90)
    assert value.shape == (100 * MB // 8,) and value[0] == 2.0


@pytest.mark.timeout(60)
def test_small_results_and_nested_refs_across_nodes(three_nodes):
    @ray.remote(resources={"a": 1})
    def produce():
        return [ray.put(b"x" * 200_000), ray.put({"k": 1})]

    @ray.remote(resources={"b": 1})
    def consume(refs):
        return len(ray.get(refs[0])), ray.get(refs[1])

    refs = ray.get(produce.remote(), timeout=30)
    assert ray.get(refs[1], timeout=30) == {"k": 1}
    assert ray.get(consume.remote(refs), timeout=30) == (200_000, {"k": 1})


@pytest.mark.timeout(60)
def test_chained_tasks_on_different_nodes(three_nodes):
    @ray.remote
    def add(x, y):
        return x + y

    x = add.options(resources={"a": 1}).remote(1, 2)
    y = add.options(resources={"b": 1}).remote(x, 10)
    z = add.remote(y, 100)
    assert ray.get(z, timeout=30) == 113


@pytest.mark.timeout(90)
def test_second_driver_joins(three_nodes):
    cluster, _, _, node_b = three_nodes
    script = textwrap.dedent(f"""
        import lineagerun as ray
        ray.init(address={cluster.address!r})
        @ray.remote(resources={{"b": 1}})
        def f(x):
            return x * 2, ray.get_runtime_context().get_node_id()
        print("RESULT", ray.get(f.remote(21), timeout=60), len(ray.nodes()))
        ray.shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=80)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"RESULT (42, '{node_b.node_id}') 3" in out.stdout
    # The first driver is unaffected.
    assert ray.get(where.remote(), timeout=30)


@pytest.mark.timeout(60)
def test_pending_demand_is_visible_in_status(three_nodes):
    from lineagerun.cli.cluster import collect_status
    from lineagerun.node import launcher

    cluster, _, node_a, _ = three_nodes
    # Node A has one "a": the first task holds it, the others wait there.
    refs = [busy_where.options(resources={"a": 1}).remote(1.0) for _ in range(4)]
    head = launcher.read_head(cluster.session_dir)
    deadline = time.monotonic() + 20
    pending = 0
    while time.monotonic() < deadline and pending < 2:
        report = collect_status(head, cluster.token)
        pending = next(n["pending_tasks"] for n in report["nodes"] if n["node_id"] == node_a.node_id)
        time.sleep(0.05)
    assert pending >= 2 and report["pending_tasks"] >= 2
    assert set(ray.get(refs, timeout=30)) == {node_a.node_id}
