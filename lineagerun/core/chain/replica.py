"""The chain-replication replica as a pure state machine.

``ReplicaCore.handle(event) -> list[effect]``; no I/O, no clock, no threads.
The shell executes the effects in order (persist before send, always) and
applies every ``Persist`` to the storage before the next event. Protocol:
docs/control-store.md, "Replication protocol" and "Configuration and fencing".

Decisions where the docs are silent:
- Entry batches carry the (seq, epoch) of the entry before their first entry
  in ``snapshot_seq``/``snapshot_epoch`` (``snapshot_begin`` unset), like
  Raft's prevLogIndex/prevLogTerm. A receiver appends only after an entry it
  holds with the same epoch, so a diverged or reordered stream can never
  graft entries onto the wrong prefix; on a mismatch it answers
  ``need_snapshot``.
- A write whose ``epoch`` is set and differs from ours is refused with
  STALE_EPOCH (older: refresh; newer: we are behind and ask the coordinator).
- A head that stops being head fails its waiting writes with NOT_HEAD; the
  client retries with the same (client_id, client_seq) and dedup makes that
  safe.
- A link starts with a "hello": a batch without entries whose
  ``snapshot_seq``/``snapshot_epoch`` are the sender's last applied entry.
  A tail that has a predecessor serves reads only after a hello of the
  current epoch from it and after applying up to that hello's entry (the
  predecessor's *applied* watermark, which bounds every read an old tail
  may have served, even one that was waiting for a joiner to commit);
  unless it was already a tail serving reads in the epoch just before.
- Once the tail's joiner comes within one batch of it, the tail commits
  only what the joiner has acknowledged, and the watermark it sends the
  joiner is ``NOT_YET_SEQ`` until then: so a joiner reports ``caught_up``
  only when it holds every acknowledged write, and a promotion followed by
  the loss of the old tail loses nothing. Meanwhile its state holds
  uncommitted entries: reads of keys they changed are refused with
  UNAVAILABLE (a window of about one heartbeat, until the promotion).
- A received snapshot of exactly the entry we are at is ignored (a
  duplicate). Only joiners ever need snapshots (members' logs are prefixes
  of their predecessors'), and a joiner serves no reads, so a snapshot that
  moves a joiner back is harmless: it re-syncs and catches up again.
- While a snapshot is in flight the link sends no entries; it streams again
  once an ack shows the successor at or past the snapshot's entry.
- A replica takes configurations (pushes, heartbeat replies) only once its
  Join of this incarnation succeeded: a configuration of an epoch its
  previous incarnation lived in would make it act on state it no longer
  has (e.g. commit without a joiner the old incarnation counted in).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from typing import Hashable

from lineagerun.core.chain.replica_events import (
    AckArrived, ClientWrite, ConfigPushed, Effect, Event, FailCall, ForwardArrived, HeartbeatFailed,
    HeartbeatReplied, JoinFailed, JoinReplied, LinkLost, Persist, ReadArrived, ReplyRead, ReplyScan,
    ReplyWrite, ScanArrived, SendAck, SendForward, SendSnapshot, ShardCountLearned, Tick, WritesArrived,
)
from lineagerun.core.chain.replica_link import Link, LinkState
from lineagerun.core.chain.replica_membership import ReplicaMembership
from lineagerun.core.chain.replica_ops import (
    entries_to_append, evaluate_write, validate_read, validate_scan, validate_write,
)
from lineagerun.core.chain.replica_settings import ReplicaSettings
from lineagerun.core.chain.replica_storage import ReplicaStorage
from lineagerun.exceptions import (
    BadRequestError, NotHeadError, NotTailError, RpcError, StaleEpochError, UnavailableError,
)
from lineagerun.rpc import common_pb2, control_store_pb2

# Entries kept in memory for forwarding without reading them back from disk;
# covers one full send window, so a healthy chain never reads its log.
RECENT_ENTRIES_MAX = 20_000
# Writes waiting for their commit at the head; beyond this, new writes are
# refused with UNAVAILABLE (backpressure) instead of growing memory.
WAITING_WRITES_MAX = 100_000
# The watermark a tail sends a joiner it does not yet count in its commits.
NOT_YET_SEQ = 2**64 - 1


class ReplicaCore(ReplicaMembership):
    def __init__(self, settings: ReplicaSettings, storage: ReplicaStorage, now_ms: int = 0):
        self.settings = settings
        self.storage = storage
        meta = storage.load_meta()
        self.snapshot_in_progress = meta.snapshot_in_progress
        self.applied_seq = 0 if meta.snapshot_in_progress else meta.applied_seq
        self.applied_epoch = 0 if meta.snapshot_in_progress else meta.applied_epoch
        self.log_base = (meta.log_base_seq, meta.log_base_epoch)
        self.committed_seq = 0
        self.cluster_id = settings.cluster_id
        self.config: common_pb2.ChainConfig | None = None
        self.epoch = 0
        self.newest_epoch_seen = 0
        self.lease_until_ms = 0
        self.link: Link | None = None
        self.predecessor_id: str | None = None
        self.predecessor_committed_seq: int | None = None  # first batch of this epoch
        self.read_gate_seq: int | None = 0                  # None: wait for predecessor
        self.incoming_snapshot: tuple[int, int] | None = None
        # Keys changed by entries a tail applied but has not committed (it
        # waits for its joiner): key -> seq of the last such change.
        self.uncommitted_keys: dict[bytes, int] = {}
        self.recent: OrderedDict[int, control_store_pb2.LogEntry] = OrderedDict()
        self.waiting: list[tuple[int, int, Hashable, control_store_pb2.WriteReply]] = []
        self._waiting_order = 0
        self.joined = False
        self.join_in_flight_since_ms: int | None = None
        self.next_join_ms = now_ms
        self.heartbeat_in_flight: int | None = None   # when the heartbeat in flight was sent
        self.next_heartbeat_ms = now_ms
        self.fatal = False
        self.num_shards = 0                                  # 0: unknown, keys are not checked

    # ------------------------------------------------------------ queries

    @property
    def shard(self) -> int:
        return self.settings.shard

    @property
    def me(self) -> str:
        return self.settings.replica_id

    def members(self) -> list[str]:
        return [r.replica_id for r in self.config.chain] if self.config else []

    def is_head(self) -> bool:
        m = self.members()
        return bool(m) and m[0] == self.me

    def is_tail(self) -> bool:
        m = self.members()
        return bool(m) and m[-1] == self.me

    def is_joining(self) -> bool:
        return bool(self.config and self.config.HasField("joining") and self.config.joining.replica_id == self.me)

    def role(self) -> str:
        if self.is_joining():
            return "joining"
        m = self.members()
        if self.me not in m:
            return "idle"
        return "head+tail" if len(m) == 1 else "head" if m[0] == self.me else "tail" if m[-1] == self.me else "middle"

    def lease_valid(self, now_ms: int) -> bool:
        return now_ms < self.lease_until_ms

    def caught_up(self) -> bool:
        return (self.is_joining() and self.predecessor_committed_seq is not None
                and self.incoming_snapshot is None and not self.snapshot_in_progress
                and self.applied_seq >= self.predecessor_committed_seq)

    def read_gate_open(self) -> bool:
        return (self.read_gate_seq is not None and self.applied_seq >= self.read_gate_seq
                and not self.snapshot_in_progress)

    def read_refusal(self, min_epoch: int, now_ms: int) -> RpcError | None:
        """Why this replica may not serve a read now (None: it may)."""
        if self.config is None or self.epoch == 0:
            return UnavailableError(f"replica {self.me} has no chain configuration yet; retry")
        if min_epoch > self.epoch or self.newest_epoch_seen > self.epoch:
            return StaleEpochError(f"replica {self.me} is at epoch {self.epoch}, older than epoch "
                                   f"{max(min_epoch, self.newest_epoch_seen)}; refresh the configuration and retry")
        if not self.is_tail():
            return NotTailError(f"replica {self.me} is not the tail of shard {self.shard} in epoch {self.epoch}")
        if not self.lease_valid(now_ms):
            return UnavailableError(f"tail {self.me} holds no valid lease from the coordinator; retry")
        if not self.read_gate_open():
            return UnavailableError(f"new tail {self.me} is still catching up with its predecessor; retry")
        return None

    # ------------------------------------------------------------ mutator

    def handle(self, event: Event) -> list[Effect]:
        if self.fatal:
            return []
        if isinstance(event, WritesArrived):
            return self._on_writes(event.writes, event.now_ms)
        if isinstance(event, ForwardArrived):
            return self._on_forward(event.sender_id, event.batch, event.now_ms)
        if isinstance(event, AckArrived):
            return self._on_ack(event.from_id, event.ack, event.now_ms)
        if isinstance(event, ReadArrived):
            return self._on_read(event)
        if isinstance(event, ScanArrived):
            return self._on_scan(event)
        if isinstance(event, Tick):
            return self._on_tick(event.now_ms)
        if isinstance(event, LinkLost):
            if self.link is not None and self.link.target.replica_id == event.target_id:
                return self._start_link(event.now_ms)
            return []
        if isinstance(event, ConfigPushed):
            return self._on_config_pushed(event)
        if isinstance(event, HeartbeatReplied):
            return self._on_heartbeat_reply(event)
        if isinstance(event, HeartbeatFailed):
            self.heartbeat_in_flight = None
            return []
        if isinstance(event, JoinReplied):
            return self._on_join_reply(event.reply, event.now_ms)
        if isinstance(event, ShardCountLearned):
            self.num_shards = event.num_shards
            return []
        if isinstance(event, JoinFailed):
            self.join_in_flight_since_ms = None
            self.next_join_ms = event.now_ms + self.settings.heartbeat_interval_ms
            return []
        raise TypeError(f"unknown replica event {event!r}")

    # ------------------------------------------------------------ writes

    def _on_writes(self, writes: tuple[ClientWrite, ...], now_ms: int) -> list[Effect]:
        effects: list[Effect] = []
        entries: list[control_store_pb2.LogEntry] = []
        overlay: dict[bytes, bytes | None] = {}
        fresh: dict[tuple[str, int], control_store_pb2.LogEntry] = {}
        fresh_floor: dict[str, int] = {}
        for write in writes:
            error = self._write_refusal(write.request)
            if error is not None:
                effects.append(FailCall(write.call_id, error))
                continue
            req = write.request
            record = fresh.get((req.client_id, req.client_seq)) or self.storage.get_dedup(req.client_id, req.client_seq)
            if record is None:
                floor = max(fresh_floor.get(req.client_id, 0), self.storage.dedup_floor(req.client_id))
                if req.client_seq < floor:
                    effects.append(FailCall(write.call_id, BadRequestError(
                        f"write ({req.client_id}, {req.client_seq}) was already acknowledged (the client said so "
                        f"with client_acked_below={floor}); it is not applied again")))
                    continue
                record = evaluate_write(req, self.applied_seq + len(entries) + 1, self.epoch, self.storage, overlay,
                                        max(floor, req.client_acked_below))
                fresh_floor[req.client_id] = record.client_acked_below
                entries.append(record)
                fresh[(req.client_id, req.client_seq)] = record
            reply = control_store_pb2.WriteReply(epoch=self.epoch, seq=record.seq, results=record.results)
            self._wait_for_commit(record.seq, write.call_id, reply)
        if entries:
            effects.extend(self._append(entries))
            self._commit_as_tail()
            effects.extend(self._pump(now_ms))
        effects.extend(self._release_waiting())
        return effects

    def _shard_count_refusal(self) -> RpcError | None:
        if self.settings.require_shard_count and not self.num_shards:
            return UnavailableError(f"replica {self.me} has not learned the shard count yet; retry")
        return None

    def _write_refusal(self, req: control_store_pb2.WriteRequest) -> RpcError | None:
        error = validate_write(req, self.settings, self.num_shards) or self._shard_count_refusal()
        if error is not None:
            return error
        if self.config is None or self.epoch == 0:
            return UnavailableError(f"replica {self.me} has no chain configuration yet; retry")
        if req.epoch and req.epoch < self.epoch:
            return StaleEpochError(f"write carries epoch {req.epoch} but shard {self.shard} is at epoch "
                                   f"{self.epoch}; refresh the configuration and retry")
        if req.epoch > self.epoch or self.newest_epoch_seen > self.epoch:
            self.newest_epoch_seen = max(self.newest_epoch_seen, req.epoch)
            self.next_heartbeat_ms = 0
            return StaleEpochError(f"replica {self.me} is at epoch {self.epoch}, behind epoch "
                                   f"{self.newest_epoch_seen}; retry after refreshing the configuration")
        if not self.is_head():
            return NotHeadError(f"replica {self.me} is not the head of shard {self.shard} in epoch {self.epoch}")
        if self.snapshot_in_progress:
            return UnavailableError(f"head {self.me} is loading a snapshot; retry")
        if len(self.waiting) >= WAITING_WRITES_MAX:
            return UnavailableError(f"head {self.me} has {len(self.waiting)} writes waiting for commit; retry later")
        return None

    def _wait_for_commit(self, seq: int, call_id: Hashable, reply) -> None:
        self._waiting_order += 1
        heapq.heappush(self.waiting, (seq, self._waiting_order, call_id, reply))

    def _release_waiting(self) -> list[Effect]:
        effects: list[Effect] = []
        while self.waiting and self.waiting[0][0] <= self.committed_seq:
            _, _, call_id, reply = heapq.heappop(self.waiting)
            effects.append(ReplyWrite(call_id, reply))
        return effects

    def _fail_waiting(self, error: RpcError) -> list[Effect]:
        effects = [FailCall(call_id, error) for _, _, call_id, _ in self.waiting]
        self.waiting = []
        return effects

    def _append(self, entries: list[control_store_pb2.LogEntry]) -> list[Effect]:
        """Persist consecutive entries after ``applied_seq`` (one batch)."""
        last = entries[-1]
        self.applied_seq, self.applied_epoch = last.seq, last.epoch
        waits_for_joiner = self.is_tail() and self.link is not None and self.link.joiner_included
        for entry in entries:
            self.recent[entry.seq] = entry
            if waits_for_joiner:
                for mutation in entry.mutations:
                    self.uncommitted_keys[mutation.key] = entry.seq
        while len(self.recent) > RECENT_ENTRIES_MAX:
            self.recent.popitem(last=False)
        log_base = None
        keep_from = self.applied_seq - self.settings.log_retention_entries + 1
        if keep_from - 1 > self.log_base[0]:
            base_seq = keep_from - 1
            base_epoch = self.epoch_at(base_seq)
            if base_epoch is not None:
                log_base = self.log_base = (base_seq, base_epoch)
        return [Persist(entries=tuple(entries), applied=(self.applied_seq, self.applied_epoch), log_base=log_base)]

    def epoch_at(self, seq: int) -> int | None:
        """Epoch of our entry ``seq`` if we still know it."""
        if seq == self.applied_seq:
            return self.applied_epoch
        if seq > self.applied_seq or seq < self.log_base[0]:
            return None
        if seq == self.log_base[0]:
            return self.log_base[1]
        entry = self.recent.get(seq) or self.storage.log_entry(seq)
        return None if entry is None else entry.epoch

    def entries_from(self, seq: int, count_max: int) -> list[control_store_pb2.LogEntry]:
        out = []
        while len(out) < count_max and seq <= self.applied_seq:
            entry = self.recent.get(seq)
            if entry is None:
                out.extend(self.storage.log_entries(seq, count_max - len(out)))
                break
            out.append(entry)
            seq += 1
        return out

    # ------------------------------------------------------------ reads

    def _on_read(self, ev: ReadArrived) -> list[Effect]:
        req = ev.request
        error = (validate_read(req, self.settings, self.num_shards) or self._shard_count_refusal()
                 or self.read_refusal(req.min_epoch, ev.now_ms))
        if error is not None:
            return [FailCall(ev.call_id, error)]
        if any(key in self.uncommitted_keys for key in req.keys):
            return [FailCall(ev.call_id, UnavailableError(
                f"tail {self.me} has uncommitted writes to a requested key (waiting for joiner); retry"))]
        values = []
        for key in req.keys:
            value = self.storage.get(key)
            values.append(control_store_pb2.MaybeValue(present=value is not None, value=value or b""))
        return [ReplyRead(ev.call_id, control_store_pb2.ReadReply(epoch=self.epoch, seq=self.committed_seq,
                                                                  values=values))]

    def _on_scan(self, ev: ScanArrived) -> list[Effect]:
        req = ev.request
        error = validate_scan(req, self.settings) or self.read_refusal(req.min_epoch, ev.now_ms)
        if error is not None:
            return [FailCall(ev.call_id, error)]
        if any(k.startswith(req.prefix) and k > req.start_after for k in self.uncommitted_keys):
            return [FailCall(ev.call_id, UnavailableError(
                f"tail {self.me} has uncommitted writes under this prefix (waiting for joiner); retry"))]
        limit = min(req.limit or 1000, 1000)
        items, more = self.storage.scan(req.prefix, req.start_after, limit, req.keys_only)
        reply = control_store_pb2.ScanReply(epoch=self.epoch, seq=self.committed_seq, more=more,
                                            items=[control_store_pb2.KeyValue(key=k, value=v) for k, v in items])
        return [ReplyScan(ev.call_id, reply)]

    # ------------------------------------------------------------ receiving

    def _ack(self, need_snapshot: bool = False) -> control_store_pb2.ForwardAck:
        return control_store_pb2.ForwardAck(
            epoch=self.epoch, applied_seq=self.applied_seq, applied_epoch=self.applied_epoch,
            committed_seq=self.committed_seq, need_snapshot=need_snapshot or self.snapshot_in_progress)

    def _on_forward(self, sender_id: str, batch: control_store_pb2.ForwardBatch, now_ms: int) -> list[Effect]:
        if batch.shard != self.shard:
            return []
        if batch.epoch < self.epoch:
            return [SendAck(sender_id, self._ack())]  # tells the sender it is stale
        if batch.epoch > self.epoch:
            self._saw_newer_epoch(batch.epoch)
            return []
        if sender_id != self.predecessor_id:
            return []
        is_hello = not batch.entries and not (batch.snapshot_begin or batch.snapshot_items or batch.snapshot_end)
        if is_hello and self.read_gate_seq is None:
            self.read_gate_seq = batch.snapshot_seq
        self.predecessor_committed_seq = batch.committed_seq
        effects: list[Effect] = []
        need_snapshot = False
        if batch.snapshot_begin or batch.snapshot_items or batch.snapshot_end:
            effects.extend(self._on_snapshot_chunk(batch))
        elif batch.entries:
            appended, need_snapshot = self._accept_entries(batch)
            if appended:
                effects.extend(self._append(appended))
        if self.is_tail():
            self._commit_as_tail()
        elif self.is_joining() and batch.committed_seq != NOT_YET_SEQ:
            self.committed_seq = max(self.committed_seq, min(self.applied_seq, batch.committed_seq))
        effects.extend(self._pump(now_ms))
        if self.incoming_snapshot is None:
            effects.append(SendAck(sender_id, self._ack(need_snapshot)))
        return effects

    def _accept_entries(self, batch) -> tuple[list, bool]:
        if self.snapshot_in_progress or self.incoming_snapshot is not None:
            return [], True
        return entries_to_append(batch, self.applied_seq, self.applied_epoch, self.epoch_at)

    def _on_snapshot_chunk(self, batch) -> list[Effect]:
        effects: list[Effect] = []
        begin = False
        if batch.snapshot_begin:
            mark = (batch.snapshot_seq, batch.snapshot_epoch)
            if not self.snapshot_in_progress and (self.applied_seq, self.applied_epoch) == mark:
                self.incoming_snapshot = None  # we are exactly there already (a duplicate)
                return []
            self.incoming_snapshot = mark
            self.snapshot_in_progress = True
            self.recent.clear()
            self.applied_seq = self.applied_epoch = 0
            begin = True
        if self.incoming_snapshot is None:
            return []
        end = batch.snapshot_end
        items = tuple((kv.key, kv.value) for kv in batch.snapshot_items)
        if end:
            seq, epoch = self.incoming_snapshot
            self.incoming_snapshot = None
            self.snapshot_in_progress = False
            self.applied_seq, self.applied_epoch = seq, epoch
            self.committed_seq = min(self.committed_seq, seq)
            self.log_base = (seq, epoch)
            effects.append(Persist(snapshot_begin=begin, snapshot_items=items, applied=(seq, epoch),
                                   log_base=(seq, epoch), snapshot_end=True))
        else:
            effects.append(Persist(snapshot_begin=begin, snapshot_items=items))
        return effects

    # ------------------------------------------------------------ sending

    def _on_ack(self, from_id: str, ack: control_store_pb2.ForwardAck, now_ms: int) -> list[Effect]:
        if ack.epoch > self.epoch:
            self._saw_newer_epoch(ack.epoch)
            return []
        link = self.link
        if ack.epoch < self.epoch or link is None or link.target.replica_id != from_id:
            return []
        effects: list[Effect] = []
        was_streaming = link.state is LinkState.STREAMING
        if link.state is LinkState.HELLO:
            effects.extend(self._sync_link(ack, now_ms))
        elif link.state is LinkState.SNAPSHOT_SENT:
            if (not ack.need_snapshot and ack.applied_seq >= link.snapshot_seq
                    and self.epoch_at(ack.applied_seq) == ack.applied_epoch):
                self._stream_from(ack.applied_seq, now_ms)
            # else: still loading the snapshot; acks sent before it say nothing new
        elif ack.need_snapshot or ack.applied_seq < link.acked_seq:
            effects.extend(self._sync_link(ack, now_ms))
        else:
            if ack.applied_seq > link.acked_seq:
                link.last_progress_ms = now_ms
            link.acked_seq = max(link.acked_seq, ack.applied_seq)
        if not was_streaming and link.state is LinkState.STREAMING:
            # Our first hello of this epoch may have reached the successor
            # before it knew the epoch (ignored), and under a steady write
            # load the link never idles long enough for the next one: a new
            # tail would refuse reads until the writes paused. Repeat it now
            # (ahead of the entries) so its read gate opens within a round trip.
            effects.append(self._hello())
        before = self.committed_seq
        if link.to_joiner:
            close_enough = link.acked_seq + self.settings.entries_per_batch_max >= self.applied_seq
            if not link.joiner_included and link.state is LinkState.STREAMING and close_enough:
                link.joiner_included = True
            self._commit_as_tail()
        else:
            self.committed_seq = max(self.committed_seq, min(ack.committed_seq, self.applied_seq))
        if self.committed_seq > before:
            effects.extend(self._release_waiting())
            if self.predecessor_id is not None and not self.is_joining():
                effects.append(SendAck(self.predecessor_id, self._ack()))
        effects.extend(self._pump(now_ms))
        return effects

    def _commit_as_tail(self) -> None:
        """A tail commits what it applied, except that once its joiner is
        counted in (it came within one batch of us), entries commit only when
        the joiner has them too: so when the joiner is promoted it holds every
        acknowledged write, and losing the old tail right after loses none."""
        if not self.is_tail():
            self.uncommitted_keys = {}
            return
        link = self.link
        if link is not None and link.to_joiner and link.joiner_included:
            applied = min(self.applied_seq, link.acked_seq)
        else:
            applied = self.applied_seq
        self.committed_seq = max(self.committed_seq, applied)
        if self.uncommitted_keys:
            c = self.committed_seq
            self.uncommitted_keys = {k: s for k, s in self.uncommitted_keys.items() if s > c}

    def _link_committed_seq(self) -> int:
        """The watermark we send down a link. A joiner reports caught_up when
        it has applied this, so until the joiner counts in our commits it is
        set to a seq no log ever reaches."""
        link = self.link
        if link is not None and link.to_joiner and not link.joiner_included:
            return NOT_YET_SEQ
        return self.committed_seq

    def _sync_link(self, ack: control_store_pb2.ForwardAck, now_ms: int) -> list[Effect]:
        """Decide where the successor's log meets ours: send the suffix after
        it, or a snapshot when it diverged or fell behind our retained log."""
        link = self.link
        link.last_progress_ms = now_ms
        if not ack.need_snapshot and ack.applied_seq <= self.applied_seq \
                and self.epoch_at(ack.applied_seq) == ack.applied_epoch:
            self._stream_from(ack.applied_seq, now_ms)
            return []
        return self._send_snapshot()

    def _send_snapshot(self) -> list[Effect]:
        link = self.link
        link.state = LinkState.SNAPSHOT_SENT
        link.snapshot_seq = self.applied_seq
        return [SendSnapshot(link.target, self.epoch, self.applied_seq, self.applied_epoch,
                             self._link_committed_seq())]

    def _stream_from(self, acked_seq: int, now_ms: int) -> None:
        link = self.link
        link.state = LinkState.STREAMING
        link.acked_seq = acked_seq
        link.next_seq = acked_seq + 1
        link.last_progress_ms = now_ms

    def _pump(self, now_ms: int) -> list[Effect]:
        link = self.link
        if link is None or link.state is not LinkState.STREAMING:
            return []
        effects: list[Effect] = []
        window_end = link.acked_seq + self.settings.send_window_entries
        while link.next_seq <= self.applied_seq and link.next_seq <= window_end:
            count = min(self.settings.entries_per_batch_max, window_end - link.next_seq + 1)
            entries = self.entries_from(link.next_seq, count)
            prev_seq = link.next_seq - 1
            prev_epoch = self.epoch_at(prev_seq)
            if not entries or prev_epoch is None:
                # What the successor needs next left our retained log.
                effects.extend(self._send_snapshot())
                break
            batch = control_store_pb2.ForwardBatch(
                shard=self.shard, epoch=self.epoch, sender_id=self.me, entries=entries,
                committed_seq=self._link_committed_seq(), snapshot_seq=prev_seq, snapshot_epoch=prev_epoch)
            if link.next_seq - 1 == link.acked_seq:
                link.last_progress_ms = now_ms  # the clock for resending starts now
            effects.append(SendForward(link.target, batch))
            link.next_seq = entries[-1].seq + 1
        return effects

    def _hello(self) -> SendForward:
        return SendForward(self.link.target, control_store_pb2.ForwardBatch(
            shard=self.shard, epoch=self.epoch, sender_id=self.me, committed_seq=self._link_committed_seq(),
            snapshot_seq=self.applied_seq, snapshot_epoch=self.applied_epoch))

    def _start_link(self, now_ms: int) -> list[Effect]:
        self.link.reset(now_ms)
        return [self._hello()]

    def _on_tick(self, now_ms: int) -> list[Effect]:
        effects: list[Effect] = []
        link = self.link
        # An unanswered hello is cheap to repeat (our successor may have
        # dropped it while it did not know our epoch yet).
        wait_ms = self.settings.heartbeat_interval_ms if link is not None and link.state is LinkState.HELLO \
            else self.settings.resend_after_ms
        if link is not None and now_ms - link.last_progress_ms >= wait_ms:
            if link.state is LinkState.HELLO or link.state is LinkState.SNAPSHOT_SENT:
                effects.extend(self._start_link(now_ms))
            elif link.next_seq - 1 > link.acked_seq:
                link.next_seq = link.acked_seq + 1
                link.last_progress_ms = now_ms
                effects.extend(self._pump(now_ms))
            else:
                link.last_progress_ms = now_ms
                effects.append(self._hello())  # an idle link still carries our watermark
        effects.extend(self._coordinator_calls(now_ms))
        return effects
