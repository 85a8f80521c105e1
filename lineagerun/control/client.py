"""``ControlStoreClient``: the one way lineagerun talks to the control store.

Routing, retries and the configuration cache live in ``client_routing`` and
``client_retry``; concurrent puts are coalesced by ``client_group_commit``;
subscriptions follow tails in ``client_subscription``. This module validates
input at the call site (typed errors before anything is sent) and turns the
wire messages into plain Python values.

Every write request carries ``(client_id, client_seq)``; a retry reuses them,
so a write is applied once however many times it is sent.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence, Union

from lineagerun.exceptions import InvalidArgumentError, ValueTooLargeError
from lineagerun.rpc import control_store_pb2
from lineagerun.control.client_group_commit import GroupCommitter
from lineagerun.control.client_retry import TransientError, call_once, retry_until
from lineagerun.control.client_routing import ConfigCache, shard_of
from lineagerun.control.client_subscription import Change, Resync, Subscription

__all__ = [
    "ControlStoreClient", "PutOp", "DeleteOp", "CasOp", "OpResult", "Change", "Resync", "Subscription",
    "KEY_SIZE_MAX_BYTES", "VALUE_SIZE_MAX_BYTES", "OPS_PER_WRITE_MAX", "SCAN_PAGE_KEYS",
]

# Limits of docs/control-store.md ("Limits"); checked here so that bad input
# fails at the call site, before a request is sent.
KEY_SIZE_MAX_BYTES = 4 * 1024
VALUE_SIZE_MAX_BYTES = 16 * 1024 * 1024
OPS_PER_WRITE_MAX = 10_000
SCAN_PAGE_KEYS = 1_000
# One request stays under the transport's 64 MiB message limit with room
# for framing.
WRITE_REQUEST_BYTES_MAX = 60 * 1024 * 1024

# One attempt of an RPC waits at most this long: long enough for a chain to
# reconfigure under it (failure timeout 1 s), short enough that a paused
# (SIGSTOPped) replica costs a bounded stall before the client retries
# elsewhere.
ATTEMPT_TIMEOUT_S = 2.0

# Threads fanning one call out to several shards.
SHARD_FANOUT_THREADS_MAX = 8

Key = Union[bytes, str]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PutOp:
    key: Key
    value: bytes


@dataclass(frozen=True)
class DeleteOp:
    key: Key


@dataclass(frozen=True)
class CasOp:
    """Set ``key`` to ``new_value`` if its value is ``expected``. ``expected``
    None means "only if absent"; ``new_value`` None means "delete on match"."""
    key: Key
    expected: bytes | None
    new_value: bytes | None


@dataclass(frozen=True)
class OpResult:
    ok: bool                   # False only for a CAS that did not match
    present: bool = False      # CAS: the key existed before
    current: bytes | None = None  # CAS that did not match: the value found

    def __bool__(self) -> bool:
        return self.ok


Op = Union[PutOp, DeleteOp, CasOp, tuple]


# ------------------------------------------------------------- validation


def _key(key: Key, what: str = "key") -> bytes:
    if isinstance(key, str):
        key = key.encode("utf-8")
    elif isinstance(key, (bytearray, memoryview)):
        key = bytes(key)
    elif not isinstance(key, bytes):
        raise InvalidArgumentError(f"{what} must be bytes or str, not {type(key).__name__}")
    if not key:
        raise InvalidArgumentError(f"{what} must not be empty")
    if len(key) > KEY_SIZE_MAX_BYTES:
        raise ValueTooLargeError(
            f"{what} is {len(key)} bytes; keys are limited to {KEY_SIZE_MAX_BYTES} bytes (keys are ids and "
            f"prefixes: store large data in the value or the object store)")
    return key


def _value(value: object, what: str = "value") -> bytes:
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise InvalidArgumentError(
            f"{what} must be bytes, not {type(value).__name__}; encode it first (e.g. protobuf or .encode())")
    if len(value) > VALUE_SIZE_MAX_BYTES:
        raise ValueTooLargeError(
            f"{what} is {len(value)} bytes; values are limited to {VALUE_SIZE_MAX_BYTES} bytes (control records only: "
            f"put large objects in the object store)")
    return value


def _prefix(prefix: Key) -> bytes:
    if isinstance(prefix, str):
        prefix = prefix.encode("utf-8")
    if not isinstance(prefix, (bytes, bytearray)):
        raise InvalidArgumentError(f"prefix must be bytes or str, not {type(prefix).__name__}")
    prefix = bytes(prefix)
    if len(prefix) > KEY_SIZE_MAX_BYTES:
        raise ValueTooLargeError(f"prefix is {len(prefix)} bytes; keys are limited to {KEY_SIZE_MAX_BYTES} bytes")
    return prefix


def _put_to_wire(key: Key, value: bytes) -> tuple[bytes, control_store_pb2.Op, int]:
    # The bulk-write hot path: the full checks run only for what is not
    # already plain, in-limit bytes.
    if type(key) is str:
        key = key.encode("utf-8")
    if type(key) is not bytes or not key or len(key) > KEY_SIZE_MAX_BYTES:
        key = _key(key)
    if type(value) is not bytes or len(value) > VALUE_SIZE_MAX_BYTES:
        value = _value(value)
    return key, control_store_pb2.Op(put=control_store_pb2.Put(key=key, value=value)), len(key) + len(value)


def _to_wire(op: Op) -> tuple[bytes, control_store_pb2.Op, int]:
    """(routing key, wire op, payload bytes) for one user op."""
    if type(op) is tuple and len(op) == 3 and op[0] == "put":
        return _put_to_wire(op[1], op[2])
    if isinstance(op, tuple):
        op = _op_from_tuple(op)
    if isinstance(op, PutOp):
        return _put_to_wire(op.key, op.value)
    if isinstance(op, DeleteOp):
        key = _key(op.key)
        return key, control_store_pb2.Op(delete=control_store_pb2.Delete(key=key)), len(key)
    if isinstance(op, CasOp):
        key = _key(op.key)
        cas = control_store_pb2.CompareAndSet(key=key)
        if op.expected is None:
            cas.expect_absent = True
        else:
            cas.expected = _value(op.expected, "expected value")
        if op.new_value is None:
            cas.delete_on_match = True
        else:
            cas.new_value = _value(op.new_value, "new value")
        return key, control_store_pb2.Op(cas=cas), len(key) + len(cas.expected) + len(cas.new_value)
    raise InvalidArgumentError(f"not a write op: {op!r}; use PutOp, DeleteOp, CasOp or ('put', k, v), "
                               f"('delete', k), ('cas', k, expected, new)")


def _op_from_tuple(op: tuple) -> PutOp | DeleteOp | CasOp:
    kinds = {"put": (PutOp, 3), "delete": (DeleteOp, 2), "cas": (CasOp, 4)}
    if not op or op[0] not in kinds or len(op) != kinds[op[0]][1]:
        raise InvalidArgumentError(f"not a write op: {op!r}; use ('put', k, v), ('delete', k) or "
                                   f"('cas', k, expected, new)")
    return kinds[op[0]][0](*op[1:])


def _result(wire: control_store_pb2.OpResult) -> OpResult:
    return OpResult(wire.ok, wire.present, bytes(wire.current) if not wire.ok and wire.present else None)


# ----------------------------------------------------------------- client


class ControlStoreClient:
    """A thread-safe client of one control-store cluster.

    ``address`` is the coordinator's ``host:port``; ``token`` the cluster
    token. Every call retries failovers until ``timeout_s`` has passed, then
    raises ``ControlStoreUnavailableError``. ``address_map`` maps a
    replica's advertised address to the one to dial (e.g. a proxy).
    """

    def __init__(self, address: str, token: str | None, *, timeout_s: float = 30.0,
                 address_map: Callable[[str], str] | None = None):
        if timeout_s <= 0:
            raise InvalidArgumentError(f"timeout_s must be positive, got {timeout_s}")
        if address_map is not None and not callable(address_map):
            raise InvalidArgumentError(f"address_map must be a callable str -> str, not {type(address_map).__name__}")
        self.timeout_s = timeout_s
        self.client_id = uuid.uuid4().hex
        self._cache = ConfigCache(address, token, address_map=address_map)
        self._seq_lock = threading.Lock()
        self._next_client_seq = 1
        self._in_flight: set[int] = set()
        self._group = GroupCommitter(self._write_shard)
        self._fanout = ThreadPoolExecutor(max_workers=SHARD_FANOUT_THREADS_MAX, thread_name_prefix="lr-cs-fanout")
        self._subscriptions: list[Subscription] = []
        self._closed = False
        self.retries = 0

    # ------------------------------------------------------------ writes

    def put(self, key: Key, value: bytes) -> None:
        """Store ``value`` under ``key``; returns once the write is on every
        replica of the key's chain. Concurrent puts share requests."""
        key, wire, size_bytes = _put_to_wire(key, value)
        self._check_open()
        self._group.put(self._shard(key), wire, size_bytes)

    def delete(self, key: Key) -> None:
        self.write_batch([DeleteOp(key)])

    def cas(self, key: Key, expected: bytes | None, new_value: bytes | None) -> OpResult:
        """Compare-and-set; ``expected=None``: only if absent;
        ``new_value=None``: delete on match. ``result.ok`` says whether it
        applied; if not, ``result.current`` is the value found."""
        return self.write_batch([CasOp(key, expected, new_value)])[0]

    def write_batch(self, ops: Sequence[Op]) -> list[OpResult]:
        """Apply ``ops`` in order. Ops of one shard are applied atomically
        (one log entry); a batch spanning shards is atomic per shard only.
        Returns one ``OpResult`` per op, in order."""
        wire_ops, by_shard = self._prepare_write(ops)
        results: list[OpResult | None] = [None] * len(wire_ops)

        def run(shard: int) -> None:
            indexes = by_shard[shard]
            for index, result in zip(indexes, self._write_shard(shard, [wire_ops[i][1] for i in indexes])):
                results[index] = _result(result)

        self._fan_out(run, list(by_shard))
        return results

    def _prepare_write(self, ops: Sequence[Op]) -> tuple[list, dict[int, list[int]]]:
        """The ops on the wire and their indexes per shard; typed errors for
        bad input, before anything is sent."""
        self._check_open()
        wire_ops = [_to_wire(op) for op in ops]
        by_shard: dict[int, list[int]] = {}
        num_shards = self.num_shards()
        for index, (key, _, _) in enumerate(wire_ops):
            by_shard.setdefault(shard_of(key, num_shards), []).append(index)
        for shard, indexes in by_shard.items():
            if len(indexes) > OPS_PER_WRITE_MAX:
                raise InvalidArgumentError(
                    f"{len(indexes)} ops for shard {shard} in one batch; at most {OPS_PER_WRITE_MAX} ops are applied "
                    f"atomically: split the batch")
            size_bytes = sum(wire_ops[i][2] for i in indexes)
            if size_bytes > WRITE_REQUEST_BYTES_MAX:
                raise ValueTooLargeError(
                    f"batch carries {size_bytes} bytes for shard {shard}; one request is limited to "
                    f"{WRITE_REQUEST_BYTES_MAX} bytes: split the batch")
        return wire_ops, by_shard

    def _write_shard(self, shard: int, ops: list[control_store_pb2.Op],
                     begun: tuple[int, int] | None = None) -> list[control_store_pb2.OpResult]:
        """``begun``: a (client_seq, acked_below) from ``_begin_request``
        that an earlier attempt (``client_aio``) was sent with, so a retry is
        deduplicated against it; its caller ends it. Without it, this call
        begins and ends its own."""
        own = begun is None
        client_seq, acked_below = self._begin_request() if own else begun
        try:
            def attempt(remaining_s: float) -> list[control_store_pb2.OpResult]:
                route, version = self._route(shard)
                request = control_store_pb2.WriteRequest(
                    shard=shard, epoch=route.epoch, client_id=self.client_id, client_seq=client_seq,
                    client_acked_below=acked_below, ops=ops)
                stub = self._cache.replica(route.head)
                reply = self._call(lambda: stub.Write(request, timeout=min(remaining_s, ATTEMPT_TIMEOUT_S)),
                                   "Write", version)
                if len(reply.results) != len(ops):
                    raise TransientError(RuntimeError(
                        f"head {route.head} answered {len(reply.results)} results for {len(ops)} ops"),
                        refresh_config=True)
                return list(reply.results)

            return self._retry(attempt, f"write to shard {shard}")
        finally:
            if own:
                self._end_request(client_seq)

    def _begin_request(self) -> tuple[int, int]:
        with self._seq_lock:
            client_seq = self._next_client_seq
            self._next_client_seq += 1
            self._in_flight.add(client_seq)
            # Requests below the oldest one still running have been
            # answered (or given up on), so the store may drop their dedup
            # records.
            return client_seq, min(self._in_flight)

    def _end_request(self, client_seq: int) -> None:
        with self._seq_lock:
            self._in_flight.discard(client_seq)

    # ------------------------------------------------------------- reads

    def get(self, key: Key) -> bytes | None:
        """The value of ``key``, or None when absent. Served by the tail."""
        return self.get_many([key])[0]

    def get_many(self, keys: Iterable[Key]) -> list[bytes | None]:
        self._check_open()
        keys = [_key(k) for k in keys]
        by_shard: dict[int, list[int]] = {}
        num_shards = self.num_shards()
        for index, key in enumerate(keys):
            by_shard.setdefault(shard_of(key, num_shards), []).append(index)
        values: list[bytes | None] = [None] * len(keys)

        def run(shard: int) -> None:
            indexes = by_shard[shard]
            for start in range(0, len(indexes), SCAN_PAGE_KEYS):
                page = indexes[start:start + SCAN_PAGE_KEYS]
                reply = self._read_shard(shard, [keys[i] for i in page])
                for index, maybe in zip(page, reply.values):
                    values[index] = bytes(maybe.value) if maybe.present else None

        self._fan_out(run, list(by_shard))
        return values

    def _read_shard(self, shard: int, keys: list[bytes]) -> control_store_pb2.ReadReply:
        def attempt(remaining_s: float) -> control_store_pb2.ReadReply:
            route, version = self._route(shard)
            stub = self._cache.replica(route.tail)
            request = control_store_pb2.ReadRequest(shard=shard, min_epoch=route.epoch, keys=keys)
            reply = self._call(lambda: stub.Read(request, timeout=min(remaining_s, ATTEMPT_TIMEOUT_S)),
                               "Read", version)
            if len(reply.values) != len(keys):
                raise TransientError(RuntimeError(
                    f"tail {route.tail} answered {len(reply.values)} values for {len(keys)} keys"),
                    refresh_config=True)
            return reply

        return self._retry(attempt, f"read from shard {shard}")

    def scan_prefix(self, prefix: Key, *, keys_only: bool = False,
                    page_keys: int = SCAN_PAGE_KEYS) -> Iterator[tuple[bytes, bytes | None]]:
        """Every (key, value) under ``prefix`` in key order, across shards,
        fetched a page at a time (values are None when ``keys_only``). Each
        page is a consistent read of its shard; the whole scan is not a
        snapshot."""
        self._check_open()
        prefix = _prefix(prefix)
        if not 0 < page_keys <= SCAN_PAGE_KEYS:
            raise InvalidArgumentError(f"page_keys must be in 1..{SCAN_PAGE_KEYS}, got {page_keys}")
        shards = [self._scan_shard(s, prefix, keys_only, page_keys) for s in range(self._cache.num_shards())]
        yield from heapq.merge(*shards, key=lambda item: item[0])

    def _scan_shard(self, shard: int, prefix: bytes, keys_only: bool,
                    page_keys: int) -> Iterator[tuple[bytes, bytes | None]]:
        start_after = b""
        while True:
            def attempt(remaining_s: float) -> control_store_pb2.ScanReply:
                route, version = self._route(shard)
                stub = self._cache.replica(route.tail)
                request = control_store_pb2.ScanRequest(shard=shard, min_epoch=route.epoch, prefix=prefix,
                                                        start_after=start_after, limit=page_keys,
                                                        keys_only=keys_only)
                return self._call(lambda: stub.Scan(request, timeout=min(remaining_s, ATTEMPT_TIMEOUT_S)),
                                  "Scan", version)

            reply = self._retry(attempt, f"scan of shard {shard}")
            for item in reply.items:
                yield bytes(item.key), None if keys_only else bytes(item.value)
            if not reply.more or not reply.items:
                return
            start_after = bytes(reply.items[-1].key)

    # ----------------------------------------------------- subscriptions

    def subscribe(self, prefix: Key, callback: Callable[[Change], None] | None = None, *,
                  on_resync: Callable[[Resync], None] | None = None) -> Subscription:
        """Committed changes to keys under ``prefix``, from every shard,
        starting now. With ``callback`` each ``Change`` is passed to it
        (from a subscription thread); without, iterate over the returned
        ``Subscription`` or call its ``get(timeout_s)``. Close it when done
        (``close()`` on the client closes it too).

        When a shard can no longer replay what the subscriber missed (a
        failover to a tail whose retained log starts later), the shard is
        *resynced*: ``on_resync(Resync(...))`` is called, then every key
        under the prefix in that shard is delivered with its current value
        as a ``Change`` with ``resync=True``; changes in between (including
        deletes) may have been missed. See docs/control-store.md."""
        self._check_open()
        prefix = _prefix(prefix)
        if on_resync is not None and not callable(on_resync):
            raise InvalidArgumentError(f"on_resync must be callable, not {type(on_resync).__name__}")
        subscription = self._retry(
            lambda _remaining_s: Subscription(self._cache, prefix, callback, on_resync=on_resync),
            f"subscribe to {prefix!r}")
        self._subscriptions.append(subscription)
        return subscription

    # ---------------------------------------------------------- plumbing

    @property
    def address_map(self) -> Callable[[str], str] | None:
        """Maps a replica's advertised address to the address to dial (a
        chaos proxy, a tunnel); None dials advertised addresses. Setting it
        re-dials every replica through the new map."""
        return self._cache.address_map

    @address_map.setter
    def address_map(self, address_map: Callable[[str], str] | None) -> None:
        if address_map is not None and not callable(address_map):
            raise InvalidArgumentError(f"address_map must be a callable str -> str, not {type(address_map).__name__}")
        self._cache.address_map = address_map

    def config(self):
        """The cached ClusterConfig (fetched on first use)."""
        return self._retry(lambda _remaining_s: self._cache.config(), "GetConfig")

    def num_shards(self) -> int:
        try:  # the cached config, without the retry machinery, when there is one
            return self._cache.num_shards()
        except TransientError:
            return self._retry(lambda _remaining_s: self._cache.num_shards(), "GetConfig")

    def shard_of(self, key: Key) -> int:
        return shard_of(_key(key), self.num_shards())

    def _shard(self, key: bytes) -> int:
        return shard_of(key, self.num_shards())

    def _route(self, shard: int):
        return self._cache.route(shard)

    def _call(self, fn, what: str, version: int):
        try:
            return call_once(fn, what=what)
        except TransientError as err:
            err.seen_version = version
            raise

    def _retry(self, attempt, what: str):
        deadline_s = time.monotonic() + self.timeout_s

        def on_transient(err: TransientError) -> None:
            self.retries += 1
            log.debug("%s: retrying after %s: %s", what, type(err.cause).__name__, err.cause)
            if err.refresh_config:
                self._cache.try_refresh(getattr(err, "seen_version", None))

        # The first attempt runs outside the retry machinery, which costs
        # more than a fast read; the (refreshed) second one follows at once.
        try:
            return attempt(self.timeout_s)
        except TransientError as err:
            on_transient(err)
        return retry_until(deadline_s, attempt, what=what, on_transient=on_transient)

    def _fan_out(self, run: Callable[[int], None], shards: list[int]) -> None:
        if len(shards) <= 1:
            for shard in shards:
                run(shard)
            return
        futures = [self._fanout.submit(run, shard) for shard in shards]
        for future in futures:
            future.result()

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgumentError("this ControlStoreClient is closed; create a new one")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in self._subscriptions:
            subscription.close()
        self._fanout.shutdown(wait=False)
        self._cache.close()

    def __enter__(self) -> "ControlStoreClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def stats(self) -> dict[str, int]:
        return {"retries": self.retries, "config_refreshes": self._cache.refreshes,
                "config_refreshes_from_replicas": self._cache.refreshes_from_replicas,
                "group_requests": self._group.requests_sent, "group_ops": self._group.ops_sent}
