"""RELIABILITY C4 and C7 on a control store whose every link goes through
its own chaos proxy (``ControlStoreLinks``), real processes.

C4: a tail cut off from the coordinator but not from its clients stops
serving reads once a new tail exists (leases and epochs fence it).
C7: 100 ms +/- 50 ms of latency on every replica and coordinator link,
below the failure timeout, causes no failover while writes go on.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from lineagerun.chaos.control_store_links import ControlStoreLinks, select_proxies
from lineagerun.control.cluster import ControlStoreCluster
from lineagerun.exceptions import InvalidArgumentError, RpcError
from lineagerun.rpc import control_store_pb2, control_store_pb2_grpc
from lineagerun.transport.channels import make_channel
from lineagerun.transport.errors import from_rpc_error

CLIENT_TIMEOUT_S = 20.0


@pytest.fixture
def chaos_store(tmp_path):
    links = ControlStoreLinks()
    cluster = ControlStoreCluster(tmp_path / "cs", shards=1, replicas=3, links=links)
    try:
        yield cluster.start(), links
    finally:
        cluster.stop()
        links.stop()
        leftover = [p.name for p in cluster.processes() if p.alive()]
        assert not leftover, f"processes left running: {leftover}"


def _direct_read(address: str, token: str, key: bytes):
    """One Read RPC straight to a replica (no client routing, no retries):
    (value or None, None) or (None, the typed error)."""
    with make_channel(address, token) as channel:
        stub = control_store_pb2_grpc.ControlStoreReplicaStub(channel)
        try:
            reply = stub.Read(control_store_pb2.ReadRequest(shard=0, keys=[key]), timeout=2.0)
        except grpc.RpcError as err:
            return None, from_rpc_error(err, what="read")
    value = reply.values[0]
    return (value.value if value.present else None), None


def test_every_link_has_its_own_proxy_and_the_chain_advertises_proxies(chaos_store):
    cluster, links = chaos_store
    chain = cluster.config().shards[0].chain
    advertised = {r.replica_id: r.address for r in chain}
    for (shard, index), replica in links.replicas.items():
        assert advertised[cluster.replica_id(shard, index)] == replica.advertised
        assert replica.advertised != cluster.replica_processes[(shard, index)].address  # not the bound port
    names = links.link_names()
    assert "replica:0:1->replica:0:2" in names and "coordinator->replica:0:2" in names
    assert "replica:0:2->coordinator" in names and "clients->replica:0:2" in names
    assert len(links.proxies("replica:0:2")) == 1 + 2 + 4   # clients, coordinator both ways, 2 peers both ways
    with pytest.raises(InvalidArgumentError, match="not a control-store link"):
        links.proxies("replica 0 2")
    with pytest.raises(InvalidArgumentError, match="no control-store link"):
        select_proxies("replica:0:1->replica:0:9", {})


@pytest.mark.timeout(120)
def test_cutting_one_replica_link_stalls_writes_and_healing_it_resumes_them(chaos_store):
    """The forward stream head -> middle is the only path of a write: cut it
    (the CLI's ``chaos nemesis link cut``), a write stalls (the coordinator
    still hears everybody, so nothing fails over); heal it (the nemesis's
    link target), the write completes."""
    from click.testing import CliRunner

    from lineagerun.chaos.nemesis import ControlStoreTargets
    from lineagerun.cli.chaos_links import link as link_command

    cluster, links = chaos_store
    chain = cluster.chain(0)
    head, middle = (cluster.index_of(r) for r in chain[:2])
    link = f"replica:0:{head[1]}->replica:0:{middle[1]}"
    [target] = ControlStoreTargets(cluster).network_targets(f"link:{link}", 0)
    with cluster.client(timeout_s=CLIENT_TIMEOUT_S) as client:
        client.put(b"before", b"1")
        result = CliRunner().invoke(link_command, ["cut", "--dir", str(cluster.dir), "--link", link])
        assert result.exit_code == 0, result.output
        assert f"cut {link}" in result.output
        done = threading.Event()
        writer = threading.Thread(target=lambda: (client.put(b"during", b"2"), done.set()), daemon=True)
        writer.start()
        assert not done.wait(1.5), f"a write completed with {link} cut"
        target.heal()
        assert done.wait(15), f"the write did not complete after {link} was healed"
        writer.join(5)
        assert client.get(b"during") == b"2"
    assert cluster.chain(0) == chain
    result = CliRunner().invoke(link_command, ["cut", "--dir", str(cluster.dir), "--link", "replica:0:7"])
    assert result.exit_code != 0 and "no control-store link" in result.output


def test_link_targets_need_a_proxied_store_and_scenarios_accept_them(tmp_path):
    from lineagerun.chaos.control_store_links import StoreLinkTarget
    from lineagerun.chaos.scenario import parse_scenario
    from lineagerun.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="chaos proxies"):
        StoreLinkTarget(None, "link:replica:0:1->replica:0:2")
    scenario = parse_scenario("""
