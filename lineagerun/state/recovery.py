"""Recovery counters from the control store's records (issue 5: "recovery is
observable"): losses, resubmissions, replays and restores, read from the
event table by kind, and re-executions read from the task attempts.

The summary is built over ``EventKind`` generically: every kind found is
counted (events, items, recovery time p50/max), so kinds added later show up
without changes here; a few named kinds feed the headline counters. Kinds of
routine life (submitted, started, finished, created, added, spilled) are not
recovery and are left out.

An event stands for ``count`` items when it sets the field (e.g. the calls
an ``ACTOR_CALLS_REPLAYED`` replayed, possibly 0); records written before
the field existed carry it as a ``count=N; ...`` head of ``detail`` (actor
call replays only); any other event stands for one item.

Both scans page and keep counters only (plus the durations, for the
percentiles, up to a bound), so memory stays flat on large stores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from lineagerun.core import keys
from lineagerun.core.ids import TaskID
from lineagerun.rpc import lineage_pb2
from lineagerun.state.lineage import EVENT_KIND_NAMES, REASON_NAMES
from lineagerun.state.source import Source

# Kinds that are the normal life of tasks, actors and nodes, not recovery.
ROUTINE_EVENT_KINDS = frozenset({
    lineage_pb2.EVENT_KIND_UNSPECIFIED, lineage_pb2.TASK_SUBMITTED, lineage_pb2.TASK_STARTED,
    lineage_pb2.TASK_FINISHED, lineage_pb2.ACTOR_CREATED, lineage_pb2.NODE_ADDED, lineage_pb2.TASK_SPILLED,
})
# Events read per summary; the table is time-ordered, so a cut summary
# covers the oldest events (and says so).
RECOVERY_EVENTS_SCANNED_MAX = 1_000_000
# Attempt records read per summary (a scan of the attempt table).
RECOVERY_ATTEMPTS_SCANNED_MAX = 1_000_000
# Durations kept per kind for the percentiles; the maximum stays exact.
RECOVERY_DURATIONS_KEPT_MAX = 100_000
# Headline counter -> the event kind whose items it sums.
HEADLINE_KINDS = {
    "objects_lost": "OBJECT_LOST",
    "objects_rebuilt": "OBJECT_RECONSTRUCTED",
    "actors_died": "ACTOR_DIED",
    "actors_restarted": "ACTOR_RESTARTED",
    "actor_calls_replayed": "ACTOR_CALLS_REPLAYED",
    "actor_checkpoints": "ACTOR_CHECKPOINTED",
    "nodes_died": "NODE_DIED",
    "workers_died": "WORKER_DIED",
    "tasks_failed": "TASK_FAILED",
}
_LEGACY_COUNT_KINDS = frozenset({lineage_pb2.ACTOR_CALLS_REPLAYED})
_LEGACY_COUNT_HEAD = "count="


def is_recovery_kind(kind: int) -> bool:
    return kind not in ROUTINE_EVENT_KINDS


def kind_name(kind: int) -> str:
    return EVENT_KIND_NAMES.get(kind, f"KIND_{kind}")


def event_items(record: lineage_pb2.EventRecord) -> int:
    """How many items an event stands for (see the module docstring)."""
    if record.HasField("count"):
        return record.count
    if record.kind in _LEGACY_COUNT_KINDS:
        head = record.detail.split(";", 1)[0].strip()
        if head.startswith(_LEGACY_COUNT_HEAD) and head[len(_LEGACY_COUNT_HEAD):].isdigit():
            return int(head[len(_LEGACY_COUNT_HEAD):])
    return 1


def percentile(sorted_values: list[int], fraction: float) -> int | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = min(max(1, math.ceil(fraction * len(sorted_values))), len(sorted_values))
    return sorted_values[rank - 1]


@dataclass
class _Durations:
    kept: list[int] = field(default_factory=list)
    total: int = 0
    maximum: int = 0

    def add(self, duration_ms: int) -> None:
        self.total += 1
        self.maximum = max(self.maximum, duration_ms)
        if len(self.kept) < RECOVERY_DURATIONS_KEPT_MAX:
            self.kept.append(duration_ms)

    def stats(self) -> dict:
        ordered = sorted(self.kept)
        return {"n": self.total, "p50_ms": percentile(ordered, 0.5), "max_ms": self.maximum if self.total else None}


@dataclass
class RecoveryTally:
    """The counters of one summary; ``add_event`` / ``add_attempt`` feed
    it, ``result`` reads it (no I/O here)."""
    events: int = 0
    first_ms: int = 0
    last_ms: int = 0
    by_kind: dict = field(default_factory=dict)          # kind -> [events, items]
    durations: dict = field(default_factory=dict)        # kind -> _Durations
    all_durations: _Durations = field(default_factory=_Durations)
    attempts: dict = field(default_factory=dict)         # reason name -> attempts
    attempts_scanned: int = 0
    actor_call_replays: int = 0                          # REPLAY attempts of actor method calls
    actor_creation_replays: int = 0                      # REPLAY attempts of constructors (restarts)

    def add_event(self, record: lineage_pb2.EventRecord) -> None:
        if not is_recovery_kind(record.kind):
            return
        self.events += 1
        self.first_ms = record.time_ms if not self.first_ms else min(self.first_ms, record.time_ms)
        self.last_ms = max(self.last_ms, record.time_ms)
        counts = self.by_kind.setdefault(record.kind, [0, 0])
        counts[0] += 1
        counts[1] += event_items(record)
        if record.duration_ms:
            self.durations.setdefault(record.kind, _Durations()).add(record.duration_ms)
            self.all_durations.add(record.duration_ms)

    def add_attempt(self, attempt: lineage_pb2.TaskAttempt) -> None:
        self.attempts_scanned += 1
        reason = REASON_NAMES.get(attempt.reason, str(attempt.reason)).lower()
        self.attempts[reason] = self.attempts.get(reason, 0) + 1
        if attempt.reason == lineage_pb2.REPLAY and len(attempt.task_id) == TaskID.SIZE:
            task_id = TaskID(attempt.task_id)
            if task_id.is_for_actor_creation():
                self.actor_creation_replays += 1
            elif not task_id.actor_id().is_nil_actor():
                self.actor_call_replays += 1

    def items(self, kind_name_: str) -> int:
        kind = lineage_pb2.EventKind.Value(kind_name_)
        return self.by_kind.get(kind, [0, 0])[1]

    def result(self, attempts_read: bool) -> dict:
        out: dict = {name: self.items(kind) for name, kind in HEADLINE_KINDS.items()}
        if attempts_read:
            retries, replays = self.attempts.get("retry", 0), self.attempts.get("replay", 0)
            source = "attempts"
        else:
            retries, replays = self.items("TASK_RETRIED"), self.items("TASK_REPLAYED")
            source = "events"
        out.update({
            "tasks_reexecuted": retries + replays, "task_retries": retries, "task_replays": replays,
            "reexecutions_from": source, "recovery_time": self.all_durations.stats(), "events": self.events,
            "first_event_ms": self.first_ms or None, "last_event_ms": self.last_ms or None,
            "by_kind": {kind_name(kind): {"events": counts[0], "items": counts[1],
                                          "recovery_time": self.durations[kind].stats()
                                          if kind in self.durations else None}
                        for kind, counts in sorted(self.by_kind.items())},
        })
        if attempts_read:
            out["attempts"] = {"scanned": self.attempts_scanned, **dict(sorted(self.attempts.items()))}
            # Replayed actor calls and re-run constructors are task replays too
            # (counted in task_replays); these say how many of them were actors'.
            out["actor_call_replay_attempts"] = self.actor_call_replays
            out["actor_restart_attempts"] = self.actor_creation_replays
        return out


def summarize_recovery(source: Source, *, attempts: bool = True, since_ms: int = 0) -> dict:
    """Recovery counters of the store behind ``source``: events by kind
    (those at or after ``since_ms``), and, with ``attempts``, retries and
    replays counted from the attempt records (exact, even where no event
    was written)."""
    tally = RecoveryTally()
    notes = []
    for scanned, (_, raw) in enumerate(source.scan(keys.EVENT_PREFIX)):
        if scanned >= RECOVERY_EVENTS_SCANNED_MAX:
            notes.append(f"only the first {RECOVERY_EVENTS_SCANNED_MAX} events were read")
            break
        record = lineage_pb2.EventRecord.FromString(raw)
        if record.time_ms >= since_ms:
            tally.add_event(record)
    if attempts:
        parse = lineage_pb2.TaskAttempt.FromString
        for scanned, (_, raw) in enumerate(source.scan(keys.ATTEMPT_PREFIX)):
            if scanned >= RECOVERY_ATTEMPTS_SCANNED_MAX:
                notes.append(f"only the first {RECOVERY_ATTEMPTS_SCANNED_MAX} task attempts were read")
                break
            attempt = parse(raw)
            if not since_ms or attempt.start_ms >= since_ms:
                tally.add_attempt(attempt)
    out = tally.result(attempts)
    out["notes"] = notes
    return out


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value} ms"


def recovery_lines(summary: dict) -> list[str]:
    """The summary as a few lines for people (``lineagerun status``,
    ``lineagerun summary recovery``)."""
    if not summary["events"] and not summary["tasks_reexecuted"]:
        return ["recovery: nothing lost, retried or replayed"]
    time = summary["recovery_time"]
    lines = [
        f"recovery: {summary['tasks_reexecuted']} task re-execution(s) ({summary['task_retries']} retry, "
        f"{summary['task_replays']} replay), {summary['objects_lost']} object(s) lost, "
        f"{summary['objects_rebuilt']} rebuilt, {summary['actors_restarted']} actor restart(s), "
        f"{summary['actor_calls_replayed']} actor call(s) replayed",
        f"  recovery time: p50 {_ms(time['p50_ms'])}, max {_ms(time['max_ms'])} over {time['n']} timed "
        f"recovery event(s); deaths: {summary['nodes_died']} node(s), {summary['workers_died']} worker(s), "
        f"{summary['actors_died']} actor(s)",
    ]
    if summary.get("actor_call_replay_attempts") or summary.get("actor_restart_attempts"):
        lines.append(f"  of the replays: {summary['actor_call_replay_attempts']} actor call(s) and "
                     f"{summary['actor_restart_attempts']} constructor run(s) (REPLAY attempt records)")
    for name, counts in summary["by_kind"].items():
        timed = counts["recovery_time"]
        extra = f"  p50 {_ms(timed['p50_ms'])} max {_ms(timed['max_ms'])}" if timed else ""
        lines.append(f"  {name:<22} events {counts['events']:<6} items {counts['items']:<7}{extra}".rstrip())
    lines.extend(f"  note: {note}" for note in summary.get("notes", []))
    return lines

