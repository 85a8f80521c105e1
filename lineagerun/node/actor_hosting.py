"""Actors across nodes, on the host: creations and calls a peer sent, an
actor adopted after its host died (its record and call records read, its
constructor run as a replay), and the intake that submits the calls which
waited meanwhile, answering resent calls the dead host had recorded through
the replay instead of running them twice. A part of ``NodeManager``
(through ``ActorRouting``), kept apart for size; the design is in
actor_routing.py's docstring.
"""

from __future__ import annotations

import logging

from lineagerun.core.ids import ActorID, ObjectID, TaskID
from lineagerun.control.client import PutOp
from lineagerun.core import actor_recovery as ar
from lineagerun.core.keys import actor_call_key, object_key, task_key
from lineagerun.node import specs
from lineagerun.node.actors import ActorEntry, ActorPhase, now_ms
from lineagerun.node.object_table import remote_call_holder
from lineagerun.rpc import lineage_pb2, node_pb2

log = logging.getLogger(__name__)

# Call records probed per read when a new host looks for the end of the chain.
CALL_SCAN_WINDOW = 100
# Resent calls checked against the control store per read.
RESENT_CHECK_BATCH_MAX = 100
# Results up to this size are stored inline with a checkpoint (see _result_records).
RESULT_RECORD_INLINE_MAX_BYTES = 64 * 1024


