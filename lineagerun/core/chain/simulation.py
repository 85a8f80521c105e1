"""A seeded, in-process simulation of one control-store shard.

N replica cores on in-memory storages ("disks" that survive crashes), an
in-memory network that drops, delays, duplicates and reorders messages, a
scripted coordinator (bootstrap, failure detection by missed heartbeats,
joining, promotion, epochs that only grow) and clients that write unique
values and retry with the same (client_id, client_seq). Everything runs on one
simulated clock; the same seed replays the same run.

``check_*`` methods state the invariants (RELIABILITY.md C1-C3, C8): no
acknowledged write lost, none applied twice, reads never go back in time,
replicas identical after healing.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field

from lineagerun.core.chain.replica import ReplicaCore, ReplicaSettings
from lineagerun.core.chain.replica_events import (
    AckArrived, ClientWrite, ConfigPushed, FailCall, Fatal, ForwardArrived, HeartbeatReplied, JoinReplied,
    Persist, ReadArrived, ReplyConfig, ReplyRead, ReplyWrite, SaveIdentity, SendAck, SendForward, SendHeartbeat,
    SendJoin, SendSnapshot, Tick, WritesArrived,
)
from lineagerun.core.chain.replica_storage import InMemoryStorage
from lineagerun.rpc import common_pb2, control_store_pb2, coordinator_pb2

STEP_MS = 10
COORDINATOR = "coordinator"


@dataclass
class Message:
    deliver_ms: int
    order: int
    src: str
    dst: str
    kind: str
    payload: object

    def __lt__(self, other):
        return (self.deliver_ms, self.order) < (other.deliver_ms, other.order)


@dataclass
class Faults:
    drop_p: float = 0.0
    duplicate_p: float = 0.0
    delay_max_ms: int = 0          # uniform extra delay, which also reorders


class Network:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.faults = Faults()
        self.in_flight: list[Message] = []
        self.order = 0
        self.partitioned: set[str] = set()   # nodes cut off from everyone

    def send(self, now_ms: int, src: str, dst: str, kind: str, payload) -> None:
        f = self.faults
        if src in self.partitioned or dst in self.partitioned:
            return
        if self.rng.random() < f.drop_p:
            return
        copies = 2 if self.rng.random() < f.duplicate_p else 1
        for _ in range(copies):
            self.order += 1
            delay = STEP_MS // 2 + (self.rng.randint(0, f.delay_max_ms) if f.delay_max_ms else 0)
            self.in_flight.append(Message(now_ms + delay, self.order, src, dst, kind, payload))

    def due(self, now_ms: int) -> list[Message]:
        ready = sorted(m for m in self.in_flight if m.deliver_ms <= now_ms)
        self.in_flight = [m for m in self.in_flight if m.deliver_ms > now_ms]
        return ready


# ------------------------------------------------------------- coordinator


class SimCoordinator:
    """The coordinator's rules in their simplest form (the real one is
    ``lineagerun.core.chain.coordinator``)."""

    def __init__(self, sim: "Simulation", replicas_per_shard: int):
        self.sim = sim
        self.replicas_per_shard = replicas_per_shard
        self.config = common_pb2.ChainConfig(shard=0, epoch=0)
        self.waiting: list[str] = []
        self.last_heard_ms: dict[str, int] = {}
        self.lease_ms = 200
        self.failure_timeout_ms = 400

    def info(self, rid: str) -> common_pb2.ReplicaInfo:
        return common_pb2.ReplicaInfo(replica_id=rid, address=rid)

    def members(self) -> list[str]:
        return [r.replica_id for r in self.config.chain]

    def joining(self) -> str | None:
        return self.config.joining.replica_id if self.config.HasField("joining") else None

    def _change(self, members: list[str], joining: str | None) -> None:
        config = common_pb2.ChainConfig(shard=0, epoch=self.config.epoch + 1,
                                        chain=[self.info(r) for r in members])
        if joining is not None:
            config.joining.CopyFrom(self.info(joining))
        self.config = config
        self.sim.epochs.append((self.sim.now_ms, config))
        for rid in members + ([joining] if joining else []):
            self.sim.network.send(self.sim.now_ms, COORDINATOR, rid, "config",
                                  control_store_pb2.ConfigUpdate(config=config, lease_ms=self.lease_ms))

    def on_join(self, req: coordinator_pb2.JoinRequest) -> coordinator_pb2.JoinReply:
        rid = req.replica_id
        self.last_heard_ms[rid] = self.sim.now_ms
        if self.config.epoch == 0:
            if rid not in self.waiting:
                self.waiting.append(rid)
            if len(self.waiting) == self.replicas_per_shard:
                self._change(list(self.waiting), None)
            return coordinator_pb2.JoinReply(config=self.config, cluster_id="sim")
        members, joining = self.members(), self.joining()
        if members == [rid]:
            self._change(members, joining)
        elif joining is None or joining == rid:
            self._change([m for m in members if m != rid], rid)
        else:
            if rid in members:
                self._change([m for m in members if m != rid], joining)
            return coordinator_pb2.JoinReply(config=self.config, cluster_id="sim", retry_later=True,
                                             retry_after_ms=50)
        return coordinator_pb2.JoinReply(config=self.config, cluster_id="sim")

    def on_heartbeat(self, req: coordinator_pb2.HeartbeatRequest) -> coordinator_pb2.HeartbeatReply:
        rid = req.replica_id
        if self.config.epoch == 0:
            return coordinator_pb2.HeartbeatReply(config=self.config, must_join=rid not in self.waiting)
        members, joining = self.members(), self.joining()
        if rid not in members and rid != joining:
            return coordinator_pb2.HeartbeatReply(config=self.config, must_join=True)
        self.last_heard_ms[rid] = self.sim.now_ms
        if rid == joining and req.caught_up and req.epoch == self.config.epoch:
            self._change(members + [rid], None)
        return coordinator_pb2.HeartbeatReply(config=self.config, lease_ms=self.lease_ms)

    def tick(self, now_ms: int) -> None:
        members, joining = self.members(), self.joining()
        if joining is not None and now_ms - self.last_heard_ms.get(joining, now_ms) >= self.failure_timeout_ms:
            self._change(members, None)
            return
        silent = [m for m in members if now_ms - self.last_heard_ms.get(m, now_ms) >= self.failure_timeout_ms]
        if silent and len(members) > 1:
            self._change([m for m in members if m != silent[0]], joining)


# ------------------------------------------------------------- clients


@dataclass
class Read:
    key: bytes
    invoked_ms: int
    floor_seq: int                  # highest seq acknowledged or read before invocation
    completed_ms: int = -1
    seq: int = 0
    value: bytes | None = None


@dataclass
class SimClient:
    name: str
    next_seq: int = 1
    outstanding: dict | None = None     # the write in flight: client_seq, request, sent_ms
    read: Read | None = None
    read_sent_ms: int = 0
    acked_below: int = 1


@dataclass
class SimReplica:
    rid: str
    storage: InMemoryStorage = field(default_factory=InMemoryStorage)
    core: ReplicaCore | None = None
    cluster_id: str = ""


class Simulation:
    def __init__(self, seed: int, replicas: int = 3, clients: int = 3, keys: int = 5,
                 log_retention_entries: int = 1_000_000):
        self.rng = random.Random(seed)
        self.seed = seed
        self.now_ms = 0
        self.network = Network(self.rng)
        self.coordinator = SimCoordinator(self, replicas)
        self.log_retention_entries = log_retention_entries
        self.replicas = {f"r{i}": SimReplica(f"r{i}") for i in range(replicas)}
        self.clients = [SimClient(f"c{i}") for i in range(clients)]
        self.keys = [f"k{i}".encode() for i in range(keys)]
        self.epochs: list[tuple[int, common_pb2.ChainConfig]] = []
        self.acked: dict[tuple[str, int], int] = {}          # (client, client_seq) -> seq
        self.acked_log: list[tuple[int, int]] = []           # (ack time, seq)
        self.reads: list[Read] = []
        self.floor_seq = 0                                    # highest seq acknowledged or read so far
        self.writes_enabled = True
        self.client_timeout_ms = 300
        for rid in self.replicas:
            self.start(rid)

    # ------------------------------------------------------------ replicas

    def start(self, rid: str) -> None:
        r = self.replicas[rid]
        settings = ReplicaSettings(shard=0, replica_id=rid, address=rid, cluster_id=r.cluster_id,
                                   heartbeat_interval_ms=50, log_retention_entries=self.log_retention_entries,
                                   entries_per_batch_max=7, send_window_entries=20, resend_after_ms=150)
        r.core = ReplicaCore(settings, r.storage, self.now_ms)

    def crash(self, rid: str) -> None:
        self.replicas[rid].core = None

    def alive(self) -> list[str]:
        return [rid for rid, r in self.replicas.items() if r.core is not None]

    def _feed(self, rid: str, event) -> None:
        r = self.replicas[rid]
        if r.core is None:
            return
        for effect in r.core.handle(event):
            self._execute(r, effect)

    def _execute(self, r: SimReplica, effect) -> None:
        send = self.network.send
        if isinstance(effect, Persist):
            r.storage.apply(effect)
        elif isinstance(effect, SendForward):
            send(self.now_ms, r.rid, effect.to.replica_id, "forward", (effect.batch, None))
        elif isinstance(effect, SendSnapshot):
            items = [control_store_pb2.KeyValue(key=k, value=v) for k, v in r.storage.snapshot_items()]
            batch = control_store_pb2.ForwardBatch(
                shard=0, epoch=effect.epoch, sender_id=r.rid, committed_seq=effect.committed_seq,
                snapshot_items=items, snapshot_begin=True, snapshot_end=True,
                snapshot_seq=effect.snapshot_seq, snapshot_epoch=effect.snapshot_epoch)
            history = {s: e for s, e in r.storage.history.items() if s <= effect.snapshot_seq}
            send(self.now_ms, r.rid, effect.to.replica_id, "forward", (batch, history))
        elif isinstance(effect, SendAck):
            send(self.now_ms, r.rid, effect.to_id, "ack", effect.ack)
        elif isinstance(effect, (ReplyWrite, ReplyRead, FailCall, ReplyConfig)):
            if effect.call_id is not None:
                send(self.now_ms, r.rid, effect.call_id[0], "reply", effect)
        elif isinstance(effect, SendHeartbeat):
            send(self.now_ms, r.rid, COORDINATOR, "heartbeat", effect)
        elif isinstance(effect, SendJoin):
            send(self.now_ms, r.rid, COORDINATOR, "join", effect.request)
        elif isinstance(effect, SaveIdentity):
            r.cluster_id = effect.cluster_id
        elif isinstance(effect, Fatal):
            raise AssertionError(f"replica {r.rid} stopped: {effect.error}")
        else:
            raise AssertionError(f"unknown effect {effect!r}")

    # ------------------------------------------------------------ the clock

    def run(self, duration_ms: int) -> None:
        end = self.now_ms + duration_ms
        while self.now_ms < end:
            self.step()

    def step(self) -> None:
        self.now_ms += STEP_MS
        now = self.now_ms
        writes: dict[str, list[ClientWrite]] = {}
        for m in self.network.due(now):
            self._deliver(m, writes)
        for rid, group in writes.items():
            self._feed(rid, WritesArrived(tuple(group), now))
        self.coordinator.tick(now)
        for rid in list(self.replicas):
            self._feed(rid, Tick(now))
        for client in self.clients:
            self._client_step(client)

    def _deliver(self, m: Message, writes: dict) -> None:
        now = self.now_ms
        if m.dst == COORDINATOR:
            if m.kind == "join":
                self.network.send(now, COORDINATOR, m.src, "join_reply", self.coordinator.on_join(m.payload))
            else:
                reply = self.coordinator.on_heartbeat(m.payload.request)
                self.network.send(now, COORDINATOR, m.src, "heartbeat_reply", (m.payload.sent_ms, reply))
            return
        if m.dst in self.replicas:
            self._deliver_to_replica(m, writes)
        else:
            self._deliver_to_client(m)

    def _deliver_to_replica(self, m: Message, writes: dict) -> None:
        r = self.replicas[m.dst]
        now = self.now_ms
        if r.core is None:
            return
        if m.kind == "forward":
            batch, history = m.payload
            if history is not None:
                r.storage.incoming_history = history
            self._feed(m.dst, ForwardArrived(m.src, batch, now))
            r.storage.incoming_history = None
        elif m.kind == "ack":
            self._feed(m.dst, AckArrived(m.src, m.payload, now))
        elif m.kind == "config":
            self._feed(m.dst, ConfigPushed(None, m.payload, now))
        elif m.kind == "heartbeat_reply":
            self._feed(m.dst, HeartbeatReplied(m.payload[0], m.payload[1], now))
        elif m.kind == "join_reply":
            self._feed(m.dst, JoinReplied(m.payload, now))
        elif m.kind == "write":
            writes.setdefault(m.dst, []).append(ClientWrite(m.payload[0], m.payload[1]))
        elif m.kind == "read":
            self._feed(m.dst, ReadArrived(m.payload[0], m.payload[1], now))

    # ------------------------------------------------------------ clients

    def _client_step(self, c: SimClient) -> None:
        now = self.now_ms
        config = self.coordinator.config
        members = [r.replica_id for r in config.chain]
        if not members:
            return
        if c.outstanding is None and self.writes_enabled and self.rng.random() < 0.5:
            key = self.rng.choice(self.keys)
            value = f"{c.name}:{c.next_seq}".encode()
            if self.rng.random() < 0.2:
                op = control_store_pb2.Op(cas=control_store_pb2.CompareAndSet(key=key, expect_absent=True,
                                                                              new_value=value))
            else:
                op = control_store_pb2.Op(put=control_store_pb2.Put(key=key, value=value))
            c.outstanding = {"client_seq": c.next_seq, "ops": [op], "sent_ms": -10**9}
            c.next_seq += 1
        if c.outstanding is not None and now - c.outstanding["sent_ms"] >= self.client_timeout_ms:
            req = control_store_pb2.WriteRequest(shard=0, epoch=config.epoch, client_id=c.name,
                                                 client_seq=c.outstanding["client_seq"],
                                                 client_acked_below=c.acked_below, ops=c.outstanding["ops"])
            c.outstanding["sent_ms"] = now
            self.network.send(now, c.name, members[0], "write", ((c.name, "w", req.client_seq), req))
        if c.read is None and self.rng.random() < 0.3:
            c.read = Read(self.rng.choice(self.keys), now, self.floor_seq)
            c.read_sent_ms = -10**9
        if c.read is not None and now - c.read_sent_ms >= self.client_timeout_ms:
            c.read_sent_ms = now
            req = control_store_pb2.ReadRequest(shard=0, min_epoch=config.epoch, keys=[c.read.key])
            self.network.send(now, c.name, members[-1], "read", ((c.name, "r", c.read.invoked_ms), req))

    def _deliver_to_client(self, m: Message) -> None:
        c = next(c for c in self.clients if c.name == m.dst)
        effect = m.payload
        _, kind, token = effect.call_id
        if kind == "w":
            if c.outstanding is None or c.outstanding["client_seq"] != token:
                return
            if isinstance(effect, ReplyWrite):
                key = (c.name, token)
                assert key not in self.acked or self.acked[key] == effect.reply.seq, (key, effect.reply)
                self.acked[key] = effect.reply.seq
                self.acked_log.append((self.now_ms, effect.reply.seq))
                self.floor_seq = max(self.floor_seq, effect.reply.seq)
                c.outstanding = None
                c.acked_below = token + 1
            else:
                c.outstanding["sent_ms"] = self.now_ms - self.client_timeout_ms + 2 * STEP_MS
        else:
            if c.read is None or c.read.invoked_ms != token:
                return
            if isinstance(effect, ReplyRead):
                value = effect.reply.values[0]
                c.read.seq = effect.reply.seq
                c.read.value = value.value if value.present else None
                c.read.completed_ms = self.now_ms
                assert c.read.seq >= c.read.floor_seq, (
                    f"read of {c.read.key!r} went back in time: seq {c.read.seq} < {c.read.floor_seq} (seed {self.seed})")
                self.reads.append(c.read)
                self.floor_seq = max(self.floor_seq, c.read.seq)
                c.read = None
            else:
                c.read_sent_ms = self.now_ms - self.client_timeout_ms + 2 * STEP_MS

    # ------------------------------------------------------------ healing and checks

    def heal(self, budget_ms: int = 30_000) -> None:
        """Stop faults and writes, restart everyone, and run until the chain
        holds every replica and all agree."""
        self.network.faults = Faults()
        self.network.partitioned.clear()
        for rid, r in self.replicas.items():
            if r.core is None:
                self.start(rid)
        self.writes_enabled = False   # writes in flight still retry until acknowledged
        end = self.now_ms + budget_ms
        while self.now_ms < end:
            self.run(100)
            if all(c.outstanding is None for c in self.clients) and self._settled():
                return
        raise AssertionError(f"shard did not settle within {budget_ms} ms (seed {self.seed}): "
                             f"config {self.coordinator.config}, "
                             f"applied {[(rid, r.core.applied_seq, r.core.role()) for rid, r in self.replicas.items()]}")

    def _settled(self) -> bool:
        members = self.coordinator.members()
        if len(members) != len(self.replicas) or self.coordinator.joining() is not None:
            return False
        cores = [self.replicas[m].core for m in members]
        applied = {c.applied_seq for c in cores}
        return (len(applied) == 1 and all(c.epoch == self.coordinator.config.epoch for c in cores)
                and cores[0].committed_seq == cores[0].applied_seq)

    def check_healed(self) -> None:
        seed = self.seed
        reps = list(self.replicas.values())
        first = reps[0]
        for r in reps[1:]:
            assert r.storage.data() == first.storage.data(), f"replica {r.rid} differs from {first.rid} (seed {seed})"
            assert _ids(r.storage.history) == _ids(first.storage.history), f"histories differ (seed {seed})"
        history = first.storage.history
        assert sorted(history) == list(range(1, len(history) + 1)), f"history has holes (seed {seed})"
        seen: dict[tuple[str, int], int] = {}
        for seq, entry in history.items():
            key = (entry.client_id, entry.client_seq)
            assert key not in seen, f"write {key} applied twice: seqs {seen[key]} and {seq} (seed {seed})"
            seen[key] = seq
        for key, seq in self.acked.items():
            assert seen.get(key) == seq, f"acknowledged write {key} (seq {seq}) lost (seed {seed})"
        assert first.storage.data() == _replay(history, len(history)), f"state differs from the log (seed {seed})"
        timeline = _timeline(history)
        for read in self.reads:
            expected = _value_at(timeline, read.key, read.seq)
            assert read.value == expected, (f"read of {read.key!r} at seq {read.seq} returned {read.value!r}, "
                                            f"the log says {expected!r} (seed {seed})")


def _ids(history) -> dict:
    return {s: (e.epoch, e.client_id, e.client_seq) for s, e in history.items()}


def _replay(history, upto: int) -> dict[bytes, bytes]:
    state: dict[bytes, bytes] = {}
    for seq in range(1, upto + 1):
        for m in history[seq].mutations:
            if m.deleted:
                state.pop(m.key, None)
            else:
                state[m.key] = m.value
    return state


def _timeline(history) -> dict[bytes, tuple[list[int], list]]:
    out: dict[bytes, tuple[list[int], list]] = {}
    for seq in sorted(history):
        for m in history[seq].mutations:
            seqs, values = out.setdefault(m.key, ([], []))
            seqs.append(seq)
            values.append(None if m.deleted else m.value)
    return out


def _value_at(timeline, key: bytes, seq: int):
    seqs, values = timeline.get(key, ([], []))
    i = bisect.bisect_right(seqs, seq)
    return values[i - 1] if i else None
