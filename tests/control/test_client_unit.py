"""ControlStoreClient against an in-test fake store (real gRPC, fake logic):
routing, retries and config refresh, dedup identity of retries, group
commit, deadlines, bad input, scans and subscriptions."""

from __future__ import annotations

import threading
import time
import zlib

import grpc
import pytest

from lineagerun.control.client import (
    KEY_SIZE_MAX_BYTES,
    OPS_PER_WRITE_MAX,
    VALUE_SIZE_MAX_BYTES,
    CasOp,
    ControlStoreClient,
    DeleteOp,
    PutOp,
    Resync,
)
from lineagerun.exceptions import (
    AuthenticationError,
    BadRequestError,
    ControlStoreUnavailableError,
    InvalidArgumentError,
    NotHeadError,
    NotTailError,
    UnavailableError,
    ValueTooLargeError,
)
from lineagerun.rpc import common_pb2, control_store_pb2, control_store_pb2_grpc, coordinator_pb2_grpc
from lineagerun.transport import channels, errors

TOKEN = "k" * 64
pytestmark = pytest.mark.timeout(60)


class _Shard:
    """One shard's state, shared by the fake replicas of that shard."""

    def __init__(self):
        self.lock = threading.Condition()
        self.data: dict[bytes, bytes] = {}
        self.log: list[tuple[int, list[control_store_pb2.Change]]] = []
        self.dedup: dict[tuple[str, int], control_store_pb2.WriteReply] = {}
        self.applied = 0

    def write(self, request) -> control_store_pb2.WriteReply:
        with self.lock:
            known = self.dedup.get((request.client_id, request.client_seq))
            if known is not None:
                return known
            seq = len(self.log) + 1
            results, changes = [], []
            for op in request.ops:
                kind = op.WhichOneof("kind")
                if kind == "put":
                    self.data[op.put.key] = op.put.value
                    changes.append(control_store_pb2.Change(key=op.put.key, value=op.put.value, seq=seq))
                    results.append(control_store_pb2.OpResult(ok=True))
                elif kind == "delete":
                    self.data.pop(op.delete.key, None)
                    changes.append(control_store_pb2.Change(key=op.delete.key, deleted=True, seq=seq))
                    results.append(control_store_pb2.OpResult(ok=True))
                else:
                    cas = op.cas
                    current = self.data.get(cas.key)
                    match = current is None if cas.expect_absent else current == cas.expected
                    if match:
                        if cas.delete_on_match:
                            self.data.pop(cas.key, None)
                        else:
                            self.data[cas.key] = cas.new_value
                    results.append(control_store_pb2.OpResult(ok=match, present=current is not None,
                                                              current=b"" if match else (current or b"")))
            self.applied += len(request.ops)
            self.log.append((seq, changes))
            reply = control_store_pb2.WriteReply(epoch=1, seq=seq, results=results)
            self.dedup[(request.client_id, request.client_seq)] = reply
            self.lock.notify_all()
            return reply