class ActorHosting:
    """Methods of NodeManager for actors this node hosts for others."""

    def _accept_actor_specs(self, session, spec_list: list, message: node_pb2.SubmitTasks) -> None:
        """Hook of cluster_link ``_accept``: actor creations and calls a peer sent."""
        calls = []
        for spec in spec_list:
            if spec.is_actor_creation:
                self._submit_here(session, calls, bypass=False)
                calls = []
                if message.actor_restart:
                    self._adopt_actor(spec, session)
                else:
                    self._host_creation(session, spec)
            elif message.actor_calls_resent:
                actor = self.actors.get(spec.actor_id)
                if actor is None:
                    calls.append(spec)  # routed on from here, as any call
                else:
                    self._intake(actor, session, spec, True)
            else:
                calls.append(spec)
        self._submit_here(session, calls, bypass=False)  # the hook queues them behind an adoption

    def _host_creation(self, session, spec: lineage_pb2.TaskSpec) -> None:
        from lineagerun.node.server import TaskRun

        existing = self.actors.get(spec.actor_id)
        if existing is not None:
            return  # a duplicate
        name, namespace, detached = specs.actor_naming(spec, session.namespace)
        actor = ActorEntry(spec.actor_id, spec.task_id, spec, name, namespace, detached, session,
                           self.node_id.binary(), max_concurrency=max(1, spec.max_concurrency), placed_here=True,
                           owner_node_id=session.peer_node_id)
        self.actors.add(actor)
        self.writer.write_later(actor.key, actor.record().SerializeToString())
        run = TaskRun(spec, specs.return_ids(spec), session, arg_ids=specs.arg_object_ids(spec))
        run.scheduled = True
        self.tasks[spec.task_id] = run
        self._schedule_local(run)

    # ----------------------------------------------------------- adoption

    def _adopt_actor(self, spec: lineage_pb2.TaskSpec, owner) -> None:
        """Recover here an actor whose host node died (sent by its owner node)."""
        from lineagerun.node.server import TaskRun

        existing = self.actors.get(spec.actor_id)
        if existing is not None and existing.phase is not ActorPhase.DEAD:
            return  # already here
        name, namespace, detached = specs.actor_naming(spec, getattr(owner, "namespace", "") or "")
        actor = ActorEntry(spec.actor_id, spec.task_id, spec, name, namespace, detached, owner,
                           self.node_id.binary(), max_concurrency=max(1, spec.max_concurrency),
                           phase=ActorPhase.RESTARTING, placed_here=True, adopting=True)
        actor.adopted_run = TaskRun(spec, [], owner, arg_ids=specs.arg_object_ids(spec))
        actor.died_ms = now_ms()
        self.actors.add(actor)
        self._spawn_routing(self._adopt(actor))

    async def _adopt(self, actor: ActorEntry) -> None:
        actor_id = ActorID(actor.actor_id)
        try:
            record = await self._read_actor_record(actor.actor_id)
            next_seq = await self._read(self._end_of_calls, actor_id, record)
        except Exception as exc:  # noqa: BLE001 - the actor cannot be recovered without them
            actor.adopting = False
            self._recovery_failed(actor, f"recovery on node {self.node_id.hex()[:16]}: its record or calls "
                                         f"could not be read ({exc})")
            return
        if record is None or record.state == lineage_pb2.DEAD:
            actor.adopting = False
            self._recovery_failed(actor, "its record is gone or says DEAD")
            return
        actor.num_restarts = record.num_restarts
        actor.owner_node_id = record.owner_node_id  # the creator's node, even when another node recovers it
        actor.next_sequence_number = max(next_seq, record.next_sequence_number)
        actor.replay_end_seq = actor.next_sequence_number  # every call the dead host recorded
        if record.checkpoint_object_id:
            actor.checkpoint_sequence_number = record.checkpoint_sequence_number
            actor.checkpoint_object_id = record.checkpoint_object_id
        # The record names this node before any caller can be told so.
        future = self.writer.write_now([PutOp(actor.key, actor.record().SerializeToString())])
        try:
            await future
        except Exception as exc:  # noqa: BLE001 - callers then find it by polling a little longer
            log.warning("actor %s: record naming this node not written: %s", actor.actor_id.hex(), exc)
        try:
            beyond = await self._read(self._calls_beyond_window, actor_id, record, actor.next_sequence_number)
        except Exception as exc:  # noqa: BLE001 - then they are replayed (correct, only slower)
            log.warning("actor %s: calls past its checkpoint window not read: %s", actor.actor_id.hex(), exc)
            beyond = []
        actor.adopting = False
        if actor.phase is ActorPhase.DEAD:
            return
        self._recovery_feed(ar.ActorDied(actor_id, None, "its node died"))
        self._hold_recorded(actor, beyond)
        self._drain_intake(actor)

    def _calls_beyond_window(self, actor_id: ActorID, record: lineage_pb2.ActorRecord, end: int) -> list:
        """Specs of the recorded calls past the checkpoint window (blocking).
        The dead host never released them (the window), so they are queued
        calls, not replays: a recovery replays at most checkpoint_interval."""
        interval = record.checkpoint_interval
        if interval <= 0:
            return []
        first = (record.checkpoint_sequence_number + 1 if record.checkpoint_object_id else 0) + interval
        client, found = self.writer.client, []
        for start in range(first, end, CALL_SCAN_WINDOW):
            window = range(start, min(end, start + CALL_SCAN_WINDOW))
            calls = [lineage_pb2.ActorCallRecord.FromString(raw) for raw in
                     client.get_many([actor_call_key(actor_id, seq) for seq in window]) if raw is not None]
            raws = client.get_many([task_key(TaskID(c.task_id)) for c in calls]) if calls else []
            found += [lineage_pb2.TaskSpec.FromString(raw) for raw in raws if raw is not None]
        return found

    def _hold_recorded(self, actor: ActorEntry, spec_list: list) -> None:
        from lineagerun.node.server import TaskRun

        actor_id = ActorID(actor.actor_id)
        for spec in spec_list:
            if spec.task_id in self.tasks:
                continue
            run = TaskRun(spec, specs.return_ids(spec), None, arg_ids=specs.arg_object_ids(spec))
            run.scheduled = True
            self.tasks[spec.task_id] = run
            actor.held[spec.sequence_number] = run
            self._recovery_feed(ar.CallSubmitted(actor_id, spec.sequence_number + 1, TaskID(spec.task_id)))

    def _end_of_calls(self, actor_id: ActorID, record: lineage_pb2.ActorRecord | None) -> int:
        """The node seq after the last recorded call (blocking; off the loop)."""
        seq = record.checkpoint_sequence_number + 1 if record is not None and record.checkpoint_object_id else 0
        end = seq
        while True:
            window = range(seq, seq + CALL_SCAN_WINDOW)
            found = [s for s, raw in zip(window, self.writer.client.get_many(
                [actor_call_key(actor_id, s) for s in window])) if raw is not None]
            if not found:
                return end
            end = found[-1] + 1
            seq = window.stop

    def _intake(self, actor: ActorEntry, session, spec: lineage_pb2.TaskSpec, resent: bool) -> None:
        actor.intake.append((session, spec, resent))
        if not actor.adopting:
            self._drain_intake(actor)

    def _drain_intake(self, actor: ActorEntry) -> None:
        if not actor.intake_draining and actor.intake:
            actor.intake_draining = True
            self._spawn_routing(self._drain(actor))

    async def _drain(self, actor: ActorEntry) -> None:
        """Submit the calls that waited, in arrival order; resent ones that
        the dead host recorded are answered by the replay instead."""
        try:
            while actor.intake and actor.phase is not ActorPhase.DEAD:
                session, spec, resent = actor.intake[0]
                if not resent:
                    actor.intake.popleft()
                    self._submit_waited(session, spec)
                    continue
                batch = []
                while actor.intake and actor.intake[0][2] and len(batch) < RESENT_CHECK_BATCH_MAX:
                    batch.append(actor.intake.popleft())
                try:
                    await self._check_resent(actor, batch)
                finally:  # each was submitted, attached to the replay or failed
                    for _, spec, _ in batch:
                        self.objects.release_holder(remote_call_holder(spec.task_id))
        finally:
            actor.intake_draining = False
        if actor.phase is ActorPhase.DEAD:
            self._fail_actor_calls(actor)

    async def _check_resent(self, actor: ActorEntry, batch: list) -> None:
        keys = [task_key(TaskID(s.task_id)) for _, s, _ in batch]
        try:
            raws = await self._read(self.writer.client.get_many, keys)
        except Exception as exc:  # noqa: BLE001 - unknown: fail them rather than risk running twice
            for _, s, _ in batch:
                self._fail_returns(specs.return_ids(s), "ActorUnavailableError",
                                   f"call {s.task_id.hex()[:16]} could not be checked after its actor's "
                                   f"node died ({exc}); its result is unknown")
            return
        for (session, spec, _), raw in zip(batch, raws):
            if raw is None:
                self._submit_here(session, [spec])
            else:
                self._attach_recorded(actor, session, lineage_pb2.TaskSpec.FromString(raw))

    def _attach_recorded(self, actor: ActorEntry, session, spec: lineage_pb2.TaskSpec) -> None:
        """A resent call the dead host had recorded: the replay (or, before the
        checkpoint, its result's record) answers it; never run again."""
        returns = specs.return_ids(spec)
        if spec.sequence_number < actor.checkpoint_sequence_number + (1 if actor.checkpoint_object_id else 0):
            self._spawn_routing(self._results_from_records(returns))
        if not getattr(session, "is_peer", False):
            return  # a client here waits on this node's object table
        ready = []
        for oid in returns:
            if self.objects.is_ready(oid):
                self.cluster._peer_returns.pop(oid, None)
                ready.append(self.objects.result(oid))
            else:
                self.cluster._peer_returns[oid] = session
        if ready and not session.closed:
            session.send(node_pb2.NodeMessage(objects_reply=node_pb2.ObjectsReply(request_id=0, objects=ready)))

    async def _results_from_records(self, returns: list[bytes]) -> None:
        raws = await self._read(self.writer.client.get_many, [object_key(ObjectID(o)) for o in returns])
        for oid, raw in zip(returns, raws):
            if self.objects.is_ready(oid):
                continue
            record = lineage_pb2.ObjectRecord.FromString(raw) if raw else None
            if record is not None and record.has_inline_value:
                self.objects.add_payload(oid, node_pb2.ObjectPayload(inline=record.inline_value,
                                                                     size_bytes=len(record.inline_value)))
            else:
                self.objects.add_error(oid, "ObjectLostError", (
                    f"the result {oid.hex()} of an actor call covered by its checkpoint was only on a node that "
                    f"died, and its record {'holds no value (too large)' if record else 'is missing'}"))

    def _schedule_adopted_creation(self, actor: ActorEntry) -> None:
        """The adopted actor's constructor goes through this node's scheduler,
        which holds its lifetime resources here from then on."""
        run = actor.adopted_run
        if run is None or run.task_id in self.tasks or actor.worker_id is not None:
            return
        # Recorded as a REPLAY attempt numbered by the restart (the first run keeps attempt 0).
        run.attempt, run.worker_id, run.scheduled = actor.restart_incarnation, None, True
        run.attempt_reason, run.started_ms = lineage_pb2.REPLAY, now_ms()
        self.tasks[run.task_id] = run
        self._schedule_local(run)

    def _adopted_creation_finished(self, actor: ActorEntry, run, message: node_pb2.TaskFinished) -> bool:
        """From ``_creation_finished``; False if ``run`` is not an adopted creation."""
        if actor.adopted_run is not run:
            return False
        actor.adopted_run = None
        if message.application_error:
            self._recovery_failed(actor, f"on node {self.node_id.hex()[:16]} its constructor or restore raised "
                                         f"{message.error_kind or 'an exception'}")
            return True
        self.writer.write_later(actor.key, actor.record().SerializeToString())
        self._recovery_feed(ar.CreationDone(ActorID(actor.actor_id), actor.restart_incarnation))
        return True

    def _result_records(self, actor: ActorEntry) -> list:
        """ObjectRecords (small values inline) of the calls the next
        checkpoint covers: written with it, so a caller whose answer was lost
        with this node can still read its result after the actor moved."""
        ops = []
        for oid in actor.window_returns:
            entry = self.objects.entries.get(oid)
            payload = entry.payload if entry is not None else None
            if payload is None or payload.WhichOneof("kind") != "inline" or len(oid) != ObjectID.SIZE:
                continue
            record = lineage_pb2.ObjectRecord(object_id=oid, producing_task_id=oid[:TaskID.SIZE],
                                              owner_worker_id=actor.creation_spec.owner_worker_id,
                                              size_bytes=len(payload.inline), locations=[self.node_id.binary()])
            if len(payload.inline) <= RESULT_RECORD_INLINE_MAX_BYTES:
                record.inline_value, record.has_inline_value = payload.inline, True
            ops.append(PutOp(object_key(ObjectID(oid)), record.SerializeToString()))
        return ops

