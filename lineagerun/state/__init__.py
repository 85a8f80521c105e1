"""Lineage and cluster state, read from the control store (Ray's
``ray.util.state`` plus lineage).

Every call reads either a live cluster (``address=`` with ``token=`` or
``token_file=``; by default ``LINEAGERUN_ADDRESS`` or the newest session under
/tmp/lineagerun) or, post mortem, a control store's directory (``dir=``).
A ``source=`` made by ``open_source`` can be passed to several calls to reuse
one connection.

Lists page through the tables and stop at ``limit``; summaries stream over
them, counting, so memory stays flat on stores of 100,000s of tasks.
``recovery_summary`` counts losses, re-executions, rebuilt objects, actor
restarts and replayed calls, and recovery times (``state/recovery.py``).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any, Iterable, Iterator, Mapping

from lineagerun.core import keys
from lineagerun.core.ids import TaskID
from lineagerun.exceptions import InvalidArgumentError, NotFoundError
from lineagerun.rpc import lineage_pb2
from lineagerun.state.ids import hex_or_empty, parse_id_of
from lineagerun.state.lineage import (
    ACTOR_STATE_NAMES, EVENT_KIND_NAMES, NO_ATTEMPT_STATE, REASON_NAMES, STATE_NAMES, Catalog, LineageGraph,
    attempt_dict, build_lineage, gc_paused, has_checkpoint, object_status, task_kind,
)
from lineagerun.state.recovery import event_items, is_recovery_kind, recovery_lines, summarize_recovery
from lineagerun.state.source import DirectorySource, LiveSource, MemorySource, Source, open_source
from lineagerun.state.timeline import NOTHING_TO_SHOW, build_timeline, named_tasks, trace_document, write_trace

__all__ = [
    "list_tasks", "get_task", "list_actors", "get_actor", "list_objects", "get_object", "list_nodes", "list_events",
    "summarize_tasks", "summarize_actors", "recovery_summary", "recovery_lines", "lineage", "timeline", "open_source", "LineageGraph", "Source",
    "LiveSource", "DirectorySource", "MemorySource", "TABLES", "LIST_LIMIT_DEFAULT", "NOTHING_TO_SHOW",
    "trace_document", "write_trace",
]

LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 10_000_000

TASK_COLUMNS = ("task_id", "name", "kind", "state", "attempts", "reasons", "node_id", "worker_id", "duration_ms",
                "job_id", "actor_id", "error")
ACTOR_COLUMNS = ("actor_id", "class_name", "name", "namespace", "state", "node_id", "num_restarts", "max_restarts",
                 "next_sequence_number", "checkpoint_sequence_number", "job_id")
OBJECT_COLUMNS = ("object_id", "status", "size_bytes", "is_put", "inline", "locations", "producing_task_id", "job_id")
NODE_COLUMNS = ("node_id", "address", "alive", "incarnation", "resources", "heartbeat_ms", "started_ms", "died_ms",
                "death_reason")
EVENT_COLUMNS = ("time_ms", "kind", "count", "task_id", "object_id", "actor_id", "node_id", "attempt_number",
                 "detail", "duration_ms", "recovery", "worker_id", "job_id")
TABLES = {"tasks": TASK_COLUMNS, "actors": ACTOR_COLUMNS, "objects": OBJECT_COLUMNS, "nodes": NODE_COLUMNS,
          "events": EVENT_COLUMNS}
# Fixed-point resource amounts in records are in units of 1/10,000.
_RESOURCE_UNIT = 10_000


# ------------------------------------------------------------------ plumbing


@contextlib.contextmanager
def _reading(source: Source | None, address, token, token_file, dir, timeout_s) -> Iterator[Source]:
    if source is not None:
        with gc_paused():
            yield source
        return
    kwargs = {} if timeout_s is None else {"timeout_s": timeout_s}
    opened = open_source(address=address, token=token, token_file=token_file, dir=dir, **kwargs)
    try:
        with gc_paused():
            yield opened
    finally:
        opened.close()


def _check_limit(limit: int | None) -> int:
    if limit is None:
        return LIST_LIMIT_MAX
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_LIMIT_MAX:
        raise InvalidArgumentError(f"limit must be an int in 1..{LIST_LIMIT_MAX} (or None for all), got {limit!r}")
    return limit


def parse_filters(filters: Iterable[str] | Mapping[str, Any] | None, columns: tuple[str, ...],
                  table: str) -> list[tuple[str, str, str]]:
    """``key=value`` / ``key!=value`` strings (or a dict of equalities) as
    (column, op, value); unknown columns are refused, naming the valid ones.
    ``key=a|b`` matches either value (``key!=a|b``: neither)."""
    if not filters:
        return []
    items = [f"{k}={v}" for k, v in filters.items()] if isinstance(filters, Mapping) else list(filters)
    parsed = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidArgumentError(f"a filter is a 'key=value' string, got {item!r}")
        key, op, value = item.partition("!=") if "!=" in item else item.partition("=")
        key = key.strip()
        if not op or not key:
            raise InvalidArgumentError(f"filter {item!r} is not key=value or key!=value")
        if key not in columns:
            raise InvalidArgumentError(f"cannot filter {table} by {key!r}; filterable keys are {', '.join(columns)}")
        parsed.append((key, op, value.strip().lower()))
    return parsed


def _matches(row: dict, filters: list[tuple[str, str, str]]) -> bool:
    for key, op, value in filters:
        cell = row.get(key)
        text = ("true" if cell else "false") if isinstance(cell, bool) else ("" if cell is None else str(cell))
        text = text.lower()
        hit = text == value or ("|" in value and text in value.split("|"))
        if hit != (op == "="):
            return False
    return True


def _take(rows: Iterator[dict], filters, limit: int) -> list[dict]:
    out = []
    for row in rows:
        if _matches(row, filters):
            out.append(row)
            if len(out) >= limit:
                break
    return out


def _resources(amounts: Mapping[str, int]) -> str:
    return ",".join(f"{name}={amount / _RESOURCE_UNIT:g}" for name, amount in sorted(amounts.items()))


# --------------------------------------------------------------------- tasks


def task_row(spec: lineage_pb2.TaskSpec | None, attempts: list[lineage_pb2.TaskAttempt], name: str) -> dict:
    latest = attempt_dict(attempts[-1]) if attempts else None
    task_id = bytes(spec.task_id) if spec is not None else bytes(attempts[0].task_id)
    return {
        "task_id": task_id.hex(), "name": name, "kind": task_kind(spec) if spec is not None else "unknown",
        "state": latest["state"] if latest else NO_ATTEMPT_STATE, "attempts": len(attempts),
        "reasons": ",".join(REASON_NAMES.get(a.reason, "?").lower() for a in attempts),
        "node_id": latest["node_id"] if latest else "", "worker_id": latest["worker_id"] if latest else "",
        "duration_ms": latest["duration_ms"] if latest else None, "job_id": task_id[-4:].hex(),
        "actor_id": spec.actor_id.hex() if spec is not None and spec.is_actor_task else "",
        "error": latest["error"] if latest else "",
    }


def _job_prefix(filters: list[tuple[str, str, str]]) -> bytes:
    """A ``job_id=`` filter narrows the scans to that job's prefix."""
    for key, op, value in filters:
        if key == "job_id" and op == "=":
            try:
                return parse_job(value)
            except InvalidArgumentError:
                return b""
    return b""


