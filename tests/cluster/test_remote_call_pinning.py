"""A call to an actor on another node keeps its arguments pinned on the
caller's node while it waits there for the actor's node to be known (the
actor being placed, or restarted after its node died): the caller may drop
its refs meanwhile, and the store may need the room."""

from __future__ import annotations

import time

import numpy as np
import pytest

import lineagerun as ray
from lineagerun.testing import Cluster
from tests.cluster.conftest import assert_gone, cluster_pids

MB = 1024 * 1024
ARRAY_ITEMS = 12 * MB // 8
HEAD_STORE_BYTES = 32 * MB  # the argument and one more array, not two more


@ray.remote(num_cpus=0, resources={"r": 1})
class Summer:
    def node(self):
        return ray.get_runtime_context().get_node_id()

    def total(self, array):
        return float(array.sum())


@pytest.fixture
def cluster():
    ray.shutdown()
    cluster = Cluster(initialize_head=True, node_timeout_ms=1000,
                      head_node_args={"num_cpus": 1, "object_store_memory": HEAD_STORE_BYTES})
    pids: set[int] = set()
    try:
        cluster.add_node(num_cpus=1, resources={"r": 1})
        ray.init(address=cluster.address)
        pids = cluster_pids(cluster)
        yield cluster
    finally:
        pids |= cluster_pids(cluster)
        for node in cluster.removed_nodes:
            pids.add(node.pid)
        ray.shutdown()
        cluster.shutdown()
        assert_gone(pids)


@pytest.mark.timeout(180)
def test_argument_of_a_call_waiting_for_its_actors_restart_is_kept(cluster):
    summer = Summer.options(max_restarts=-1).remote()
    host = ray.get(summer.node.remote(), timeout=60)
    cluster.remove_node(next(n for n in cluster.list_all_nodes() if n.node_id == host), allow_graceful=False)
    time.sleep(2.0)  # the death is noticed: the actor waits for a node with "r"
    argument = ray.put(np.full(ARRAY_ITEMS, 3.0))
    result = summer.total.remote(argument)
    del argument  # only the waiting call needs it now
    for i in range(4):  # each needs room that only evicting what nothing pins makes
        ray.put(np.full(ARRAY_ITEMS, float(i)))
    cluster.add_node(num_cpus=1, resources={"r": 1})
    # Without the pin the argument was evicted, and a driver's put cannot be
    # rebuilt: ObjectReconstructionFailedError.
    assert ray.get(result, timeout=90) == 3.0 * ARRAY_ITEMS
