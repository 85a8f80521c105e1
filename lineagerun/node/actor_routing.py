"""Actors across nodes: placement, calls from any node, recovery elsewhere.

A part of ``NodeManager`` (through ``ActorHandlers``), kept apart for size;
what the host node does is in actor_hosting.py.
Design (docs/runtime.md, "Actors across nodes"):

- **Placement.** An actor creation is routed like a task (cluster_link:
  keep, spill to the global scheduler, forward to a peer). Calls made on the
  creator's node before the creation is placed are deferred, then run here
  (kept) or follow the creation on the same peer session (forwarded), so the
  host sees them after the creation and in submission order.
- **Calls.** A node whose clients call an actor hosted elsewhere forwards the
  calls, in submission order, over its one peer session to the host node. The
  *host* numbers them and writes their TaskSpec + ActorCallRecord (in one
  batch) before they run: sequence numbers come from one place, so lineage is
  written once. Results come back on the peer session as for forwarded tasks.
  The host is found from the ``actor/`` record (cached per actor). A call
  waiting here for its host to be known keeps its arguments pinned
  (``remote-call:<task>``) until it is forwarded or submitted here.
- **Host death.** The node-table subscription reports it. Every node keeps
  its callers' unanswered calls to that actor (not failed). The actor's
  *owner node* (where it was created) decides: ``max_restarts`` used up ->
  DEAD record (callers get ``ActorDiedError``); else it places the creation
  again through the global scheduler and sends it with ``actor_restart``.
  One owner per actor: exactly one node recovers it. The new host ("adopts"
  it) reads the record and the call records (to continue the numbering),
  runs the constructor through its local scheduler (the lifetime resources
  are held there), then the planner's restore and replay
  (actor_recovery_driver.py). Callers resend their unanswered calls with
  ``actor_calls_resent``; the new host checks which were recorded by the
  dead host (their TaskSpec is durable): those are answered by the replay,
  the others are numbered anew after them. Non-owner callers find the new
  host by polling the ``actor/`` record.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

from lineagerun.core.ids import ActorID, TaskID
from lineagerun.control.client import PutOp
from lineagerun.core.keys import actor_key
from lineagerun.exceptions import RpcError
from lineagerun.node import actor_takeover, specs
from lineagerun.node.actor_hosting import ActorHosting
from lineagerun.node.actors import ActorEntry, ActorPhase, now_ms
from lineagerun.node.object_table import forwarded_holder, remote_call_holder
from lineagerun.rpc import lineage_pb2, node_pb2

log = logging.getLogger(__name__)

# A caller whose actor's host died waits this long for a node to recover it
# (the record to name a live host) before its calls fail with ActorDiedError.
RELOCATE_WAIT_MAX_S = 60.0
RELOCATE_POLL_S = 0.05
# The owner asks the global scheduler where to restart an actor at most this
# many times (RETRY answers and unreachable scheduler), PLACE_RETRY_S apart.
RESTART_PLACE_ATTEMPTS_MAX = 200
RESTART_PLACE_RETRY_S = 0.25
# Calls waiting for a remote actor's host to be known (or to come back).
REMOTE_PENDING_MAX = 100_000


@dataclass(eq=False)
class RemoteActor:
    """An actor hosted on another node that clients of this node call."""

    actor_id: bytes
    node_id: bytes = b""  # b"": not known yet (resolving, or its host died)
    address: str = ""
    owned: bool = False  # created here: this node recovers it when its host dies
    creation_spec: lineage_pb2.TaskSpec | None = None
    owner_session: object = None
    detached: bool = False
    pending: deque = field(default_factory=deque)  # TaskRuns not sent yet, in submission order
    resend: list = field(default_factory=list)  # TaskRuns sent to a host that died, unanswered
    busy: bool = False  # resolving or relocating


class ActorRouting(ActorHosting):
    """Methods of NodeManager for actors in a multi-node cluster."""

    def _remote_actors(self) -> dict[bytes, RemoteActor]:
        table = self.__dict__.get("_remote_actor_table")
        if table is None:
            table = self.__dict__["_remote_actor_table"] = {}
        return table

    def _spawn_routing(self, coro) -> None:
        tasks = self.__dict__.setdefault("_routing_tasks", set())
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _read(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def _read_actor_record(self, actor_id: bytes) -> lineage_pb2.ActorRecord | None:
        raw = await self._read(self.writer.client.get, actor_key(ActorID(actor_id)))
        return lineage_pb2.ActorRecord.FromString(raw) if raw else None

    # ======================================================== call intake

    def _call_taken_elsewhere(self, run, session) -> bool:
        """Hook of ``_prepare_call``: True if this module took the call (the
        actor is elsewhere, being placed, or being adopted here)."""
        if self.cluster is None:
            return False
        actor = self.actors.get(run.spec.actor_id)
        if actor is not None and self.__dict__.get("_intake_bypass"):
            return False
        if actor is not None and actor.phase is not ActorPhase.DEAD:
            if actor.adopting or actor.intake:
                self._intake(actor, session, run.spec, False)
                return True
            if actor.phase is ActorPhase.PENDING_CREATION and not actor.placed_here:
                actor.deferred.append((session, run.spec))
                self._hold_waiting(run)
                return True
            return False
        if actor is not None:
            return False  # dead here: answered as on one node
        self._remote_call(run)
        return True

    def _submit_here(self, session, spec_list: list, bypass: bool = True) -> None:
        """Submit actor calls through the normal path (``bypass``: past the
        hook's intake and deferral, for calls taken out of them in order)."""
        if not spec_list:
            return
        self.__dict__["_intake_bypass"] = bypass
        try:
            self._on_submit_tasks(session, node_pb2.SubmitTasks(specs=spec_list))
        finally:
            self.__dict__["_intake_bypass"] = False

    def _submit_waited(self, session, spec: lineage_pb2.TaskSpec) -> None:
        """Submit a call that waited here for its actor (deferred, or in the
        intake): its ``submitted:`` pin takes over from its waiting one."""
        self._submit_here(session, [spec])
        self.objects.release_holder(remote_call_holder(spec.task_id))

    def _actor_creation_kept(self, run) -> None:
        """Hook of ``_schedule_local``: the creation runs here; so do the
        calls deferred while it was being placed."""
        actor = self.actors.get(run.spec.actor_id)
        if actor is None or actor.placed_here:
            return
        actor.placed_here = True
        deferred, actor.deferred = actor.deferred, []
        for session, spec in deferred:
            self._submit_waited(session, spec)

    def _decorate_creation(self, run, message: node_pb2.ExecuteTask) -> None:
        """Hook of ``_send_execute``: an adopted actor's constructor runs as a
        replay, with its checkpoint restored in the same ExecuteTask."""
        actor = self.actors.get(run.spec.actor_id)
        if actor is None or actor.adopted_run is not run:
            return
        message.is_replay = True
        if actor.restart_checkpoint is not None:
            message.restore_checkpoint.CopyFrom(node_pb2.ObjectPayload(
                inline=actor.restart_checkpoint, size_bytes=len(actor.restart_checkpoint)))

    # ====================================================== remote calls

    def _remote_call(self, run) -> None:
        table = self._remote_actors()
        entry = table.get(run.spec.actor_id)
        if entry is None:
            entry = table[run.spec.actor_id] = RemoteActor(run.spec.actor_id)
        if len(entry.pending) >= REMOTE_PENDING_MAX:
            self._fail_returns(run.returns, "ActorUnavailableError",
                               f"{REMOTE_PENDING_MAX} calls to actor {run.spec.actor_id.hex()} wait for its node "
                               "(REMOTE_PENDING_MAX); retry later")
            return
        entry.pending.append(run)
        if entry.node_id:
            self._flush_remote(entry)
            return
        self._hold_waiting(run)
        if not entry.busy:
            entry.busy = True
            self._spawn_routing(self._find_host(entry, avoid=b""))

    async def _find_host(self, entry: RemoteActor, avoid: bytes) -> None:
        """Poll the actor's record until it names a live host other than
        ``avoid`` (or says DEAD), then send what waits."""
        deadline = asyncio.get_running_loop().time() + RELOCATE_WAIT_MAX_S
        why = "its record names no live node"
        while True:
            try:
                record = await self._read_actor_record(entry.actor_id)
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                record, why = False, f"its record could not be read ({exc})"
            if self._remote_actors().get(entry.actor_id) is not entry:
                return
            if record is None:
                self._fail_remote(entry, f"no actor with id {entry.actor_id.hex()} exists")
                return
            if record is not False:
                if record.state == lineage_pb2.DEAD:
                    self._fail_remote(entry, f"actor {entry.actor_id.hex()} is dead: "
                                             f"{record.death_cause.message or 'no reason recorded'}")
                    return
                host = record.node_id
                if host == self.node_id.binary():
                    local = self.actors.get(entry.actor_id)
                    if local is not None and local.phase is not ActorPhase.DEAD:
                        self._route_here(entry, local)
                        return
                elif host and host != avoid and self.cluster.address_of(host):
                    entry.node_id, entry.address, entry.busy = host, self.cluster.address_of(host), False
                    self._flush_remote(entry)
                    return
            if asyncio.get_running_loop().time() > deadline:
                self._fail_remote(entry, f"actor {entry.actor_id.hex()}'s node died and no node recovered it "
                                         f"within {RELOCATE_WAIT_MAX_S:.0f} s ({why})")
                return
            await asyncio.sleep(RELOCATE_POLL_S)

    def _route_here(self, entry: RemoteActor, actor: ActorEntry) -> None:
        """The actor now lives on this node: what waited goes to it."""
        self._remote_actors().pop(entry.actor_id, None)
        for run in entry.resend:
            self._intake(actor, run.owner, run.spec, True)
        for run in entry.pending:
            self._intake(actor, run.owner, run.spec, False)
        entry.resend, entry.pending = [], deque()  # their pins go once the intake handled them (_drain)

    def _flush_remote(self, entry: RemoteActor) -> None:
        if not entry.node_id or (not entry.pending and not entry.resend):
            return
        peer = self.cluster.peers.get(entry.address)
        resend, entry.resend = entry.resend, []
        pending, entry.pending = list(entry.pending), deque()
        for runs, resent in ((resend, True), (pending, False)):
            if not runs:
                continue
            for run in runs:
                self.cluster._send_function_and_args(peer, run)
                self._track_forwarded(run, entry)
                if run.arg_ids:
                    self.objects.release_holder(remote_call_holder(run.task_id))  # forwarded: pins them now
            message = node_pb2.SubmitTasks(specs=[r.spec for r in runs], actor_calls_resent=resent)
            if not peer.send(node_pb2.ClientMessage(submit_tasks=message)):
                log.warning("peer %s is closed; %d call(s) to actor %s wait for its recovery", entry.address,
                            len(runs), entry.actor_id.hex()[:16])
            self.cluster.counters["forwarded"] += len(runs)

    def _track_forwarded(self, run, entry: RemoteActor) -> None:
        from lineagerun.node.cluster_link import Forwarded  # cluster_link imports the node manager's modules

        cluster = self.cluster
        cluster.forwarded[run.task_id] = Forwarded(run, entry.address, entry.node_id, set(run.returns))
        if run.arg_ids:
            self.objects.pin(run.arg_ids, forwarded_holder(run.task_id))
        for oid in run.returns:
            cluster._forwarded_by_return[oid] = run.task_id

    def _fail_remote(self, entry: RemoteActor, message: str) -> None:
        self._remote_actors().pop(entry.actor_id, None)
        for run in list(entry.resend) + list(entry.pending):
            self._fail_returns(run.returns, "ActorDiedError", message)
        self._release_waiting(entry)

    def _hold_waiting(self, run) -> None:
        """A call waits here for its actor's node (its caller may drop its
        refs meanwhile): pinned until it is forwarded or submitted here."""
        if run.arg_ids:
            self.objects.pin(run.arg_ids, remote_call_holder(run.task_id))

    def _release_waiting(self, entry: RemoteActor) -> None:
        for run in list(entry.resend) + list(entry.pending):
            if run.arg_ids:
                self.objects.release_holder(remote_call_holder(run.task_id))
        entry.resend, entry.pending = [], deque()

    # ============================================ creation placed elsewhere

    def _actor_creation_forwarded(self, run, address: str, node_id: bytes) -> None:
        """Hook of cluster_link ``_forward``: the creation went to ``node_id``;
        this node routes calls there and recovers the actor if that node dies."""
        from lineagerun.node.server import TaskRun

        actor = self.actors.actors.pop(run.spec.actor_id, None)
        entry = RemoteActor(run.spec.actor_id, node_id, address, owned=True, creation_spec=run.spec)
        if actor is not None:
            if actor.name and self.actors.by_name.get((actor.namespace, actor.name)) is actor:
                del self.actors.by_name[(actor.namespace, actor.name)]
            entry.owner_session, entry.detached = actor.owner, actor.detached
            for session, spec in actor.deferred:  # still pinned (_hold_waiting): flushed below
                entry.pending.append(TaskRun(spec, specs.return_ids(spec), session,
                                             arg_ids=specs.arg_object_ids(spec)))
            actor.deferred = []
        self._remote_actors()[run.spec.actor_id] = entry
        self._flush_remote(entry)

    def _owner_gone_remote(self, session) -> None:
        """Hook of ``_driver_gone``: its non-detached actors elsewhere die with it."""
        for entry in list(self._remote_actors().values()):
            if entry.owned and entry.owner_session is session and not entry.detached:
                self._remote_actors().pop(entry.actor_id, None)
                self._release_waiting(entry)
                self._send_kill(entry.actor_id, entry.address, True)

    def _send_kill(self, actor_id: bytes, address: str, no_restart: bool) -> None:
        if address:
            self.cluster.peers.get(address).send(node_pb2.ClientMessage(
                kill_actor=node_pb2.KillActor(actor_id=actor_id, no_restart=no_restart)))

    def _kill_remote_actor(self, message: node_pb2.KillActor) -> None:
        entry = self._remote_actors().get(message.actor_id)
        if entry is not None and entry.node_id:
            self._send_kill(message.actor_id, entry.address, message.no_restart)
            return
        self._spawn_routing(self._kill_by_record(message))

    async def _kill_by_record(self, message: node_pb2.KillActor) -> None:
        try:
            record = await self._read_actor_record(message.actor_id)
        except Exception as exc:  # noqa: BLE001 - nothing to answer: kill is fire and forget
            log.warning("kill of actor %s: its record could not be read: %s", message.actor_id.hex(), exc)
            return
        if record is not None and record.state != lineage_pb2.DEAD:
            self._send_kill(message.actor_id, self.cluster.address_of(record.node_id) or "", message.no_restart)

    # ================================================== host node death

    def _actor_node_died(self, node_id: bytes, record) -> None:
        """Hook of cluster_link ``_node_died`` (before it fails what was
        forwarded there): keep this node's calls to actors hosted there."""
        cluster = self.cluster
        stolen: dict[bytes, list] = {}
        for task_id, forwarded in list(cluster.forwarded.items()):
            if forwarded.node_id == node_id and forwarded.run.spec.is_actor_task:
                lost = [o for o in forwarded.remaining if not self.objects.is_known(o)]
                if lost:  # pinned again before the forward's pin goes: it is sent on once relocated
                    self._hold_waiting(forwarded.run)
                    stolen.setdefault(forwarded.run.spec.actor_id, []).append(forwarded.run)
                cluster._forwarded_done(task_id)
        for entry in list(self._remote_actors().values()):
            if entry.node_id != node_id:
                continue
            entry.resend = stolen.pop(entry.actor_id, []) + entry.resend
            entry.node_id, entry.address, entry.busy = b"", "", True
            self._spawn_routing(self._relocate(entry, node_id))
        for actor_id, runs in stolen.items():  # calls of an actor not in the table (should not happen)
            entry = self._remote_actors().setdefault(actor_id, RemoteActor(actor_id))
            entry.resend += runs
            if not entry.busy:
                entry.busy = True
                self._spawn_routing(self._find_host(entry, avoid=node_id))
        actor_takeover.on_node_died(self, node_id)  # actors whose owner node is gone (too)

    async def _relocate(self, entry: RemoteActor, dead_node: bytes) -> None:
        if entry.owned:
            try:
                if await self._restart_elsewhere(entry, dead_node):
                    return
            except Exception:  # noqa: BLE001 - fall back to waiting for the record
                log.exception("actor %s: restart after its node died failed", entry.actor_id.hex())
        await self._find_host(entry, avoid=dead_node)

    async def _restart_elsewhere(self, entry: RemoteActor, dead_node: bytes) -> bool:
        """The owner's decision: dead for good, or placed again. True when
        this call settled where the calls go."""
        record = await self._read_actor_record(entry.actor_id)
        # A record still naming this node: the host died before its own
        # record write landed (the actor was forwarded from here).
        on_dead_node = record is not None and (record.node_id == dead_node or (
            record.node_id == self.node_id.binary() and self.actors.get(entry.actor_id) is None))
        if record is None or record.state == lineage_pb2.DEAD or not on_dead_node:
            return False  # nothing to recover here; the record says where it is
        spec = entry.creation_spec
        limit = record.max_restarts
        if limit != -1 and record.num_restarts >= limit:
            why = (f"its node {dead_node.hex()[:16]} died; max_restarts={limit} and {record.num_restarts} "
                   "restart(s) made")
            await self._write_dead(record, why)
            self._fail_remote(entry, f"actor {entry.actor_id.hex()} is dead: {why}")
            return True
        placement = await self._place_restart(spec, dead_node)
        if self._remote_actors().get(entry.actor_id) is not entry:
            return True
        if placement is None or isinstance(placement, str):
            why = f"its node {dead_node.hex()[:16]} died and it cannot be placed again: {placement or 'no node'}"
            await self._write_dead(record, why)
            self._fail_remote(entry, f"actor {entry.actor_id.hex()} is dead: {why}")
            return True
        node_id, address = placement
        if node_id == self.node_id.binary():
            self._adopt_actor(spec, entry.owner_session)
            self._route_here(entry, self.actors.get(entry.actor_id))
            return True
        from lineagerun.node.server import TaskRun

        peer = self.cluster.peers.get(address)
        self.cluster._send_function_and_args(peer, TaskRun(spec, [], None, arg_ids=specs.arg_object_ids(spec)))
        peer.send(node_pb2.ClientMessage(submit_tasks=node_pb2.SubmitTasks(specs=[spec], actor_restart=True)))
        entry.node_id, entry.address, entry.busy = node_id, address, False
        self._flush_remote(entry)
        return True

    async def _place_restart(self, spec: lineage_pb2.TaskSpec, dead_node: bytes):
        """(node id, address) from the global scheduler, or a reason it cannot be placed."""
        from lineagerun.scheduler.client import INFEASIBLE, PLACED, TaskToPlace

        task = TaskToPlace(TaskID(spec.task_id), specs.demand(spec), specs.strategy_of(spec), ())
        last = "the global scheduler did not answer"
        for _ in range(RESTART_PLACE_ATTEMPTS_MAX):
            try:
                placement = (await self.cluster.scheduler.place([task], requester=self.node_id))[0]
            except RpcError as exc:
                last = str(exc)
                await asyncio.sleep(RESTART_PLACE_RETRY_S)
                continue
            if placement.outcome == PLACED and placement.node_id is not None \
                    and placement.node_id.binary() != dead_node:
                node_id = placement.node_id.binary()
                if node_id == self.node_id.binary():
                    return node_id, self.address
                return node_id, placement.address
            # INFEASIBLE too is retried: a node with its resources may join
            # (as Ray keeps a restarting actor pending) until the attempts run out.
            last = placement.reason or ("no alive node can fit it" if placement.outcome == INFEASIBLE
                                        else "the scheduler asked to retry")
            await asyncio.sleep(max(placement.retry_after_ms / 1000, RESTART_PLACE_RETRY_S))
        return last

    async def _write_dead(self, record: lineage_pb2.ActorRecord, why: str) -> None:
        record.state = lineage_pb2.DEAD
        record.death_cause.kind, record.death_cause.message = "ActorDiedError", why
        record.updated_ms = now_ms()
        ops = [PutOp(actor_key(ActorID(record.actor_id)), record.SerializeToString())]
        try:
            await self.writer.write_now(ops)
        except Exception as exc:  # noqa: BLE001 - callers elsewhere then time out instead
            log.warning("actor %s: DEAD record not written: %s", record.actor_id.hex(), exc)