def parse_job(text: str) -> bytes:
    raw = bytes.fromhex(text) if len(text) == 8 and all(c in "0123456789abcdef" for c in text) else None
    if raw is None:
        raise InvalidArgumentError(f"job ids are 8 hex digits, got {text!r}")
    return raw


def list_tasks(filters=None, limit: int | None = LIST_LIMIT_DEFAULT, *, address=None, token=None, token_file=None,
               dir=None, source: Source | None = None, timeout_s: float | None = None) -> list[dict]:
    """Tasks in key order (job, then task id), with their latest state."""
    parsed, limit = parse_filters(filters, TASK_COLUMNS, "tasks"), _check_limit(limit)
    with _reading(source, address, token, token_file, dir, timeout_s) as src:
        rows = (task_row(s, a, n) for s, a, n in named_tasks(src, Catalog(src), _job_prefix(parsed)))
        return _take(rows, parsed, limit)


def get_task(task_id, *, address=None, token=None, token_file=None, dir=None, source: Source | None = None,
             timeout_s: float | None = None) -> dict:
    """A task's spec, every attempt (with why it was made) and its outputs."""
    tid = parse_id_of("task", task_id)
    with _reading(source, address, token, token_file, dir, timeout_s) as src:
        catalog = Catalog(src)
        spec = catalog.specs([tid.binary()])[tid.binary()]
        if spec is None:
            raise NotFoundError(f"no task {tid.hex()} in the {src.description}; see `lineagerun list tasks`")
        attempts = catalog.attempts_of(tid.binary())
        name = catalog.display_names([spec])[tid.binary()]
        row = task_row(spec, attempts, name)
        outputs = [o for o in _outputs_of(tid, spec)]
        records = catalog.objects(outputs)
        rebuilt, _ = catalog.rebuilt_objects()
        row.update({
            "parent_task_id": hex_or_empty(spec.parent_task_id), "submission_index": spec.submission_index,
            "function_id": hex_or_empty(spec.function_id), "method_name": spec.method_name,
            "sequence_number": spec.sequence_number if spec.is_actor_task else None,
            "num_returns": spec.num_returns, "resources": _resources(spec.resources),
            "max_retries": spec.options.max_retries, "submitted_ms": spec.submitted_ms,
            "args": [_arg_text(a) for a in spec.args] + [f"{kw.name}={_arg_text(kw.arg)}" for kw in spec.kwargs],
            "attempts_detail": [attempt_dict(a) for a in attempts],
            "outputs": [{"object_id": o.hex(), "status": object_status(records[o], attempts, rebuilt, o)}
                        for o in outputs],
        })
        return row


