"""Actors whose owner node is gone (docs/fault-tolerance.md, "Who recovers
an actor").

The owner node (where an actor was created, ``ActorRecord.owner_node_id``)
recovers the actor when its host node dies (actor_routing.py). This module
covers what that leaves out, following Ray's semantics for owners:

- **The owner node dies, the host lives.** A non-detached actor dies with
  its owner (its creator's process is gone with that node): the host kills
  it, DEAD with the reason, and every caller gets ``ActorDiedError``. A
  detached actor lives on.
- **The host dies and its owner node is gone too** (both at once, or the
  owner earlier). On every node death each live node reads the ``actor/``
  records and, for an actor on a dead node whose owner node is dead as well,
  tries a compare-and-set of the record it read: exactly one node wins. For
  a detached actor the winner names itself (RESTARTING) and recovers it as
  the owner would (restart budget, placement by the global scheduler,
  constructor, checkpoint, replay); a non-detached one is written DEAD, so
  its callers fail at once instead of after ``RELOCATE_WAIT_MAX_S``.

Records without ``owner_node_id`` (written before the field) are left to the
old path.
"""

from __future__ import annotations

import asyncio
import logging

from lineagerun.control.client import CasOp
from lineagerun.core.ids import ActorID, FunctionID, TaskID
from lineagerun.core.keys import ACTOR_PREFIX, actor_key, function_key, task_key
from lineagerun.node.actors import ActorPhase, now_ms
from lineagerun.rpc import lineage_pb2

log = logging.getLogger(__name__)

# Actor records read per takeover scan (one scan per node death); past this
# the rest wait for the next death or for a caller's record poll to time out.
TAKEOVER_SCAN_RECORDS_MAX = 100_000


def on_node_died(manager, node_id: bytes) -> None:
    """Hook of ``_actor_node_died``: the node ``node_id`` was declared dead."""
    for actor in list(manager.actors.actors.values()):
        if (actor.owner_node_id == node_id and not actor.detached and actor.phase is not ActorPhase.DEAD
                and actor.node_id == manager.node_id.binary()):
            manager._kill_actor(actor, f"its owner's node {node_id.hex()[:16]} died (a non-detached actor "
                                       "dies with its owner)")
    manager._spawn_routing(_take_over(manager))


def _alive(manager, node_id: bytes) -> bool:
    return node_id == manager.node_id.binary() or bool(manager.cluster.address_of(node_id))


def _orphans(manager) -> list[tuple[bytes, lineage_pb2.ActorRecord]]:
    """(raw, record) of the actors on a dead node whose owner node is dead too (blocking)."""
    found = []
    for scanned, (_key, raw) in enumerate(manager.writer.client.scan_prefix(ACTOR_PREFIX)):
        if scanned >= TAKEOVER_SCAN_RECORDS_MAX:
            log.warning("actor takeover: only the first %d actor records were read", TAKEOVER_SCAN_RECORDS_MAX)
            break
        record = lineage_pb2.ActorRecord.FromString(raw)
        if (record.state != lineage_pb2.DEAD and record.owner_node_id and record.node_id
                and not _alive(manager, record.node_id) and not _alive(manager, record.owner_node_id)):
            found.append((raw, record))
    return found


async def _take_over(manager) -> None:
    loop = asyncio.get_running_loop()
    try:
        orphans = await loop.run_in_executor(None, _orphans, manager)
    except Exception as exc:  # noqa: BLE001 - the next node death scans again
        log.warning("actor takeover: actor records not read: %s", exc)
        return
    for raw, record in orphans:
        dead_host = record.node_id
        claimed = lineage_pb2.ActorRecord()
        claimed.CopyFrom(record)
        claimed.updated_ms = now_ms()
        detached = record.lifetime == lineage_pb2.DETACHED
        if detached:
            claimed.state, claimed.node_id, claimed.worker_id = lineage_pb2.RESTARTING, manager.node_id.binary(), b""
        else:
            claimed.state = lineage_pb2.DEAD
            claimed.death_cause.kind = "ActorDiedError"
            claimed.death_cause.message = (f"its owner's node {record.owner_node_id.hex()[:16]} and its host node "
                                           f"{dead_host.hex()[:16]} died (a non-detached actor dies with its owner)")
        key = actor_key(ActorID(record.actor_id))
        try:
            results = await manager.writer.write_now([CasOp(key, raw, claimed.SerializeToString())])
        except Exception as exc:  # noqa: BLE001 - another node may still claim it
            log.warning("actor %s: takeover not written: %s", record.actor_id.hex(), exc)
            continue
        if not results[0].ok:
            continue  # another node claimed it (or its record moved on)
        log.info("actor %s: took over its %s (host %s and owner %s dead)", record.actor_id.hex(),
                 "recovery" if detached else "death", dead_host.hex()[:16], record.owner_node_id.hex()[:16])
        if detached:
            await _recover(manager, record, dead_host)


async def _recover(manager, record: lineage_pb2.ActorRecord, dead_host: bytes) -> None:
    """Recover a claimed detached actor as its owner would."""
    from lineagerun.node.actor_routing import RemoteActor

    loop = asyncio.get_running_loop()
    creation_id = record.creation_task_id or TaskID.for_actor_creation(ActorID(record.actor_id)).binary()
    try:
        raw_spec = await loop.run_in_executor(None, manager.writer.client.get, task_key(TaskID(creation_id)))
    except Exception as exc:  # noqa: BLE001 - without its spec it cannot be recreated
        raw_spec = None
        log.warning("actor %s: creation spec not read: %s", record.actor_id.hex(), exc)
    table = manager._remote_actors()
    entry = table.get(record.actor_id)
    fresh = entry is None
    if fresh:
        entry = table[record.actor_id] = RemoteActor(record.actor_id, busy=True)
    if raw_spec is None:
        await manager._write_dead(record, "its host and owner nodes died and its creation spec is not in the "
                                          "control store")
        manager._fail_remote(entry, f"actor {record.actor_id.hex()} is dead: its creation spec is missing")
        return
    entry.owned, entry.detached = True, True
    entry.creation_spec = spec = lineage_pb2.TaskSpec.FromString(raw_spec)
    if spec.function_id not in manager.functions:  # exported to its dead owner node only
        try:
            raw_function = await loop.run_in_executor(None, manager.writer.client.get,
                                                      function_key(FunctionID(spec.function_id)))
        except Exception as exc:  # noqa: BLE001 - then placing it fails, and says so
            raw_function = None
            log.warning("actor %s: its class was not read: %s", record.actor_id.hex(), exc)
        if raw_function:
            manager.functions.setdefault(spec.function_id, lineage_pb2.FunctionRecord.FromString(raw_function))
    entry.node_id, entry.address, entry.busy = b"", "", True
    try:
        if await manager._restart_elsewhere(entry, dead_host):
            return
    except Exception:  # noqa: BLE001 - fall back to waiting for the record
        log.exception("actor %s: takeover restart failed", record.actor_id.hex())
    if fresh:
        await manager._find_host(entry, avoid=dead_host)