class _Replica(control_store_pb2_grpc.ControlStoreReplicaServicer):
    def __init__(self, shard_no: int, state: _Shard):
        self.shard_no = shard_no
        self.state = state
        self.fail_with: Exception | None = None     # typed error for every call
        self.apply_then_drop = 0                    # writes to apply but answer UNAVAILABLE
        self.writes: list[control_store_pb2.WriteRequest] = []
        self.write_delay_s = 0.0
        self.reads = 0
        self.break_streams = threading.Event()
        self.hang_streams = threading.Event()   # a paused tail: the stream neither ends nor sends
        self.compacted_through = 0              # Subscribe refuses from_seq at or below this
        self.chain_config: common_pb2.ChainConfig | None = None  # what GetChainConfig answers

    def _check(self, context, shard):
        if self.fail_with is not None:
            errors.abort(context, self.fail_with)
        if shard != self.shard_no:
            errors.abort(context, BadRequestError(f"shard {shard} sent to a replica of shard {self.shard_no}"))

    def Write(self, request, context):
        self.writes.append(request)
        time.sleep(self.write_delay_s)
        self._check(context, request.shard)
        for op in request.ops:
            key = getattr(op, op.WhichOneof("kind")).key
            if zlib.crc32(key) % request_num_shards(self) != self.shard_no:
                errors.abort(context, BadRequestError("key routed to the wrong shard"))
        reply = self.state.write(request)
        if self.apply_then_drop > 0:
            self.apply_then_drop -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset (simulated)")
        return reply

    def Read(self, request, context):
        self.reads += 1
        self._check(context, request.shard)
        with self.state.lock:
            values = [control_store_pb2.MaybeValue(present=k in self.state.data, value=self.state.data.get(k, b""))
                      for k in request.keys]
            return control_store_pb2.ReadReply(epoch=1, seq=len(self.state.log), values=values)

    def Scan(self, request, context):
        self._check(context, request.shard)
        limit = request.limit or 1000
        with self.state.lock:
            keys = sorted(k for k in self.state.data if k.startswith(request.prefix) and k > request.start_after)
            page = keys[:limit]
            items = [control_store_pb2.KeyValue(key=k, value=b"" if request.keys_only else self.state.data[k])
                     for k in page]
            return control_store_pb2.ScanReply(epoch=1, seq=len(self.state.log), items=items,
                                               more=len(keys) > limit)

    def GetChainConfig(self, request, context):
        self._check(context, request.shard)
        if self.chain_config is None:
            errors.abort(context, UnavailableError("no configuration yet"))
        return self.chain_config

    def Subscribe(self, request, context):
        self._check(context, request.shard)
        if request.from_seq and request.from_seq <= self.compacted_through:
            yield control_store_pb2.ChangeBatch(epoch=1, committed_seq=len(self.state.log),
                                                compacted_seq=self.compacted_through)
            return
        next_seq = request.from_seq or len(self.state.log) + 1
        while context.is_active() and not self.break_streams.is_set():
            if self.hang_streams.is_set():
                time.sleep(0.02)
                continue
            with self.state.lock:
                entries = self.state.log[next_seq - 1:]
                if not entries:
                    self.state.lock.wait(timeout=0.05)
                    continue
            changes = [c for _, cs in entries for c in cs if c.key.startswith(request.prefix)]
            next_seq = entries[-1][0] + 1
            yield control_store_pb2.ChangeBatch(epoch=1, changes=changes, committed_seq=next_seq - 1)
        if self.break_streams.is_set():
            errors.abort(context, NotTailError("no longer the tail (simulated)"))


def request_num_shards(replica: _Replica) -> int:
    return replica.num_shards


class _Coordinator(coordinator_pb2_grpc.ChainCoordinatorServicer):
    def __init__(self):
        self.config = common_pb2.ClusterConfig(cluster_id="fake", num_shards=0, version=1)
        self.calls = 0

    def GetConfig(self, request, context):
        self.calls += 1
        return self.config


class FakeStore:
    """A coordinator plus ``replicas`` fake replicas per shard, each its own
    gRPC server; every shard's chain starts as replica 0 -> ... -> last."""

    def __init__(self, shards: int = 1, replicas: int = 2):
        self.servers = []
        self.coordinator = _Coordinator()
        self.coordinator_address = self._serve(coordinator_pb2_grpc.add_ChainCoordinatorServicer_to_server,
                                               self.coordinator)
        self.states = [_Shard() for _ in range(shards)]
        self.replicas: list[list[_Replica]] = []
        self.addresses: list[list[str]] = []
        for s in range(shards):
            row, addrs = [], []
            for _ in range(replicas):
                replica = _Replica(s, self.states[s])
                replica.num_shards = shards
                row.append(replica)
                addrs.append(self._serve(control_store_pb2_grpc.add_ControlStoreReplicaServicer_to_server, replica))
            self.replicas.append(row)
            self.addresses.append(addrs)
        self.set_chains([list(range(replicas)) for _ in range(shards)])

    def _serve(self, add, servicer) -> str:
        server = channels.make_server(TOKEN, max_workers=64)
        add(servicer, server)
        port = channels.bind(server, "127.0.0.1", 0, TOKEN)
        server.start()
        self.servers.append(server)
        return f"127.0.0.1:{port}"

    def set_chains(self, chains: list[list[int]]) -> None:
        old = self.coordinator.config
        shards = []
        for s, chain in enumerate(chains):
            epoch = (old.shards[s].epoch + 1) if s < len(old.shards) else 1
            shards.append(common_pb2.ChainConfig(shard=s, epoch=epoch, chain=[
                common_pb2.ReplicaInfo(replica_id=f"s{s}r{i}", address=self.addresses[s][i]) for i in chain]))
        self.coordinator.config = common_pb2.ClusterConfig(cluster_id="fake", num_shards=len(chains),
                                                           shards=shards, version=old.version + 1)
        for s, shard in enumerate(shards):
            for replica in self.replicas[s]:
                replica.chain_config = shard

    def client(self, **kwargs) -> ControlStoreClient:
        return ControlStoreClient(self.coordinator_address, TOKEN, **kwargs)

    def stop(self) -> None:
        for replica in (r for row in self.replicas for r in row):
            replica.break_streams.set()
        for server in self.servers:
            server.stop(None)


