"""Client-side group commit: concurrent single puts to one shard travel in
one WriteRequest.

Leader/follower, per shard: a thread whose put finds no request in flight
for its shard becomes the leader and sends every put queued so far (its own
first); threads arriving meanwhile queue and wait. When the leader's request
is answered it wakes the waiters it carried and hands leadership to the
oldest waiter still queued, so no thread sends other threads' puts for ever
and one request per shard is in flight at a time: under load, a request
carries everything that arrived during the previous round trip.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from lineagerun.rpc import control_store_pb2

# Ops and bytes of one grouped request; below the store's per-request limit
# (10,000 ops) and the 64 MiB message limit, so a full group is still a
# moderate write batch on every replica.
GROUP_OPS_MAX = 2_000
GROUP_BYTES_MAX = 8 * 1024 * 1024


@dataclass(eq=False)
class _PendingPut:
    op: control_store_pb2.Op
    size_bytes: int
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    result: control_store_pb2.OpResult | None = None
    error: BaseException | None = None


class GroupCommitter:
    """``put(shard, op)`` blocks until the op is acknowledged (or raises the
    error of the request that carried it). ``send(shard, ops)`` performs one
    write request with retries and returns per-op results."""

    def __init__(self, send: Callable[[int, list[control_store_pb2.Op]], list[control_store_pb2.OpResult]]):
        self._send = send
        self._lock = threading.Lock()
        self._queues: dict[int, deque[_PendingPut]] = {}
        self._busy: set[int] = set()
        self.requests_sent = 0
        self.ops_sent = 0

    def put(self, shard: int, op: control_store_pb2.Op, size_bytes: int) -> control_store_pb2.OpResult:
        pending = _PendingPut(op, size_bytes)
        with self._lock:
            self._queues.setdefault(shard, deque()).append(pending)
            if shard not in self._busy:
                self._busy.add(shard)
                pending.lead = True
        if not pending.lead:
            pending.done.wait()
        if pending.lead and pending.result is None and pending.error is None:
            self._lead(shard)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _take_group(self, shard: int) -> list[_PendingPut]:
        group: list[_PendingPut] = []
        size_bytes = 0
        with self._lock:
            queue = self._queues[shard]
            while queue and len(group) < GROUP_OPS_MAX:
                if group and size_bytes + queue[0].size_bytes > GROUP_BYTES_MAX:
                    break
                item = queue.popleft()
                group.append(item)
                size_bytes += item.size_bytes
        return group

    def _lead(self, shard: int) -> None:
        group = self._take_group(shard)
        try:
            results = self._send(shard, [p.op for p in group])
            for pending, result in zip(group, results):
                pending.result = result
        except BaseException as exc:  # every carried put fails the same way
            for pending in group:
                pending.error = exc
        self.requests_sent += 1
        self.ops_sent += len(group)
        with self._lock:
            queue = self._queues[shard]
            if queue:
                successor = queue[0]
                successor.lead = True
            else:
                successor = None
                self._busy.discard(shard)
        for pending in group:
            pending.done.set()
        if successor is not None:
            successor.done.set()
