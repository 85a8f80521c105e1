"""Batched control-store writes of the node manager.

Two lanes. A write is sent from the event loop itself
(``client_aio.AioWriter``: no thread hand-off on a task's critical path),
falling back to the synchronous client's retries on a thread, so the loop
never blocks on the control store:

- ``write_now(ops)``: writes a caller waits for (task specs before they are
  scheduled, actor call records, name claims). What is asked for during one
  event-loop turn goes as ONE ``write_batch``, started at the end of that
  turn; up to ``NOW_IN_FLIGHT_MAX`` batches are in flight at once (a spec
  never waits for an earlier batch's round trip before it is sent), and
  their futures complete in the order the writes were asked for (actor
  calls are queued in that order).
- ``write_later(key, value)``: records nobody waits for (attempts, objects,
  actor states, heartbeats). A later write of the same key replaces a pending
  one. They ride the next waited-for batch (appended after its ops, so the
  chain carries one request instead of two and a spec is never queued behind
  them); what no waited-for batch picks up within ``LATER_DELAY_S`` is flushed
  on its own. Best effort: a failure is logged and those records dropped
  (they are not needed for replay, the specs are).

With ``LINEAGERUN_COMMIT_WATCH=1`` a waited-for batch of plain puts of specs
and actor call records is answered as soon as the chain's *tail* says it
committed them (``control/client_commit_watch.py``: one hop before the
head's answer, which still comes and still answers any batch the watch
missed).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lineagerun.control.client import ControlStoreClient, DeleteOp, OpResult, PutOp
from lineagerun.control.client_aio import AioWriter
from lineagerun.control.client_commit_watch import CommitWatch, Expectation
from lineagerun.core.keys import CALL_PREFIX, TASK_PREFIX
from lineagerun.exceptions import ControlStoreUnavailableError

log = logging.getLogger(__name__)

# Ops of one batch: below the control store's 10,000 ops per shard request,
# so a batch never needs splitting by the client.
BATCH_OPS_MAX = 4_000
# Bytes of one batch (keys and values): well below the control store's
# 60 MiB per request, whatever the specs carry inline.
BATCH_BYTES_MAX = 16 * 1024 * 1024
# Waited-for batches in flight at once. More overlap shortens a spec's wait
# under load; beyond a few, batches only compete for the same chain.
NOW_IN_FLIGHT_MAX = 3
# Best-effort records added to one waited-for batch at most: a few hundred
# small records cost the chain well under a millisecond.
LATER_RIDE_OPS_MAX = 500
# How long best-effort records wait for a waited-for batch to ride before
# they are flushed on their own (in batches of LATER_BATCH_OPS_MAX).
LATER_DELAY_S = 0.02
LATER_BATCH_OPS_MAX = 500
# Pending best-effort records; beyond it new ones are dropped (and counted)
# rather than growing memory without bound while the control store is down.
LATER_PENDING_MAX = 200_000
# Keys whose committed puts the tail tells us about (specs, actor call records).
WATCHED_PREFIXES = (TASK_PREFIX, CALL_PREFIX)
# A batch with more waited-for puts than this waits for the head's answer.
WATCHED_PUTS_MAX = 1_000
TAIL_LEADS_KEPT = 5_000


@dataclass(eq=False)
class _Batch:
    waiters: list[tuple[int, asyncio.Future]]  # (ops of that write_now, its future)
    riders: list[bytes]  # keys of the best-effort ops at the end of the batch
    done: bool = False
    results: list = field(default_factory=list)
    error: BaseException | None = None
    confirmed: bool = False  # the tail committed every waited-for op (all plain puts)
    confirmed_s: float = 0.0  # loop time of the tail's notice
    expectation: Expectation | None = None


class LineageWriter:
    def __init__(self, client: ControlStoreClient):
        self.client = client
        self._executor = ThreadPoolExecutor(max_workers=NOW_IN_FLIGHT_MAX + 1, thread_name_prefix="lr-node-writer")
        # Tests hand in stand-ins for the client: those are called on a thread.
        self._aio = AioWriter(client, self._executor) if isinstance(client, ControlStoreClient) else None
        # Off unless LINEAGERUN_COMMIT_WATCH=1: on this 2-CPU machine under
        # load the notices cost more (the tail's extra stream writes, a second
        # wake-up of the loop per batch) than the hop they save (docs/runtime.md).
        watch = self._aio is not None and os.environ.get("LINEAGERUN_COMMIT_WATCH", "0") == "1"
        self._watch = CommitWatch(client, WATCHED_PREFIXES) if watch else None
        self._now: deque[tuple[list, asyncio.Future]] = deque()
        self._now_scheduled = False
        self._in_flight: deque[_Batch] = deque()
        self._later: dict[bytes, bytes | None] = {}
        self._later_timer: asyncio.TimerHandle | None = None
        self._later_busy = False
        # Keys of best-effort records in a request not answered yet: a newer
        # value of such a key waits for it, so two values of one key are never
        # in flight at once (they could be applied in either order).
        self._later_in_flight: dict[bytes, int] = {}
        self.batches_written = 0
        self.later_dropped = 0
        self.later_ridden = 0  # best-effort records that rode a waited-for batch
        # How much sooner the tail's notice came than the head's answer, per
        # batch it answered (seconds; the last few thousand, for measurements).
        self.tail_leads_s: deque[float] = deque(maxlen=TAIL_LEADS_KEPT)

    # ----------------------------------------------------------- waited for

    def write_now(self, ops: list) -> asyncio.Future:
        """A future of the ops' ``OpResult``s, in order (or their error)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._now.append((ops, future))
        if not self._now_scheduled:
            self._now_scheduled = True
            loop.call_soon(self._start_now)
        return future

    def _start_now(self) -> None:
        self._now_scheduled = False
        while self._now and len(self._in_flight) < NOW_IN_FLIGHT_MAX:
            waiters, ops, size_bytes = [], [], 0
            while self._now and (not ops or (len(ops) + len(self._now[0][0]) <= BATCH_OPS_MAX
                                             and size_bytes + _size_of(self._now[0][0]) <= BATCH_BYTES_MAX)):
                item_ops, future = self._now.popleft()
                waiters.append((len(item_ops), future))
                ops.extend(item_ops)
                size_bytes += _size_of(item_ops)
            rider_keys, riders = self._take_later(min(LATER_RIDE_OPS_MAX, BATCH_OPS_MAX - len(ops)))
            self.later_ridden += len(riders)
            batch = _Batch(waiters, rider_keys)
            self._in_flight.append(batch)
            self._watch_commit(batch, ops)
            done = self._send(ops + riders)
            done.add_done_callback(lambda f, batch=batch: self._now_done(batch, f))

    def _watch_commit(self, batch: _Batch, ops: list) -> None:
        if self._watch is None or len(ops) > WATCHED_PUTS_MAX:
            return
        puts = []
        for op in ops:
            if type(op) is not PutOp or not isinstance(op.key, bytes):
                return  # a CAS or delete has a result only the head gives
            puts.append((op.key, op.value))
        batch.expectation = self._watch.expect(puts, lambda: self._confirmed(batch))

    def _confirmed(self, batch: _Batch) -> None:
        if not batch.done:
            batch.confirmed = True
            batch.confirmed_s = asyncio.get_running_loop().time()
            batch.results = [OpResult(True)] * sum(count for count, _ in batch.waiters)
            self._complete_in_order()

    def _send(self, ops: list) -> asyncio.Future:
        if self._aio is not None:
            return asyncio.get_running_loop().create_task(self._aio.write_batch(ops))
        return asyncio.get_running_loop().run_in_executor(self._executor, self.client.write_batch, ops)

    def _now_done(self, batch: _Batch, done: asyncio.Future) -> None:
        batch.done = True
        if batch.confirmed:
            self.tail_leads_s.append(asyncio.get_running_loop().time() - batch.confirmed_s)
        if batch.expectation is not None:
            self._watch.forget(batch.expectation)
        if done.cancelled():  # the loop is shutting down
            batch.error = ControlStoreUnavailableError("the write was cancelled: the node manager is stopping")
        else:
            batch.error = done.exception()
        self._later_landed(batch.riders)
        if batch.error is None:
            batch.results = done.result()
            self.batches_written += 1
        elif batch.riders:
            log.warning("dropped %d lineage records the control store did not take: %s",
                        len(batch.riders), batch.error)
        if batch.confirmed:
            batch.error = None  # committed on the whole chain: a lost answer changes nothing
        self._complete_in_order()
        while self._in_flight and self._in_flight[0].done:
            self._in_flight.popleft()
        if self._now:
            self._start_now()
        self._arm_later()

    def _complete_in_order(self) -> None:
        """Answer the waiters of answered or tail-confirmed batches, in the
        order asked for, whatever order the replies came in."""
        for batch in self._in_flight:
            if not (batch.done or batch.confirmed):
                return
            start = 0
            for count, future in batch.waiters:
                if not future.done():
                    if batch.error is not None:
                        future.set_exception(batch.error)
                    else:
                        future.set_result(batch.results[start:start + count])
                start += count

    # ------------------------------------------------------- best effort

    def write_later(self, key: bytes, value: bytes | None) -> None:
        """Put ``value`` under ``key`` soon (None: delete)."""
        if key not in self._later and len(self._later) >= LATER_PENDING_MAX:
            self.later_dropped += 1
            return
        self._later[key] = value
        self._arm_later()

    def _arm_later(self) -> None:
        if self._later and self._later_timer is None and not self._later_busy:
            self._later_timer = asyncio.get_running_loop().call_later(LATER_DELAY_S, self._flush_later)

    def _take_later(self, limit: int) -> tuple[list[bytes], list]:
        """Up to ``limit`` pending records whose key has no value in flight."""
        if not self._later or limit <= 0:
            return [], []
        in_flight = self._later_in_flight
        keys = list(itertools.islice((k for k in self._later if k not in in_flight), limit))
        ops = []
        for key in keys:
            value = self._later.pop(key)
            ops.append(PutOp(key, value) if value is not None else DeleteOp(key))
            in_flight[key] = in_flight.get(key, 0) + 1
        return keys, ops

    def _later_landed(self, keys: list[bytes]) -> None:
        in_flight = self._later_in_flight
        for key in keys:
            count = in_flight.pop(key, 1) - 1
            if count > 0:
                in_flight[key] = count

    def _flush_later(self) -> None:
        self._later_timer = None
        if self._later and not self._later_busy:
            self._later_busy = True
            asyncio.get_running_loop().create_task(self._run_later())

    async def _run_later(self) -> None:
        try:
            while self._later:
                keys, ops = self._take_later(LATER_BATCH_OPS_MAX)
                if not ops:
                    break  # every pending key has a value in flight; its landing re-arms the timer
                try:
                    await self._send(ops)
                    self.batches_written += 1
                except Exception as exc:  # noqa: BLE001 - best effort by design
                    log.warning("dropped %d lineage records the control store did not take: %s", len(ops), exc)
                finally:
                    self._later_landed(keys)
        finally:
            self._later_busy = False
            self._arm_later()

    async def flush(self, timeout_s: float) -> None:
        """Wait (bounded) until pending writes are out; for shutdown and tests."""
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + timeout_s
        while (self._now or self._in_flight or self._later_busy or self._later) and loop.time() < deadline_s:
            if self._later and not self._later_busy:
                if self._later_timer is not None:
                    self._later_timer.cancel()
                self._flush_later()
            await asyncio.sleep(0.01)

    def close(self) -> None:
        if self.tail_leads_s:
            leads = sorted(self.tail_leads_s)
            log.info("lineage writer: %d batches written, the last %d answered by the tail %.3f ms (median) "
                     "before the head", self.batches_written, len(leads), leads[len(leads) // 2] * 1000)
        if self._later_timer is not None:
            self._later_timer.cancel()
            self._later_timer = None
        if self._aio is not None:
            try:
                asyncio.get_running_loop().create_task(self._aio.close())
                if self._watch is not None:
                    asyncio.get_running_loop().create_task(self._watch.close())
            except RuntimeError:
                pass  # no loop: the process is ending, its channels with it
        self._executor.shutdown(wait=False, cancel_futures=True)


def _size_of(ops: list) -> int:
    size = 0
    for op in ops:
        size += len(op.key) + len(getattr(op, "value", None) or b"") + len(getattr(op, "new_value", None) or b"")
    return size