@pytest.fixture
def store():
    fake = FakeStore(shards=2, replicas=2)
    yield fake
    fake.stop()


def _shard(key: bytes, shards: int = 2) -> int:
    return zlib.crc32(key) % shards


def test_writes_go_to_the_head_and_reads_to_the_tail_of_the_keys_shard(store):
    keys = [f"route/{i}".encode() for i in range(40)]
    with store.client() as client:
        for key in keys:
            client.put(key, b"v-" + key)
        assert client.get_many(keys) == [b"v-" + k for k in keys]
        assert client.get(b"route/absent") is None
    for s in range(2):
        head, tail = store.replicas[s]
        sent = {op.put.key for req in head.writes for op in req.ops}
        assert sent == {k for k in keys if _shard(k) == s}
        assert not tail.writes, "writes must go to the head only"
        assert tail.reads >= 1 and head.reads == 0, "reads must go to the tail only"
    assert {k for k in keys if _shard(k) == 0} and {k for k in keys if _shard(k) == 1}


def test_not_head_refreshes_the_config_and_retries_at_the_new_head(store):
    key = next(f"nh/{i}".encode() for i in range(100) if _shard(f"nh/{i}".encode()) == 0)
    old_head, new_head = store.replicas[0]
    with store.client() as client:
        client.get(key)  # cache the config: old_head is the head
        calls_before = store.coordinator.calls
        old_head.fail_with = NotHeadError("s0r0 is not the head")
        store.set_chains([[1], [0, 1]])
        client.put(key, b"after-failover")
        assert client.get(key) == b"after-failover"
        assert store.coordinator.calls > calls_before
        assert client.stats["retries"] >= 1
    assert len(old_head.writes) == 1 and len(new_head.writes) == 1
    # The retry is the same request: same client id and client seq.
    first, retry = old_head.writes[0], new_head.writes[0]
    assert (first.client_id, first.client_seq) == (retry.client_id, retry.client_seq)
    assert retry.epoch == 2 and first.epoch == 1


def test_a_retried_write_whose_reply_was_lost_is_applied_once(store):
    head = store.replicas[0][0]
    key = next(f"dd/{i}".encode() for i in range(100) if _shard(f"dd/{i}".encode()) == 0)
    head.apply_then_drop = 2
    with store.client() as client:
        result = client.cas(key, None, b"once")
        assert result.ok, "the retry must see the recorded result, not a failed CAS"
        assert client.get(key) == b"once"
    assert len(head.writes) == 3
    assert len({(w.client_id, w.client_seq) for w in head.writes}) == 1
    assert len(store.states[0].log) == 1


def test_deadline_raises_control_store_unavailable(store):
    for replica in store.replicas[0] + store.replicas[1]:
        replica.fail_with = NotTailError("not the tail (simulated)")
    with store.client(timeout_s=0.7) as client:
        start = time.monotonic()
        with pytest.raises(ControlStoreUnavailableError, match="NotTailError"):
            client.get(b"x")
        elapsed = time.monotonic() - start
    assert 0.6 < elapsed < 3.0