def _outputs_of(tid: TaskID, spec: lineage_pb2.TaskSpec) -> list[bytes]:
    from lineagerun.core.ids import ObjectID

    return [ObjectID.from_index(tid, k).binary() for k in range(1, spec.num_returns + 1)]


def _arg_text(arg: lineage_pb2.TaskArg) -> str:
    nested = f" (refs {','.join(bytes(n).hex() for n in arg.nested_object_ids)})" if arg.nested_object_ids else ""
    if arg.WhichOneof("kind") == "object_id":
        return f"ref {arg.object_id.hex()}{nested}"
    return f"inline {len(arg.value)} bytes{nested}"


def summarize_tasks(*, address=None, token=None, token_file=None, dir=None, source: Source | None = None,
                    timeout_s: float | None = None) -> dict:
    """Counts of tasks by name and state, with retry and replay attempts."""
    by_name: dict[str, Counter] = {}
    total = Counter()
    with _reading(source, address, token, token_file, dir, timeout_s) as src:
        for spec, attempts, name in named_tasks(src, Catalog(src)):
            state = STATE_NAMES.get(attempts[-1].state, "?") if attempts else NO_ATTEMPT_STATE
            counts = by_name.setdefault(name, Counter())
            for counter in (counts, total):
                counter["total"] += 1
                counter[state] += 1
                counter["retries"] += sum(1 for a in attempts if a.reason == lineage_pb2.RETRY)
                counter["replays"] += sum(1 for a in attempts if a.reason == lineage_pb2.REPLAY)
    rows = [{"name": name, **_counts(c)} for name, c in sorted(by_name.items())]
    return {"total": total["total"], "retries": total["retries"], "replays": total["replays"],
            "by_state": {k: v for k, v in total.items() if k not in ("total", "retries", "replays")},
            "by_name": rows}


def _counts(counter: Counter) -> dict:
    out = {"total": counter["total"], "retries": counter["retries"], "replays": counter["replays"]}
    out.update(sorted((k, v) for k, v in counter.items() if k not in out))
    return out


# -------------------------------------------------------------------- actors


def _actor_row(record: lineage_pb2.ActorRecord, class_name: str) -> dict:
    return {
        "actor_id": record.actor_id.hex(), "class_name": class_name, "name": record.name,
        "namespace": record.namespace, "state": ACTOR_STATE_NAMES.get(record.state, "?"),
        "node_id": hex_or_empty(record.node_id), "num_restarts": record.num_restarts,
        "max_restarts": record.max_restarts, "next_sequence_number": record.next_sequence_number,
        "checkpoint_sequence_number": record.checkpoint_sequence_number, "job_id": record.actor_id[-4:].hex(),
    }


def _actor_rows(src: Source, prefix: bytes = b"") -> Iterator[dict]:
    catalog = Catalog(src)
    batch: list[lineage_pb2.ActorRecord] = []

    def flush():
        classes = catalog.actor_classes(bytes(r.actor_id) for r in batch)
        rows = [_actor_row(r, classes.get(bytes(r.actor_id), "?")) for r in batch]
        batch.clear()
        return rows

    for _, raw in src.scan(keys.ACTOR_PREFIX + prefix):
        batch.append(lineage_pb2.ActorRecord.FromString(raw))
        if len(batch) >= 256:
            yield from flush()
    yield from flush()


def list_actors(filters=None, limit: int | None = LIST_LIMIT_DEFAULT, *, address=None, token=None, token_file=None,
                dir=None, source: Source | None = None, timeout_s: float | None = None) -> list[dict]:
    parsed, limit = parse_filters(filters, ACTOR_COLUMNS, "actors"), _check_limit(limit)
    with _reading(source, address, token, token_file, dir, timeout_s) as src:
        return _take(_actor_rows(src, _job_prefix(parsed)), parsed, limit)


