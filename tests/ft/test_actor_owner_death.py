"""Actors whose owner's node dies (alone, with the host, or before the host):
a detached actor survives (a live node claims its recovery by
compare-and-set on its record), a non-detached one dies with its owner as in
Ray, and its callers learn it at once (not after the 60 s relocation wait).

The owner is a task running on node A that creates the actor; A's death
takes the owner with it."""

from __future__ import annotations

import time

import pytest

import lineagerun
from lineagerun.control.client import ControlStoreClient
from lineagerun.core.keys import actor_key
from lineagerun.exceptions import ActorDiedError
from lineagerun.rpc import lineage_pb2
from lineagerun.testing import Cluster
from lineagerun.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tests.cluster.conftest import assert_gone, cluster_pids

pytestmark = pytest.mark.timeout(240)

# Callers of a non-detached actor whose owner died hear ActorDiedError within
# this long (node death detection included), far below RELOCATE_WAIT_MAX_S.
DIES_WITHIN_S = 20.0


@lineagerun.remote(num_cpus=0)
class Counter:
    def __init__(self, start):
        self.value = start

    def add(self, amount):
        self.value += amount
        return self.value

    def node(self):
        return lineagerun.get_runtime_context().get_node_id()


@lineagerun.remote(num_cpus=0)
def create(name: str, host: str, detached: bool):
    """The owner: a task on its node creating the actor on ``host``."""
    options = {"name": name, "max_restarts": 2,
               "scheduling_strategy": NodeAffinitySchedulingStrategy(host, soft=True)}
    if detached:
        options["lifetime"] = "detached"
    actor = Counter.options(**options).remote(100)
    assert lineagerun.get(actor.add.remote(1), timeout=60) == 101
    return lineagerun.get(actor.node.remote(), timeout=60)


@pytest.fixture(scope="module")
def cluster():
    """Head (the driver's node) + one node that stays; each test adds the nodes it kills."""
    lineagerun.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1}, node_timeout_ms=1000)
    client = None
    try:
        cluster.add_node(num_cpus=1)
        lineagerun.init(address=cluster.address)
        client = ControlStoreClient(cluster.control_store.address, cluster.token)
        yield cluster, client
    finally:
        if client is not None:
            client.close()
        pids = cluster_pids(cluster)
        lineagerun.shutdown()
        cluster.shutdown()
        assert_gone(pids)


def _make(name: str, owner_node, host_node, detached: bool):
    on_owner = NodeAffinitySchedulingStrategy(owner_node.node_id, soft=False)
    assert lineagerun.get(create.options(scheduling_strategy=on_owner).remote(name, host_node.node_id, detached),
                          timeout=60) == host_node.node_id
    actor = lineagerun.get_actor(name)
    assert lineagerun.get(actor.add.remote(10), timeout=60) == 111
    return actor


def _check_owner(client, actor, owner_node) -> None:
    record = _wait_record(client, actor, lambda r: r.owner_node_id)
    assert record.owner_node_id.hex() == owner_node.node_id, "the record names the creator's node"


def _wait_record(client, actor, ready, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not ready(record := _record(client, actor)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return record


def _record(client, actor) -> lineage_pb2.ActorRecord:
    return lineage_pb2.ActorRecord.FromString(client.get(actor_key(actor._actor_id)))


def _survives(actor, killed: list) -> None:
    """Recovered on a live node, its calls replayed: the state goes on."""
    assert lineagerun.get(actor.add.remote(1000), timeout=120) == 1111
    assert lineagerun.get(actor.node.remote(), timeout=60) not in {n.node_id for n in killed}


def _dies_quickly(actor, client, why: str) -> None:
    """Calls keep working until the node's death is noticed (~1 s), then
    fail with ActorDiedError naming the owner, well within the bound."""
    started = time.monotonic()
    while True:
        try:
            lineagerun.get(actor.add.remote(0), timeout=DIES_WITHIN_S + 30)
        except ActorDiedError as exc:
            assert why in str(exc)
            break
        assert time.monotonic() - started < DIES_WITHIN_S, "the actor outlived its owner"
        time.sleep(0.2)
    assert time.monotonic() - started < DIES_WITHIN_S
    record = _wait_record(client, actor, lambda r: r.state == lineage_pb2.DEAD)
    assert record.state == lineage_pb2.DEAD and why in record.death_cause.message


def test_detached_actor_survives_its_owner_and_host_node_dying_together(cluster):
    cluster, client = cluster
    node = cluster.add_node(num_cpus=1)
    actor = _make("together-detached", node, node, detached=True)
    _check_owner(client, actor, node)
    cluster.remove_node(node, allow_graceful=False)
    _survives(actor, [node])
    record = _record(client, actor)
    assert record.state == lineage_pb2.ALIVE and record.num_restarts == 1
    assert record.owner_node_id.hex() == node.node_id  # still names its creator's node


def test_detached_actor_survives_its_owner_node_then_its_host_node_dying(cluster):
    cluster, client = cluster
    owner, host = cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)
    actor = _make("later-detached", owner, host, detached=True)
    _check_owner(client, actor, owner)
    cluster.remove_node(owner, allow_graceful=False)
    time.sleep(2.5)  # the owner's death is noticed; the detached actor lives on
    assert lineagerun.get(actor.add.remote(0), timeout=60) == 111
    cluster.remove_node(host, allow_graceful=False)
    _survives(actor, [owner, host])


def test_non_detached_actor_dies_with_its_owner_and_host_node(cluster):
    cluster, client = cluster
    node = cluster.add_node(num_cpus=1)
    actor = _make("together", node, node, detached=False)
    cluster.remove_node(node, allow_graceful=False)
    _dies_quickly(actor, client, "owner")


def test_non_detached_actor_dies_when_its_owner_node_dies(cluster):
    cluster, client = cluster
    owner, host = cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)
    actor = _make("owner-only", owner, host, detached=False)
    _check_owner(client, actor, owner)
    cluster.remove_node(owner, allow_graceful=False)
    _dies_quickly(actor, client, "owner")
