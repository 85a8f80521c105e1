"""The chain-replication replica core, one behaviour per test.

Cores are driven by hand: events in, effects out, messages carried (or not)
by a small in-memory router, so each test states exactly which messages a
failure lost.
"""

from __future__ import annotations

import pytest

from lineagerun.core.chain.replica import NOT_YET_SEQ, ReplicaCore, ReplicaSettings
from lineagerun.core.chain.replica_events import (
    AckArrived, ClientWrite, ConfigPushed, FailCall, ForwardArrived, HeartbeatReplied, JoinReplied, Persist, ReadArrived,
    ReplyConfig, ReplyRead, ReplyWrite, SendAck, SendForward, SendHeartbeat, SendSnapshot, ShardCountLearned, Tick,
    WritesArrived,
)
from lineagerun.core.chain.replica_storage import InMemoryStorage
from lineagerun.exceptions import (
    BadRequestError, NotHeadError, NotTailError, StaleEpochError, UnavailableError, ValueTooLargeError,
    WrongShardError,
)
from lineagerun.rpc import common_pb2, control_store_pb2 as pb, coordinator_pb2


def config(epoch: int, chain: list[str], joining: str | None = None) -> common_pb2.ChainConfig:
    c = common_pb2.ChainConfig(shard=0, epoch=epoch,
                               chain=[common_pb2.ReplicaInfo(replica_id=r, address=r) for r in chain])
    if joining:
        c.joining.CopyFrom(common_pb2.ReplicaInfo(replica_id=joining, address=joining))
    return c


def put(key: bytes, value: bytes) -> pb.Op:
    return pb.Op(put=pb.Put(key=key, value=value))


def write(client: str, seq: int, *ops, epoch: int = 0, acked_below: int = 0) -> pb.WriteRequest:
    return pb.WriteRequest(shard=0, epoch=epoch, client_id=client, client_seq=seq, client_acked_below=acked_below,
                           ops=list(ops))