def get_actor(actor_id, *, address=None, token=None, token_file=None, dir=None, source: Source | None = None,
              timeout_s: float | None = None) -> dict:
    """An actor's record and its chain of method calls (checkpoint marked)."""
    aid = parse_id_of("actor", actor_id)
    with _reading(source, address, token, token_file, dir, timeout_s) as src:
        catalog = Catalog(src)
        (record,) = catalog.get_records([keys.actor_key(aid)], lineage_pb2.ActorRecord)
        if record is None:
            raise NotFoundError(f"no actor {aid.hex()} in the {src.description}; see `lineagerun list actors`")
        row = _actor_row(record, catalog.actor_classes([aid.binary()])[aid.binary()])
        calls = [lineage_pb2.ActorCallRecord.FromString(raw) for _, raw in src.scan(keys.actor_calls_prefix(aid))]
        states = catalog.attempts([bytes(c.task_id) for c in calls])
        checkpoint, checkpointed = record.checkpoint_sequence_number, has_checkpoint(record)
        row.update({
            "creation_task_id": hex_or_empty(record.creation_task_id), "lifetime": record.lifetime,
            "checkpoint_object_id": hex_or_empty(record.checkpoint_object_id),
            "death_cause": f"{record.death_cause.kind}: {record.death_cause.message}" if record.death_cause.kind else "",
            "calls": [{
                "sequence_number": c.sequence_number, "method_name": c.method_name, "task_id": c.task_id.hex(),
                "finished": c.finished,
                "state": STATE_NAMES.get(states[bytes(c.task_id)][-1].state, "?") if states[bytes(c.task_id)]
                else NO_ATTEMPT_STATE,
                "attempts": len(states[bytes(c.task_id)]),
                "checkpoint": checkpointed and c.sequence_number == checkpoint,
                "replayed_on_restart": not checkpointed or c.sequence_number > checkpoint,
            } for c in calls],
        })
        return row


def summarize_actors(*, address=None, token=None, token_file=None, dir=None, source: Source | None = None,
                     timeout_s: float | None = None) -> dict:
    by_class: dict[str, Counter] = {}
    total = Counter()
    with _reading(source, address, token, token_file, dir, timeout_s) as src:
        for row in _actor_rows(src):
            for counter in (by_class.setdefault(row["class_name"], Counter()), total):
                counter["total"] += 1
                counter[row["state"]] += 1
                counter["restarts"] += row["num_restarts"]
    rows = []
    for name, counter in sorted(by_class.items()):
        out = {"class_name": name, "total": counter["total"], "restarts": counter["restarts"]}
        out.update(sorted((k, v) for k, v in counter.items() if k not in out))
        rows.append(out)
    return {"total": total["total"], "restarts": total["restarts"],
            "by_state": {k: v for k, v in total.items() if k not in ("total", "restarts")}, "by_class": rows}


# ------------------------------------------------------------------- objects


def _object_row(record: lineage_pb2.ObjectRecord) -> dict:
    present = bool(record.locations) or record.has_inline_value
    return {
        "object_id": record.object_id.hex(), "status": "present" if present else "lost",
        "size_bytes": record.size_bytes, "is_put": record.is_put, "inline": record.has_inline_value,
        "locations": ",".join(bytes(n).hex() for n in record.locations),
        "producing_task_id": hex_or_empty(record.producing_task_id), "job_id": record.object_id[20:24].hex(),
    }


def list_objects(filters=None, limit: int | None = LIST_LIMIT_DEFAULT, *, address=None, token=None, token_file=None,
                 dir=None, source: Source | None = None, timeout_s: float | None = None) -> list[dict]:
    parsed, limit = parse_filters(filters, OBJECT_COLUMNS, "objects"), _check_limit(limit)
    with _reading(source, address, token, token_file, dir, timeout_s) as src:
        rows = (_object_row(lineage_pb2.ObjectRecord.FromString(raw))
                for _, raw in src.scan(keys.OBJECT_PREFIX + _job_prefix(parsed)))
        return _take(rows, parsed, limit)


def get_object(object_id, *, address=None, token=None, token_file=None, dir=None, source: Source | None = None,
               timeout_s: float | None = None) -> dict:
    oid = parse_id_of("object", object_id)
    with _reading(source, address, token, token_file, dir, timeout_s) as src:
        catalog = Catalog(src)
        record = catalog.objects([oid.binary()])[oid.binary()]
        if record is None:
            raise NotFoundError(f"no object {oid.hex()} in the {src.description}; see `lineagerun list objects`")
        producer = oid.task_id().binary()
        attempts = catalog.attempts_of(producer)
        rebuilt, _ = catalog.rebuilt_objects()
        row = _object_row(record)
        row["status"] = object_status(record, attempts, rebuilt, oid.binary())
        row["producer_attempts"] = [attempt_dict(a) for a in attempts]
        return row


