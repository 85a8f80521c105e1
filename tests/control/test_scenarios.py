"""Control-store reliability scenarios (RELIABILITY.md C1, C2, C3, C5, C6, C8)
with real coordinator and replica processes, checked Jepsen-style from the
recorded history; bad input against live processes; the CLI.

Each test starts its own cluster under tmp_path and stops it (every process,
by pid/process group) whatever happens."""

from __future__ import annotations

import importlib.util
import json
import threading
import time

import grpc
import pytest

from lineagerun.control.cluster import ControlStoreCluster
from lineagerun.control.history import History, check, read_replica_directory
from lineagerun.control.scenario import Fault, kill_and_restart, run_scenario
from lineagerun.exceptions import (
    BadRequestError,
    InvalidArgumentError,
    RpcError,
    ValueTooLargeError,
)
from lineagerun.rpc import control_store_pb2
from lineagerun.transport.channels import make_channel
from lineagerun.transport.errors import from_rpc_error

needs_processes = pytest.mark.skipif(
    importlib.util.find_spec("lineagerun.control.replica") is None
    or importlib.util.find_spec("lineagerun.control.coordinator") is None,
    reason="the replica/coordinator processes are not in the tree yet")

# Scenarios that restart replicas check the change stream too: a subscriber
# that fell behind a failover to a tail caught up by snapshot is resynced
# (docs/control-store.md, "Subscriptions"), and the checker counts a write
# seen only through a resync as delivered, never as silently missed.

# A client stall is the longest any single operation took. With the default
# failure timeout (1 s) a failover costs about 1-2 s; this bound catches a
# chain that stops making progress, not a slow machine.
STALL_BOUND_S = 8.0


@pytest.fixture
def clusters(tmp_path):
    started: list[ControlStoreCluster] = []

    def make(name: str = "cs", **kwargs) -> ControlStoreCluster:
        cluster = ControlStoreCluster(tmp_path / name, **kwargs)
        started.append(cluster)
        return cluster.start()

    yield make
    for cluster in started:
        cluster.stop()
    leftover = [p.name for c in started for p in c.processes() if p.alive()]
    assert not leftover, f"processes left running: {leftover}"


def _assert_valid(result, *, stall_bound_s: float = STALL_BOUND_S, check_stream: bool = True):
    report = result.report
    print(result.summary())
    assert not result.client_errors, result.client_errors
    assert report.writes_ok > 50, f"the workload made too little progress: {result.summary()}"
    assert not report.lost, report.lost[:5]
    assert not report.duplicated, report.duplicated[:5]
    assert not report.stale_reads, report.stale_reads[:5]
    assert not report.phantoms, report.phantoms[:5]
    if check_stream:
        assert not report.stream_missing, report.stream_missing[:5]
    assert not report.replica_divergence, report.replica_divergence
    assert report.longest_stall_s < stall_bound_s, result.summary()
    assert all(b >= a for a, b in zip(result.epochs_before, result.epochs_after))


# ------------------------------------------------------------------ C1


@needs_processes
@pytest.mark.timeout(180)
def test_c1_rolling_kills_of_head_middle_and_tail(clusters):
    cluster = clusters(shards=1, replicas=3)
    faults = [Fault(at, f"kill -9 {pos}", kill_and_restart(0, pos, down_s=0.5))
              for at, pos in [(1.5, "head"), (4.0, "middle"), (6.5, "tail"), (9.0, "head")]]
    result = run_scenario(cluster, "c1", duration_s=10.0, faults=faults, writers=4, readers=1)
    _assert_valid(result)
    assert result.epochs_after[0] >= result.epochs_before[0] + 8  # each kill: removal + rejoin


