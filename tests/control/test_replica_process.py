"""A real replica process (``python -m lineagerun.control.replica``) against
a tiny fake coordinator: joining, heartbeats, writes and reads as a chain of
one (and of two processes), fencing, identity checks, restarts from RocksDB,
typed errors for malformed requests (S3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc

from lineagerun.rpc import common_pb2, control_store_pb2, control_store_pb2_grpc, coordinator_pb2, coordinator_pb2_grpc
from lineagerun.transport import channels, errors
from lineagerun.transport.auth import write_token_file

TOKEN = "k" * 64
REPO = Path(__file__).resolve().parents[2]


class FakeCoordinator(coordinator_pb2_grpc.ChainCoordinatorServicer):
    """Forms shard 0's chain from the first ``replicas`` joins (epoch 1); a
    rejoin of the only member keeps it (new epoch); any other join after that
    makes the replica the joiner, promoted when a heartbeat says caught_up;
    heartbeats renew leases; ``set_chain`` pushes a new epoch (UpdateConfig)."""

    def __init__(self, replicas: int = 1, cluster_id: str = "cluster-A", lease_ms: int = 600):
        self.lock = threading.Lock()
        self.replicas = replicas
        self.cluster_id = cluster_id
        self.lease_ms = lease_ms
        self.num_shards = 1
        self.config = common_pb2.ChainConfig(shard=0, epoch=0)
        self.waiting: list[common_pb2.ReplicaInfo] = []
        self.joins: list[coordinator_pb2.JoinRequest] = []
        self.heartbeats: list[coordinator_pb2.HeartbeatRequest] = []
        self.server = channels.make_server(TOKEN, max_workers=8)
        coordinator_pb2_grpc.add_ChainCoordinatorServicer_to_server(self, self.server)
        self.port = channels.bind(self.server, "127.0.0.1", 0, TOKEN)
        self.address = f"127.0.0.1:{self.port}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(None)

    def Join(self, request, context):
        with self.lock:
            self.joins.append(request)
            info = common_pb2.ReplicaInfo(replica_id=request.replica_id, address=request.address)
            members = [r.replica_id for r in self.config.chain]
            if self.config.epoch == 0:
                self.waiting = [r for r in self.waiting if r.replica_id != request.replica_id] + [info]
                if len(self.waiting) == self.replicas:
                    self._set(self.waiting)
            elif members == [request.replica_id]:
                self._set([info])
            else:
                self._set([r for r in self.config.chain if r.replica_id != request.replica_id], info)
            return coordinator_pb2.JoinReply(config=self.config, cluster_id=self.cluster_id)

    def _set(self, chain, joining=None) -> None:
        self.config = common_pb2.ChainConfig(shard=0, epoch=self.config.epoch + 1, chain=list(chain))
        if joining is not None:
            self.config.joining.CopyFrom(joining)
        config = common_pb2.ChainConfig()
        config.CopyFrom(self.config)
        targets = [r.address for r in list(config.chain) + ([config.joining] if joining is not None else [])]
        threading.Thread(target=self._push, args=(config, targets), daemon=True).start()

    def _push(self, config, addresses) -> None:
        for address in addresses:
            with channels.make_channel(address, TOKEN) as channel:
                try:
                    control_store_pb2_grpc.ControlStoreReplicaStub(channel).UpdateConfig(
                        control_store_pb2.ConfigUpdate(config=config, lease_ms=self.lease_ms), timeout=2)
                except grpc.RpcError:
                    pass  # the heartbeat reply carries it too

    def set_chain(self, replica_ids: list[str]) -> None:
        with self.lock:
            by_id = {r.replica_id: r for r in self.config.chain}
            self._set([by_id[r] for r in replica_ids])

    def GetConfig(self, request, context):
        with self.lock:
            return common_pb2.ClusterConfig(cluster_id=self.cluster_id, num_shards=self.num_shards,
                                            shards=[self.config], version=self.config.epoch)

    def Heartbeat(self, request, context):
        with self.lock:
            self.heartbeats.append(request)
            joining = self.config.HasField("joining") and self.config.joining.replica_id == request.replica_id
            if joining and request.caught_up and request.epoch == self.config.epoch:
                self._set(list(self.config.chain) + [self.config.joining])
                joining = False
            member = joining or any(r.replica_id == request.replica_id for r in self.config.chain)
            waiting = any(r.replica_id == request.replica_id for r in self.waiting)
            if self.config.epoch == 0:
                return coordinator_pb2.HeartbeatReply(config=self.config, must_join=not waiting)
            return coordinator_pb2.HeartbeatReply(config=self.config, lease_ms=self.lease_ms if member else 0,
                                                  must_join=not member)


def token_file(tmp_path: Path) -> Path:
    return write_token_file(tmp_path / "token", TOKEN)


class ReplicaProcess:
    def __init__(self, tmp_path: Path, coordinator_address: str, replica_id: str = "s0r0", shard: int = 0,
                 extra: tuple[str, ...] = (), directory: Path | None = None):
        self.dir = directory or tmp_path / replica_id
        self.dir.mkdir(parents=True, exist_ok=True)
        ready = self.dir / "ready"
        if ready.exists():
            ready.unlink()
        self.stderr_path = self.dir.parent / f"{self.dir.name}.stderr"
        self.stderr = open(self.stderr_path, "ab")
        cmd = [sys.executable, "-m", "lineagerun.control.replica", "--dir", str(self.dir), "--shard", str(shard),
               "--replica-id", replica_id, "--coordinator", coordinator_address, "--port", "0",
               "--token-file", str(tmp_path / "token"), *extra]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     start_new_session=True)
        self.address: str | None = None

    def wait_ready(self, timeout_s: float = 20) -> str:
        deadline = time.monotonic() + timeout_s
        ready = self.dir / "ready"
        while time.monotonic() < deadline:
            if ready.exists():
                self.address = ready.read_text().strip()
                return self.address
            if self.proc.poll() is not None:
                raise AssertionError(f"replica exited with {self.proc.returncode}: {self.stderr_text()}")
            time.sleep(0.02)
        raise AssertionError(f"replica not ready after {timeout_s} s: {self.stderr_text()}")

    def stderr_text(self) -> str:
        if not self.stderr.closed:
            self.stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout_s: float = 10) -> int:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout_s)
        self.stderr.close()
        return self.proc.returncode


class ReplicaClient:
    def __init__(self, address: str, token: str = TOKEN):
        self.address = address
        self.channel = channels.make_channel(address, token)
        self.stub = control_store_pb2_grpc.ControlStoreReplicaStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def call(self, method: str, request, timeout_s: float = 5):
        # Like the real client, retry UNAVAILABLE for a moment: a replica
        # refuses client calls until it has learned the shard count.
        deadline_s = time.monotonic() + timeout_s
        while True:
            try:
                return getattr(self.stub, method)(request, timeout=timeout_s)
            except grpc.RpcError as err:
                error = errors.from_rpc_error(err, what=method)
                if error.code != "UNAVAILABLE" or "shard count" not in str(error) or time.monotonic() > deadline_s:
                    raise error from None
                time.sleep(0.05)

    def status(self) -> control_store_pb2.ReplicaStatus:
        return self.call("Status", control_store_pb2.ReplicaStatusRequest())

    def wait_role(self, roles: tuple[str, ...], epoch_min: int = 1, timeout_s: float = 15, lease: bool = True):
        deadline = time.monotonic() + timeout_s
        status = None
        while time.monotonic() < deadline:
            status = self.status()
            if status.role in roles and status.epoch >= epoch_min and (status.lease_valid or not lease):
                return status
            time.sleep(0.02)
        raise AssertionError(f"replica never became {roles}: {status}")


def put(key: bytes, value: bytes) -> control_store_pb2.Op:
    return control_store_pb2.Op(put=control_store_pb2.Put(key=key, value=value))


def write_request(client_id: str, client_seq: int, ops, epoch: int = 0, shard: int = 0, acked_below: int = 0):
    return control_store_pb2.WriteRequest(shard=shard, epoch=epoch, client_id=client_id, client_seq=client_seq,
                                          client_acked_below=acked_below, ops=list(ops))


# ------------------------------------------------------------------ fixtures

import pytest  # noqa: E402

from lineagerun.exceptions import (  # noqa: E402
    AuthenticationError, BadRequestError, NotHeadError, NotTailError, StaleEpochError, ValueTooLargeError,
    WrongShardError,
)

pb = control_store_pb2


@pytest.fixture
def cluster(tmp_path):
    """Yields a factory ``start(replicas=1, **kw) -> (coordinator, [ReplicaProcess])``
    and stops everything it started."""
    token_file(tmp_path)
    started: list = []

    def start(replicas: int = 1, cluster_id: str = "cluster-A", extra: tuple[str, ...] = ()):
        coordinator = FakeCoordinator(replicas, cluster_id)
        started.append(coordinator)
        procs = [ReplicaProcess(tmp_path, coordinator.address, replica_id=f"s0r{i}", extra=extra)
                 for i in range(replicas)]
        started.extend(procs)
        return coordinator, procs

    yield start
    for thing in reversed(started):
        thing.stop()


def _one_replica(cluster, extra=()):
    coordinator, (proc,) = cluster(1, extra=extra)
    client = ReplicaClient(proc.wait_ready())
    client.wait_role(("head+tail",))
    return coordinator, proc, client


def _read(client, *keys, min_epoch=0):
    return client.call("Read", pb.ReadRequest(shard=0, min_epoch=min_epoch, keys=list(keys)))


def _read_eventually(client, *keys, timeout_s: float = 10):
    """A new tail answers UNAVAILABLE until it has its predecessor's
    watermark; clients retry that."""
    from lineagerun.exceptions import UnavailableError
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _read(client, *keys)
        except UnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# ------------------------------------------------------------------ tests


@pytest.mark.timeout(60)
def test_joins_heartbeats_and_serves_writes_and_reads_as_a_chain_of_one(cluster):
    coordinator, proc, client = _one_replica(cluster)
    reply = client.call("Write", write_request("c", 1, [put(b"a/1", b"x"), put(b"a/2", b"y"), put(b"b", b"z")]))
    assert (reply.epoch, reply.seq, [r.ok for r in reply.results]) == (1, 1, [True, True, True])
    read = _read(client, b"a/1", b"nope")
    assert (read.seq, read.values[0].value, read.values[1].present) == (1, b"x", False)
    scan = client.call("Scan", pb.ScanRequest(shard=0, prefix=b"a/", limit=1))
    assert [i.key for i in scan.items] == [b"a/1"] and scan.more
    scan = client.call("Scan", pb.ScanRequest(shard=0, prefix=b"a/", start_after=b"a/1"))
    assert [i.key for i in scan.items] == [b"a/2"] and not scan.more
    assert coordinator.joins[0].replica_id == "s0r0" and coordinator.joins[0].cluster_id == ""
    time.sleep(0.3)
    assert len(coordinator.heartbeats) >= 2
    assert "cluster_id=cluster-A" in (proc.dir / "IDENTITY").read_text()
    status = client.status()
    assert (status.role, status.applied_seq, status.committed_seq, status.lease_valid) == ("head+tail", 1, 1, True)
    assert proc.stop() == 0


@pytest.mark.timeout(60)
def test_subscribe_streams_committed_changes_of_a_prefix(cluster):
    _, _, client = _one_replica(cluster)
    client.call("Write", write_request("c", 1, [put(b"p/old", b"0")]))
    stream = client.stub.Subscribe(pb.SubscribeRequest(shard=0, prefix=b"p/", from_seq=1), timeout=10)
    client.call("Write", write_request("c", 2, [put(b"q/other", b"1"), put(b"p/new", b"2")]))
    seen = []
    for batch in stream:
        seen.extend((c.key, c.value, c.seq) for c in batch.changes)
        if len(seen) >= 2:
            break
    stream.cancel()
    assert seen == [(b"p/old", b"0", 1), (b"p/new", b"2", 2)]


@pytest.mark.timeout(60)
def test_subscribe_announces_no_committed_seq_before_replaying_the_changes_below_it(cluster):
    _, _, client = _one_replica(cluster)
    for seq in range(1, 6):
        client.call("Write", write_request("c", seq, [put(f"p/{seq}".encode(), b"v")]))
    stream = client.stub.Subscribe(pb.SubscribeRequest(shard=0, prefix=b"p/", from_seq=2), timeout=10)
    batches = []
    for batch in stream:
        batches.append(batch)
        if sum(len(b.changes) for b in batches) >= 4:
            break
    stream.cancel()
    # The proto's promise: every change up to a batch's committed_seq has
    # been sent by the end of that batch.
    for index, batch in enumerate(batches):
        later = [c.seq for b in batches[index + 1:] for c in b.changes]
        assert all(seq > batch.committed_seq for seq in later), (index, batch.committed_seq, later)
    assert [c.seq for b in batches for c in b.changes] == [2, 3, 4, 5]
    assert batches[0].committed_seq == 1 and not batches[0].changes


@pytest.mark.timeout(60)
def test_subscribe_below_the_retained_log_is_refused_as_compacted_not_started_later(cluster):
    _, _, client = _one_replica(cluster, extra=("--log-retention-entries", "5"))
    for seq in range(1, 13):
        client.call("Write", write_request("c", seq, [put(f"p/{seq}".encode(), b"v")]))
    stream = client.stub.Subscribe(pb.SubscribeRequest(shard=0, prefix=b"p/", from_seq=2), timeout=10)
    batches = list(stream)  # a refusal ends the stream
    assert len(batches) == 1 and not batches[0].changes, batches
    compacted = batches[0].compacted_seq
    assert 2 <= compacted < 12, compacted
    # From just above the compacted seq, everything retained is replayed.
    stream = client.stub.Subscribe(pb.SubscribeRequest(shard=0, prefix=b"p/", from_seq=compacted + 1), timeout=10)
    seen = []
    for batch in stream:
        assert not batch.compacted_seq
        seen.extend(c.seq for c in batch.changes)
        if seen and seen[-1] == 12:
            break
    stream.cancel()
    assert seen == list(range(compacted + 1, 13))


@pytest.mark.timeout(60)
def test_get_chain_config_answers_the_configuration_the_replica_follows(cluster):
    _, _, client = _one_replica(cluster)
    config = client.call("GetChainConfig", pb.ChainConfigRequest(shard=0))
    assert config.epoch >= 1 and [r.replica_id for r in config.chain] == ["s0r0"]
    with pytest.raises(WrongShardError):
        client.call("GetChainConfig", pb.ChainConfigRequest(shard=3))


@pytest.mark.timeout(60)
def test_a_wrong_token_is_refused(cluster):
    _, _, client = _one_replica(cluster)
    intruder = ReplicaClient(client.address, token="wrong")
    with pytest.raises(AuthenticationError):
        intruder.call("Write", write_request("c", 1, [put(b"k", b"v")]))
    intruder.close()
    assert _read(client, b"k").values[0].present is False


@pytest.mark.timeout(60)
def test_stale_epochs_are_refused(cluster):
    _, _, client = _one_replica(cluster)
    newer = common_pb2.ChainConfig(shard=0, epoch=5, chain=[common_pb2.ReplicaInfo(
        replica_id="s0r0", address=client.address)])
    assert client.call("UpdateConfig", pb.ConfigUpdate(config=newer)).epoch == 5
    older = common_pb2.ChainConfig(shard=0, epoch=4, chain=newer.chain)
    with pytest.raises(StaleEpochError):
        client.call("UpdateConfig", pb.ConfigUpdate(config=older))
    with pytest.raises(StaleEpochError):
        client.call("Write", write_request("c", 1, [put(b"k", b"v")], epoch=1))
    assert client.call("Write", write_request("c", 2, [put(b"k", b"v")], epoch=5)).epoch == 5


@pytest.mark.timeout(60)
def test_a_directory_of_another_shard_is_refused_with_exit_code_3(cluster, tmp_path):
    directory = tmp_path / "s0r0"
    directory.mkdir()
    (directory / "IDENTITY").write_text("cluster_id=cluster-A\nshard=1\nreplica_id=s1r0\n")
    _, (proc,) = cluster(1)
    assert proc.proc.wait(30) == 3
    assert "ShardMismatchError" in proc.stderr_text() and "shard 1" in proc.stderr_text()
    assert not (directory / "ready").exists()


@pytest.mark.timeout(60)
def test_a_directory_of_another_cluster_is_refused_with_exit_code_3(cluster, tmp_path):
    directory = tmp_path / "s0r0"
    directory.mkdir()
    (directory / "IDENTITY").write_text("cluster_id=cluster-OTHER\nshard=0\nreplica_id=s0r0\n")
    _, (proc,) = cluster(1)
    assert proc.proc.wait(30) == 3
    assert "ShardMismatchError" in proc.stderr_text() and "cluster-OTHER" in proc.stderr_text()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
def test_restart_from_rocksdb_keeps_acknowledged_writes(cluster, tmp_path, stop_signal):
    coordinator, proc, client = _one_replica(cluster)
    for i in range(1, 21):
        client.call("Write", write_request("c", i, [put(b"k%d" % i, b"v%d" % i)]))
    client.close()
    code = proc.stop(stop_signal)
    assert code == (0 if stop_signal == signal.SIGTERM else -signal.SIGKILL)
    again = ReplicaProcess(tmp_path, coordinator.address, directory=proc.dir)
    try:
        client = ReplicaClient(again.wait_ready())
        status = client.wait_role(("head+tail",), epoch_min=2)
        assert status.applied_seq == 20
        assert _read(client, b"k20").values[0].value == b"v20"
        retry = client.call("Write", write_request("c", 20, [put(b"k20", b"v20")]))
        assert retry.seq == 20                                  # dedup survived the restart
        assert coordinator.joins[-1].cluster_id == "cluster-A" and coordinator.joins[-1].applied_seq == 20
    finally:
        client.close()
        assert again.stop() == 0


@pytest.mark.timeout(60)
def test_malformed_requests_get_typed_errors_and_the_process_stays_up(cluster):
    _, proc, client = _one_replica(cluster, extra=("--max-value-bytes", "1024", "--max-key-bytes", "64"))
    cases = [
        (pb.WriteRequest(shard=7, client_id="c", client_seq=1, ops=[put(b"k", b"v")]), WrongShardError),
        (write_request("c", 1, [put(b"k" * 65, b"v")]), ValueTooLargeError),
        (write_request("c", 1, [put(b"k", b"v" * 1025)]), ValueTooLargeError),
        (write_request("c", 1, []), BadRequestError),
        (write_request("c", 1, [pb.Op()]), BadRequestError),
        (write_request("c", 0, [put(b"k", b"v")]), BadRequestError),
    ]
    for request, error in cases:
        with pytest.raises(error):
            client.call("Write", request)
    with pytest.raises(WrongShardError):
        client.call("Read", pb.ReadRequest(shard=3, keys=[b"k"]))
    with pytest.raises(BadRequestError):
        client.call("Read", pb.ReadRequest(shard=0, keys=[b""]))
    raw = grpc.insecure_channel(client.address)
    garbage = raw.unary_unary("/lineagerun.rpc.ControlStoreReplica/Write", request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError):
        garbage(b"\xff\xff\xff\x0f", timeout=5, metadata=(("lr-token", TOKEN),))
    raw.close()
    assert proc.proc.poll() is None
    assert client.call("Write", write_request("c", 1, [put(b"k", b"v")])).seq == 1


@pytest.mark.timeout(90)
def test_a_chain_of_two_processes_replicates_and_fences_roles(cluster):
    coordinator, procs = cluster(2)
    for p in procs:
        p.wait_ready()
    deadline = time.monotonic() + 20
    while coordinator.config.epoch == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    head_addr, tail_addr = (r.address for r in coordinator.config.chain)
    head, tail = ReplicaClient(head_addr), ReplicaClient(tail_addr)
    head.wait_role(("head",), lease=False)
    tail.wait_role(("tail",))
    for i in range(1, 51):
        assert head.call("Write", write_request("c", i, [put(b"k%d" % (i % 5), b"%d" % i)])).seq == i
    assert [v.value for v in _read_eventually(tail, b"k0", b"k1").values] == [b"50", b"46"]
    assert head.status().committed_seq == 50 and tail.status().applied_seq == 50
    with pytest.raises(NotHeadError):
        tail.call("Write", write_request("c", 99, [put(b"k", b"v")]))
    with pytest.raises(NotTailError):
        _read(head, b"k0")
    head.close()
    tail.close()


# ------------------------------------------------------------------ storage contract


@pytest.fixture(params=["memory", "rocksdb"])
def storage(request, tmp_path):
    from lineagerun.control.replica.storage import RocksStorage
    from lineagerun.core.chain.replica_storage import InMemoryStorage
    if request.param == "memory":
        yield InMemoryStorage()
        return
    rocks = RocksStorage(tmp_path / "db", "fsync")
    yield rocks
    rocks.close()


def _entry(seq, client, client_seq, *mutations, acked_below=0, epoch=1):
    return pb.LogEntry(seq=seq, epoch=epoch, client_id=client, client_seq=client_seq,
                       client_acked_below=acked_below, results=[pb.OpResult(ok=True)],
                       mutations=[pb.Mutation(key=k, value=v or b"", deleted=v is None) for k, v in mutations])


def test_storage_contract_is_the_same_for_rocksdb_and_memory(storage, monkeypatch):
    monkeypatch.setattr("lineagerun.core.chain.replica_storage.DEDUP_GC_EVERY_REQUESTS", 1)
    from lineagerun.core.chain.replica_events import Persist
    storage.apply(Persist(entries=(_entry(1, "c", 1, (b"a/1", b"x"), (b"a/2", b"y")),
                                   _entry(2, "c", 2, (b"a/1", None), (b"b", b"z"), acked_below=2)),
                          applied=(2, 1)))
    assert (storage.get(b"a/1"), storage.get(b"a/2"), storage.get(b"b")) == (None, b"y", b"z")
    assert storage.get_dedup("c", 1) is None and storage.get_dedup("c", 2).seq == 2
    assert storage.dedup_floor("c") == 2 and storage.dedup_floor("other") == 0
    assert [e.seq for e in storage.log_entries(1, 10)] == [1, 2] and storage.log_entry(2).client_seq == 2
    assert storage.scan(b"a/", b"", 10, False) == ([(b"a/2", b"y")], False)
    assert storage.scan(b"", b"a/2", 10, True) == ([(b"b", b"")], False)
    meta = storage.load_meta()
    assert (meta.applied_seq, meta.applied_epoch, meta.snapshot_in_progress) == (2, 1, False)
    storage.apply(Persist(entries=(_entry(3, "d", 1, (b"c", b"w")),), applied=(3, 1), log_base=(2, 1)))
    assert storage.log_entry(2) is None and [e.seq for e in storage.log_entries(3, 10)] == [3]
    assert (storage.load_meta().log_base_seq, storage.load_meta().log_base_epoch) == (2, 1)
    items = list(storage.snapshot_items())
    assert {k for k, _ in items} >= {b"da/2", b"db", b"dc"} and not any(k.startswith(b"l") for k, _ in items)
    storage.apply(Persist(snapshot_begin=True, snapshot_items=((b"dnew", b"1"), (b"m/applied", b"forged"))))
    assert storage.load_meta().snapshot_in_progress and storage.get(b"b") is None
    storage.apply(Persist(applied=(9, 4), log_base=(9, 4), snapshot_end=True))
    meta = storage.load_meta()
    assert (meta.applied_seq, meta.snapshot_in_progress, storage.get(b"new")) == (9, False, b"1")
    assert storage.log_entries(3, 10) == []


@pytest.mark.timeout(120)
def test_tail_killed_then_rejoins_as_joiner_catches_up_by_snapshot_and_is_promoted(cluster, tmp_path):
    coordinator, procs = cluster(2, extra=("--log-retention-entries", "5"))
    for p in procs:
        p.wait_ready()
    deadline = time.monotonic() + 20
    while coordinator.config.epoch == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    (head_info, tail_info) = coordinator.config.chain
    by_id = {p.dir.name: p for p in procs}
    head = ReplicaClient(head_info.address)
    head.wait_role(("head",), lease=False)
    for i in range(1, 11):
        head.call("Write", write_request("c", i, [put(b"k%d" % i, b"v%d" % i)]))
    assert by_id[tail_info.replica_id].stop(signal.SIGKILL) == -signal.SIGKILL
    coordinator.set_chain([head_info.replica_id])          # the tail is declared dead (epoch 2)
    head.wait_role(("head+tail",), epoch_min=2)
    for i in range(11, 31):                                 # more than the retained log: a snapshot is needed
        head.call("Write", write_request("c", i, [put(b"k%d" % i, b"v%d" % i)], acked_below=i))
    again = ReplicaProcess(tmp_path, coordinator.address, replica_id=tail_info.replica_id,
                           directory=by_id[tail_info.replica_id].dir, extra=("--log-retention-entries", "5"))
    try:
        tail = ReplicaClient(again.wait_ready())
        status = tail.wait_role(("tail",), epoch_min=4, timeout_s=30)  # joined (3), promoted (4)
        assert status.applied_seq == 30
        values = _read_eventually(tail, *[b"k%d" % i for i in range(1, 31)]).values
        assert [v.value for v in values] == [b"v%d" % i for i in range(1, 31)]
        assert head.call("Write", write_request("c", 31, [put(b"k31", b"x")])).seq == 31
        assert _read(tail, b"k31").values[0].value == b"x"
        tail.close()
    finally:
        head.close()
        assert again.stop() == 0
