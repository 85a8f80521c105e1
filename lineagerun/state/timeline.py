"""Chrome trace / Perfetto JSON of what ran where.

- one complete event (``ph: "X"``) per task attempt, on ``pid`` = its node
  and ``tid`` = its worker; retries and replays say so in the name and args;
- flow events (``ph: "s"`` / ``"f"``) from the task that made an argument to
  the task that used it (the latest attempts of both);
- instant events (``ph: "i"``) for faults and recoveries from the event
  table (node and worker deaths, lost and rebuilt objects, actor restarts:
  every kind but the routine ones, ``recovery.is_recovery_kind``).

Times in the trace are microseconds (the format's unit); the records hold
milliseconds. Tasks and attempts are read by one merged pass over the
``task/`` and ``attempt/`` tables (they sort the same way), not by lookups.
"""

from __future__ import annotations

import json
from typing import Iterator

from lineagerun.core import keys
from lineagerun.core.ids import TaskID
from lineagerun.rpc import lineage_pb2
from lineagerun.state.ids import hex_or_empty, short_node
from lineagerun.state.lineage import (
    REASON_NAMES, STATE_NAMES, Catalog, arg_object_ids,
)
from lineagerun.state.recovery import event_items, is_recovery_kind, kind_name
from lineagerun.state.source import Source

# Tasks whose names are resolved per batched read.
NAME_BATCH_TASKS = 512
NOTHING_TO_SHOW = ("nothing to show: the control store holds no task attempts (no task has started yet, or the "
                   "lineage was deleted by retention)")
_NO_NODE = "(no node)"
_NO_WORKER = "(no worker)"


def tasks_with_attempts(source: Source, prefix_job: bytes = b"") -> Iterator[
        tuple[lineage_pb2.TaskSpec | None, list[lineage_pb2.TaskAttempt]]]:
    """(spec, attempts) of every task, in key order: a merge of the
    ``task/`` and ``attempt/`` scans, paging both. Attempts without a spec
    come with ``None``. (The hot loop of every listing: 100,000s of
    records, so it avoids per-record allocations.)"""
    specs = source.scan(keys.TASK_PREFIX + prefix_job)
    attempts = source.scan(keys.ATTEMPT_PREFIX + prefix_job)
    spec_start = len(keys.TASK_PREFIX)
    body_start = len(keys.ATTEMPT_PREFIX)
    body_end = body_start + 4 + TaskID.SIZE
    parse_attempt, parse_spec = lineage_pb2.TaskAttempt.FromString, lineage_pb2.TaskSpec.FromString
    key, raw = next(attempts, (None, None))
    body = key[body_start:body_end] if key is not None else None
    for spec_key, spec_raw in specs:
        spec_body = spec_key[spec_start:]
        while body is not None and body < spec_body:  # attempts of a task without a spec (rare)
            orphan_body, orphans = body, []
            while body == orphan_body:
                orphans.append(parse_attempt(raw))
                key, raw = next(attempts, (None, None))
                body = key[body_start:body_end] if key is not None else None
            yield None, orphans
        mine = []
        while body == spec_body:
            mine.append(parse_attempt(raw))
            key, raw = next(attempts, (None, None))
            body = key[body_start:body_end] if key is not None else None
        yield parse_spec(spec_raw), mine
    while body is not None:
        orphan_body, orphans = body, []
        while body == orphan_body:
            orphans.append(parse_attempt(raw))
            key, raw = next(attempts, (None, None))
            body = key[body_start:body_end] if key is not None else None
        yield None, orphans


def named_tasks(source: Source, catalog: Catalog, prefix_job: bytes = b"") -> Iterator[
        tuple[lineage_pb2.TaskSpec | None, list[lineage_pb2.TaskAttempt], str]]:
    """``tasks_with_attempts`` plus display names, resolved a batch at a time."""
    batch: list = []
    for item in tasks_with_attempts(source, prefix_job):
        batch.append(item)
        if len(batch) >= NAME_BATCH_TASKS:
            yield from _name_batch(catalog, batch)
            batch = []
    yield from _name_batch(catalog, batch)


def _name_batch(catalog: Catalog, batch: list):
    names = catalog.display_names(spec for spec, _ in batch if spec is not None)
    for spec, attempts in batch:
        name = names.get(bytes(spec.task_id), "?") if spec is not None else "(no record)"
        yield spec, attempts, name


def _slice_name(name: str, reason: int) -> str:
    if reason == lineage_pb2.REPLAY:
        return f"{name} (replay)"
    if reason == lineage_pb2.RETRY:
        return f"{name} (retry)"
    return name