def test_coordinator_down_at_start_raises_control_store_unavailable():
    server = channels.make_server(TOKEN)
    port = channels.bind(server, "127.0.0.1", 0, TOKEN)  # bound, then stopped: nothing listens
    server.stop(None)
    with ControlStoreClient(f"127.0.0.1:{port}", TOKEN, timeout_s=0.5) as client:
        with pytest.raises(ControlStoreUnavailableError):
            client.put(b"k", b"v")


def test_typed_non_retriable_errors_reach_the_caller_at_once(store):
    for replica in store.replicas[0] + store.replicas[1]:
        replica.fail_with = BadRequestError("malformed (simulated)")
    with store.client(timeout_s=10) as client:
        start = time.monotonic()
        with pytest.raises(BadRequestError, match="malformed"):
            client.put(b"k", b"v")
        assert time.monotonic() - start < 2
        assert client.stats["retries"] == 0


def test_wrong_token_is_an_authentication_error_not_a_retry(store):
    with ControlStoreClient(store.coordinator_address, "wrong", timeout_s=5) as client:
        with pytest.raises(AuthenticationError):
            client.get(b"k")


def test_bad_input_is_refused_before_anything_is_sent(store):
    with store.client() as client:
        with pytest.raises(ValueTooLargeError, match="limited to"):
            client.put(b"big", b"x" * (VALUE_SIZE_MAX_BYTES + 1))
        with pytest.raises(ValueTooLargeError):
            client.put(b"k" * (KEY_SIZE_MAX_BYTES + 1), b"v")
        with pytest.raises(InvalidArgumentError, match="must be bytes"):
            client.put(b"k", "a str value")
        with pytest.raises(InvalidArgumentError, match="must be bytes or str"):
            client.get(42)
        with pytest.raises(InvalidArgumentError, match="empty"):
            client.put(b"", b"v")
        with pytest.raises(InvalidArgumentError, match="not a write op"):
            client.write_batch([("upsert", b"k", b"v")])
        with pytest.raises(InvalidArgumentError, match="split the batch"):
            client.write_batch([PutOp(b"same", b"v")] * (OPS_PER_WRITE_MAX + 1))
        with pytest.raises(InvalidArgumentError, match="page_keys"):
            list(client.scan_prefix(b"p", page_keys=0))
        assert not any(r.writes for row in store.replicas for r in row)
    with pytest.raises(InvalidArgumentError, match="closed"):
        client.put(b"k", b"v")


def test_write_batch_cas_delete_and_str_keys(store):
    with store.client() as client:
        results = client.write_batch([("put", "a", b"1"), PutOp(b"b", b"2"), ("cas", "a", b"1", b"10"),
                                      CasOp(b"b", b"wrong", b"20"), DeleteOp("c")])
        assert [r.ok for r in results] == [True, True, True, False, True]
        assert results[3].current == b"2" and results[3].present
        assert client.get_many(["a", b"b", "c"]) == [b"10", b"2", None]
        assert not client.cas("a", None, b"x").ok
        assert client.cas("a", b"10", None).ok
        client.delete(b"b")
        assert client.get_many([b"a", b"b"]) == [None, None]


def test_concurrent_puts_are_grouped_into_fewer_requests(store):
    for replica in store.replicas[0] + store.replicas[1]:
        replica.write_delay_s = 0.02  # a round trip long enough for puts to pile up
    n_threads, per_thread = 32, 10
    with store.client() as client:
        def work(t):
            for i in range(per_thread):
                client.put(f"gc/{t}/{i}".encode(), f"{t}:{i}".encode())

        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = client.stats
        keys = [f"gc/{t}/{i}".encode() for t in range(n_threads) for i in range(per_thread)]
        assert client.get_many(keys) == [f"{t}:{i}".encode() for t in range(n_threads) for i in range(per_thread)]
    assert stats["group_ops"] == n_threads * per_thread
    assert stats["group_requests"] < n_threads * per_thread / 3, stats


