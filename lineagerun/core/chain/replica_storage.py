"""What the replica core reads from its disk, the key layout both storages
share, and an in-memory storage for tests and the simulation.

Like etcd raft's ``Storage``: the core only *reads* through this interface;
every change is a ``Persist`` effect that the shell applies (``apply``) before
it carries out any later effect, so a read always sees everything the core
asked to persist before.

Key layout (one keyspace, raw bytes, sorted):
  ``d`` + user key                          -> value
  ``c`` + client_id + NUL + client_seq(8B)  -> LogEntry(seq, epoch, results)
  ``c`` + client_id + NUL + 0(8B)           -> the client's acked_below (its
                                               forgotten records are below it)
  ``l`` + seq(8B)                           -> LogEntry (retained log)
  ``m`` + name                              -> metadata
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol

from lineagerun.rpc import control_store_pb2

DATA_PREFIX = b"d"
DEDUP_PREFIX = b"c"
LOG_PREFIX = b"l"
META_APPLIED = b"m/applied"
META_LOG_BASE = b"m/log_base"
META_SNAPSHOT_IN_PROGRESS = b"m/snapshot_in_progress"

# See write_entry: how often a client's acknowledged dedup records are dropped.
DEDUP_GC_EVERY_REQUESTS = 256

# Snapshots carry the state a head needs: data and dedup records.
SNAPSHOT_PREFIXES = (DATA_PREFIX, DEDUP_PREFIX)


def data_key(key: bytes) -> bytes:
    return DATA_PREFIX + key


def dedup_key(client_id: str, client_seq: int) -> bytes:
    return DEDUP_PREFIX + client_id.encode() + b"\x00" + client_seq.to_bytes(8, "big")


def log_key(seq: int) -> bytes:
    return LOG_PREFIX + seq.to_bytes(8, "big")


def pack_pair(a: int, b: int) -> bytes:
    return a.to_bytes(8, "big") + b.to_bytes(8, "big")


def unpack_pair(raw: bytes | None) -> tuple[int, int]:
    if not raw:
        return 0, 0
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:16], "big")


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


@dataclass(frozen=True)
class ReplicaMeta:
    applied_seq: int
    applied_epoch: int
    # The entry just before the first retained log entry (0, 0 when the log
    # starts at seq 1); after a snapshot, the snapshot's entry.
    log_base_seq: int
    log_base_epoch: int
    snapshot_in_progress: bool


class WriteOps(Protocol):
    def put(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> None: ...
    def delete_range(self, begin: bytes, end: bytes) -> None: ...


def write_persist(ops: WriteOps, persist, *, keep_history=None) -> None:
    """Translate one ``Persist`` into raw key operations of one batch."""
    if persist.snapshot_begin:
        for prefix in (DATA_PREFIX, DEDUP_PREFIX, LOG_PREFIX):
            ops.delete_range(prefix, prefix_end(prefix))
        ops.put(META_SNAPSHOT_IN_PROGRESS, b"1")
    for key, value in persist.snapshot_items:
        if key[:1] in SNAPSHOT_PREFIXES:  # a peer must not be able to forge metadata
            ops.put(key, value)
    for entry in persist.entries:
        write_entry(ops, entry)
    if persist.applied is not None:
        ops.put(META_APPLIED, pack_pair(*persist.applied))
    if persist.log_base is not None:
        base_seq, base_epoch = persist.log_base
        ops.delete_range(log_key(0), log_key(base_seq + 1))
        ops.put(META_LOG_BASE, pack_pair(base_seq, base_epoch))
    if persist.snapshot_end:
        ops.delete(META_SNAPSHOT_IN_PROGRESS)


def write_entry(ops: WriteOps, entry: control_store_pb2.LogEntry) -> None:
    for mutation in entry.mutations:
        if mutation.deleted:
            ops.delete(DATA_PREFIX + mutation.key)
        else:
            ops.put(DATA_PREFIX + mutation.key, mutation.value)
    if entry.client_id:
        record = control_store_pb2.LogEntry(seq=entry.seq, epoch=entry.epoch, results=entry.results)
        ops.put(dedup_key(entry.client_id, entry.client_seq), record.SerializeToString())
        # Forget acknowledged dedup records only every DEDUP_GC_EVERY_REQUESTS
        # requests of a client: every delete_range leaves a range tombstone
        # that RocksDB point lookups must consult until compaction, and one
        # per write made dedup lookups (and so every write) slower and slower.
        # Records between the stored floor and client_acked_below stay and
        # answer late copies from the record, which is just as safe.
        if entry.client_acked_below > 1 and entry.client_seq % DEDUP_GC_EVERY_REQUESTS == 0:
            ops.delete_range(dedup_key(entry.client_id, 0), dedup_key(entry.client_id, entry.client_acked_below))
            ops.put(dedup_key(entry.client_id, 0), entry.client_acked_below.to_bytes(8, "big"))
    ops.put(log_key(entry.seq), entry.SerializeToString())


class ReplicaStorage(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def get_dedup(self, client_id: str, client_seq: int) -> control_store_pb2.LogEntry | None: ...
    def dedup_floor(self, client_id: str) -> int: ...
    def log_entry(self, seq: int) -> control_store_pb2.LogEntry | None: ...
    def log_entries(self, from_seq: int, count_max: int) -> list[control_store_pb2.LogEntry]: ...
    def load_meta(self) -> ReplicaMeta: ...
    def scan(self, prefix: bytes, start_after: bytes, limit: int,
             keys_only: bool) -> tuple[list[tuple[bytes, bytes]], bool]: ...
    def apply(self, persist) -> None: ...
    def snapshot_items(self) -> Iterator[tuple[bytes, bytes]]: ...
    def num_keys_estimate(self) -> int: ...


class InMemoryStorage:
    """A dict playing RocksDB. It survives a simulated crash (it is the
    "disk"); ``history`` is audit data for the simulation only: every entry
    this replica's state derives from, never truncated."""

    def __init__(self):
        self.kv: dict[bytes, bytes] = {}
        self.history: dict[int, control_store_pb2.LogEntry] = {}
        self.incoming_history: dict[int, control_store_pb2.LogEntry] | None = None
        self.writes = 0

    # -- WriteOps
    def put(self, key: bytes, value: bytes) -> None:
        self.kv[key] = bytes(value)

    def delete(self, key: bytes) -> None:
        self.kv.pop(key, None)

    def delete_range(self, begin: bytes, end: bytes | None) -> None:
        for key in [k for k in self.kv if k >= begin and (end is None or k < end)]:
            del self.kv[key]

    # -- ReplicaStorage
    def apply(self, persist) -> None:
        self.writes += 1
        if persist.snapshot_begin:
            self.history = {}
        write_persist(self, persist)
        for entry in persist.entries:
            self.history[entry.seq] = entry
        if persist.snapshot_end and persist.applied is not None and self.incoming_history is not None:
            seq = persist.applied[0]
            self.history = {s: e for s, e in self.incoming_history.items() if s <= seq}
            self.incoming_history = None

    def get(self, key: bytes) -> bytes | None:
        return self.kv.get(DATA_PREFIX + key)

    def get_dedup(self, client_id: str, client_seq: int) -> control_store_pb2.LogEntry | None:
        raw = self.kv.get(dedup_key(client_id, client_seq))
        return None if raw is None else control_store_pb2.LogEntry.FromString(raw)

    def dedup_floor(self, client_id: str) -> int:
        raw = self.kv.get(dedup_key(client_id, 0))
        return int.from_bytes(raw, "big") if raw else 0

    def log_entry(self, seq: int) -> control_store_pb2.LogEntry | None:
        raw = self.kv.get(log_key(seq))
        return None if raw is None else control_store_pb2.LogEntry.FromString(raw)

    def log_entries(self, from_seq: int, count_max: int) -> list[control_store_pb2.LogEntry]:
        out = []
        for seq in range(from_seq, from_seq + count_max):
            entry = self.log_entry(seq)
            if entry is None:
                break
            out.append(entry)
        return out

    def load_meta(self) -> ReplicaMeta:
        applied = unpack_pair(self.kv.get(META_APPLIED))
        base = unpack_pair(self.kv.get(META_LOG_BASE))
        return ReplicaMeta(applied[0], applied[1], base[0], base[1], META_SNAPSHOT_IN_PROGRESS in self.kv)

    def scan(self, prefix: bytes, start_after: bytes, limit: int, keys_only: bool):
        low = DATA_PREFIX + max(prefix, start_after)
        keys = sorted(k for k in self.kv if k.startswith(DATA_PREFIX + prefix) and k >= low
                      and k != DATA_PREFIX + start_after)
        page = keys[:limit]
        return [(k[1:], b"" if keys_only else self.kv[k]) for k in page], len(keys) > limit

    def snapshot_items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted((k, v) for k, v in self.kv.items() if k[:1] in SNAPSHOT_PREFIXES))

    def num_keys_estimate(self) -> int:
        return sum(1 for k in self.kv if k[:1] == DATA_PREFIX)

    def data(self) -> dict[bytes, bytes]:
        return {k[1:]: v for k, v in self.kv.items() if k[:1] == DATA_PREFIX}


def batches(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