class _Lanes:
    """Integer pids for nodes and tids for workers (the trace format's
    ids are integers), named by metadata events."""

    def __init__(self):
        self.pids: dict[bytes, int] = {}
        self.tids: dict[tuple[int, bytes], int] = {}

    def pid(self, node_id: bytes) -> int:
        return self.pids.setdefault(node_id, len(self.pids) + 1)

    def tid(self, pid: int, worker_id: bytes) -> int:
        return self.tids.setdefault((pid, worker_id), len(self.tids) + 1)

    def metadata(self) -> Iterator[dict]:
        for node_id, pid in self.pids.items():
            label = f"node {short_node(node_id)}" if node_id else _NO_NODE
            yield {"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                   "args": {"name": label, "node_id": node_id.hex()}}
        for (pid, worker_id), tid in self.tids.items():
            label = f"worker {short_node(worker_id)}" if worker_id else _NO_WORKER
            yield {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                   "args": {"name": label, "worker_id": worker_id.hex()}}


def build_timeline(source: Source) -> list[dict]:
    """The trace events (an empty list when nothing ran)."""
    catalog = Catalog(source)
    lanes = _Lanes()
    events: list[dict] = []
    where: dict[bytes, tuple[int, int, int, int]] = {}   # task -> (pid, tid, start_us, end_us) of its latest attempt
    consumers: list[tuple[bytes, list[bytes]]] = []
    for spec, attempts, name in named_tasks(source, catalog):
        task_id = bytes(spec.task_id) if spec is not None else bytes(attempts[0].task_id)
        task_hex = task_id.hex()
        for attempt in attempts:
            pid = lanes.pid(attempt.node_id)
            tid = lanes.tid(pid, attempt.worker_id)
            start_us = attempt.start_ms * 1000
            duration_us = max((attempt.end_ms - attempt.start_ms) * 1000, 1)
            events.append({
                "name": _slice_name(name, attempt.reason), "cat": "task", "ph": "X", "ts": start_us,
                "dur": duration_us, "pid": pid, "tid": tid,
                "args": {"task_id": task_hex, "attempt": attempt.attempt_number,
                         "reason": REASON_NAMES.get(attempt.reason, "?"), "state": STATE_NAMES.get(attempt.state, "?"),
                         "replay": attempt.reason == lineage_pb2.REPLAY,
                         "error": f"{attempt.error.kind}: {attempt.error.message}" if attempt.error.kind else ""}})
            where[task_id] = (pid, tid, start_us, start_us + duration_us)
        if spec is not None and attempts:
            args = arg_object_ids(spec)
            if args:
                consumers.append((task_id, args))
    if not events:
        return []
    events.extend(_flows(where, consumers))
    events.extend(_fault_instants(source, lanes))
    events.extend(lanes.metadata())
    return events


def _flows(where: dict, consumers: list[tuple[bytes, list[bytes]]]) -> Iterator[dict]:
    flow_id = 0
    for consumer, args in consumers:
        to = where[consumer]
        for object_id in args:
            made = where.get(object_id[:TaskID.SIZE])
            if made is None:
                continue
            flow_id += 1
            yield {"name": "dependency", "cat": "dependency", "id": flow_id, "ph": "s", "ts": made[3] - 1,
                   "pid": made[0], "tid": made[1], "args": {"object_id": object_id.hex()}}
            yield {"name": "dependency", "cat": "dependency", "id": flow_id, "ph": "f", "bp": "e",
                   "ts": max(to[2], made[3] - 1), "pid": to[0], "tid": to[1]}


def _fault_instants(source: Source, lanes: _Lanes) -> Iterator[dict]:
    for _, raw in source.scan(keys.EVENT_PREFIX):
        event = lineage_pb2.EventRecord.FromString(raw)
        if not is_recovery_kind(event.kind):
            continue
        pid = lanes.pid(event.node_id)
        yield {"name": kind_name(event.kind), "cat": "fault", "ph": "i", "ts": event.time_ms * 1000,
               "pid": pid, "tid": lanes.tid(pid, event.worker_id), "s": "p" if event.node_id else "g",
               "args": {k: v for k, v in (
                   ("task_id", hex_or_empty(event.task_id)), ("object_id", hex_or_empty(event.object_id)),
                   ("actor_id", hex_or_empty(event.actor_id)), ("node_id", hex_or_empty(event.node_id)),
                   ("worker_id", hex_or_empty(event.worker_id)), ("detail", event.detail),
                   ("duration_ms", event.duration_ms), ("count", event_items(event))) if v}}


def trace_document(events: list[dict]) -> dict:
    return {"traceEvents": events, "displayTimeUnit": "ms"}


# Events encoded per json.dumps call when writing a trace file: json.dump
# to a file uses the pure-Python encoder; chunks keep the C one and bound
# the text held at once.
WRITE_CHUNK_EVENTS = 10_000


def write_trace(events: list[dict], path) -> None:
    """Write ``trace_document(events)`` as JSON to ``path``."""
    with open(path, "w", encoding="utf-8") as out:
        out.write('{"displayTimeUnit": "ms", "traceEvents": [')
        for start in range(0, len(events), WRITE_CHUNK_EVENTS):
            if start:
                out.write(", ")
            out.write(json.dumps(events[start:start + WRITE_CHUNK_EVENTS])[1:-1])
        out.write("]}")
