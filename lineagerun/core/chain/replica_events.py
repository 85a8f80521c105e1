"""Events fed to the chain-replication replica core and effects it returns.

Payloads are the wire messages of ``control_store.proto`` themselves
(``WriteRequest``, ``LogEntry``, ``ForwardBatch`` ...): converting every entry
into a Python object and back would be O(n) Python work per write, which is
exactly what the replica's group commit exists to avoid. The core never
mutates a message it was given; messages it returns are new.

``call_id`` is an opaque token of the shell (an RPC waiting for its answer);
the core hands it back in the effect that answers that call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

from lineagerun.exceptions import RpcError
from lineagerun.rpc import common_pb2, control_store_pb2, coordinator_pb2

# ------------------------------------------------------------------ events


@dataclass(frozen=True)
class ClientWrite:
    call_id: Hashable
    request: control_store_pb2.WriteRequest


@dataclass(frozen=True)
class WritesArrived:
    """Every write request that arrived since the last group commit."""

    writes: tuple[ClientWrite, ...]
    now_ms: int


@dataclass(frozen=True)
class ReadArrived:
    call_id: Hashable
    request: control_store_pb2.ReadRequest
    now_ms: int


@dataclass(frozen=True)
class ScanArrived:
    call_id: Hashable
    request: control_store_pb2.ScanRequest
    now_ms: int


@dataclass(frozen=True)
class ForwardArrived:
    """A batch from the replica ``sender_id`` (our predecessor, we hope)."""

    sender_id: str
    batch: control_store_pb2.ForwardBatch
    now_ms: int


@dataclass(frozen=True)
class AckArrived:
    """An ack from ``from_id`` on the link we opened to it."""

    from_id: str
    ack: control_store_pb2.ForwardAck
    now_ms: int


@dataclass(frozen=True)
class LinkLost:
    """The shell's stream to ``target_id`` broke; start the link over."""

    target_id: str
    now_ms: int


@dataclass(frozen=True)
class ConfigPushed:
    """``UpdateConfig`` from the coordinator (``call_id`` answers it)."""

    call_id: Hashable
    update: control_store_pb2.ConfigUpdate
    now_ms: int


@dataclass(frozen=True)
class HeartbeatReplied:
    sent_ms: int
    reply: coordinator_pb2.HeartbeatReply
    now_ms: int


@dataclass(frozen=True)
class HeartbeatFailed:
    now_ms: int


@dataclass(frozen=True)
class JoinReplied:
    reply: coordinator_pb2.JoinReply
    now_ms: int


@dataclass(frozen=True)
class JoinFailed:
    now_ms: int


@dataclass(frozen=True)
class Tick:
    now_ms: int


@dataclass(frozen=True)
class ShardCountLearned:
    """The cluster's shard count (from the coordinator's ClusterConfig), so
    the replica can refuse keys that route to another shard."""

    num_shards: int


Event = (WritesArrived | ReadArrived | ScanArrived | ForwardArrived | AckArrived | LinkLost | ConfigPushed
         | HeartbeatReplied | HeartbeatFailed | JoinReplied | JoinFailed | Tick | ShardCountLearned)

# ----------------------------------------------------------------- effects


@dataclass(frozen=True)
class Persist:
    """One atomic write batch. Applied in this order: ``snapshot_begin``
    (wipe data, dedup records and log; mark a snapshot in progress),
    ``snapshot_items`` (raw storage keys), ``entries`` (mutations, dedup
    records, retained log), ``applied``, ``log_base`` (drops retained log
    entries up to its seq), ``snapshot_end`` (clears the in-progress mark)."""

    entries: tuple[control_store_pb2.LogEntry, ...] = ()
    applied: tuple[int, int] | None = None
    log_base: tuple[int, int] | None = None
    snapshot_begin: bool = False
    snapshot_items: tuple[tuple[bytes, bytes], ...] = ()
    snapshot_end: bool = False


@dataclass(frozen=True)
class SendForward:
    to: common_pb2.ReplicaInfo
    batch: control_store_pb2.ForwardBatch


@dataclass(frozen=True)
class SendSnapshot:
    """Stream the storage's current state (it reflects entry
    ``(snapshot_seq, snapshot_epoch)``: take the storage snapshot *now*,
    before executing any later effect) to ``to`` as snapshot chunks of
    ``epoch``, ahead of every later ``SendForward`` to it."""

    to: common_pb2.ReplicaInfo
    epoch: int
    snapshot_seq: int
    snapshot_epoch: int
    committed_seq: int


@dataclass(frozen=True)
class SendAck:
    to_id: str
    ack: control_store_pb2.ForwardAck


@dataclass(frozen=True)
class ReplyWrite:
    call_id: Hashable
    reply: control_store_pb2.WriteReply


@dataclass(frozen=True)
class ReplyRead:
    call_id: Hashable
    reply: control_store_pb2.ReadReply


@dataclass(frozen=True)
class ReplyScan:
    call_id: Hashable
    reply: control_store_pb2.ScanReply


@dataclass(frozen=True)
class ReplyConfig:
    call_id: Hashable
    ack: control_store_pb2.ConfigAck


@dataclass(frozen=True)
class FailCall:
    call_id: Hashable
    error: RpcError


@dataclass(frozen=True)
class SendHeartbeat:
    request: coordinator_pb2.HeartbeatRequest
    sent_ms: int


@dataclass(frozen=True)
class SendJoin:
    request: coordinator_pb2.JoinRequest


@dataclass(frozen=True)
class SaveIdentity:
    """Write the IDENTITY file (first successful join)."""

    cluster_id: str


@dataclass(frozen=True)
class Fatal:
    """Stop the process: continuing would damage data (e.g. this directory
    belongs to another cluster)."""

    error: Exception


Effect = (Persist | SendForward | SendSnapshot | SendAck | ReplyWrite | ReplyRead | ReplyScan | ReplyConfig
          | FailCall | SendHeartbeat | SendJoin | SaveIdentity | Fatal)
