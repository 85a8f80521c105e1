"""What a node frees when a driver it serves goes away (R6: "driver exits
while tasks run: the cluster frees what it held; lineage stays queryable").

``NodeManager._driver_gone`` already kills the driver's non-detached actors
(here and, through their owner entries, on other nodes) and cancels its
queued tasks. This adds, as Ray does when a job's driver exits:

- its *running* tasks are cancelled with force (their workers are killed, so
  the CPUs they hold come back at once rather than when they finish);
  a task forwarded to another node is cancelled there (cluster_link);
- the objects it owns leave the object stores: its ``put`` values and the
  results of its tasks and of its non-detached actors' calls are unpinned,
  their shared-memory files deleted (when the last reader lets go), and
  their entries answer ``OwnerDiedError``; nodes holding copies are told to
  release them.

Not freed: the tasks that its tasks submitted (owned by their workers'
sessions; they run to their end), and anything of its detached actors.
Lineage records are never removed: the control store keeps them.
"""

from __future__ import annotations

from lineagerun.core.ids import ObjectID

OWNER_DIED_KIND = "OwnerDiedError"


def release_driver_work(manager, session, actor_ids: set[bytes]) -> None:
    """After ``_driver_gone``: ``actor_ids`` are the actors it killed for
    ``session`` (their call results go too)."""
    for run in list(manager.tasks.values()):
        spec = run.spec
        if run.owner is session and not spec.is_actor_task and not spec.is_actor_creation \
                and run.task_id in manager.tasks:
            manager._cancel(run, force=True)
    _release_objects(manager, session.job_id, actor_ids)


def _owned(object_id: bytes, job_id: bytes, actor_ids: set[bytes]) -> bool:
    if len(object_id) != ObjectID.SIZE:
        return False
    task_id = ObjectID(object_id).task_id()
    actor_id = task_id.actor_id()
    if actor_id.is_nil_actor():
        return task_id.job_id().binary() == job_id  # its puts and its tasks' results
    return actor_id.binary() in actor_ids


def _release_objects(manager, job_id: bytes, actor_ids: set[bytes]) -> None:
    if not job_id:
        return
    objects = manager.objects
    released = []
    for object_id, entry in list(objects.entries.items()):
        if not _owned(object_id, job_id, actor_ids):
            continue
        released.append(object_id)
        if entry.in_store:
            objects.release_primary([object_id])
            manager.store.delete(object_id)  # the file goes when its last reader lets go
            entry.payload, entry.in_store = None, False
            entry.error_kind = OWNER_DIED_KIND
            entry.error_message = (f"object {object_id.hex()} was freed: its owner (the driver of job "
                                   f"{job_id.hex()}) exited")
    if released and manager.cluster is not None:
        manager.cluster.release(released)  # copies on the nodes that made them


def owned_actor_ids(manager, session) -> set[bytes]:
    """The non-detached actors ``session`` owns, here or hosted elsewhere
    (read before ``_driver_gone`` kills them)."""
    ids = {actor.actor_id for actor in manager.actors.actors.values()
           if actor.owner is session and not actor.detached}
    if manager.cluster is not None:
        ids |= {entry.actor_id for entry in manager._remote_actors().values()
                if entry.owned and entry.owner_session is session and not entry.detached}
    return ids
