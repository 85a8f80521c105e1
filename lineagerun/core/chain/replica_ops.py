"""Checking client requests and turning a write's ops into a log entry.

Pure functions over a read-only view of the replica's state.
"""

from __future__ import annotations

import zlib

from lineagerun.exceptions import BadRequestError, RpcError, ValueTooLargeError, WrongShardError
from lineagerun.rpc import control_store_pb2

CLIENT_ID_MAX_CHARS = 256
KEYS_PER_READ_MAX = 10_000
_ABSENT = object()


def _check_key(key: bytes, settings, what: str) -> RpcError | None:
    if not key:
        return BadRequestError(f"{what}: empty key; keys must be 1..{settings.max_key_bytes} bytes")
    if len(key) > settings.max_key_bytes:
        return ValueTooLargeError(f"{what}: key of {len(key)} bytes is over the limit of "
                                  f"{settings.max_key_bytes} bytes; use a shorter key")
    return None


def _check_value(value: bytes, settings, what: str) -> RpcError | None:
    if len(value) > settings.max_value_bytes:
        return ValueTooLargeError(f"{what}: value of {len(value)} bytes is over the limit of "
                                  f"{settings.max_value_bytes} bytes; store large data in the object store")
    return None


def _check_route(key: bytes, settings, num_shards: int, what: str) -> RpcError | None:
    if num_shards and zlib.crc32(key) % num_shards != settings.shard:
        return WrongShardError(f"{what}: key {key[:64]!r} belongs to shard {zlib.crc32(key) % num_shards} "
                               f"(crc32 % {num_shards}), not shard {settings.shard}; route keys by crc32(key) % "
                               f"num_shards")
    return None


def _op_key(op) -> bytes:
    kind = op.WhichOneof("kind")
    return getattr(op, kind).key if kind else b""


def validate_write(req: control_store_pb2.WriteRequest, settings, num_shards: int = 0) -> RpcError | None:
    if req.shard != settings.shard:
        return WrongShardError(f"write for shard {req.shard} reached replica {settings.replica_id} of shard "
                               f"{settings.shard}; refresh the configuration")
    if not req.ops:
        return BadRequestError("write has no ops; send at least one put, delete or cas")
    if len(req.ops) > settings.ops_per_write_max:
        return BadRequestError(f"write has {len(req.ops)} ops, over the limit of {settings.ops_per_write_max}; "
                               f"split it into several writes")
    if not req.client_id or "\x00" in req.client_id or len(req.client_id) > CLIENT_ID_MAX_CHARS:
        return BadRequestError(f"write needs a client_id of 1..{CLIENT_ID_MAX_CHARS} characters without NUL")
    if req.client_seq == 0:
        return BadRequestError("write needs client_seq > 0 (unique per client_id)")
    for i, op in enumerate(req.ops):
        kind = op.WhichOneof("kind")
        what = f"op {i} ({kind})"
        if kind == "put":
            error = _check_key(op.put.key, settings, what) or _check_value(op.put.value, settings, what)
        elif kind == "delete":
            error = _check_key(op.delete.key, settings, what)
        elif kind == "cas":
            error = (_check_key(op.cas.key, settings, what) or _check_value(op.cas.new_value, settings, what)
                     or _check_value(op.cas.expected, settings, what))
        else:
            error = BadRequestError(f"op {i} has no kind (or one this replica does not know); "
                                    f"use put, delete or cas")
        error = error or _check_route(_op_key(op), settings, num_shards, what)
        if error is not None:
            return error
    return None


def validate_read(req: control_store_pb2.ReadRequest, settings, num_shards: int = 0) -> RpcError | None:
    if req.shard != settings.shard:
        return WrongShardError(f"read for shard {req.shard} reached replica {settings.replica_id} of shard "
                               f"{settings.shard}; refresh the configuration")
    if len(req.keys) > KEYS_PER_READ_MAX:
        return BadRequestError(f"read of {len(req.keys)} keys is over the limit of {KEYS_PER_READ_MAX}; split it")
    for key in req.keys:
        error = _check_key(key, settings, "read") or _check_route(key, settings, num_shards, "read")
        if error is not None:
            return error
    return None


