"""A restarted replica rejoins under a steady write load within a bound,
with identical contents, and scans keep being served meanwhile (RELIABILITY
C5; issue 5's rt-replica-and-node-kill). Real coordinator and replica
processes.

Before the fix a new tail refused every read ("still catching up with its
predecessor") for as long as the writes kept its link busy: its
predecessor's hello of the new epoch had arrived before the new tail knew
that epoch, and the next hello only came after a second without writes."""

from __future__ import annotations

import threading
import time

import pytest

from lineagerun.chaos.control_store_links import ControlStoreLinks
from lineagerun.control.cluster import ControlStoreCluster
from lineagerun.control.history import read_replica_directory
from lineagerun.exceptions import RpcError

# From the restarted process serving until it is a chain member again (the
# coordinator first removes its old incarnation, then it joins, catches up
# and is promoted): a few heartbeats and one catch-up, generous for a loaded
# machine.
REJOIN_BOUND_S = 8.0
# The longest a single scan may take after the restart (reads are served by
# the current tail all along; a promotion costs about one heartbeat).
SCAN_STALL_BOUND_S = 3.0
CLIENT_TIMEOUT_S = 20.0


class _Load:
    """Writers of unique keys and a scanner, each on its own thread and
    client, recording what was acknowledged and how long each scan took."""

    def __init__(self, cluster: ControlStoreCluster, writers: int = 2):
        self.cluster = cluster
        self.acked: dict[bytes, bytes] = {}
        self.scans: list[tuple[float, float]] = []      # (started, seconds)
        self.scan_errors: list[tuple[float, str]] = []
        self.write_errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._write, args=(w,), daemon=True) for w in range(writers)]
        self._threads.append(threading.Thread(target=self._scan, daemon=True))
        for thread in self._threads:
            thread.start()

    def _write(self, writer: int) -> None:
        with self.cluster.client(timeout_s=CLIENT_TIMEOUT_S) as client:
            i = 0
            while not self._stop.is_set():
                key, value = f"cu/w{writer}/{i:07d}".encode(), f"v{i}".encode()
                try:
                    client.put(key, value)
                except RpcError as err:
                    self.write_errors.append(repr(err))
                    return
                with self._lock:
                    self.acked[key] = value
                i += 1

    def _scan(self) -> None:
        with self.cluster.client(timeout_s=CLIENT_TIMEOUT_S) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    sum(1 for _ in client.scan_prefix(b"cu/w0/", keys_only=True))
                except RpcError as err:
                    self.scan_errors.append((started, repr(err)))
                self.scans.append((started, time.monotonic() - started))
                time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT_S + 10)

    def longest_scan_after(self, t: float) -> float:
        return max((s for started, s in self.scans if started >= t), default=0.0)


def _slow_configuration_to(links: ControlStoreLinks, index: int, latency_ms: int) -> None:
    """Replica ``index`` hears of every new configuration ``latency_ms``
    after the others (pushes and heartbeat replies are late): its
    predecessor's hello of a new epoch reaches it before the epoch does."""
    for proxy in links.proxies(f"coordinator->replica:0:{index}"):
        proxy.add_toxic(name="late-push", type="latency", stream="upstream", toxicity=1.0,
                        attributes={"latency": latency_ms})
    for proxy in links.proxies(f"replica:0:{index}->coordinator"):
        proxy.add_toxic(name="late-reply", type="latency", stream="downstream", toxicity=1.0,
                        attributes={"latency": latency_ms})


def _restart_the_tail_under_load(cluster: ControlStoreCluster, links: ControlStoreLinks | None = None):
    load = None
    try:
        load = _Load(cluster)
        time.sleep(1.0)
        shard, index = cluster.index_of(cluster.chain(0)[-1])
        cluster.kill_replica(shard, index)
        killed_id = cluster.replica_id(shard, index)
        cluster.wait_for(lambda c: killed_id not in [r.replica_id for r in c.shards[0].chain] and c,
                         f"{killed_id} removed", timeout_s=15)
        time.sleep(1.0)  # the chain keeps writing without it
        if links is not None:
            _slow_configuration_to(links, index, latency_ms=250)
        cluster.restart_replica(shard, index)
        restarted_s = time.monotonic()
        cluster.wait_for_member(shard, index, timeout_s=30)
        rejoin_s = time.monotonic() - restarted_s
        time.sleep(4.0)  # writes and scans keep going with the rejoined replica as tail
        assert cluster.chain(0)[-1] == killed_id
        load.stop()
        assert not load.write_errors, load.write_errors
        assert not load.scan_errors, load.scan_errors[:3]
        longest_scan_s = load.longest_scan_after(restarted_s)
        print(f"rejoined in {rejoin_s:.2f} s under {len(load.acked)} writes; "
              f"longest scan after the restart {longest_scan_s:.2f} s")
        assert rejoin_s < REJOIN_BOUND_S, f"rejoined only after {rejoin_s:.1f} s"
        assert longest_scan_s < SCAN_STALL_BOUND_S, f"a scan took {longest_scan_s:.1f} s during the catch-up"
        assert len(load.acked) > 100
    finally:
        if load is not None:
            load.stop()
        cluster.stop()
    contents = [read_replica_directory(cluster.replica_dir(0, i) / "db", b"cu/") for i in range(3)]
    assert contents[0] == contents[1] == contents[2]
    missing = [k for k, v in load.acked.items() if contents[0].get(k) != v]
    assert not missing, f"{len(missing)} acknowledged writes missing, e.g. {missing[:3]}"


@pytest.mark.timeout(180)
def test_a_restarted_tail_rejoins_under_steady_writes_within_a_bound_with_identical_contents(tmp_path):
    _restart_the_tail_under_load(ControlStoreCluster(tmp_path / "cs", shards=1, replicas=3).start())


@pytest.mark.timeout(180)
def test_a_rejoined_tail_that_hears_of_its_promotion_last_serves_reads_under_steady_writes(tmp_path):
    """The race of the bug, made certain: the restarted replica learns each
    configuration 250 ms after its predecessor (chaos proxies on its
    coordinator links), so the predecessor's first hello of the promotion
    epoch is always ignored."""
    links = ControlStoreLinks()
    try:
        cluster = ControlStoreCluster(tmp_path / "cs", shards=1, replicas=3, links=links)
        _restart_the_tail_under_load(cluster.start(), links)
    finally:
        links.stop()