name = "x"
duration_s = 2
[cluster]
kind = "control-store"
[workload]
kind = "kv-unique-writes"
[[faults]]
action = "partition"
target = "link:coordinator->replica:0:1"
at_s = 1
duration_s = 1
""", "x.toml")
    assert scenario.faults[0].targets == ("link:coordinator->replica:0:1",)


@pytest.mark.timeout(120)
def test_c4_a_tail_cut_off_from_the_coordinator_stops_serving_reads_once_a_new_tail_exists(chaos_store):
    cluster, links = chaos_store
    old_config = cluster.config().shards[0]
    old_tail = old_config.chain[-1]
    _, tail_index = cluster.index_of(old_tail.replica_id)
    with cluster.client(timeout_s=CLIENT_TIMEOUT_S) as client:
        client.put(b"c4", b"old")
    assert _direct_read(old_tail.address, cluster.token, b"c4") == (b"old", None)

    cut_links = [f"coordinator->replica:0:{tail_index}", f"replica:0:{tail_index}->coordinator"]
    for link in cut_links:
        for proxy in links.proxies(link):
            proxy.disable()
    cut_s = time.monotonic()
    reads: list[tuple[float, bytes | None, RpcError | None]] = []
    new_tail_seen_s = None
    deadline_s = time.monotonic() + 20
    while time.monotonic() < deadline_s:
        value, error = _direct_read(old_tail.address, cluster.token, b"c4")   # a client with the old config
        reads.append((time.monotonic(), value, error))
        if new_tail_seen_s is None:
            shard = cluster.config().shards[0]
            if shard.epoch > old_config.epoch and old_tail.replica_id not in [r.replica_id for r in shard.chain]:
                new_tail_seen_s = time.monotonic()
        elif time.monotonic() - new_tail_seen_s > 1.0:
            break
        time.sleep(0.02)
    assert new_tail_seen_s is not None, "the coordinator never replaced the cut-off tail"
    served_after = [(t - cut_s, v) for t, v, e in reads if e is None and t >= new_tail_seen_s]
    assert not served_after, f"the old tail served reads after the new tail existed: {served_after[:3]}"
    refusals = {type(e).__name__ for t, v, e in reads if e is not None and t >= new_tail_seen_s}
    assert refusals, "no read of the old tail was tried after the new tail existed"

    # The new chain takes a write; the old tail, still reachable by clients,
    # never hands out the old value.
    with cluster.client(timeout_s=CLIENT_TIMEOUT_S) as client:
        client.put(b"c4", b"new")
        assert client.get(b"c4") == b"new"
    value, error = _direct_read(old_tail.address, cluster.token, b"c4")
    assert error is not None and value is None, f"old tail answered {value!r}"

    for link in cut_links:
        for proxy in links.proxies(link):
            proxy.enable()
    cluster.wait_for_chains(timeout_s=30)   # it rejoins once it hears the coordinator again
    with cluster.client(timeout_s=CLIENT_TIMEOUT_S) as client:
        assert client.get(b"c4") == b"new"


@pytest.mark.timeout(120)
def test_c7_latency_below_the_failure_timeout_causes_no_failover_and_writes_go_on(chaos_store):
    cluster, links = chaos_store
    before = cluster.config().shards[0]
    slowed = [name for name in links.link_names() if not name.startswith("clients->")]
    for name in slowed:
        for proxy in links.proxies(name):
            for stream in ("upstream", "downstream"):
                proxy.add_toxic(name=f"c7-{stream}", type="latency", stream=stream, toxicity=1.0,
                                attributes={"latency": 100, "jitter": 50})
    acked: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def write(writer: int) -> None:
        with cluster.client(timeout_s=CLIENT_TIMEOUT_S) as client:
            i = 0
            while not stop.is_set():
                try:
                    client.put(f"c7/{writer}/{i}".encode(), b"x")
                except RpcError as err:
                    errors.append(repr(err))
                    return
                acked.append(writer)
                i += 1

    writers = [threading.Thread(target=write, args=(w,), daemon=True) for w in range(3)]
    for thread in writers:
        thread.start()
    time.sleep(5.0)   # five failure timeouts
    stop.set()
    for thread in writers:
        thread.join(CLIENT_TIMEOUT_S + 5)
    after = cluster.config().shards[0]
    for name in slowed:
        for proxy in links.proxies(name):
            for toxic in list(proxy.toxics()):
                proxy.destroy_toxic(toxic)
    print(f"C7: {len(acked)} writes in 5 s under 100 +/- 50 ms on {len(slowed)} links, epoch {after.epoch}")
    assert not errors, errors[:3]
    assert after.epoch == before.epoch, f"false failover: epoch {before.epoch} -> {after.epoch}"
    assert [r.replica_id for r in after.chain] == [r.replica_id for r in before.chain]
    # Each write crosses two slowed hops and back (about 0.4-0.8 s): a few per writer.
    assert len(acked) >= 6, f"only {len(acked)} writes in 5 s"
    with cluster.client(timeout_s=CLIENT_TIMEOUT_S) as client:
        assert sum(1 for _ in client.scan_prefix(b"c7/", keys_only=True)) == len(acked)


@pytest.mark.timeout(120)
def test_a_runtime_cluster_proxies_its_control_store_links_on_request(tmp_path):
    """Cluster(chaos_control_store=True): the runtime's store has the same
    links, reached through the runtime nemesis's ``link:`` target."""
    from lineagerun.chaos.runtime_targets import RuntimeTargets
    from lineagerun.testing import Cluster

    cluster = Cluster(chaos_control_store=True, control_store_replicas=3, session_root=str(tmp_path))
    try:
        cluster.add_node(num_cpus=1)
        store = cluster.control_store
        assert "replica:0:0->coordinator" in store.links.link_names()
        assert (store.dir / "chaos-links.json").exists()
        epoch = store.config().shards[0].epoch
        [target] = RuntimeTargets(cluster).network_targets("link:replica:0:0->coordinator", 0)
        target.partition()
        store.wait_for(lambda c: c.shards[0].epoch > epoch and "s0r0" not in [r.replica_id for r in c.shards[0].chain]
                       and c, "s0r0 removed", timeout_s=20)
        target.heal()
        store.wait_for_chains(timeout_s=30)
    finally:
        cluster.shutdown()