def test_a_failed_group_fails_every_put_it_carried_and_the_next_group_proceeds(store):
    for replica in store.replicas[0] + store.replicas[1]:
        replica.fail_with = BadRequestError("refused (simulated)")
        replica.write_delay_s = 0.01
    outcomes: list[object] = []
    with store.client(timeout_s=5) as client:
        def work(t):
            try:
                client.put(f"fg/{t}".encode(), b"v")
                outcomes.append("ok")
            except BadRequestError as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert not any(thread.is_alive() for thread in threads), "a put waited for ever"
        assert len(outcomes) == 16 and all(isinstance(o, BadRequestError) for o in outcomes)
        for replica in store.replicas[0] + store.replicas[1]:
            replica.fail_with = None
        client.put(b"fg/after", b"v")
        assert client.get(b"fg/after") == b"v"


def test_client_acked_below_tracks_the_oldest_request_in_flight(store):
    with store.client() as client:
        for i in range(5):
            client.put(b"ack", str(i).encode())
    writes = [w for row in store.replicas for r in row for w in r.writes]
    writes.sort(key=lambda w: w.client_seq)
    assert [w.client_seq for w in writes] == [1, 2, 3, 4, 5]
    # Sequential requests: each says every earlier one was answered.
    assert [w.client_acked_below for w in writes] == [1, 2, 3, 4, 5]
    assert len({w.client_id for w in writes}) == 1 and len(writes[0].client_id) == 32


def test_scan_prefix_merges_shards_in_key_order_across_pages(store):
    keys = [f"scan/{i:03d}".encode() for i in range(25)]
    with store.client() as client:
        client.write_batch([PutOp(k, k[::-1]) for k in keys] + [PutOp(b"other/1", b"x")])
        items = list(client.scan_prefix("scan/", page_keys=3))
        assert [k for k, _ in items] == keys
        assert all(v == k[::-1] for k, v in items)
        assert [v for _, v in client.scan_prefix(b"scan/", keys_only=True)] == [None] * 25
        assert list(client.scan_prefix(b"nothing/")) == []


def test_subscription_follows_a_new_tail_without_missing_or_repeating_changes(store):
    seen: list[bytes] = []
    keys = [f"sub/{i}".encode() for i in range(20)]
    with store.client() as client:
        subscription = client.subscribe(b"sub/", seen_cb := (lambda c: seen.append(c.key)))
        assert callable(seen_cb)
        for key in keys[:10]:
            client.put(key, b"v")
        _wait_for(lambda: len(seen) >= 10)
        # Tails of both shards stop serving; the chain moves to the heads.
        for s in range(2):
            store.replicas[s][1].break_streams.set()
            store.replicas[s][1].fail_with = NotTailError("gone")
        store.set_chains([[0], [0]])
        for key in keys[10:]:
            client.put(key, b"v")
        _wait_for(lambda: len(seen) >= 20)
        time.sleep(0.2)
        assert sorted(seen) == sorted(keys), "each change exactly once"
        assert subscription.resubscribes >= 2


def test_subscription_leaves_a_silent_tail_once_the_config_replaces_it(store):
    seen: list[bytes] = []
    with store.client() as client:
        client.subscribe(b"quiet/", lambda c: seen.append(c.key))
        for s in range(2):
            store.replicas[s][1].hang_streams.set()
        store.set_chains([[0], [0]])
        keys = [f"quiet/{i}".encode() for i in range(10)]
        for key in keys:
            client.put(key, b"v")
        _wait_for(lambda: len(seen) >= 10, timeout_s=5)
        assert sorted(seen) == sorted(keys)


def test_subscription_as_an_iterator(store):
    with store.client() as client:
        subscription = client.subscribe("it/")
        client.put(b"it/1", b"one")
        client.delete(b"it/1")
        first = subscription.get(timeout_s=5)
        second = subscription.get(timeout_s=5)
        assert (first.key, first.value, first.deleted) == (b"it/1", b"one", False)
        assert (second.key, second.value, second.deleted) == (b"it/1", None, True)
        subscription.close()
        assert list(subscription) == []