def validate_scan(req: control_store_pb2.ScanRequest, settings) -> RpcError | None:
    if req.shard != settings.shard:
        return WrongShardError(f"scan for shard {req.shard} reached replica {settings.replica_id} of shard "
                               f"{settings.shard}; refresh the configuration")
    if len(req.prefix) > settings.max_key_bytes or len(req.start_after) > settings.max_key_bytes:
        return ValueTooLargeError(f"scan prefix or start_after over the key limit of {settings.max_key_bytes} bytes")
    return None


def evaluate_write(req: control_store_pb2.WriteRequest, seq: int, epoch: int, storage,
                   overlay: dict, acked_below: int) -> control_store_pb2.LogEntry:
    """The log entry for ``req``: ops applied in order against the current
    state (``overlay`` holds this group commit's earlier changes and is
    updated). ``acked_below`` never decreases per client, so a late copy of an
    old request cannot bring forgotten dedup records back into play."""

    def current(key: bytes):
        value = overlay.get(key, _ABSENT)
        return storage.get(key) if value is _ABSENT else value

    mutations = []
    results = []
    for op in req.ops:
        kind = op.WhichOneof("kind")
        if kind == "put":
            overlay[op.put.key] = op.put.value
            mutations.append(control_store_pb2.Mutation(key=op.put.key, value=op.put.value))
            results.append(control_store_pb2.OpResult(ok=True))
        elif kind == "delete":
            overlay[op.delete.key] = None
            mutations.append(control_store_pb2.Mutation(key=op.delete.key, deleted=True))
            results.append(control_store_pb2.OpResult(ok=True))
        else:
            cas = op.cas
            value = current(cas.key)
            present = value is not None
            matches = (not present) if cas.expect_absent else (present and value == cas.expected)
            if matches:
                if cas.delete_on_match:
                    overlay[cas.key] = None
                    mutations.append(control_store_pb2.Mutation(key=cas.key, deleted=True))
                else:
                    overlay[cas.key] = cas.new_value
                    mutations.append(control_store_pb2.Mutation(key=cas.key, value=cas.new_value))
                results.append(control_store_pb2.OpResult(ok=True, present=present))
            else:
                results.append(control_store_pb2.OpResult(ok=False, present=present, current=value or b""))
    return control_store_pb2.LogEntry(seq=seq, epoch=epoch, client_id=req.client_id, client_seq=req.client_seq,
                                      client_acked_below=acked_below, mutations=mutations,
                                      results=results, answer_at_tail=req.answer_at_tail)


def entries_to_append(batch, applied_seq: int, applied_epoch: int, epoch_at) -> tuple[list, bool]:
    """The entries of ``batch`` that extend a log ending at
    ``(applied_seq, applied_epoch)``, and whether that log disagrees with the
    sender's. Entry batches carry the entry before their first one in
    ``snapshot_seq``/``snapshot_epoch``; ``epoch_at(seq)`` is our log's epoch
    of ``seq`` (None if unknown)."""
    entries = batch.entries
    first = entries[0].seq
    prev_seq, prev_epoch = batch.snapshot_seq, batch.snapshot_epoch
    if prev_seq != first - 1:
        return [], False
    if applied_seq < prev_seq:
        return [], False  # a gap: our ack makes the sender rewind
    if applied_seq > entries[-1].seq:
        ours = epoch_at(entries[-1].seq)
        return [], ours is not None and ours != entries[-1].epoch
    theirs = prev_epoch if applied_seq == prev_seq else entries[applied_seq - first].epoch
    if theirs != applied_epoch:
        return [], True
    return list(entries[applied_seq - first + 1:]), False
