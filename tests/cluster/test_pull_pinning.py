"""A copy a node pulls for a task's argument is secondary once the task is
done: evictable, so a node with a small object store can run task after task
on large arguments that live elsewhere (as Ray treats secondary copies)."""

from __future__ import annotations

import numpy as np
import pytest

import lineagerun as ray
from lineagerun.node.object_table import NodeObjectStore, ObjectTable, RemoteCopy
from lineagerun.objects import new_session_id
from lineagerun.testing import Cluster

from tests.cluster.conftest import assert_gone, cluster_pids
from tests.cluster.test_object_table_remote import pulled_into

MB = 1024 * 1024
ARG_MB = 12
SMALL_STORE_BYTES = 32 * MB  # room for two 12 MB copies, not three


@ray.remote
def total_and_node(a):
    return float(a.sum()), ray.get_runtime_context().get_node_id()


def test_pulled_copy_is_pinned_while_a_task_here_needs_it():
    store = NodeObjectStore(new_session_id(), 1 << 20)
    try:
        objects = ObjectTable(store, lambda oid: None)
        in_use = {b"\x11" * 28}
        objects.args_in_use = lambda: set(in_use)
        for oid in (b"\x11" * 28, b"\x22" * 28):
            objects.add_remote(oid, RemoteCopy("127.0.0.1:1111", b"\xbb" * 28, 4096))
            pulled_into(store, oid, 4096)
            objects.add_pulled(oid, 4096, False, ())
        assert store.stats().pinned_bytes == 2 * 4096
        objects.release_holder("task:some-other-task")   # outside an event loop: at once
        assert store.stats().pinned_bytes == 4096           # the one a queued task needs stays
        in_use.clear()
        objects.release_holder("task:the-task")
        assert store.stats().pinned_bytes == 0
        objects.release_primary([b"\x11" * 28])              # the owner's release later: harmless
        assert objects.is_ready(b"\x11" * 28)
    finally:
        store.close()


@pytest.fixture
def small_store_cluster():
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 256 * MB})
    try:
        small = cluster.add_node(num_cpus=1, resources={"small": 1}, object_store_memory=SMALL_STORE_BYTES)
        ray.init(address=cluster.address)
        yield cluster, small
    finally:
        pids = cluster_pids(cluster)
        ray.shutdown()
        cluster.shutdown()
        assert_gone(pids)


@pytest.mark.timeout(180)
def test_pulled_arguments_do_not_fill_the_store(small_store_cluster):
    _, small = small_store_cluster
    # All kept alive by the driver: the owner releases none of them, so only
    # the copies' being secondary on the small node makes room.
    arrays = [ray.put(np.full(ARG_MB * MB // 8, float(i), dtype=np.float64)) for i in range(6)]
    for i, ref in enumerate(arrays):
        total, node = ray.get(total_and_node.options(resources={"small": 1}).remote(ref), timeout=60)
        assert node == small.node_id
        assert total == float(i) * (ARG_MB * MB // 8)
    # A copy evicted meanwhile is pulled again when a task needs it once more.
    total, node = ray.get(total_and_node.options(resources={"small": 1}).remote(arrays[0]), timeout=60)
    assert (total, node) == (0.0, small.node_id)
