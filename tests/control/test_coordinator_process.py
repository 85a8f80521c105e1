"""A real coordinator process driven by fake replicas (gRPC clients that Join
and Heartbeat, plus tiny servers that receive UpdateConfig pushes)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from lineagerun.control.coordinator.persistence import ConfigStore
from lineagerun.control.coordinator.server import CoordinatorOptions, CoordinatorService, start_core
from lineagerun.core.chain.coordinator_events import JoinRequested
from lineagerun.exceptions import AuthenticationError, BadRequestError, ShardMismatchError, UnavailableError
from lineagerun.rpc import control_store_pb2, control_store_pb2_grpc, coordinator_pb2, coordinator_pb2_grpc
from lineagerun.transport import channels, errors
from lineagerun.transport.auth import write_token_file

TOKEN = "k" * 64
HEARTBEAT_MS = 50
FAILURE_TIMEOUT_MS = 500
LEASE_MS = 300
START_DEADLINE_S = 15
RPC_TIMEOUT_S = 5

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------- processes


class CoordinatorProcess:
    def __init__(self, directory: Path, token_file: Path, shards=2, replicas=2):
        self.directory = directory
        self.stderr_path = directory.parent / f"{directory.name}.stderr"
        self.args = [sys.executable, "-m", "lineagerun.control.coordinator", "--dir", str(directory),
                     "--shards", str(shards), "--replicas", str(replicas), "--token-file", str(token_file),
                     "--heartbeat-interval-ms", str(HEARTBEAT_MS), "--failure-timeout-ms", str(FAILURE_TIMEOUT_MS),
                     "--lease-ms", str(LEASE_MS)]
        self.proc: subprocess.Popen | None = None
        self.address = ""

    def start(self, wait_ready=True):
        with open(self.stderr_path, "ab") as stderr:
            self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        if not wait_ready:
            return self
        ready = self.directory / "ready"
        deadline = time.monotonic() + START_DEADLINE_S
        while not ready.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"coordinator exited with {self.proc.returncode}: {self.stderr()}")
            if time.monotonic() > deadline:
                pytest.fail(f"coordinator not ready after {START_DEADLINE_S} s: {self.stderr()}")
            time.sleep(0.02)
        self.address = ready.read_text().strip()
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def wait(self, timeout=START_DEADLINE_S) -> int:
        return self.proc.wait(timeout)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stub(self, token=TOKEN):
        channel = channels.make_channel(self.address, token)
        return channel, coordinator_pb2_grpc.ChainCoordinatorStub(channel)


class _PushReceiver(control_store_pb2_grpc.ControlStoreReplicaServicer):
    def __init__(self):
        self.updates: list[control_store_pb2.ConfigUpdate] = []
        self.lock = threading.Lock()

    def UpdateConfig(self, request, context):
        with self.lock:
            self.updates.append(request)
        return control_store_pb2.ConfigAck(epoch=request.config.epoch)


class FakeReplica:
    """Joins, heartbeats on a thread, and records pushed configs."""

    def __init__(self, replica_id: str, shard: int, coordinator_address: str):
        self.replica_id, self.shard = replica_id, shard
        self.receiver = _PushReceiver()
        self.server = channels.make_server(TOKEN, max_workers=2)
        control_store_pb2_grpc.add_ControlStoreReplicaServicer_to_server(self.receiver, self.server)
        self.address = f"127.0.0.1:{channels.bind(self.server, '127.0.0.1', 0, TOKEN)}"
        self.server.start()
        self.channel = channels.make_channel(coordinator_address, TOKEN)
        self.stub = coordinator_pb2_grpc.ChainCoordinatorStub(self.channel)
        self.epoch = 0
        self.cluster_id = ""
        self.last_reply: coordinator_pb2.HeartbeatReply | None = None
        self.last_beat_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def join(self) -> coordinator_pb2.JoinReply:
        reply = self.stub.Join(coordinator_pb2.JoinRequest(replica_id=self.replica_id, shard=self.shard,
                                                           address=self.address, cluster_id=self.cluster_id),
                               timeout=RPC_TIMEOUT_S)
        self.cluster_id = reply.cluster_id
        self.epoch = reply.config.epoch
        return reply

    def beat(self) -> coordinator_pb2.HeartbeatReply:
        reply = self.stub.Heartbeat(coordinator_pb2.HeartbeatRequest(
            replica_id=self.replica_id, shard=self.shard, address=self.address, epoch=self.epoch,
            cluster_id=self.cluster_id), timeout=RPC_TIMEOUT_S)
        self.epoch = max(self.epoch, reply.config.epoch)
        self.last_reply = reply
        self.last_beat_s = time.monotonic()
        return reply

    def start_heartbeats(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat_forever, daemon=True)
        self._thread.start()

    def _beat_forever(self):
        while not self._stop.wait(HEARTBEAT_MS / 1000):
            try:
                self.beat()
            except grpc.RpcError:
                pass  # coordinator restarting: keep trying, like a replica

    def stop_heartbeats(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def pushed_epochs(self) -> list[int]:
        with self.receiver.lock:
            return [u.config.epoch for u in self.receiver.updates]

    def close(self):
        self.stop_heartbeats()
        self.channel.close()
        self.server.stop(None)


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def cluster(tmp_path):
    token_file = write_token_file(tmp_path / "token", TOKEN)
    started: list = []

    def coordinator(**kwargs) -> CoordinatorProcess:
        proc = CoordinatorProcess(tmp_path / "coordinator", token_file, **kwargs)
        started.append(proc)
        return proc

    def replica(replica_id, shard, coord) -> FakeReplica:
        fake = FakeReplica(replica_id, shard, coord.address)
        started.append(fake)
        return fake

    yield coordinator, replica
    for thing in reversed(started):
        if isinstance(thing, FakeReplica):
            thing.close()
        else:
            thing.kill()


def bootstrap(coord, replica, shards=2, replicas=2) -> dict[str, FakeReplica]:
    fakes = {}
    for s in range(shards):
        for r in range(replicas):
            fake = fakes[f"s{s}r{r}"] = replica(f"s{s}r{r}", s, coord)
            fake.join()
    return fakes


def get_config(coord):
    channel, stub = coord.stub()
    with channel:
        return stub.GetConfig(coordinator_pb2.GetConfigRequest(), timeout=RPC_TIMEOUT_S)


def call(fn, *args, **kwargs):
    try:
        return fn(*args, timeout=RPC_TIMEOUT_S, **kwargs)
    except grpc.RpcError as err:
        raise errors.from_rpc_error(err) from None


def wait_for(predicate, timeout_s=5.0, interval_s=0.01):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


# ---------------------------------------------------------------- tests


def test_bootstrap_forms_every_chain_pushes_it_and_streams_changes(cluster):
    new_coordinator, replica = cluster
    coord = new_coordinator().start()
    watched: list = []
    channel, stub = coord.stub()
    stream = stub.WatchConfig(coordinator_pb2.WatchConfigRequest(known_version=0), timeout=30)

    def watch():
        try:
            for config in stream:
                watched.append(config)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.CANCELLED  # by this test, at its end

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        fakes = bootstrap(coord, replica)
        config = get_config(coord)
        assert config.num_shards == 2 and len(config.cluster_id) == 32
        for s in range(2):
            chain = config.shards[s]
            assert chain.epoch == 1 and [r.replica_id for r in chain.chain] == [f"s{s}r0", f"s{s}r1"]
            assert chain.chain[1].address == fakes[f"s{s}r1"].address
        for fake in fakes.values():
            wait_for(lambda: 1 in fake.pushed_epochs())
            reply = fake.beat()
            assert reply.lease_ms == LEASE_MS and not reply.must_join and reply.config.epoch == 1
        wait_for(lambda: watched and watched[-1].version == config.version)
        assert [c.version for c in watched] == sorted({c.version for c in watched})
    finally:
        stream.cancel()
        watcher.join(5)
        channel.close()
    assert coord.terminate() == 0
    assert not (coord.directory / "ready").exists()


def test_silent_member_removed_within_failure_timeout_plus_one_tick(cluster):
    new_coordinator, replica = cluster
    coord = new_coordinator().start()
    fakes = bootstrap(coord, replica)
    for fake in fakes.values():
        fake.start_heartbeats()
    time.sleep(0.2)
    tail = fakes["s0r1"]
    tail.stop_heartbeats()
    silent_since = tail.last_beat_s
    config = wait_for(lambda: (c := get_config(coord)).shards[0].epoch == 2 and c, timeout_s=5)
    detected_ms = (time.monotonic() - silent_since) * 1000
    print(f"failure detected after {detected_ms:.0f} ms (timeout {FAILURE_TIMEOUT_MS} ms, tick {HEARTBEAT_MS} ms)")
    assert [r.replica_id for r in config.shards[0].chain] == ["s0r0"]
    assert config.shards[1].epoch == 1  # the other shard is untouched
    # Removal after the timeout, not before; and at most a tick (plus
    # scheduling slack on a busy machine) after it.
    assert FAILURE_TIMEOUT_MS - 250 <= detected_ms <= FAILURE_TIMEOUT_MS + HEARTBEAT_MS + 800, detected_ms
    wait_for(lambda: 2 in fakes["s0r0"].pushed_epochs())
    channel, stub = coord.stub()
    with channel:
        status = call(stub.Status, coordinator_pb2.CoordinatorStatusRequest())
    states = {h.replica_id: h.state for h in status.replicas}
    assert states == {"s0r0": "member", "s0r1": "dead", "s1r0": "member", "s1r1": "member"}
    assert status.failure_timeout_ms == FAILURE_TIMEOUT_MS
    reply = tail.beat()
    assert reply.must_join and reply.lease_ms == 0
    rejoined = tail.join()
    assert rejoined.config.joining.replica_id == "s0r1" and rejoined.config.epoch == 3


def test_restart_from_directory_keeps_epochs_and_cluster_id(cluster):
    new_coordinator, replica = cluster
    coord = new_coordinator().start()
    fakes = bootstrap(coord, replica)
    fakes["s1r0"].join()  # a restarted member: removed and made the joiner, epoch 2
    before = get_config(coord)
    assert before.shards[1].epoch == 2
    assert coord.terminate() == 0

    launched_s = time.monotonic()  # the new process loads config.pb after this
    coord = new_coordinator().start()
    after = get_config(coord)
    assert after == before
    for fake in fakes.values():
        fake.channel.close()
        fake.channel = channels.make_channel(coord.address, TOKEN)
        fake.stub = coordinator_pb2_grpc.ChainCoordinatorStub(fake.channel)
    # Members get a full failure timeout after the restart, then the silent
    # ones are removed with epochs that keep growing.
    assert fakes["s0r0"].beat().lease_ms == LEASE_MS
    fakes["s0r0"].start_heartbeats()
    config = wait_for(lambda: (c := get_config(coord)).shards[0].epoch == 2 and c, timeout_s=5)
    assert (time.monotonic() - launched_s) * 1000 >= FAILURE_TIMEOUT_MS
    assert [r.replica_id for r in config.shards[0].chain] == ["s0r0"]
    assert config.cluster_id == before.cluster_id and config.version > before.version
    stranger = replica("s0r7", 0, coord)
    stranger.cluster_id = "f" * 32
    with pytest.raises(ShardMismatchError, match="belongs to cluster"):
        call(stranger.stub.Join, coordinator_pb2.JoinRequest(replica_id="s0r7", shard=0, address=stranger.address,
                                                              cluster_id=stranger.cluster_id))
    fakes["s0r0"].stop_heartbeats()
    assert coord.terminate() == 0

    other_layout = new_coordinator(shards=3).start(wait_ready=False)
    assert other_layout.wait() == 3
    assert "holds a cluster with 2 shards, not 3" in other_layout.stderr()


def test_wrong_token_is_refused(cluster):
    new_coordinator, _ = cluster
    coord = new_coordinator().start()
    for token in (None, "wrong"):
        channel, stub = coord.stub(token)
        with channel, pytest.raises(AuthenticationError):
            call(stub.GetConfig, coordinator_pb2.GetConfigRequest())


def test_malformed_requests_get_typed_errors_and_the_process_stays_up(cluster):
    new_coordinator, _ = cluster
    coord = new_coordinator().start()
    channel, stub = coord.stub()
    with channel:
        with pytest.raises(BadRequestError, match="shard 9 does not exist"):
            call(stub.Join, coordinator_pb2.JoinRequest(replica_id="x", shard=9, address="127.0.0.1:1"))
        with pytest.raises(BadRequestError, match="replica_id is empty"):
            call(stub.Join, coordinator_pb2.JoinRequest(replica_id="", shard=0, address="127.0.0.1:1"))
        with pytest.raises(BadRequestError, match="no address"):
            call(stub.Join, coordinator_pb2.JoinRequest(replica_id="x", shard=0))
        with pytest.raises(BadRequestError, match="does not exist"):
            call(stub.Heartbeat, coordinator_pb2.HeartbeatRequest(replica_id="x", shard=2**32 - 1))
        # Bytes that are not a JoinRequest at all.
        raw = channel.unary_unary("/lineagerun.rpc.ChainCoordinator/Join")
        with pytest.raises(grpc.RpcError):
            raw(b"\xff\xff\xff\xff", timeout=RPC_TIMEOUT_S)
        assert call(stub.GetConfig, coordinator_pb2.GetConfigRequest()).num_shards == 2
    assert coord.proc.poll() is None


def test_corrupt_config_makes_the_process_exit_with_a_clear_message(cluster, tmp_path):
    new_coordinator, _ = cluster
    directory = tmp_path / "coordinator"
    directory.mkdir()
    (directory / "config.pb").write_bytes(b"\x0a\xff\xff not a config")
    coord = new_coordinator().start(wait_ready=False)
    assert coord.wait() == 4
    assert "config.pb is corrupt" in coord.stderr()
    assert (directory / "config.pb").read_bytes() == b"\x0a\xff\xff not a config"
    assert not (directory / "ready").exists()


def test_push_to_a_black_hole_does_not_block_heartbeats(cluster):
    new_coordinator, replica = cluster
    coord = new_coordinator(shards=1, replicas=2).start()
    # A TCP listener that never speaks HTTP/2: pushes to it hang until their deadline.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    try:
        live = replica("s0r0", 0, coord)
        live.join()
        channel, stub = coord.stub()
        with channel:
            call(stub.Join, coordinator_pb2.JoinRequest(replica_id="s0r1", shard=0,
                                                        address=f"127.0.0.1:{hole.getsockname()[1]}"))
        # Right after the join that triggered the push: a heartbeat blocked
        # behind it would wait for its whole deadline (300 ms).
        started = time.monotonic()
        assert live.beat().config.epoch == 1
        first_beat_ms = (time.monotonic() - started) * 1000
        assert first_beat_ms < 250, first_beat_ms
        wait_for(lambda: 1 in live.pushed_epochs())
    finally:
        hole.close()


def test_sigterm_with_an_open_watch_stream_exits_cleanly(cluster):
    new_coordinator, _ = cluster
    coord = new_coordinator().start()
    channel, stub = coord.stub()
    with channel:
        stream = stub.WatchConfig(coordinator_pb2.WatchConfigRequest(known_version=0), timeout=30)
        assert next(stream).version >= 1
        started = time.monotonic()
        assert coord.terminate() == 0
        assert time.monotonic() - started < 5
        with pytest.raises(grpc.RpcError):
            next(stream)


def test_failed_persist_stops_the_coordinator_and_tells_no_one(tmp_path):
    """In-process shell test: a config that could not be written is never
    pushed nor replied, and the service refuses everything afterwards."""
    class FailingStore(ConfigStore):
        fail = False

        def save(self, config):
            if self.fail:
                raise OSError(28, "No space left on device")
            super().save(config)

    async def run():
        options = CoordinatorOptions(directory=tmp_path, num_shards=1, replicas_per_shard=1, token=TOKEN)
        store = FailingStore(tmp_path)
        fatal = []
        service = CoordinatorService(start_core(options, store), store, options, fatal.append)
        on_disk = store.load()
        store.fail = True
        with pytest.raises(UnavailableError, match="cannot persist"):
            service.run(JoinRequested("s0r0", 0, "127.0.0.1:1", now_ms=0))
        assert fatal and "No space left" in str(fatal[0])
        assert not service._pusher._tasks
        with pytest.raises(UnavailableError, match="stopping"):
            service.run(JoinRequested("s0r0", 0, "127.0.0.1:1", now_ms=1))
        assert store.load() == on_disk
        await service.close()

    asyncio.run(run())
