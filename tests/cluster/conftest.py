"""Three-node clusters on one machine (lineagerun.testing.Cluster), one per
test module: a cluster takes a few seconds to start."""

from __future__ import annotations

import contextlib
import os
import signal

import psutil
import pytest

import lineagerun
from lineagerun.testing import Cluster


def cluster_pids(cluster: Cluster) -> set[int]:
    """Every process of the cluster: node managers, their workers, the
    scheduler, the control store."""
    roots = [n.process.pid for n in cluster.list_all_nodes()]
    if cluster.scheduler_process is not None:
        roots.append(cluster.scheduler_process.pid)
    if cluster.control_store is not None:
        roots += [p.pid for p in cluster.control_store.processes() if p.pid]
    pids = set()
    for pid in roots:
        try:
            proc = psutil.Process(pid)
            pids.add(pid)
            pids.update(c.pid for c in proc.children(recursive=True))
        except psutil.Error:
            pass
    return pids


@contextlib.contextmanager
def connected_cluster(add_nodes=None, **cluster_args):
    """A ``Cluster`` with a head node and a driver connected, shut down
    after; every process it had (taken before and after: a node that stops
    meanwhile takes its workers with it) must be gone."""
    lineagerun.shutdown()
    cluster = Cluster(initialize_head=True, **cluster_args)
    pids: set[int] = set()
    try:
        if add_nodes is not None:
            add_nodes(cluster)
        cluster.connect()
        pids = cluster_pids(cluster)
        yield cluster
    finally:
        pids |= cluster_pids(cluster)
        lineagerun.shutdown()
        cluster.shutdown()
        assert_gone(pids)


def assert_gone(pids: set[int]) -> None:
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    for pid in alive:  # leave nothing behind even when failing
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not alive, f"processes left running: {alive}"


@pytest.fixture(scope="module")
def three_nodes():
    """Head (1 CPU) + node A (2 CPUs, resource "a") + node B (2 CPUs, 1 GPU, "b"); a driver connected."""
    lineagerun.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        node_a = cluster.add_node(num_cpus=2, resources={"a": 1})
        node_b = cluster.add_node(num_cpus=2, num_gpus=1, resources={"b": 1})
        lineagerun.init(address=cluster.address)
        yield cluster, cluster.head_node, node_a, node_b
    finally:
        pids = cluster_pids(cluster)
        lineagerun.shutdown()
        cluster.shutdown()
        assert_gone(pids)
