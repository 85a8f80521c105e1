"""Batched control-store writes of the node manager.

Two lanes, both carried out on a thread (``ControlStoreClient`` is
synchronous) so the event loop never blocks on the control store:

- ``write_now(ops)``: writes a caller waits for (task specs before they are
  scheduled, actor call records, name claims). Everything asked for during one
  event-loop turn goes as ONE ``write_batch``; one batch is in flight at a
  time, so under load a batch carries what arrived during the previous round
  trip, and batches complete in the order they were asked for.
- ``write_later(key, value)``: records nobody waits for (attempts, objects,
  actor states, heartbeats). A later write of the same key replaces a pending
  one; they are flushed in batches, best effort (a failure is logged and the
  batch dropped: these records are not needed for replay, the specs are).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from concurrent.futures import ThreadPoolExecutor

from lineagerun.control.client import ControlStoreClient, DeleteOp, PutOp

log = logging.getLogger(__name__)

# Ops of one batch: below the control store's 10,000 ops per shard request,
# so a batch never needs splitting by the client.
BATCH_OPS_MAX = 4_000
# Best-effort batches are kept small and yield to waited-for writes: a large
# batch of attempt/object records occupies the control store's chain for tens
# of milliseconds, and a task spec written behind it waits that long.
LATER_BATCH_OPS_MAX = 500
LATER_YIELD_S = 0.002
# Pending best-effort records; beyond it new ones are dropped (and counted)
# rather than growing memory without bound while the control store is down.
LATER_PENDING_MAX = 200_000


class LineageWriter:
    def __init__(self, client: ControlStoreClient):
        self.client = client
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lr-node-writer")
        self._now: list[tuple[list, asyncio.Future]] = []
        self._now_busy = False
        self._later: dict[bytes, bytes | None] = {}
        self._later_busy = False
        self.batches_written = 0
        self.later_dropped = 0
        self._tasks: set[asyncio.Task] = set()

    # ----------------------------------------------------------- waited for

    def write_now(self, ops: list) -> asyncio.Future:
        """A future of the ops' ``OpResult``s, in order (or their error)."""
        future = asyncio.get_running_loop().create_future()
        self._now.append((ops, future))
        if not self._now_busy:
            self._now_busy = True
            self._spawn(self._run_now())
        return future

    async def _run_now(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._now:
                group, count = [], 0
                while self._now and (not group or count + len(self._now[0][0]) <= BATCH_OPS_MAX):
                    item = self._now.pop(0)
                    group.append(item)
                    count += len(item[0])
                ops = [op for item in group for op in item[0]]
                try:
                    results = await loop.run_in_executor(self._executor, self.client.write_batch, ops)
                except Exception as exc:  # noqa: BLE001 - every waiter gets it
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.batches_written += 1
                start = 0
                for item_ops, future in group:
                    if not future.done():
                        future.set_result(results[start:start + len(item_ops)])
                    start += len(item_ops)
        finally:
            self._now_busy = False

    # ------------------------------------------------------- best effort

    def write_later(self, key: bytes, value: bytes | None) -> None:
        """Put ``value`` under ``key`` soon (None: delete)."""
        if key not in self._later and len(self._later) >= LATER_PENDING_MAX:
            self.later_dropped += 1
            return
        self._later[key] = value
        if not self._later_busy:
            self._later_busy = True
            self._spawn(self._run_later())

    async def _run_later(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._later:
                if self._now_busy:
                    await asyncio.sleep(LATER_YIELD_S)
                items = list(itertools.islice(self._later.items(), LATER_BATCH_OPS_MAX))
                for key, _ in items:
                    del self._later[key]
                ops = [PutOp(k, v) if v is not None else DeleteOp(k) for k, v in items]
                try:
                    await loop.run_in_executor(self._executor, self.client.write_batch, ops)
                    self.batches_written += 1
                except Exception as exc:  # noqa: BLE001 - best effort by design
                    log.warning("dropped %d lineage records the control store did not take: %s", len(ops), exc)
        finally:
            self._later_busy = False

    async def flush(self, timeout_s: float) -> None:
        """Wait (bounded) until pending writes are out; for shutdown and tests."""
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + timeout_s
        while (self._now_busy or self._later_busy or self._later) and loop.time() < deadline_s:
            await asyncio.sleep(0.01)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
