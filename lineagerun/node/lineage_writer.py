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
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lineagerun.control.client import ControlStoreClient, DeleteOp, PutOp
from lineagerun.control.client_aio import AioWriter
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


@dataclass(eq=False)
class _Batch:
    waiters: list[tuple[int, asyncio.Future]]  # (ops of that write_now, its future)
    riders: list[bytes]  # keys of the best-effort ops at the end of the batch
    done: bool = False
    results: list = field(default_factory=list)
    error: BaseException | None = None


class LineageWriter:
    def __init__(self, client: ControlStoreClient):
        self.client = client
        self._executor = ThreadPoolExecutor(max_workers=NOW_IN_FLIGHT_MAX + 1, thread_name_prefix="lr-node-writer")
        # Tests hand in stand-ins for the client: those are called on a thread.
        self._aio = AioWriter(client, self._executor) if isinstance(client, ControlStoreClient) else None
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
            done = self._send(ops + riders)
            done.add_done_callback(lambda f, batch=batch: self._now_done(batch, f))

    def _send(self, ops: list) -> asyncio.Future:
        if self._aio is not None:
            return asyncio.get_running_loop().create_task(self._aio.write_batch(ops))
        return asyncio.get_running_loop().run_in_executor(self._executor, self.client.write_batch, ops)

    def _now_done(self, batch: _Batch, done: asyncio.Future) -> None:
        batch.done = True
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
        # Complete in the order asked for, whatever order the replies came in.
        while self._in_flight and self._in_flight[0].done:
            finished = self._in_flight.popleft()
            start = 0
            for count, future in finished.waiters:
                if not future.done():
                    if finished.error is not None:
                        future.set_exception(finished.error)
                    else:
                        future.set_result(finished.results[start:start + count])
                start += count
        if self._now:
            self._start_now()
        self._arm_later()

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
        if self._later_timer is not None:
            self._later_timer.cancel()
            self._later_timer = None
        if self._aio is not None:
            try:
                asyncio.get_running_loop().create_task(self._aio.close())
            except RuntimeError:
                pass  # no loop: the process is ending, its channels with it
        self._executor.shutdown(wait=False, cancel_futures=True)


def _size_of(ops: list) -> int:
    size = 0
    for op in ops:
        size += len(op.key) + len(getattr(op, "value", None) or b"") + len(getattr(op, "new_value", None) or b"")
    return size