@pytest.mark.slow
@needs_processes
@pytest.mark.timeout(900)
def test_c1_long_rolling_kills_on_every_shard(clusters):
    cluster = clusters(shards=2, replicas=3)
    positions = ["head", "middle", "tail"]
    faults = [Fault(2.0 * (i + 1), f"kill -9 shard {i % 2} {positions[(i // 2) % 3]}",
                    kill_and_restart(i % 2, positions[(i // 2) % 3], down_s=0.5)) for i in range(28)]
    result = run_scenario(cluster, "c1long", duration_s=60.0, faults=faults, writers=6, readers=2)
    _assert_valid(result)


@pytest.mark.slow
@needs_processes
@pytest.mark.timeout(600)
def test_change_stream_misses_nothing_across_rolling_kills_on_two_shards(clusters):
    cluster = clusters(shards=2, replicas=3)
    positions = ["tail", "head", "tail", "middle", "tail", "tail", "head", "tail", "middle", "head", "tail", "tail"]
    faults = [Fault(1.5 + 2 * i, f"kill -9 shard {i % 2} {p}", kill_and_restart(i % 2, p, down_s=0.5))
              for i, p in enumerate(positions)]
    result = run_scenario(cluster, "stream", duration_s=26.0, faults=faults, writers=4, readers=1)
    _assert_valid(result)


@needs_processes
@pytest.mark.timeout(120)
def test_a_subscriber_behind_a_new_tails_retained_log_is_resynced_not_silently_skipped(clusters):
    """The subscriber is stuck in its callback while its tail dies and the
    head, now alone, trims its log past where the subscriber was: it is
    told, gets the shard's current state, and the stream goes on."""
    cluster = clusters(shards=1, replicas=2, log_retention_entries=20)
    changes: list = []
    resyncs: list = []
    release = threading.Event()

    def on_change(change) -> None:
        changes.append(change)
        release.wait(timeout=60)

    with cluster.client(timeout_s=30.0) as client:
        subscription = client.subscribe(b"rs/", on_change, on_resync=resyncs.append)
        client.put(b"rs/first", b"0")
        deadline_s = time.monotonic() + 10
        while not changes and time.monotonic() < deadline_s:
            time.sleep(0.02)
        assert changes, "the first change never arrived"
        cluster.kill_replica(*cluster.index_of(cluster.chain(0)[-1]))
        cluster.wait_for(lambda c: len(c.shards[0].chain) == 1 and c, "the dead tail removed", 30)
        written = {f"rs/{i:03d}".encode(): f"v{i}".encode() for i in range(60)}
        for key, value in written.items():
            client.put(key, value)   # 60 entries: the head keeps only the last 20
        client.delete(b"rs/first")
        release.set()
        deadline_s = time.monotonic() + 20
        while time.monotonic() < deadline_s and len([c for c in changes if c.resync]) < len(written):
            time.sleep(0.05)
        assert subscription.resyncs >= 1 and resyncs, "the gap was skipped without a resync"
        resynced = {c.key: c.value for c in changes if c.resync}
        assert resynced == written, "a resync delivers the shard's current state (rs/first was deleted)"
        assert resyncs[0].missed_after_seq < resyncs[0].seq
        after = {f"rs/after/{i}".encode(): b"a" for i in range(5)}
        client.write_batch([("put", k, v) for k, v in after.items()])
        while time.monotonic() < deadline_s and not set(after) <= {c.key for c in changes if not c.resync}:
            time.sleep(0.05)
        assert set(after) <= {c.key for c in changes if not c.resync}, "the stream goes on after the resync"


# ------------------------------------------------------------------ C2


@needs_processes
@pytest.mark.timeout(120)
def test_c2_head_killed_with_many_writes_in_flight(clusters):
    cluster = clusters(shards=1, replicas=3)
    faults = [Fault(1.5, "kill -9 head (no restart)", lambda c: c.kill_replica(*c.index_of(c.chain(0)[0])))]
    result = run_scenario(cluster, "c2", duration_s=4.0, faults=faults, writers=12, readers=1, members_after=2)
    _assert_valid(result)


# ------------------------------------------------------------------ C3


@needs_processes
@pytest.mark.timeout(120)
def test_c3_middle_killed_while_updates_are_unacknowledged(clusters):
    cluster = clusters(shards=1, replicas=3)
    faults = [Fault(1.5, "kill -9 middle (no restart)", lambda c: c.kill_replica(*c.index_of(c.chain(0)[1])))]
    result = run_scenario(cluster, "c3", duration_s=4.0, faults=faults, writers=8, readers=1, members_after=2)
    _assert_valid(result)


# ------------------------------------------------------------------ C5


@needs_processes
@pytest.mark.timeout(180)
def test_c5_new_replica_joins_under_load_with_many_keys(clusters):
    cluster = clusters(shards=1, replicas=2)
    with cluster.client() as client:
        for start in range(0, 20_000, 2_000):
            client.write_batch([("put", f"c5bulk/{i:06d}", b"x" * 100) for i in range(start, start + 2_000)])
    joined: list[float] = []

    def add(c: ControlStoreCluster):
        c.add_replica(0)
        joined.append(time.monotonic())

    result = run_scenario(cluster, "c5", duration_s=6.0, faults=[Fault(1.0, "add replica", add)],
                          writers=4, readers=1, members_after=3)
    _assert_valid(result)
    assert result.epochs_after[0] > result.epochs_before[0]
    # The cluster is stopped now: the new replica holds the bulk keys too.
    bulk = {f"c5bulk/{i:06d}".encode(): b"x" * 100 for i in range(20_000)}
    for index in range(3):
        assert read_replica_directory(cluster.replica_dir(0, index) / "db", b"c5bulk/") == bulk, index


# ------------------------------------------------------------------ C6


class _HeadWatcher:
    """Polls every replica's Status and remembers which replica called itself
    head in which epoch: two heads in one epoch would break the chain."""

    def __init__(self, cluster: ControlStoreCluster):
        self.cluster = cluster
        self.heads: dict[int, set[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        from lineagerun.control.cluster import replica_status

        while not self._stop.is_set():
            for process in list(self.cluster.replica_processes.values()):
                if not process.address or process.paused:
                    continue
                try:
                    status = replica_status(process.address, self.cluster.token)
                except RpcError:
                    continue
                if "head" in status.get("role", ""):
                    self.heads.setdefault(int(status["epoch"]), set()).add(status["replica_id"])
            time.sleep(0.05)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)


@needs_processes
@pytest.mark.timeout(180)
def test_c6_coordinator_killed_and_restarted_also_mid_reconfiguration(clusters):
    cluster = clusters(shards=1, replicas=3)
    watcher = _HeadWatcher(cluster)

    def kill_replica_then_coordinator(c: ControlStoreCluster):
        c.kill_replica(*c.index_of(c.chain(0)[0]))
        time.sleep(0.3)  # the coordinator is now counting down the head's failure timeout
        c.kill_coordinator()

    def restart_all(c: ControlStoreCluster):
        c.restart_coordinator()
        for key, process in c.replica_processes.items():
            if not process.alive():
                c.restart_replica(*key)

    faults = [Fault(1.0, "kill -9 coordinator", lambda c: c.kill_coordinator()),
              Fault(2.0, "restart coordinator", lambda c: c.restart_coordinator()),
              Fault(3.5, "kill -9 head, then coordinator", kill_replica_then_coordinator),
              Fault(5.0, "restart coordinator and replica", restart_all)]
    try:
        result = run_scenario(cluster, "c6", duration_s=7.0, faults=faults, writers=4, readers=1)
    finally:
        watcher.stop()
    _assert_valid(result)
    doubled = {epoch: ids for epoch, ids in watcher.heads.items() if len(ids) > 1}
    assert not doubled, f"two heads in one epoch: {doubled}"
    assert watcher.heads, "the watcher saw no head at all"


@needs_processes
@pytest.mark.timeout(120)
def test_c6_a_client_with_an_old_config_writes_after_a_failover_while_the_coordinator_is_down(clusters):
    """The chain reconfigured, then the coordinator died before this client
    refreshed: the replicas tell it the new chain."""
    cluster = clusters(shards=1, replicas=3)
    with cluster.client(timeout_s=20.0) as client:
        client.put(b"c6gap/before", b"1")  # caches the three-replica chain
        old_epoch = client.config().shards[0].epoch
        cluster.kill_replica(*cluster.index_of(cluster.chain(0)[0]))
        cluster.wait_for(lambda c: len(c.shards[0].chain) == 2 and c, "the dead head removed", 30)
        time.sleep(0.3)  # the survivors hear of the new epoch (pushed, and within a heartbeat)
        cluster.kill_coordinator()
        started_s = time.monotonic()
        client.put(b"c6gap/after", b"2")
        stall_s = time.monotonic() - started_s
        assert client.get(b"c6gap/after") == b"2"
        assert client.get(b"c6gap/before") == b"1"
        assert stall_s < 3.0, f"a write with an old config stalled {stall_s:.1f} s"
        assert client.stats["config_refreshes_from_replicas"] >= 1
        assert client.config().shards[0].epoch > old_epoch


# ------------------------------------------------------- paused replica


@needs_processes
@pytest.mark.timeout(180)
def test_paused_tail_is_replaced_and_rejoins_after_resume(clusters):
    cluster = clusters(shards=1, replicas=3)
    paused: list[tuple[int, int]] = []

    def pause_tail(c: ControlStoreCluster):
        paused.append(c.index_of(c.chain(0)[-1]))
        c.pause_replica(*paused[0])

    faults = [Fault(1.0, "SIGSTOP tail", pause_tail), Fault(3.5, "SIGCONT", lambda c: c.resume_replica(*paused[0]))]
    result = run_scenario(cluster, "pause", duration_s=6.0, faults=faults, writers=4, readers=1)
    _assert_valid(result)
    assert result.epochs_after[0] >= result.epochs_before[0] + 2  # removed, then back as tail


# ------------------------------------------------------------------ C8


@needs_processes
@pytest.mark.timeout(180)
def test_c8_every_replica_killed_at_once_and_restarted_from_disk(clusters):
    cluster = clusters(shards=1, replicas=3)

    def kill_all(c: ControlStoreCluster):
        for key in list(c.replica_processes):
            c.kill_replica(*key)

    def restart_all(c: ControlStoreCluster):
        for key in list(c.replica_processes):
            c.restart_replica(*key)

    faults = [Fault(1.5, "kill -9 every replica", kill_all), Fault(2.5, "restart every replica", restart_all)]
    result = run_scenario(cluster, "c8", duration_s=6.0, faults=faults, writers=4, readers=1)
    # Clients wait through the outage: the stall is the outage plus recovery.
    _assert_valid(result, stall_bound_s=STALL_BOUND_S + 5)


# ------------------------------------------------------------ bad input


def _raw_call(address: str, token: str, method: str, payload: bytes):
    with make_channel(address, token) as channel:
        call = channel.unary_unary(f"/lineagerun.rpc.ControlStoreReplica/{method}",
                                   request_serializer=None, response_deserializer=None)
        deadline_s = time.monotonic() + 5
        while True:
            try:
                return call(payload, timeout=5)
            except grpc.RpcError as err:
                error = from_rpc_error(err)
            # A fresh replica refuses client calls until it knows the shard count.
            if error.code != "UNAVAILABLE" or "shard count" not in str(error) or time.monotonic() > deadline_s:
                return error
            time.sleep(0.05)


@needs_processes
@pytest.mark.timeout(120)
def test_bad_input_gets_typed_errors_and_changes_nothing(clusters):
    cluster = clusters(shards=2, replicas=2)
    with cluster.client() as client:
        client.write_batch([("put", f"keep/{i}", f"v{i}".encode()) for i in range(200)])
        with pytest.raises(ValueTooLargeError):
            client.put(b"big", b"x" * (16 * 1024 * 1024 + 1))
        with pytest.raises(InvalidArgumentError):
            client.put(b"", b"v")
        config = cluster.config()
        head = config.shards[0].chain[0].address
        tail = config.shards[0].chain[-1].address
        epoch = config.shards[0].epoch

        def write(**fields):
            request = control_store_pb2.WriteRequest(client_id="bad", epoch=epoch, **fields)
            return _raw_call(head, cluster.token, "Write", request.SerializeToString())

        put = control_store_pb2.Op(put=control_store_pb2.Put(key=b"fine", value=b"v"))
        cases = {
            "garbage bytes": _raw_call(head, cluster.token, "Write", b"\xff\x00\x13garbage" * 10),
            "unknown shard": write(shard=99, client_seq=1, ops=[put]),
            "no ops": write(shard=0, client_seq=3, ops=[]),
            "client_seq 0": write(shard=0, client_seq=0, ops=[put]),
            "empty op": write(shard=0, client_seq=4, ops=[control_store_pb2.Op()]),
            "oversized value": write(shard=0, client_seq=5, ops=[
                control_store_pb2.Op(put=control_store_pb2.Put(key=b"fine", value=b"x" * (17 * 1024 * 1024)))]),
            "read of unknown shard": _raw_call(tail, cluster.token, "Read", control_store_pb2.ReadRequest(
                shard=7, min_epoch=epoch, keys=[b"a"]).SerializeToString()),
            "garbage read": _raw_call(tail, cluster.token, "Read", b"\x0a\xff\xff\xff\xff\xff"),
        }
        for name, outcome in cases.items():
            assert isinstance(outcome, RpcError), f"{name}: expected a typed error, got {outcome!r}"
            assert outcome.code in ("BAD_REQUEST", "WRONG_SHARD", "VALUE_TOO_LARGE", "INTERNAL"), (name, outcome)
        assert isinstance(cases["oversized value"], (ValueTooLargeError, BadRequestError)), cases["oversized value"]
        assert isinstance(cases["unknown shard"], RpcError) and cases["unknown shard"].code != "INTERNAL"
        # Nothing crashed and nothing stored was lost or added.
        assert all(p.alive() for p in cluster.processes())
        assert client.get(b"fine") is None
        assert dict(client.scan_prefix("keep/")) == {f"keep/{i}".encode(): f"v{i}".encode() for i in range(200)}
        client.put(b"after", b"ok")
        assert client.get(b"after") == b"ok"


@needs_processes
@pytest.mark.timeout(120)
def test_a_write_with_a_key_of_another_shard_is_refused(clusters):
    cluster = clusters(shards=2, replicas=1)
    with cluster.client() as client:
        other_shard_key = next(f"k{i}".encode() for i in range(100) if client.shard_of(f"k{i}") == 1)
        shard0 = cluster.config().shards[0]
        request = control_store_pb2.WriteRequest(shard=0, epoch=shard0.epoch, client_id="bad", client_seq=1, ops=[
            control_store_pb2.Op(put=control_store_pb2.Put(key=other_shard_key, value=b"v"))])
        outcome = _raw_call(shard0.chain[0].address, cluster.token, "Write", request.SerializeToString())
        assert isinstance(outcome, RpcError) and outcome.code in ("WRONG_SHARD", "BAD_REQUEST"), outcome


@needs_processes
@pytest.mark.timeout(120)
def test_replica_started_on_another_shards_directory_is_refused(clusters):
    cluster = clusters(shards=2, replicas=2)
    with cluster.client() as client:
        keys = {f"mine/{i}".encode(): f"v{i}".encode() for i in range(100)}
        client.write_batch([("put", k, v) for k, v in keys.items()])
        cluster.kill_replica(0, 1)
        outcome = cluster.start_replica_process(1, 9, cluster.replica_dir(0, 1))
        assert outcome.returncode == 3, (outcome.returncode, outcome.stderr[-2000:])
        assert "shard" in outcome.stderr.lower()
        cluster.restart_replica(0, 1)
        cluster.wait_for_member(0, 1, timeout_s=60)
        assert dict(client.scan_prefix("mine/")) == keys
    assert all(p.alive() for p in cluster.processes())


# ------------------------------------------------------------------- CLI


@needs_processes
@pytest.mark.timeout(120)
def test_cli_start_status_stop_leaves_nothing_running(tmp_path):
    from click.testing import CliRunner

    from lineagerun.cli.control_store import control_store
    from lineagerun.control.cluster import load_record, recorded_processes, stop_recorded

    directory = tmp_path / "cli"
    runner = CliRunner()
    try:
        started = runner.invoke(control_store, ["start", "--shards", "1", "--replicas", "2", "--dir", str(directory)])
        assert started.exit_code == 0, started.output
        assert "coordinator address" in started.output
        processes = recorded_processes(load_record(directory))
        assert len(processes) == 3 and all(p.alive() for p in processes)
        again = runner.invoke(control_store, ["start", "--dir", str(directory)])
        assert again.exit_code != 0 and "already running" in again.output
        status = runner.invoke(control_store, ["status", "--dir", str(directory)])
        assert status.exit_code == 0, status.output
        assert "shard 0: epoch" in status.output
        assert "s0r0 -> s0r1" in status.output or "s0r1 -> s0r0" in status.output, status.output
        as_json = runner.invoke(control_store, ["status", "--dir", str(directory), "--json"])
        data = json.loads(as_json.output)
        assert len(data["coordinator"]["config"]["shards"][0]["chain"]) == 2
        stopped = runner.invoke(control_store, ["stop", "--dir", str(directory)])
        assert stopped.exit_code == 0, stopped.output
        assert not any(p.alive() for p in processes)
        after = runner.invoke(control_store, ["status", "--dir", str(directory)])
        assert after.exit_code != 0
    finally:
        if (directory / "cluster.json").exists():
            stop_recorded(directory)


# ------------------------------------------------- the checker can fail


def _history_with(*ops):
    """ops: (process, kind, key, value, invoke_s, complete_s, status)."""
    history = History(clock=lambda: 0.0)
    for process, kind, key, value, invoke_s, complete_s, status in ops:
        op = history.invoke(process, kind, key, value)
        op.invoke_s, op.complete_s, op.status = invoke_s, complete_s, status
    return history.snapshot()


def test_checker_reports_lost_duplicated_stale_phantom_and_divergent():
    ops = _history_with(
        ("w0", "write", b"p/log/0/0", b"0:0:a", 0.0, 0.1, "ok"),
        ("w0", "write", b"p/reg/0", b"0:0", 0.1, 0.2, "ok"),
        ("w0", "write", b"p/log/0/1", b"0:1:b", 0.2, 0.3, "ok"),       # lost below
        ("w0", "write", b"p/reg/0", b"1:0", 0.3, 0.4, "ok"),
        ("w0", "write", b"p/log/0/2", b"0:2:c", 0.4, 9.0, "unknown"),  # may or may not be there
        ("r0", "read", b"p/reg/0", b"1:0", 0.5, 0.6, "ok"),
        ("r0", "read", b"p/reg/0", b"0:0", 0.7, 0.8, "ok"),            # back in time
    )
    final = {b"p/log/0/0": b"0:0:a", b"p/reg/0": b"0:0", b"p/log/0/9": b"zz"}
    changes = [(b"p/log/0/0", b"0:0:a", 1), (b"p/log/0/0", b"0:0:a", 5), (b"p/reg/0", b"0:0", 2)]
    replicas = {0: {"s0r0": {b"a": b"1"}, "s0r1": {b"a": b"2"}}, 1: {"s1r0": {b"b": b"1"}}}
    report = check(ops, final, changes=changes, replica_states=replicas)
    assert len(report.lost) == 2  # the log write, and the register below its acknowledged value
    assert len(report.duplicated) == 1 and "seqs [1, 5]" in report.duplicated[0]
    assert len(report.stale_reads) == 1
    assert len(report.phantoms) == 1
    assert len(report.replica_divergence) == 1
    assert report.stream_missing  # p/log/0/1 and reg=1:0 never streamed
    assert not report.valid
    assert report.writes_ok == 4 and report.writes_unknown == 1
    assert abs(report.longest_stall_s - 8.6) < 1e-9


def test_checker_counts_writes_seen_only_through_a_resync_and_still_reports_real_misses():
    ops = _history_with(
        ("w0", "write", b"p/log/0/0", b"0:0:a", 0.0, 0.1, "ok"),
        ("w0", "write", b"p/reg/0", b"0:0", 0.1, 0.2, "ok"),
        ("w0", "write", b"p/log/0/1", b"0:1:b", 0.2, 0.3, "ok"),    # missed, then resynced
        ("w0", "write", b"p/reg/0", b"1:0", 0.3, 0.4, "ok"),        # missed, superseded before the rescan
        ("w0", "write", b"p/log/0/2", b"0:2:c", 0.4, 0.5, "ok"),    # missed, then resynced
        ("w0", "write", b"p/reg/0", b"2:0", 0.5, 0.6, "ok"),        # resynced
        ("w0", "write", b"p/log/0/3", b"0:3:d", 0.6, 0.7, "ok"),    # after the resync: must be streamed
    )
    final = {b"p/log/0/0": b"0:0:a", b"p/log/0/1": b"0:1:b", b"p/log/0/2": b"0:2:c", b"p/log/0/3": b"0:3:d",
             b"p/reg/0": b"2:0"}
    changes = [(b"p/log/0/0", b"0:0:a", 1, False), (b"p/reg/0", b"0:0", 2, False),
               # the resync re-delivers p/log/0/0 at the rescan's seq: not a duplicate
               (b"p/log/0/0", b"0:0:a", 6, True), (b"p/log/0/1", b"0:1:b", 6, True),
               (b"p/log/0/2", b"0:2:c", 6, True), (b"p/reg/0", b"2:0", 6, True)]
    report = check(ops, final, changes=changes)
    assert report.stream_resynced == 4
    assert not report.duplicated
    assert [m.split("=")[0] for m in report.stream_missing] == ["b'p/log/0/3'"]
    report = check(ops, final, changes=changes + [(b"p/log/0/3", b"0:3:d", 7, False)])
    assert report.valid and report.stream_resynced == 4, report.summary()


def test_checker_accepts_a_clean_history_with_unknown_writes():
    ops = _history_with(
        ("w0", "write", b"p/log/0/0", b"0:0:a", 0.0, 0.1, "ok"),
        ("w0", "write", b"p/reg/0", b"0:0", 0.1, 0.2, "ok"),
        ("w0", "write", b"p/log/0/1", b"0:1:b", 0.2, 5.0, "unknown"),
        ("r0", "read", b"p/reg/0", b"0:0", 0.15, 0.3, "ok"),  # concurrent with the write: either is fine
        ("r0", "read", b"p/reg/0", b"0:0", 0.3, 0.4, "ok"),
    )
    final = {b"p/log/0/0": b"0:0:a", b"p/reg/0": b"0:0", b"p/log/0/1": b"0:1:b"}
    changes = [(b"p/log/0/0", b"0:0:a", 1), (b"p/reg/0", b"0:0", 2), (b"p/log/0/1", b"0:1:b", 3)]
    report = check(ops, final, changes=changes, replica_states={0: {"a": {b"k": b"v"}, "b": {b"k": b"v"}},
                                                                   1: {"c": {b"j": b"v"}}})
    assert report.valid, report.summary()
