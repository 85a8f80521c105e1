"""R3 across nodes: an actor whose host node dies is recreated on another
live node with its resources (constructor, checkpoint, replay of the calls
recorded after it); calls made meanwhile are queued, each answered once."""

from __future__ import annotations

import time

import pytest

import lineagerun as ray
from lineagerun.control.client import ControlStoreClient
from lineagerun.core.keys import actor_key
from lineagerun.state.recovery_events import actor_recovery_summary
from lineagerun.rpc import lineage_pb2
from lineagerun.testing import Cluster
from tests.cluster.conftest import assert_gone, cluster_pids

pytestmark = pytest.mark.timeout(180)

CALLS = 500
CHECKPOINT_INTERVAL = 50


@pytest.fixture(scope="module")
def cluster():
    """Head (the driver's node, no "r") + two nodes that can host the actor."""
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1}, node_timeout_ms=1000)
    client = None
    try:
        cluster.add_node(num_cpus=1, resources={"r": 1})
        cluster.add_node(num_cpus=1, resources={"r": 1})
        ray.init(address=cluster.address)
        client = ControlStoreClient(cluster.control_store.address, cluster.token)
        yield cluster, client
    finally:
        if client is not None:
            client.close()
        pids = cluster_pids(cluster)
        ray.shutdown()
        cluster.shutdown()
        assert_gone(pids)


@ray.remote(num_cpus=0, resources={"r": 1})
class Counter:
    """Applies sequence-numbered calls; remembers which, to catch loss and duplicates."""

    def __init__(self, start):
        self.start, self.value, self.applied = start, start, []

    def add(self, seq):
        self.value += 1
        self.applied.append(seq)
        return seq, self.value

    def node(self):
        return ray.get_runtime_context().get_node_id()

    def state(self):
        return self.start, self.value, list(self.applied)

    def __lineagerun_checkpoint__(self):
        return self.start, self.value, list(self.applied)

    def __lineagerun_restore__(self, state):
        self.start, self.value, self.applied = state[0], state[1], list(state[2])


def _node(cluster, node_id_hex):
    return next(n for n in cluster.list_all_nodes() if n.node_id == node_id_hex)


def _record(client, actor) -> lineage_pb2.ActorRecord:
    return lineage_pb2.ActorRecord.FromString(client.get(actor_key(actor._actor_id)))


def test_counter_survives_two_kills_of_its_node_with_bounded_replay(cluster):
    c, client = cluster
    start = 1000
    actor = Counter.options(max_restarts=-1, checkpoint_interval=CHECKPOINT_INTERVAL).remote(start)
    refs, hosts = [], []
    for seq in range(CALLS):
        refs.append(actor.add.remote(seq))
        if seq + 1 in (150, 350):
            host = ray.get(actor.node.remote(), timeout=60)
            hosts.append(host)
            c.remove_node(_node(c, host), allow_graceful=False)  # kill -9 of the node's process group
            if len(hosts) == 1:
                c.add_node(num_cpus=1, resources={"r": 1})  # somewhere to go after the second kill
    results = ray.get(refs, timeout=120)
    state = ray.get(actor.state.remote(), timeout=60)
    applied = state[2]
    missing = sorted(set(range(CALLS)) - set(applied))
    twice = sorted(s for s in set(applied) if applied.count(s) > 1)
    assert state == (start, start + CALLS, list(range(CALLS))), (missing, twice, applied[140:170], applied[340:370])
    assert results == [(seq, start + seq + 1) for seq in range(CALLS)]
    final = ray.get(actor.node.remote(), timeout=60)
    assert final not in hosts and len(set(hosts)) == 2
    record = _record(client, actor)
    assert record.node_id.hex() == final and record.num_restarts == 2 and record.state == lineage_pb2.ALIVE
    deadline = time.monotonic() + 10
    while True:  # events are written in the background
        summary = actor_recovery_summary(client, actor._actor_id)
        if len(summary["calls_replayed_per_recovery"]) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print("recovery", summary)
    assert summary["restarts"] == 2
    assert all(n <= CHECKPOINT_INTERVAL for n in summary["calls_replayed_per_recovery"]), summary
    ray.kill(actor)  # frees its "r" for the next test


def test_calls_from_a_task_on_another_node_survive_the_hosts_death(cluster):
    c, _ = cluster
    actor = Counter.options(max_restarts=1).remote(0)
    host = ray.get(actor.node.remote(), timeout=60)

    @ray.remote(num_cpus=0)
    def call(actor, first, count):
        return ray.get([actor.add.remote(first + i) for i in range(count)], timeout=90)

    assert ray.get(call.remote(actor, 0, 20), timeout=60)[-1] == (19, 20)
    c.remove_node(_node(c, host), allow_graceful=False)
    c.add_node(num_cpus=1, resources={"r": 1})  # may join after the death is seen: the restart waits for it
    later = ray.get(call.remote(actor, 20, 20), timeout=90)
    assert ray.get(actor.state.remote(), timeout=60) == (0, 40, list(range(40)))
    assert later == [(20 + i, 21 + i) for i in range(20)]
    ray.kill(actor)


def test_actor_without_restarts_raises_actor_died_after_its_node_dies(cluster):
    c, _ = cluster
    actor = Counter.remote(0)  # max_restarts=0, the default
    host = ray.get(actor.node.remote(), timeout=60)
    pending = [actor.add.remote(i) for i in range(5)]
    c.remove_node(_node(c, host), allow_graceful=False)
    c.add_node(num_cpus=1, resources={"r": 1})
    for ref in pending:
        try:
            ray.get(ref, timeout=60)  # may have finished before the kill
        except ray.exceptions.ActorDiedError:
            pass
    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(actor.add.remote(99), timeout=60)
