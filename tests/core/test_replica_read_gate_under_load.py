"""A new tail's read gate opens under a steady write load (issue 5,
rt-replica-and-node-kill): the predecessor's hello of the new epoch can
reach the new tail before the tail knows that epoch (it is ignored); the
tail's own ack then starts the stream, and before the fix no hello followed
while writes kept the link busy, so the new tail refused every read
("still catching up") until the writes paused for a second."""

from __future__ import annotations

from lineagerun.core.chain.replica_events import ConfigPushed, ReplyRead, Tick
from lineagerun.rpc import control_store_pb2 as pb
from tests.core.test_replica_core import Router, chain_of, config, put, write

TICK_MS = 20


def _adopt(r: Router, rid: str, cfg) -> None:
    r.feed(rid, ConfigPushed(None, pb.ConfigUpdate(config=cfg), r.now_ms))
    r.lease(rid, cfg)


def _write_for(r: Router, head: str, first_seq: int, ticks: int) -> int:
    """One write per tick (a link that never idles), every message delivered."""
    seq = first_seq
    for _ in range(ticks):
        r.now_ms += TICK_MS
        r.write(head, ("w", seq), write("load", seq, put(b"k%d" % (seq % 5), b"v%d" % seq)))
        for rid in list(r.cores):
            r.feed(rid, Tick(r.now_ms))
        r.deliver_all()
        seq += 1
    return seq


def _hello_reaches_the_tail_before_its_config(r: Router, cfg, predecessor: str, tail: str) -> None:
    _adopt(r, predecessor, cfg)           # its hello of the new epoch is queued
    r.deliver_all()                       # ... and ignored: the tail is still in the old epoch
    _adopt(r, tail, cfg)                  # the tail's ack starts the stream


def test_a_middle_made_tail_serves_reads_while_writes_keep_flowing():
    r = chain_of(["a", "b", "c"])
    seq = _write_for(r, "a", 1, 5)
    del r.cores["c"]
    _hello_reaches_the_tail_before_its_config(r, config(2, ["a", "b"]), "a", "b")
    _write_for(r, "a", seq, 10)           # 200 ms of writes, below the 1 s idle hello
    assert isinstance(r.read("b", "rd", b"k1"), ReplyRead)


def test_a_promoted_joiner_serves_reads_while_writes_keep_flowing():
    r = Router(["a", "j"])
    r.configure(config(1, ["a"]))
    r.deliver_all()
    seq = _write_for(r, "a", 1, 5)
    r.configure(config(2, ["a"], joining="j"))
    seq = _write_for(r, "a", seq, 10)
    assert r.cores["j"].caught_up()
    _hello_reaches_the_tail_before_its_config(r, config(3, ["a", "j"]), "a", "j")
    _write_for(r, "a", seq, 10)
    assert isinstance(r.read("j", "rd", b"k1"), ReplyRead)
