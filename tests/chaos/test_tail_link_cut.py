"""A node manager that loses its link to the control store's tail, but not
to the head, keeps running tasks: its spec writes, answered by the tail
while the link is up, are answered by the head instead (after at most one
attempt timeout for the writes in flight when the link went), and the
tail's answers come back after the heal."""

from __future__ import annotations

import time

import pytest

import lineagerun
from tests.cluster.conftest import connected_cluster

# Writes in flight when the link goes wait out one attempt (2 s) before the
# head answers their retry; the rest are answered by the head at once.
TASKS_WITHIN_S = 20.0


@lineagerun.remote
def add_one(x):
    return x + 1


@pytest.fixture
def one_node_two_replicas():
    with connected_cluster(head_node_args={"num_cpus": 2}, chaos=True, control_store_replicas=2) as cluster:
        yield cluster


def _node_link_to_tail(cluster):
    tail_id = cluster.control_store.chain(0)[-1]
    _, index = cluster.control_store.index_of(tail_id)
    node_links = cluster.links.nodes[0]
    (proxy,) = [p for name, p in node_links.store.items() if name == f"node:0->replica:0:{index}"]
    return proxy


@pytest.mark.timeout(180)
@pytest.mark.parametrize("cut", ["refused", "black-holed"])
def test_tasks_go_on_when_the_node_loses_the_tail_but_not_the_head(one_node_two_replicas, cut):
    cluster = one_node_two_replicas
    assert lineagerun.get([add_one.remote(i) for i in range(20)]) == list(range(1, 21))
    proxy = _node_link_to_tail(cluster)
    if cut == "refused":
        proxy.disable()
    else:
        proxy.add_toxic(name="hole", type="timeout", stream="downstream", toxicity=1.0, attributes={"timeout": 0})
    try:
        started_s = time.monotonic()
        values = [lineagerun.get(add_one.remote(i), timeout=TASKS_WITHIN_S) for i in range(30)]
        elapsed_s = time.monotonic() - started_s
    finally:
        if cut == "refused":
            proxy.enable()
        else:
            proxy.destroy_toxic("hole")
    assert values == list(range(1, 31))
    assert elapsed_s < TASKS_WITHIN_S, f"30 tasks took {elapsed_s:.1f} s without the tail link"
    # After the heal the node works as before (its answers stream reopens).
    assert lineagerun.get([add_one.remote(i) for i in range(50)], timeout=30) == list(range(1, 51))
