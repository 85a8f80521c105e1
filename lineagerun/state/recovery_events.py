"""Recovery events of one kind of recovery, read straight from a control
store client: actor recovery (deaths, restarts, checkpoints, replayed
calls) and object recovery (losses, replays, rebuilt objects). The general
summary over every event kind is ``recovery.summarize_recovery``; these are
the per-actor and per-object views the fault-tolerance tests check.
"""

from __future__ import annotations

from lineagerun.core.ids import ActorID
from lineagerun.core.keys import EVENT_PREFIX
from lineagerun.rpc import lineage_pb2
from lineagerun.state.recovery import event_items

ACTOR_RECOVERY_EVENT_KINDS = frozenset({lineage_pb2.ACTOR_DIED, lineage_pb2.ACTOR_RESTARTED,
                                        lineage_pb2.ACTOR_CALLS_REPLAYED, lineage_pb2.ACTOR_CHECKPOINTED})
OBJECT_RECOVERY_EVENT_KINDS = frozenset({lineage_pb2.OBJECT_LOST, lineage_pb2.TASK_REPLAYED,
                                         lineage_pb2.OBJECT_RECONSTRUCTED, lineage_pb2.TASK_RETRIED,
                                         lineage_pb2.TASK_FAILED})


def _events(client, kinds: frozenset) -> list[lineage_pb2.EventRecord]:
    return [record for record in (lineage_pb2.EventRecord.FromString(v) for _, v in client.scan_prefix(EVENT_PREFIX))
            if record.kind in kinds]


def actor_recovery_events(client, actor_id: ActorID | None = None) -> list[lineage_pb2.EventRecord]:
    """ACTOR_* events, oldest first (one actor, or all)."""
    return [e for e in _events(client, ACTOR_RECOVERY_EVENT_KINDS)
            if actor_id is None or e.actor_id == actor_id.binary()]


def actor_recovery_summary(client, actor_id: ActorID | None = None) -> dict:
    """Counters of actor recovery: deaths, restarts, checkpoints, calls
    replayed (total and per recovery) and recovery times, from the events."""
    events = actor_recovery_events(client, actor_id)
    replayed = [event_items(e) for e in events if e.kind == lineage_pb2.ACTOR_CALLS_REPLAYED]
    durations = [e.duration_ms for e in events if e.kind == lineage_pb2.ACTOR_RESTARTED]
    return {
        "deaths": sum(1 for e in events if e.kind == lineage_pb2.ACTOR_DIED),
        "restarts": len(durations),
        "checkpoints": sum(1 for e in events if e.kind == lineage_pb2.ACTOR_CHECKPOINTED),
        "calls_replayed": sum(replayed),
        "calls_replayed_per_recovery": replayed,
        "recovery_ms": durations,
    }


def object_recovery_events(client) -> list[lineage_pb2.EventRecord]:
    """Object and task recovery events, oldest first."""
    return _events(client, OBJECT_RECOVERY_EVENT_KINDS)


def object_recovery_summary(client) -> dict:
    """Counters of object and task recovery, from the events: objects lost,
    rebuilt and failed, tasks replayed and retried, recovery times (ms)."""
    events = object_recovery_events(client)

    def count(kind: int) -> int:
        return sum(1 for e in events if e.kind == kind)

    durations = [e.duration_ms for e in events if e.kind == lineage_pb2.OBJECT_RECONSTRUCTED]
    return {"objects_lost": count(lineage_pb2.OBJECT_LOST), "objects_rebuilt": len(durations),
            "tasks_replayed": count(lineage_pb2.TASK_REPLAYED), "tasks_retried": count(lineage_pb2.TASK_RETRIED),
            "recoveries_failed": sum(1 for e in events if e.kind == lineage_pb2.TASK_FAILED and e.object_id),
            "recovery_ms": durations}
