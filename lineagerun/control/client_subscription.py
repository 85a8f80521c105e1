"""Prefix subscriptions that follow each shard's tail across failovers.

One thread per shard holds a ``Subscribe`` stream to the tail. When the
stream breaks (tail died, NOT_TAIL, STALE_EPOCH), the thread refreshes the
configuration and subscribes to the new tail from the first seq it has not
seen, so the retained log re-sends whatever committed meanwhile; changes of
seqs already delivered are dropped, so each change is delivered once.

A tail whose retained log no longer reaches back to that seq (it caught up
by snapshot, or the subscriber fell more than the retention behind) refuses
with ``compacted_seq``, as etcd refuses a watch on a compacted revision. The
shard is then *resynced*: the subscriber is told (``on_resync``), gets the
current value of every key under the prefix in that shard (``Change.resync``
set), and the stream resumes after the rescan's seq.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import grpc

from lineagerun.exceptions import RpcError
from lineagerun.rpc import control_store_pb2
from lineagerun.control.client_retry import BACKOFF_INITIAL_S, BACKOFF_MAX_S, TransientError, classify
from lineagerun.control.client_routing import ConfigCache

log = logging.getLogger(__name__)

# Changes buffered for an iterating consumer; when full, the shard threads
# block, the stream's flow control pushes back on the tail, and nothing is
# dropped.
SUBSCRIPTION_QUEUE_MAX = 10_000

# Keys per page of a resync rescan (the replica's own page limit).
RESYNC_PAGE_KEYS = 1_000

# Time to open a stream and get the tail's current seq.
SUBSCRIBE_OPEN_TIMEOUT_S = 5.0

# How often the configuration is checked for a new tail: a tail that is
# paused or cut off never breaks its stream, so the subscription moves away
# from it once the coordinator has replaced it.
TAIL_CHECK_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Change:
    key: bytes
    value: bytes | None     # None when deleted
    deleted: bool
    seq: int
    shard: int
    # From a resync rescan: the key's value as of ``seq``, not a logged
    # change; earlier changes of this key may never have been delivered.
    resync: bool = False


@dataclass(frozen=True)
class Resync:
    """Shard ``shard`` could not replay the changes after
    ``missed_after_seq``: the current state of its keys as of ``seq``
    follows (as ``Change``s with ``resync=True``); changes in between,
    including deletes, may have been missed."""
    shard: int
    missed_after_seq: int
    seq: int


class _Compacted(Exception):
    def __init__(self, compacted_seq: int):
        super().__init__(f"the tail's retained log starts after seq {compacted_seq}")
        self.compacted_seq = compacted_seq


_END = object()


class Subscription:
    """Delivers committed changes under ``prefix`` from every shard, to
    ``callback`` (from the subscription's threads) or, without a callback,
    to whoever iterates over it. ``close()`` stops it."""

    def __init__(self, cache: ConfigCache, prefix: bytes, callback: Callable[[Change], None] | None,
                 *, from_seq: dict[int, int] | None = None, on_resync: Callable[[Resync], None] | None = None):
        self._cache = cache
        self._prefix = prefix
        self._callback = callback
        self._on_resync = on_resync
        self.resyncs = 0
        self._queue: queue.Queue = queue.Queue(maxsize=SUBSCRIPTION_QUEUE_MAX)
        self._stop = threading.Event()
        self._calls: dict[int, tuple[grpc.Future, str]] = {}
        self._lock = threading.Lock()
        self.next_seq: dict[int, int] = dict(from_seq or {})
        self.resubscribes = 0
        self.error: BaseException | None = None
        self._opened = threading.Semaphore(0)
        self._threads = [threading.Thread(target=self._follow, args=(shard,), daemon=True,
                                          name=f"lr-subscribe-{shard}")
                         for shard in range(cache.num_shards())]
        self._threads.append(threading.Thread(target=self._watch_tails, daemon=True, name="lr-subscribe-watch"))
        for thread in self._threads:
            thread.start()
        # Return once every shard's stream is open (or its start seq known),
        # so that a write made after subscribe() returns is always seen.
        deadline_s = time.monotonic() + SUBSCRIBE_OPEN_TIMEOUT_S * 2
        for _ in range(cache.num_shards()):
            if not self._opened.acquire(timeout=max(0.0, deadline_s - time.monotonic())):
                break

    # ---------------------------------------------------------- consumer

    def __iter__(self) -> Iterator[Change]:
        while True:
            item = self._queue.get()
            if item is _END:
                self._queue.put(_END)
                return
            yield item

    def get(self, timeout_s: float | None = None) -> Change | None:
        """The next change, or None after ``timeout_s`` or once closed."""
        try:
            item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if item is _END:
            self._queue.put(_END)
            return None
        return item

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            calls = [call for call, _ in self._calls.values()]
        for call in calls:
            call.cancel()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        try:
            self._queue.put_nowait(_END)
        except queue.Full:
            pass

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------- shard thread

    def _deliver(self, change: Change) -> None:
        if self._callback is not None:
            self._callback(change)
            return
        while not self._stop.is_set():
            try:
                self._queue.put(change, timeout=0.1)
                return
            except queue.Full:
                continue

    def _start_seq(self, shard: int, route) -> int:
        """The first seq to ask for: one past what the tail has committed
        now (a zero-limit scan reports the tail's committed seq)."""
        stub = self._cache.replica(route.tail)
        reply = stub.Scan(control_store_pb2.ScanRequest(shard=shard, min_epoch=route.epoch, prefix=self._prefix,
                                                        limit=1, keys_only=True),
                          timeout=SUBSCRIBE_OPEN_TIMEOUT_S)
        return reply.seq + 1

    def _follow(self, shard: int) -> None:
        backoff_s = BACKOFF_INITIAL_S
        signalled = False
        while not self._stop.is_set():
            version = self._cache.version()
            try:
                route, version = self._cache.route(shard)
                if shard not in self.next_seq:
                    self.next_seq[shard] = self._start_seq(shard, route)
                if not signalled:
                    signalled = True
                    self._signal_ready()
                self._stream(shard, route)
                backoff_s = BACKOFF_INITIAL_S
            except _Compacted as compacted:
                try:
                    self._resync(shard, route, compacted.compacted_seq)
                except (grpc.RpcError, RpcError, TransientError) as err:
                    log.debug("shard %d: resync failed, retrying: %s", shard, err)
                    self._cache.try_refresh(version)
                    time.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
            except (grpc.RpcError, RpcError, TransientError) as err:
                failure = err if isinstance(err, TransientError) else classify(err, what="Subscribe")
                if self._stop.is_set():
                    break
                if not isinstance(failure, TransientError):
                    log.error("subscription to %r on shard %d failed: %s", self._prefix, shard, failure)
                    self.error = failure
                    break
                self.resubscribes += 1
                log.debug("shard %d: resubscribing from %s after %s", shard, self.next_seq.get(shard), failure.cause)
                self._cache.try_refresh(version)
                time.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
        if not signalled:
            self._signal_ready()

    def _resync(self, shard: int, route, compacted_seq: int) -> None:
        """Deliver the current state of the shard's keys under the prefix,
        a page at a time, then let the stream resume after the rescan's
        seq."""
        stub = self._cache.replica(route.tail)
        resync: Resync | None = None
        start_after = b""
        delivered = 0
        while not self._stop.is_set():
            reply = stub.Scan(control_store_pb2.ScanRequest(shard=shard, min_epoch=route.epoch, prefix=self._prefix,
                                                            start_after=start_after, limit=RESYNC_PAGE_KEYS),
                              timeout=SUBSCRIBE_OPEN_TIMEOUT_S)
            if resync is None:
                # Later pages may be read at later seqs; resuming after the
                # first page's seq re-sends whatever changed under them.
                resync = Resync(shard, self.next_seq[shard] - 1, reply.seq)
                log.warning("shard %d: changes after seq %d cannot be replayed (the tail holds none at or below "
                            "%d); resyncing %r as of seq %d", shard, resync.missed_after_seq, compacted_seq,
                            self._prefix, resync.seq)
                self.resyncs += 1
                if self._on_resync is not None:
                    self._on_resync(resync)
            for item in reply.items:
                self._deliver(Change(bytes(item.key), bytes(item.value), False, resync.seq, shard, resync=True))
            delivered += len(reply.items)
            if not reply.more or not reply.items:
                self.next_seq[shard] = resync.seq + 1
                log.info("shard %d: resynced %d keys", shard, delivered)
                return
            start_after = bytes(reply.items[-1].key)

    def _watch_tails(self) -> None:
        while not self._stop.wait(TAIL_CHECK_INTERVAL_S):
            self._cache.try_refresh(None)
            with self._lock:
                calls = dict(self._calls)
            for shard, (call, tail) in calls.items():
                try:
                    route, _ = self._cache.route(shard)
                except TransientError:
                    continue
                if route.tail != tail:
                    call.cancel()  # the shard thread resubscribes at the new tail

    def _signal_ready(self) -> None:
        self._opened.release()

    def _stream(self, shard: int, route) -> None:
        stub = self._cache.replica(route.tail)
        call = stub.Subscribe(control_store_pb2.SubscribeRequest(
            shard=shard, min_epoch=route.epoch, prefix=self._prefix, from_seq=self.next_seq[shard]))
        with self._lock:
            self._calls[shard] = (call, route.tail)
        if self._stop.is_set():
            call.cancel()
        # Changes below the seq this stream was asked to start from were
        # delivered by an earlier stream. ``next_seq`` only sets where the
        # *next* stream starts: a tail may announce its committed watermark
        # before it has replayed the retained log up to it.
        stream_from_seq = self.next_seq[shard]
        try:
            for batch in call:
                if batch.compacted_seq:
                    call.cancel()
                    raise _Compacted(batch.compacted_seq)
                delivered_through = 0
                for change in batch.changes:
                    if change.seq < stream_from_seq:
                        continue  # re-sent after a resubscribe: already delivered
                    self._deliver(Change(bytes(change.key), None if change.deleted else bytes(change.value),
                                         change.deleted, change.seq, shard))
                    delivered_through = max(delivered_through, change.seq)
                # Several changes can share a seq (one entry, many keys); a
                # batch carries whole entries, so everything up to its last
                # change and its committed watermark is done. A batch without
                # changes only announces a watermark, which a tail may send
                # before replaying the entries below it: it moves nothing.
                if not batch.changes:
                    continue
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("shard %d tail %s stream from %d: batch epoch %d committed %d changes %s..%s",
                              shard, route.tail, stream_from_seq, batch.epoch, batch.committed_seq,
                              batch.changes[0].seq if batch.changes else "-",
                              batch.changes[-1].seq if batch.changes else "-")
                self.next_seq[shard] = max(self.next_seq[shard], batch.committed_seq + 1, delivered_through + 1)
        finally:
            with self._lock:
                self._calls.pop(shard, None)
        raise TransientError(RpcError("subscription stream ended"), refresh_config=True)