# ------------------------------------------------------------ nodes, events


def _node_row(record: lineage_pb2.NodeRecord) -> dict:
    return {
        "node_id": record.node_id.hex(), "address": record.address, "alive": record.alive,
        "incarnation": record.incarnation, "resources": _resources(record.resources_total),
        "heartbeat_ms": record.heartbeat_ms, "started_ms": record.started_ms, "died_ms": record.died_ms,
        "death_reason": record.death_reason,
    }


def list_nodes(filters=None, limit: int | None = LIST_LIMIT_DEFAULT, *, address=None, token=None, token_file=None,
               dir=None, source: Source | None = None, timeout_s: float | None = None) -> list[dict]:
    parsed, limit = parse_filters(filters, NODE_COLUMNS, "nodes"), _check_limit(limit)
    with _reading(source, address, token, token_file, dir, timeout_s) as src:
        rows = (_node_row(lineage_pb2.NodeRecord.FromString(raw)) for _, raw in src.scan(keys.NODE_PREFIX))
        return _take(rows, parsed, limit)


def _event_row(record: lineage_pb2.EventRecord) -> dict:
    return {
        "time_ms": record.time_ms, "kind": EVENT_KIND_NAMES.get(record.kind, f"KIND_{record.kind}"),
        "count": event_items(record), "task_id": hex_or_empty(record.task_id),
        "object_id": hex_or_empty(record.object_id), "actor_id": hex_or_empty(record.actor_id),
        "node_id": hex_or_empty(record.node_id), "attempt_number": record.attempt_number, "detail": record.detail,
        "duration_ms": record.duration_ms, "recovery": is_recovery_kind(record.kind),
        "worker_id": hex_or_empty(record.worker_id), "job_id": hex_or_empty(record.job_id),
    }


def list_events(filters=None, limit: int | None = LIST_LIMIT_DEFAULT, *, address=None, token=None, token_file=None,
                dir=None, source: Source | None = None, timeout_s: float | None = None) -> list[dict]:
    """Events in time order; ``-f recovery=true`` keeps losses, retries,
    replays and restores, ``-f kind=OBJECT_LOST|OBJECT_RECONSTRUCTED`` those kinds."""
    parsed, limit = parse_filters(filters, EVENT_COLUMNS, "events"), _check_limit(limit)
    with _reading(source, address, token, token_file, dir, timeout_s) as src:
        rows = (_event_row(lineage_pb2.EventRecord.FromString(raw)) for _, raw in src.scan(keys.EVENT_PREFIX))
        return _take(rows, parsed, limit)


def recovery_summary(*, attempts: bool = True, since_ms: int = 0, address=None, token=None, token_file=None,
                     dir=None, source: Source | None = None, timeout_s: float | None = None) -> dict:
    """Recovery counters: tasks re-executed (retries and replays, counted
    from the attempt records, or from the events without ``attempts``),
    objects lost and rebuilt, actor deaths, restarts and calls replayed,
    node and worker deaths, recovery time (p50 and max of the events'
    ``duration_ms``), and every recovery event kind with its counts
    (``by_kind``). ``since_ms`` keeps what happened from then on."""
    if isinstance(since_ms, bool) or not isinstance(since_ms, int) or since_ms < 0:
        raise InvalidArgumentError(f"since_ms must be an int >= 0 (ms since the epoch), got {since_ms!r}")
    with _reading(source, address, token, token_file, dir, timeout_s) as src:
        return summarize_recovery(src, attempts=attempts, since_ms=since_ms)


# ----------------------------------------------------------- lineage, timeline


def lineage(the_id, depth: int | None = None, *, address=None, token=None, token_file=None, dir=None,
            source: Source | None = None, timeout_s: float | None = None) -> LineageGraph:
    """The lineage graph of an object id (the tasks that made it and their
    arguments, recursively), a task id, or an actor id (its creation and
    chain of calls). ``depth`` limits the levels of producers (None: all)."""
    with _reading(source, address, token, token_file, dir, timeout_s) as src:
        return build_lineage(src, the_id, depth)


def timeline(*, address=None, token=None, token_file=None, dir=None, source: Source | None = None,
             timeout_s: float | None = None) -> list[dict]:
    """Chrome trace events (``trace_document(events)`` is the file's JSON);
    an empty list when no task has run."""
    with _reading(source, address, token, token_file, dir, timeout_s) as src:
        return build_timeline(src)