class Router:
    """Replica cores plus the messages between them. ``drop`` decides which
    sends are lost: a function (src, dst, message) -> bool."""

    def __init__(self, ids, retention: int = 1000):
        self.storages = {r: InMemoryStorage() for r in ids}
        self.cores = {r: self._core(r, retention) for r in ids}
        self.queue: list[tuple[str, str, object]] = []
        self.replies: dict = {}
        self.drop = lambda src, dst, msg: False
        self.now_ms = 0
        self.retention = retention

    def _core(self, rid: str, retention: int) -> ReplicaCore:
        core = ReplicaCore(ReplicaSettings(shard=0, replica_id=rid, address=rid, log_retention_entries=retention,
                                           entries_per_batch_max=100, resend_after_ms=100), self.storages[rid])
        core.handle(JoinReplied(coordinator_pb2.JoinReply(cluster_id="test"), 0))
        return core

    def restart(self, rid: str) -> None:
        self.cores[rid] = self._core(rid, self.retention)

    def feed(self, rid: str, event) -> list:
        effects = self.cores[rid].handle(event)
        for effect in effects:
            self._execute(rid, effect)
        return effects

    def _execute(self, rid: str, effect) -> None:
        if isinstance(effect, Persist):
            self.storages[rid].apply(effect)
        elif isinstance(effect, SendForward):
            self._send(rid, effect.to.replica_id, ("forward", effect.batch))
        elif isinstance(effect, SendSnapshot):
            items = [pb.KeyValue(key=k, value=v) for k, v in self.storages[rid].snapshot_items()]
            batch = pb.ForwardBatch(shard=0, epoch=effect.epoch, sender_id=rid, committed_seq=effect.committed_seq,
                                    snapshot_items=items, snapshot_begin=True, snapshot_end=True,
                                    snapshot_seq=effect.snapshot_seq, snapshot_epoch=effect.snapshot_epoch)
            self._send(rid, effect.to.replica_id, ("forward", batch))
        elif isinstance(effect, SendAck):
            self._send(rid, effect.to_id, ("ack", effect.ack))
        elif isinstance(effect, (ReplyWrite, ReplyRead, FailCall, ReplyConfig)) and effect.call_id is not None:
            self.replies[effect.call_id] = effect

    def _send(self, src: str, dst: str, msg) -> None:
        if dst in self.cores and not self.drop(src, dst, msg):
            self.queue.append((src, dst, msg))

    def deliver_all(self, limit: int = 1000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            src, dst, (kind, payload) = self.queue.pop(0)
            event = ForwardArrived(src, payload, self.now_ms) if kind == "forward" else AckArrived(src, payload,
                                                                                               self.now_ms)
            self.feed(dst, event)
        raise AssertionError("messages kept flowing")

    def configure(self, cfg: common_pb2.ChainConfig, lease: bool = True) -> None:
        for rid in list(cfg.chain) + ([cfg.joining] if cfg.HasField("joining") else []):
            rid = rid.replica_id
            self.feed(rid, ConfigPushed(None, pb.ConfigUpdate(config=cfg), self.now_ms))
            if lease:
                self.lease(rid, cfg)

    def lease(self, rid: str, cfg, lease_ms: int = 10_000) -> None:
        reply = coordinator_pb2.HeartbeatReply(config=cfg, lease_ms=lease_ms)
        self.feed(rid, HeartbeatReplied(self.now_ms, reply, self.now_ms))

    def write(self, rid: str, call_id, request) -> list:
        return self.feed(rid, WritesArrived((ClientWrite(call_id, request),), self.now_ms))

    def read(self, rid: str, call_id, *keys: bytes, min_epoch: int = 0):
        self.feed(rid, ReadArrived(call_id, pb.ReadRequest(shard=0, min_epoch=min_epoch, keys=list(keys)),
                                   self.now_ms))
        return self.replies.pop(call_id)

    def log(self, rid: str) -> list[tuple[int, str, int]]:
        return [(s, e.client_id, e.client_seq) for s, e in sorted(self.storages[rid].history.items())]


def chain_of(ids, retention: int = 1000) -> Router:
    router = Router(ids, retention)
    router.configure(config(1, list(ids)))
    router.deliver_all()
    return router


# ------------------------------------------------------------------ writes


def test_group_commit_is_one_write_batch_then_one_forward_and_replies_after_the_tail_acks():
    r = chain_of(["a", "b", "c"])
    writes = tuple(ClientWrite(i, write("cl", i, put(b"k%d" % i, b"v"))) for i in (1, 2, 3))
    effects = r.feed("a", WritesArrived(writes, 0))
    kinds = [type(e).__name__ for e in effects]
    assert kinds == ["Persist", "SendForward"], kinds
    assert [e.seq for e in effects[0].entries] == [1, 2, 3]
    assert [e.seq for e in effects[1].batch.entries] == [1, 2, 3]
    assert not r.replies
    r.deliver_all()
    assert sorted(r.replies) == [1, 2, 3] and all(isinstance(x, ReplyWrite) for x in r.replies.values())
    assert r.storages["c"].get(b"k2") == b"v"
    assert r.storages["a"].writes == r.storages["c"].writes  # one write batch per hop (+ none extra)


def test_retry_of_a_committed_write_is_answered_from_dedup_and_not_applied_again():
    r = chain_of(["a", "b"])
    r.write("a", "first", write("cl", 7, put(b"k", b"1")))
    r.deliver_all()
    r.write("a", "other", write("cl2", 1, put(b"k", b"2")))
    r.deliver_all()
    effects = r.write("a", "retry", write("cl", 7, put(b"k", b"1")))
    assert not any(isinstance(e, Persist) for e in effects)
    assert r.replies["retry"].reply.seq == r.replies["first"].reply.seq == 1
    assert r.log("b") == [(1, "cl", 7), (2, "cl2", 1)]
    assert r.storages["b"].get(b"k") == b"2"


def test_retry_while_the_original_is_in_flight_waits_for_its_commit():
    r = chain_of(["a", "b"])
    r.write("a", "first", write("cl", 1, put(b"k", b"1")))
    r.write("a", "retry", write("cl", 1, put(b"k", b"1")))
    assert not r.replies
    r.deliver_all()
    assert r.replies["first"].reply.seq == r.replies["retry"].reply.seq == 1
    assert r.log("b") == [(1, "cl", 1)]


def test_a_copy_of_a_request_the_client_already_acknowledged_is_refused(monkeypatch):
    # Forget dedup records at every request, so the floor is exact.
    monkeypatch.setattr("lineagerun.core.chain.replica_storage.DEDUP_GC_EVERY_REQUESTS", 1)
    r = chain_of(["a"])
    r.write("a", 1, write("cl", 1, put(b"k", b"1")))
    r.write("a", 2, write("cl", 2, put(b"k", b"2"), acked_below=2))
    r.write("a", 3, write("cl", 1, put(b"k", b"1")))
    assert isinstance(r.replies[3].error, BadRequestError)
    assert r.storages["a"].get(b"k") == b"2"


def test_cas_sees_earlier_ops_of_the_same_group_and_reports_the_current_value_on_mismatch():
    r = chain_of(["a"])
    cas_absent = pb.Op(cas=pb.CompareAndSet(key=b"k", expect_absent=True, new_value=b"x"))
    cas_x = pb.Op(cas=pb.CompareAndSet(key=b"k", expected=b"x", new_value=b"y"))
    cas_wrong = pb.Op(cas=pb.CompareAndSet(key=b"k", expected=b"nope", new_value=b"z"))
    cas_delete = pb.Op(cas=pb.CompareAndSet(key=b"k", expected=b"y", delete_on_match=True))
    r.feed("a", WritesArrived((ClientWrite(1, write("c1", 1, cas_absent, cas_x)),
                               ClientWrite(2, write("c2", 1, cas_wrong))), 0))
    first, second = r.replies[1].reply.results, r.replies[2].reply.results
    assert [x.ok for x in first] == [True, True] and first[0].present is False
    assert (second[0].ok, second[0].present, second[0].current) == (False, True, b"y")
    r.write("a", 3, write("c3", 1, cas_delete))
    assert r.replies[3].reply.results[0].ok and r.storages["a"].get(b"k") is None


@pytest.mark.parametrize("request_, error", [
    (write("c", 1, put(b"k", b"v")).__class__(shard=3, client_id="c", client_seq=1, ops=[put(b"k", b"v")]),
     WrongShardError),
    (write("c", 1), BadRequestError),
    (write("c", 0, put(b"k", b"v")), BadRequestError),
    (write("", 1, put(b"k", b"v")), BadRequestError),
    (write("c", 1, pb.Op()), BadRequestError),
    (write("c", 1, put(b"", b"v")), BadRequestError),
    (write("c", 1, put(b"k" * 5000, b"v")), ValueTooLargeError),
])
def test_malformed_writes_get_typed_errors(request_, error):
    r = chain_of(["a"])
    effects = r.write("a", 1, request_)
    assert [type(e) for e in effects] == [FailCall] and isinstance(effects[0].error, error)


def test_keys_of_another_shard_are_refused_once_the_shard_count_is_known():
    import zlib
    r = chain_of(["a"])
    other = next(b"k%d" % i for i in range(100) if zlib.crc32(b"k%d" % i) % 2 == 1)
    ours = next(b"k%d" % i for i in range(100) if zlib.crc32(b"k%d" % i) % 2 == 0)
    r.write("a", 1, write("c", 1, put(other, b"v")))          # shard count unknown: not checked
    r.feed("a", ShardCountLearned(2))
    r.write("a", 2, write("c", 2, put(ours, b"v"), put(other, b"v")))
    assert isinstance(r.replies[1], ReplyWrite) and isinstance(r.replies[2].error, WrongShardError)
    assert isinstance(r.read("a", 3, other).error, WrongShardError)


def test_write_to_a_non_head_is_refused_with_not_head():
    r = chain_of(["a", "b"])
    r.write("b", 1, write("c", 1, put(b"k", b"v")))
    assert isinstance(r.replies[1].error, NotHeadError)


# ------------------------------------------------------------------ forwarding


def test_a_gap_is_answered_with_applied_seq_and_the_sender_rewinds_after_the_resend_timeout():
    r = chain_of(["a", "b"])
    lost = []
    r.drop = lambda src, dst, msg: msg[0] == "forward" and not lost and not lost.append(msg)
    r.write("a", 1, write("c", 1, put(b"k1", b"v")))   # its batch is lost
    r.write("a", 2, write("c", 2, put(b"k2", b"v")))   # arrives: a gap at b
    r.deliver_all()
    assert r.cores["b"].applied_seq == 0 and not r.replies
    r.now_ms = 1_000
    r.feed("a", Tick(r.now_ms))
    r.deliver_all()
    assert r.log("b") == [(1, "c", 1), (2, "c", 2)]
    assert sorted(r.replies) == [1, 2]


def test_middle_removal_resends_exactly_the_suffix_the_successor_lacks():
    r = chain_of(["a", "b", "c"])
    for i in (1, 2):
        r.write("a", i, write("c", i, put(b"k%d" % i, b"v")))
    r.deliver_all()
    r.drop = lambda src, dst, msg: src == "b" and dst == "c"  # b dies with entries 3..5 unforwarded
    for i in (3, 4, 5):
        r.write("a", i, write("c", i, put(b"k%d" % i, b"v")))
    r.deliver_all()
    assert r.cores["c"].applied_seq == 2 and r.cores["b"].applied_seq == 5
    del r.cores["b"]
    sent = []
    r.drop = lambda src, dst, msg: sent.append(msg) and False
    r.configure(config(2, ["a", "c"]))
    r.deliver_all()
    entry_batches = [m[1] for m in sent if m[0] == "forward" and m[1].entries]
    assert [[e.seq for e in b.entries] for b in entry_batches] == [[3, 4, 5]]
    assert r.log("c") == r.log("a") and sorted(r.replies) == [1, 2, 3, 4, 5]


def test_head_removal_with_writes_in_flight_retries_apply_once():
    r = chain_of(["a", "b", "c"])
    r.drop = lambda src, dst, msg: (src, dst) in (("a", "b"), ("b", "c"))
    r.write("a", "w1", write("cl", 1, put(b"k", b"1")))
    r.drop = lambda src, dst, msg: (src, dst) == ("b", "c")
    r.write("a", "w2", write("cl", 2, put(b"k", b"2")))   # reaches b only (after w1 is resent? no: w1 lost)
    r.deliver_all()
    del r.cores["a"]
    r.drop = lambda src, dst, msg: False
    r.configure(config(2, ["b", "c"]))
    r.deliver_all()
    for call, seq in (("r1", 1), ("r2", 2)):
        r.write("b", call, write("cl", seq, put(b"k", b"%d" % seq), epoch=2))
        r.deliver_all()
    assert r.log("b") == r.log("c")
    ids = [(cid, cs) for _, cid, cs in r.log("c")]
    assert sorted(ids) == [("cl", 1), ("cl", 2)]            # each exactly once
    assert isinstance(r.replies["r1"], ReplyWrite) and isinstance(r.replies["r2"], ReplyWrite)


def test_tail_removal_makes_the_predecessor_commit_what_it_applied():
    r = chain_of(["a", "b", "c"])
    r.drop = lambda src, dst, msg: dst == "c"
    r.write("a", 1, write("cl", 1, put(b"k", b"1")))
    r.deliver_all()
    assert not r.replies and r.cores["b"].applied_seq == 1
    del r.cores["c"]
    r.drop = lambda src, dst, msg: False
    r.configure(config(2, ["a", "b"]))
    r.deliver_all()
    assert isinstance(r.replies[1], ReplyWrite)
    assert isinstance(r.read("b", "rd", b"k"), ReplyRead)


# ------------------------------------------------------------------ epochs, leases, reads


def test_stale_epoch_is_refused_for_configs_forwards_and_writes():
    r = chain_of(["a", "b"])
    r.configure(config(3, ["a", "b"]))
    r.deliver_all()
    r.feed("a", ConfigPushed("cfg", pb.ConfigUpdate(config=config(2, ["b"])), 0))
    assert isinstance(r.replies["cfg"].error, StaleEpochError)
    old = pb.ForwardBatch(shard=0, epoch=2, sender_id="a", committed_seq=0, snapshot_seq=0, snapshot_epoch=0,
                          entries=[pb.LogEntry(seq=1, epoch=2, client_id="x", client_seq=1)])
    effects = r.feed("b", ForwardArrived("a", old, 0))
    assert not any(isinstance(e, Persist) for e in effects)
    assert [e.ack.epoch for e in effects if isinstance(e, SendAck)] == [3]
    r.write("a", "w", write("c", 1, put(b"k", b"v"), epoch=2))
    assert isinstance(r.replies["w"].error, StaleEpochError)


def test_newer_epoch_seen_stops_serving_until_the_config_arrives():
    r = chain_of(["a"])
    r.write("a", "w", write("c", 1, put(b"k", b"v"), epoch=5))
    assert isinstance(r.replies["w"].error, StaleEpochError)
    assert isinstance(r.read("a", "r", b"k"), FailCall)
    effects = r.feed("a", Tick(1))
    assert any(isinstance(e, SendHeartbeat) for e in effects)


def test_no_reads_without_a_lease():
    r = Router(["a"])
    r.configure(config(1, ["a"]), lease=False)
    refused = r.read("a", 1, b"k")
    assert isinstance(refused.error, UnavailableError)
    r.lease("a", config(1, ["a"]), lease_ms=600)
    assert isinstance(r.read("a", 2, b"k"), ReplyRead)
    r.now_ms = 600
    assert isinstance(r.read("a", 3, b"k").error, UnavailableError)


def test_reads_at_a_non_tail_and_with_a_newer_min_epoch_are_refused():
    r = chain_of(["a", "b"])
    assert isinstance(r.read("a", 1, b"k").error, NotTailError)
    assert isinstance(r.read("b", 2, b"k", min_epoch=2).error, StaleEpochError)
    assert isinstance(r.read("b", 3, b"k", min_epoch=1), ReplyRead)


# ------------------------------------------------------------------ joining


def _fill(r: Router, rid: str, n: int, start: int = 1) -> None:
    for i in range(start, start + n):
        r.write(rid, ("fill", i), write("f", i, put(b"k%d" % (i % 7), b"v%d" % i)))
        r.deliver_all()


def test_joiner_behind_the_retained_log_gets_a_snapshot_then_is_counted_in_and_promoted():
    r = Router(["a", "j"], retention=5)
    r.configure(config(1, ["a"]))
    _fill(r, "a", 20)
    sent = []
    r.drop = lambda src, dst, msg: sent.append(msg) and False
    r.configure(config(2, ["a"], joining="j"))
    r.deliver_all()
    snapshots = [m[1] for m in sent if m[0] == "forward" and m[1].snapshot_begin]
    assert len(snapshots) == 1 and snapshots[0].snapshot_seq == 20
    assert r.storages["j"].data() == r.storages["a"].data()
    j = r.cores["j"]
    assert j.applied_seq == 20 and j.is_joining()
    _fill(r, "a", 3, start=21)   # the tail now waits for its joiner
    assert j.caught_up() and j.applied_seq == 23
    beat = r.feed("j", Tick(10_000))
    assert [e.request.caught_up for e in beat if isinstance(e, SendHeartbeat)] == [True]
    r.configure(config(3, ["a", "j"]))
    r.deliver_all()
    assert isinstance(r.read("j", "rd", b"k1"), ReplyRead)
    _fill(r, "a", 2, start=24)
    assert r.log("j")[-1][0] == 25 and r.storages["j"].data() == r.storages["a"].data()


def test_joiner_is_not_caught_up_before_the_tail_counts_it_in():
    r = Router(["a", "j"])
    r.configure(config(1, ["a"]))
    _fill(r, "a", 3)
    r.drop = lambda src, dst, msg: msg[0] == "ack"       # the tail never hears the joiner
    r.configure(config(2, ["a"], joining="j"))
    r.deliver_all()
    assert not r.cores["j"].caught_up()
    assert r.cores["j"].predecessor_committed_seq in (None, NOT_YET_SEQ)


def test_restarted_diverged_replica_is_brought_back_by_snapshot():
    r = chain_of(["a", "b"])
    _fill(r, "a", 3)
    r.drop = lambda src, dst, msg: src == "a"             # a's entry 4 never leaves a
    r.write("a", "lost", write("x", 1, put(b"only-a", b"1")))
    del r.cores["a"]
    r.drop = lambda src, dst, msg: False
    r.configure(config(2, ["b"]))
    _fill(r, "b", 2, start=10)                            # b's entry 4 differs from a's
    r.cores["a"] = r._core("a", 1000)                     # a restarts from its disk
    r.configure(config(3, ["b"], joining="a"))
    r.deliver_all()
    assert r.storages["a"].get(b"only-a") is None
    assert r.storages["a"].data() == r.storages["b"].data()
    assert r.cores["a"].applied_seq == r.cores["b"].applied_seq == 5


def test_new_tail_serves_reads_only_after_its_predecessors_watermark():
    r = Router(["a", "j"])
    r.configure(config(1, ["a"]))
    _fill(r, "a", 3)
    r.configure(config(2, ["a"], joining="j"))
    r.deliver_all()
    r.drop = lambda src, dst, msg: src == "a"             # a has not learned epoch 3 yet
    r.configure(config(3, ["a", "j"]))
    r.lease("j", config(3, ["a", "j"]))
    assert isinstance(r.read("j", 1, b"k1").error, UnavailableError)
    r.drop = lambda src, dst, msg: False
    r.now_ms = 1_000
    r.feed("a", Tick(r.now_ms))                           # a's resend timer repeats its hello
    r.deliver_all()
    assert isinstance(r.read("j", 2, b"k1"), ReplyRead)


def test_restart_recovers_applied_state_from_storage():
    r = chain_of(["a"])
    _fill(r, "a", 4)
    r.restart("a")
    core = r.cores["a"]
    assert (core.applied_seq, core.applied_epoch) == (4, 1)
    r.configure(config(2, ["a"]))
    assert isinstance(r.read("a", 1, b"k1"), ReplyRead)
    r.write("a", 2, write("f", 1, put(b"k1", b"again")))
    assert r.replies[2].reply.seq == 1                    # dedup survived the restart


def test_acknowledged_dedup_records_are_dropped_only_every_gc_step():
    """A delete_range per write leaves a range tombstone per write that every
    RocksDB lookup must consult; records are dropped every
    DEDUP_GC_EVERY_REQUESTS requests instead, and a late copy of a request
    whose record remains is answered from it, not applied again."""
    from lineagerun.core.chain.replica_storage import DEDUP_GC_EVERY_REQUESTS, write_entry
    from lineagerun.rpc import control_store_pb2

    class Recorder:
        def __init__(self):
            self.ranges = 0

        def put(self, key, value):
            pass

        def delete(self, key):
            pass

        def delete_range(self, low, high):
            self.ranges += 1

    ops = Recorder()
    for seq in range(1, 2 * DEDUP_GC_EVERY_REQUESTS + 1):
        write_entry(ops, control_store_pb2.LogEntry(seq=seq, epoch=1, client_id="c", client_seq=seq,
                                                    client_acked_below=seq))
    assert ops.ranges == 2