def test_a_compacted_shard_is_resynced_visibly_with_its_current_state(store):
    """A new tail that cannot replay what the subscriber missed: the
    subscriber is told (on_resync) and gets every current key of the shard
    (resync=True, deleted keys absent), then the stream goes on."""
    changes: list = []
    resyncs: list[Resync] = []
    with store.client() as client:
        client.subscribe(b"rs/", changes.append, on_resync=resyncs.append)
        before = [f"rs/{i:02d}".encode() for i in range(10)]
        client.write_batch([PutOp(k, b"old") for k in before])
        _wait_for(lambda: len(changes) >= 10)
        for s in range(2):
            store.replicas[s][1].hang_streams.set()  # the old tails go silent
        missed = [f"rs/{i:02d}".encode() for i in range(10, 20)]
        client.write_batch([PutOp(k, b"missed") for k in missed] + [DeleteOp(before[0])])
        for s in range(2):
            store.replicas[s][0].compacted_through = len(store.states[s].log)
        store.set_chains([[0], [0]])
        _wait_for(lambda: len(resyncs) == 2, timeout_s=5)
        after = [f"rs/{i:02d}".encode() for i in range(20, 25)]
        client.write_batch([PutOp(k, b"new") for k in after])
        _wait_for(lambda: {c.key for c in changes if not c.resync} >= set(after))
        time.sleep(0.2)
    assert sorted(r.shard for r in resyncs) == [0, 1]
    assert all(r.missed_after_seq < r.seq for r in resyncs)
    resynced = {c.key: c.value for c in changes if c.resync}
    assert resynced == {k: (b"missed" if k in missed else b"old") for k in before[1:] + missed}
    assert all(c.seq == next(r.seq for r in resyncs if r.shard == c.shard) for c in changes if c.resync)
    # Applying the changes in order gives the store's state.
    state: dict[bytes, bytes] = {}
    for change in changes:
        state[change.key] = change.value
    expected = {**{k: b"old" for k in before[1:]}, **{k: b"missed" for k in missed}, **{k: b"new" for k in after}}
    assert {k: v for k, v in state.items() if k != before[0]} == expected
    assert [c.resync for c in changes if c.key in after] == [False] * len(after), "the stream went on after it"


def test_a_client_with_an_old_config_learns_the_new_chain_from_replicas_while_the_coordinator_is_down(store):
    key = next(f"cd/{i}".encode() for i in range(100) if _shard(f"cd/{i}".encode()) == 0)
    with store.client(timeout_s=5.0) as client:
        client.put(key, b"before")                 # caches chain s0r0 -> s0r1
        store.servers[0].stop(None)                # the coordinator is gone ...
        store.set_chains([[1], [0, 1]])            # ... after it had moved shard 0 to s0r1 alone
        store.replicas[0][0].fail_with = UnavailableError("s0r0 died (simulated)")
        started_s = time.monotonic()
        client.put(key, b"after")
        assert time.monotonic() - started_s < 2.0
        assert client.get(key) == b"after"
        assert client.stats["config_refreshes_from_replicas"] >= 1
        assert client.config().shards[0].chain[0].replica_id == "s0r1"


def test_address_map_dials_replicas_at_mapped_addresses(store):
    advertised = {}
    config = common_pb2.ClusterConfig()
    config.CopyFrom(store.coordinator.config)
    for shard in config.shards:
        for replica in shard.chain:
            fake = f"advertised-{replica.replica_id}.invalid:1"
            advertised[fake] = replica.address
            replica.address = fake
    store.coordinator.config = config
    dialled: list[str] = []

    def address_map(address: str) -> str:
        dialled.append(address)
        return advertised[address]

    with store.client(address_map=address_map) as client:
        client.put(b"mapped", b"v")
        assert client.get(b"mapped") == b"v"
        assert client.address_map is address_map
    assert dialled and set(dialled) <= set(advertised)
    with pytest.raises(InvalidArgumentError):
        store.client(address_map="not callable")


def _wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)
