"""The replica's RocksDB (``rocksdict``, raw mode): the core's storage
interface plus ``apply(persist)`` = one ``WriteBatch``.

Key layout: ``lineagerun.core.chain.replica_storage``. With ``durability
"wal"`` (default) a write batch is in the write-ahead log when ``apply``
returns (survives a process kill); ``"fsync"`` also syncs it (survives a
machine crash).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from lineagerun.core.chain.replica_storage import (
    DATA_PREFIX, DEDUP_PREFIX, META_APPLIED, META_LOG_BASE, META_SNAPSHOT_IN_PROGRESS, ReplicaMeta, dedup_key,
    log_key, prefix_end, unpack_pair, write_persist,
)
from lineagerun.exceptions import ConfigurationError
from lineagerun.rpc import control_store_pb2

DURABILITY_MODES = ("wal", "fsync")


class _BatchOps:
    """``WriteOps`` over a ``WriteBatch``."""

    def __init__(self, batch: WriteBatch):
        self.batch = batch

    def put(self, key: bytes, value: bytes) -> None:
        self.batch.put(key, value)

    def delete(self, key: bytes) -> None:
        self.batch.delete(key)

    def delete_range(self, begin: bytes, end: bytes | None) -> None:
        self.batch.delete_range(begin, end if end is not None else b"\xff" * 9)


class RocksStorage:
    def __init__(self, path: str | Path, durability: str = "wal"):
        if durability not in DURABILITY_MODES:
            raise ConfigurationError(f"durability must be one of {DURABILITY_MODES}, not {durability!r}")
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(self.path), options=options)
        self.write_options = WriteOptions()
        self.write_options.sync = durability == "fsync"
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.db.close()

    # ------------------------------------------------------------ writes

    def apply(self, persist) -> None:
        batch = WriteBatch(raw_mode=True)
        write_persist(_BatchOps(batch), persist)
        self.db.write(batch, self.write_options)

    # ------------------------------------------------------------ reads

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(DATA_PREFIX + key)

    def get_dedup(self, client_id: str, client_seq: int) -> control_store_pb2.LogEntry | None:
        raw = self.db.get(dedup_key(client_id, client_seq))
        return None if raw is None else control_store_pb2.LogEntry.FromString(raw)

    def dedup_floor(self, client_id: str) -> int:
        raw = self.db.get(dedup_key(client_id, 0))
        return int.from_bytes(raw, "big") if raw else 0

    def log_entry(self, seq: int) -> control_store_pb2.LogEntry | None:
        raw = self.db.get(log_key(seq))
        return None if raw is None else control_store_pb2.LogEntry.FromString(raw)

    def log_entries(self, from_seq: int, count_max: int) -> list[control_store_pb2.LogEntry]:
        out = []
        expected = from_seq
        for key, raw in self.db.items(from_key=log_key(from_seq)):
            if not key.startswith(b"l") or len(out) >= count_max:
                break
            entry = control_store_pb2.LogEntry.FromString(raw)
            if entry.seq != expected:
                break
            out.append(entry)
            expected += 1
        return out

    def load_meta(self) -> ReplicaMeta:
        applied = unpack_pair(self.db.get(META_APPLIED))
        base = unpack_pair(self.db.get(META_LOG_BASE))
        return ReplicaMeta(applied[0], applied[1], base[0], base[1],
                           self.db.get(META_SNAPSHOT_IN_PROGRESS) is not None)

    def scan(self, prefix: bytes, start_after: bytes, limit: int, keys_only: bool):
        low = DATA_PREFIX + max(prefix, start_after)
        full_prefix = DATA_PREFIX + prefix
        skip = DATA_PREFIX + start_after
        items = []
        more = False
        for key, value in self.db.items(from_key=low):
            if not key.startswith(full_prefix):
                break
            if key == skip:
                continue
            if len(items) >= limit:
                more = True
                break
            items.append((key[1:], b"" if keys_only else value))
        return items, more

    def snapshot_items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every data and dedup record, read now. (rocksdict's snapshot
        iterators do not honour the snapshot, so the caller materialises this
        before the event loop runs on.)"""
        for prefix in (DEDUP_PREFIX, DATA_PREFIX):
            end = prefix_end(prefix)
            for key, value in self.db.items(from_key=prefix):
                if key >= end:
                    break
                yield key, value

    def num_keys_estimate(self) -> int:
        try:
            return int(self.db.property_int_value("rocksdb.estimate-num-keys") or 0)
        except Exception:  # an estimate only; never worth failing Status for
            return 0
