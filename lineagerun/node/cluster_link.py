"""A node manager's part in a multi-node cluster (docs/operations.md).

The node manager (server.py) runs one node; this links it to the others:

- **heartbeat**: a ``LoadReporter`` sends the node's load to the global
  scheduler every heartbeat interval (incarnation = the node's start time in
  ms, so a restarted node is a new incarnation); FENCED stops the node.
- **node directory**: the ``node/`` table of the control store, read at start
  and then followed by subscription: addresses of peers, and node deaths
  (copies on a dead node are forgotten and rebuilt from lineage when
  wanted; tasks forwarded to it are retried elsewhere:
  reconstruction_driver.py).
- **routing** (bottom-up): a task submitted here waits until each of its
  by-reference arguments exists somewhere (as Ray's owner resolves
  dependencies before asking for a lease), then ``placement.decide`` keeps
  it, fails it, or spills it to the global scheduler (batched per loop
  turn); a task placed elsewhere is forwarded to that node manager over a
  peer session (peers.py), with its function and its arguments' values or
  locations. Its results come back on that session.
- **objects elsewhere**: gets, waits and local tasks pull what they need
  (transfer.py).
- **tasks from peers**: queued here, never spilled again; their return
  values are sent back to the forwarding node as soon as they exist.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from lineagerun.core.ids import NodeID, ObjectID, TaskID
from lineagerun.core.keys import NODE_PREFIX, OBJECT_PREFIX
from lineagerun.core.resources import RESOURCE_UNIT_SCALING, ResourceSet
from lineagerun.exceptions import RpcError
from lineagerun.node import specs
from lineagerun.node.object_table import forwarded_holder, routed_holder
from lineagerun.node.peer_dial import peer_dial
from lineagerun.node.peer_intake import PeerIntake
from lineagerun.node.peer_resubmit import PeerResubmitter, attempt_reason
from lineagerun.node.peers import PeerConnection, PeerPool, location_payload
from lineagerun.node.placement import FAIL, KEEP, TaskFacts, decide
from lineagerun.node.reconstruction_driver import ReconstructionDriver
from lineagerun.node.transfer import ObjectFetcher
from lineagerun.objects.transfer import ObjectPuller, PayloadInfo, token_channel_factory
from lineagerun.rpc import lineage_pb2, node_pb2
from lineagerun.scheduler.client import (
    INFEASIBLE,
    PLACED,
    RETRY,
    ArgumentInfo,
    GlobalSchedulerClient,
    LoadReporter,
    NodeLoad,
    TaskToPlace,
)

log = logging.getLogger(__name__)

# A spill whose placement call failed (scheduler down or restarting) is
# asked again after this long, at most this many times, before its task
# fails with UnavailableError (about a minute: a scheduler restart takes ~1 s).
SPILL_RETRY_DELAY_S = 0.5
SPILL_ATTEMPTS_MAX = 120
# Sealed-object hints kept for the next load report (the report carries 1,000).
SEALED_HINTS_MAX = 1_000
# Weight of the newest task duration in the node's mean task time.
MEAN_TASK_MS_WEIGHT = 0.1


@dataclass(eq=False)
class Forwarded:
    """A task of this node's clients that runs on another node."""

    run: object
    address: str
    node_id: bytes
    remaining: set[bytes] = field(default_factory=set)  # return ids not back yet
    orphaned: bool = False  # the session to its node ended: results come from lookups


class ClusterLink(PeerIntake):
    def __init__(self, manager, *, scheduler_address: str, token: str | None, incarnation: int,
                 heartbeat_interval_ms: int, on_fenced: Callable[[str], None], root_cert: bytes | None = None):
        self.manager = manager
        self.node_id: bytes = manager.node_id.binary()
        self.incarnation = incarnation
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.scheduler = GlobalSchedulerClient(scheduler_address, token, root_cert=root_cert)
        dial = peer_dial()  # the address of a peer's pair proxy in a chaos cluster, else unchanged
        channels = token_channel_factory(token, root_cert=root_cert)
        self.puller = ObjectPuller(manager.store, lambda address: channels(dial(address)), token=token)
        self.peers = PeerPool(token, self.node_id, on_results=self._peer_results, on_closed=self._peer_closed,
                              root_cert=root_cert, dial=dial)
        self.fetcher = ObjectFetcher(manager.objects, self.puller, self.peers, own_node_id=self.node_id,
                                     read_record=self._read_record, address_of=self.address_of,
                                     node_of=self.node_of, still_wanted=self._still_wanted,
                                     on_known=self._object_known)
        manager.objects.args_in_use = self._args_in_use  # pulled copies of these stay pinned
        self.reconstruction = ReconstructionDriver(manager, self)  # lost objects, tasks on dead nodes
        manager.reconstruction = self.reconstruction
        self.fetcher.on_unavailable = self.reconstruction.unavailable
        self.fetcher.on_no_live_copy = self.reconstruction.record_names_no_live_copy
        self.fetcher.on_pull_failed = self.reconstruction.pull_failed
        self.reporter = LoadReporter(self.scheduler, self._load, interval_ms=heartbeat_interval_ms,
                                     on_fenced=on_fenced)
        self._on_fenced = on_fenced
        self.nodes: dict[bytes, lineage_pb2.NodeRecord] = {}
        self._parked: dict[bytes, set[bytes]] = {}        # task id -> argument ids not known anywhere yet
        self._parked_on: dict[bytes, set[bytes]] = {}     # object id -> parked task ids
        self._to_place: list = []
        self._placing: set[bytes] = set()                 # task ids spilled, placement not applied yet
        self._respilling: set[bytes] = set()              # task ids waiting to be spilled again
        self._forwarding: set[bytes] = set()              # task ids placed on a peer, not sent yet
        self._spill_attempts: dict[bytes, int] = {}       # task id -> placements that failed or said RETRY
        self.forwarded: dict[bytes, Forwarded] = {}
        self._forwarded_by_return: dict[bytes, bytes] = {}  # return id -> task id
        self._peer_returns: dict[bytes, object] = {}      # return id -> peer Session that forwarded the task
        self._wanted_args: set[bytes] = set()             # arguments of local tasks not here yet
        self._sealed_hints: deque = deque(maxlen=SEALED_HINTS_MAX)
        self._evicted_hints: deque = deque(maxlen=SEALED_HINTS_MAX)
        self._reported_once = False
        self._mean_task_ms: float | None = None
        self._subscription = None
        self._tasks: set[asyncio.Task] = set()
        self.counters = {"spilled": 0, "forwarded": 0, "accepted": 0, "placed_here": 0}
        self.resubmitter = PeerResubmitter(self)  # tasks of a peer session that ended (peer_resubmit.py)

    # ============================================================ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        client = self.manager.writer.client

        def on_change(change) -> None:
            loop.call_soon_threadsafe(self._node_changed, change.key, change.value)

        self._subscription = await loop.run_in_executor(None, lambda: client.subscribe(NODE_PREFIX, on_change))
        records = await loop.run_in_executor(None, lambda: list(client.scan_prefix(NODE_PREFIX)))
        for key, value in records:
            self._node_changed(key, value)
        self.reporter.start()

    async def stop(self) -> None:
        self.resubmitter.stopping = True
        await self.reporter.stop()
        if self._subscription is not None:
            self._subscription.close()
        for task in list(self._tasks):
            task.cancel()
        await self.fetcher.close()
        await self.peers.close()
        await self.puller.close()
        await self.scheduler.close()

    def payload_info(self, object_id: bytes) -> PayloadInfo | None:
        """For the ObjectManager service: what the store cannot tell about an object."""
        entry = self.manager.objects.entries.get(object_id)
        if entry is None or entry.payload is None:
            return None
        return PayloadInfo(entry.payload.is_error, tuple(entry.payload.nested_object_ids))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _read_record(self, key: bytes):
        client = self.manager.writer.client
        future = asyncio.get_running_loop().run_in_executor(None, client.get, key)
        future.add_done_callback(lambda f: self._record_read(key, f))
        return future

    def _record_read(self, key: bytes, future: asyncio.Future) -> None:
        """An object's record is missing: reconstruction decides whether the
        object is lost (its node died before writing it), so a lookup of a
        nested ref does not poll forever."""
        if not future.cancelled() and future.exception() is None and future.result() is None \
                and key.startswith(OBJECT_PREFIX) and len(key) >= ObjectID.SIZE:
            self.reconstruction.record_missing(key[-ObjectID.SIZE:])

    # ======================================================= node directory

    def address_of(self, node_id: bytes) -> str | None:
        record = self.nodes.get(node_id)
        return record.address if record is not None and record.alive else None

    def node_of(self, address: str) -> bytes:
        for node_id, record in self.nodes.items():
            if record.address == address and record.alive:
                return node_id
        return b""

    def _node_changed(self, key: bytes, value: bytes | None) -> None:
        node_id = key[len(NODE_PREFIX):]
        if value is None:
            return
        try:
            record = lineage_pb2.NodeRecord.FromString(value)
        except Exception:  # noqa: BLE001 - a malformed record is somebody else's bug
            log.warning("ignoring a malformed node record under %r", key)
            return
        previous = self.nodes.get(node_id)
        if previous is not None and record.incarnation < previous.incarnation:
            return  # a late write of an older life
        self.nodes[node_id] = record
        if record.alive:
            return
        if node_id == self.node_id:
            if record.incarnation == self.incarnation and record.death_reason and "stopped" not in record.death_reason:
                self._on_fenced(f"this node was declared dead: {record.death_reason}")
            return
        if previous is None or previous.alive:
            self._node_died(node_id, record)

    def _node_died(self, node_id: bytes, record: lineage_pb2.NodeRecord) -> None:
        """A peer is dead: forget its copies (rebuilt when wanted) and retry
        what we forwarded to it elsewhere (reconstruction_driver.py)."""
        log.warning("node %s died: %s", node_id.hex()[:16], record.death_reason or "no reason recorded")
        lost = self.manager.objects.drop_remote_node(node_id)
        # Rebuilt from lineage when wanted (reconstruction_driver.py).
        why = record.death_reason or "no heartbeat"
        self.reconstruction.node_died(node_id, why, lost)
        peer = self.peers.connections.get(record.address)
        if peer is not None:
            self._spawn(peer.close())
        self.manager._actor_node_died(node_id, record)  # actor calls wait for the actor's recovery
        for task_id, forwarded in list(self.forwarded.items()):
            if forwarded.node_id == node_id:
                self._forwarded_done(task_id)
                if self.reconstruction.forwarded_node_died(forwarded, node_id, why):
                    continue  # retried elsewhere, or failed naming its attempts
                message = (f"task {task_id.hex()[:16]} ran on node {node_id.hex()[:16]}, which died "
                           f"({record.death_reason or 'no heartbeat'})")
                lost = [oid for oid in sorted(forwarded.remaining) if not self.manager.objects.is_known(oid)]
                self.manager._fail_returns(lost, "NodeDiedError", message)

    # ============================================================= routing

    def route(self, run) -> None:
        """A task of a client of this node, its spec durable: resolve its
        arguments' whereabouts, then keep, spill or fail it."""
        if run.arg_ids:  # its client may have dropped them already
            self.manager.objects.pin(run.arg_ids, routed_holder(run.task_id))
        unknown = set()
        for oid in run.arg_ids:
            if not self.manager.objects.is_known(oid):
                unknown.add(oid)
                self.fetcher.want(oid, produced_here=self._produced_here(oid))
        if unknown:
            self._parked[run.task_id] = unknown
            for oid in unknown:
                self._parked_on.setdefault(oid, set()).add(run.task_id)
            return
        self._decide(run)

    def _produced_here(self, object_id: bytes) -> bool:
        """Whether a task of this node (or forwarded by it) will make it, so
        it becomes known here without a lookup."""
        if len(object_id) != ObjectID.SIZE:
            return False
        task_id = ObjectID(object_id).task_id().binary()
        return task_id in self.manager.tasks or object_id in self._forwarded_by_return

    def _unpark(self, object_ids) -> None:
        for oid in object_ids:
            for task_id in sorted(self._parked_on.pop(oid, ())):
                unknown = self._parked.get(task_id)
                if unknown is None:
                    continue
                unknown.discard(oid)
                if not unknown:
                    del self._parked[task_id]
                    run = self.manager.tasks.get(task_id)
                    if run is not None:
                        self.route(run)  # again: an argument known before may have been lost since

    def _decide(self, run) -> None:
        objects = self.manager.objects
        if run.arg_ids:
            objects.pin(run.arg_ids, routed_holder(run.task_id))  # those found since route()
        for oid in run.arg_ids:
            failure = objects.error_of(oid)
            if failure is not None:  # fails without running, as on one node
                self._drop(run)
                self.manager._fail_returns(run.returns, failure[0], failure[1])
                self.manager._record_attempt(run, lineage_pb2.FAILED, failure)
                return
        local_bytes = sum(self._size_of(oid) for oid in run.arg_ids if objects.is_ready(oid))
        remote_bytes = sum(self._size_of(oid) for oid in run.arg_ids if not objects.is_ready(oid))
        # Actors are placed like tasks (actor_routing.py routes their calls).
        facts = TaskFacts(specs.demand(run.spec), specs.strategy_of(run.spec), False, local_bytes, remote_bytes)
        decision = decide(facts, node_id_hex=self.node_id.hex(), total=self.manager.scheduler.resources.total,
                          queue_length=self.manager.scheduler.queue_length())
        if decision.action == KEEP:
            self.manager._schedule_local(run)
        elif decision.action == FAIL:
            self._fail_infeasible(run, decision.reason)
        else:
            log.debug("spilling %s: %s", run.task_id.hex()[:16], decision.reason)
            self._spill(run)

    def _size_of(self, object_id: bytes) -> int:
        entry = self.manager.objects.entries.get(object_id)
        if entry is None:
            return 0
        if entry.payload is not None:
            return entry.payload.size_bytes or len(entry.payload.inline)
        return max((c.size_bytes for c in entry.remote), default=0)

    def _drop(self, run) -> None:
        self.manager.tasks.pop(run.task_id, None)
        if run.arg_ids:
            self.manager.objects.release_holder(routed_holder(run.task_id))

    def _fail_infeasible(self, run, reason: str) -> None:
        self._drop(run)
        name = specs.function_name(run.spec, self.manager.functions)
        message = (f"task {name} ({run.task_id.hex()[:16]}) can never run: it needs "
                   f"{specs.demand(run.spec).to_dict()} and {reason}")
        self.manager._record_attempt(run, lineage_pb2.FAILED, ("InfeasibleTaskError", message))
        self.manager._fail_returns(run.returns, "InfeasibleTaskError", message)
        if run.spec.is_actor_creation:
            actor = self.manager.actors.get(run.spec.actor_id)
            if actor is not None:
                self.manager._actor_died(actor, "ActorDiedError", f"the actor's creation task failed: {message}")

    # ============================================================ spilling

    def _spill(self, run) -> None:
        if not self._to_place:
            asyncio.get_running_loop().call_soon(self._flush_spills)
        self._to_place.append(run)
        self._placing.add(run.task_id)

    def _flush_spills(self) -> None:
        runs, self._to_place = self._to_place, []
        runs = [r for r in runs if self.manager.tasks.get(r.task_id) is r]
        if runs:
            self.counters["spilled"] += len(runs)
            self._spawn(self._place(runs))

    def _task_to_place(self, run) -> TaskToPlace:
        objects = self.manager.objects
        args = []
        for oid in run.arg_ids:
            if objects.is_ready(oid):
                locations = [NodeID(self.node_id)]
            else:
                locations = [NodeID(c.node_id) for c in objects.remote_copies(oid) if len(c.node_id) == NodeID.SIZE]
            args.append(ArgumentInfo(ObjectID(oid), self._size_of(oid), locations[:64]))
        return TaskToPlace(TaskID(run.task_id), specs.demand(run.spec), specs.strategy_of(run.spec), args[:1000])

    async def _place(self, runs: list) -> None:
        try:
            placements = await self.scheduler.place([self._task_to_place(r) for r in runs],
                                                    requester=NodeID(self.node_id))
        except RpcError as exc:
            log.warning("placing %d task(s) failed: %s", len(runs), exc)
            for run in runs:
                self._placement_failed(run, exc)
            return
        by_peer: dict[str, list] = {}
        for run, placement in zip(runs, placements):
            self._placing.discard(run.task_id)
            if self.manager.tasks.get(run.task_id) is not run:
                self._spill_attempts.pop(run.task_id, None)
                continue  # cancelled meanwhile
            if placement.outcome != RETRY:
                self._spill_attempts.pop(run.task_id, None)
            if placement.outcome == PLACED and placement.node_id is not None \
                    and placement.node_id.binary() == self.node_id:
                self.counters["placed_here"] += 1
                self.manager._schedule_local(run)
            elif placement.outcome == PLACED:
                by_peer.setdefault(placement.address, []).append((run, placement.node_id.binary()))
            elif placement.outcome == INFEASIBLE:
                self._fail_infeasible(run, placement.reason or "no alive node can ever fit it")
            else:
                self._respill_later(run, max(placement.retry_after_ms, 10) / 1000)
        for address, items in by_peer.items():
            self._forwarding.update(run.task_id for run, _ in items)
            try:
                await self._forward(address, items)
            finally:
                self._forwarding.difference_update(run.task_id for run, _ in items)

    def _respill_later(self, run, delay_s: float) -> None:
        self._respilling.add(run.task_id)
        asyncio.get_running_loop().call_later(delay_s, self._respill, run)

    def _respill(self, run) -> None:
        self._respilling.discard(run.task_id)
        if self.manager.tasks.get(run.task_id) is run:
            self._spill(run)
        else:
            self._spill_attempts.pop(run.task_id, None)

    def _placement_failed(self, run, error: Exception) -> None:
        self._placing.discard(run.task_id)
        if self.manager.tasks.get(run.task_id) is not run:
            return
        if specs.demand(run.spec).fits_in(self.manager.scheduler.resources.total) \
                and not _has_remote_affinity(run, self.node_id):
            self._spill_attempts.pop(run.task_id, None)
            self.manager._schedule_local(run)  # the scheduler is away: run what we can here
            return
        attempts = self._spill_attempts.get(run.task_id, 0) + 1
        self._spill_attempts[run.task_id] = attempts
        if attempts >= SPILL_ATTEMPTS_MAX:
            self._spill_attempts.pop(run.task_id, None)
            self._drop(run)
            self.manager._fail_returns(run.returns, "UnavailableError",
                                       f"the global scheduler could not place task {run.task_id.hex()[:16]} "
                                       f"after {attempts} attempts: {error}")
            return
        self._respill_later(run, SPILL_RETRY_DELAY_S)

    # ========================================================== forwarding

    async def _forward(self, address: str, items: list) -> None:
        peer = self.peers.get(address)
        try:
            await peer.ready()
        except (ConnectionError, asyncio.TimeoutError, TimeoutError) as exc:
            log.warning("cannot reach node %s to forward %d task(s): %s", address, len(items), exc)
            for run, _ in items:
                self._placement_failed(run, RpcError(str(exc)))
            return
        specs_out, attempt_numbers, attempt_reasons = [], [], []
        for run, node_id in items:
            if self.manager.tasks.get(run.task_id) is not run:
                continue
            if node_id != self.node_id and self.address_of(node_id) is None:
                # It died after placing this (its death will not retry it): place it again.
                self._placement_failed(run, RpcError(f"node {node_id.hex()[:16]} died before the task reached it"))
                continue
            self._send_function_and_args(peer, run)
            specs_out.append(run.spec)
            attempt_numbers.append(run.attempt)
            attempt_reasons.append(attempt_reason(run))
            if run.arg_ids:
                self.manager.objects.pin(run.arg_ids, forwarded_holder(run.task_id))
            self._drop(run)
            forwarded = Forwarded(run, address, node_id, set(run.returns))
            self.forwarded[run.task_id] = forwarded
            for oid in run.returns:
                self._forwarded_by_return[oid] = run.task_id
        if specs_out and not peer.send(node_pb2.ClientMessage(submit_tasks=node_pb2.SubmitTasks(
                specs=specs_out, attempt_numbers=attempt_numbers, attempt_reasons=attempt_reasons))):
            log.warning("peer %s is closed or saturated; %d task(s) go to lookups", address, len(specs_out))
        for run, node_id in items:
            if run.spec.is_actor_creation and run.spec in specs_out:
                self.manager._actor_creation_forwarded(run, address, node_id)  # its calls follow it
        self.counters["forwarded"] += len(specs_out)

    def _send_function_and_args(self, peer: PeerConnection, run) -> None:
        spec = run.spec
        if not spec.is_actor_task and spec.function_id not in peer.functions_sent:
            record = self.manager.functions.get(spec.function_id)
            if record is not None:
                peer.send(node_pb2.ClientMessage(export_function=node_pb2.ExportFunction(function=record)))
                peer.functions_sent.add(spec.function_id)
        for oid in run.arg_ids:
            payload = self._payload_for_peer(oid)
            if payload is not None:
                peer.send(node_pb2.ClientMessage(put_object=node_pb2.PutObject(object_id=oid, payload=payload)))

    def _payload_for_peer(self, object_id: bytes) -> node_pb2.ObjectPayload | None:
        entry = self.manager.objects.entries.get(object_id)
        if entry is None:
            return None
        if entry.payload is not None:
            payload = entry.payload
            if entry.in_store:
                return location_payload(self.manager.address, payload.size_bytes, payload.is_error,
                                        payload.nested_object_ids)
            return payload
        if entry.remote:
            copy = entry.remote[0]
            return location_payload(copy.address, copy.size_bytes, copy.is_error, copy.nested_object_ids)
        return None

    def _forwarded_done(self, task_id: bytes) -> None:
        forwarded = self.forwarded.pop(task_id, None)
        if forwarded is not None:
            for oid in forwarded.run.returns:
                self._forwarded_by_return.pop(oid, None)
            if forwarded.run.arg_ids:
                self.manager.objects.release_holder(forwarded_holder(task_id))

    def _peer_results(self, peer: PeerConnection, results: list) -> None:
        """Return values of tasks we forwarded to ``peer``."""
        for result in results:
            self.reconstruction.result_from(result.object_id, peer.node_id)
            self.fetcher.record_result(result, peer.address, peer.node_id)
            self._return_arrived(result.object_id)

    def _return_arrived(self, object_id: bytes) -> None:
        task_id = self._forwarded_by_return.get(object_id)
        forwarded = self.forwarded.get(task_id) if task_id is not None else None
        if forwarded is not None:
            forwarded.remaining.discard(object_id)
            if not forwarded.remaining:
                self._forwarded_done(task_id)

    def _peer_closed(self, peer: PeerConnection) -> None:
        """Results of tasks forwarded there will not come on this session:
        find them through the control store once they are wanted (and if
        the peer died, its death fails them)."""
        for forwarded in list(self.forwarded.values()):
            if forwarded.address == peer.address:
                forwarded.orphaned = True
                for oid in forwarded.remaining:
                    if self._still_wanted(oid):
                        self.fetcher.lookup(oid)
        self.resubmitter.session_ended(peer.address)  # they may never have reached it

    def cancel(self, task_id: bytes, force: bool) -> bool:
        """Cancel a task routed by this link; False if it is not ours."""
        forwarded = self.forwarded.get(task_id)
        if forwarded is not None:
            peer = self.peers.connections.get(forwarded.address)
            if peer is not None:
                peer.send(node_pb2.ClientMessage(cancel_task=node_pb2.CancelTask(task_id=task_id, force=force)))
            return True
        # Spilled and not on a peer or in the local scheduler yet: parked for
        # an argument, being placed, waiting to be placed again, or waiting
        # for its peer's connection. Every such step checks the task is
        # still the node's before it goes on.
        routing = (self._parked, self._placing, self._respilling, self._forwarding)
        if any(task_id in ids for ids in routing):
            self._parked.pop(task_id, None)
            self._placing.discard(task_id)
            self._respilling.discard(task_id)
            self._forwarding.discard(task_id)
            self.manager._task_cancelled(task_id)
            self.manager.objects.release_holder(routed_holder(task_id))
            return True
        return False

    # ============================================================= objects

    def objects_ready(self, object_ids: list[bytes]) -> None:
        """Objects became local (values or errors): answer peers, resume
        parked tasks, and tell the scheduler what the store now holds."""
        objects = self.manager.objects
        self.reconstruction.objects_arrived(object_ids, self.node_id)  # before _return_arrived (forwarded)
        replies: dict[object, list] = {}
        for oid in object_ids:
            self._wanted_args.discard(oid)
            self._return_arrived(oid)
            entry = objects.entries.get(oid)
            if entry is not None and entry.in_store and entry.payload is not None and len(oid) == ObjectID.SIZE:
                self._sealed_hints.append((ObjectID(oid), entry.payload.size_bytes))
            session = self._peer_returns.pop(oid, None)
            if session is not None and not session.closed:
                replies.setdefault(session, []).append(objects.result(oid))
        for session, results in replies.items():
            session.send(node_pb2.NodeMessage(objects_reply=node_pb2.ObjectsReply(request_id=0, objects=results)))
        self._unpark(object_ids)

    def _object_known(self, object_id: bytes) -> None:
        """A copy elsewhere became known: pass it on, resume, or pull."""
        self.reconstruction.objects_arrived([object_id])  # before _return_arrived: it reads self.forwarded
        self._return_arrived(object_id)
        session = self._peer_returns.pop(object_id, None)
        copies = self.manager.objects.remote_copies(object_id)
        if session is not None and not session.closed and copies:
            copy = copies[0]
            result = node_pb2.ObjectResult(object_id=object_id, payload=location_payload(
                copy.address, copy.size_bytes, copy.is_error, copy.nested_object_ids))
            session.send(node_pb2.NodeMessage(objects_reply=node_pb2.ObjectsReply(request_id=0, objects=[result])))
        if object_id in self._wanted_args or self.manager.objects.waited_for(object_id):
            self.fetcher.want(object_id, produced_here=True)
        self._unpark([object_id])

    def want(self, object_ids) -> None:
        """A client's get or wait names these: bring those elsewhere here."""
        for oid in object_ids:
            if not self.manager.objects.is_ready(oid):
                self.fetcher.want(oid, produced_here=self._produced_here(oid))

    def want_args(self, object_ids) -> None:
        """A task queued here lacks these arguments."""
        for oid in object_ids:
            self._wanted_args.add(oid)
            self.fetcher.want(oid, produced_here=self._produced_here(oid))

    def _args_in_use(self) -> set[bytes]:
        """Arguments of this node's tasks, queued or running, and of tasks
        parked until their arguments are found."""
        in_use = {oid for run in self.manager.tasks.values() for oid in run.arg_ids}
        return in_use | self._wanted_args | self._parked_on.keys()

    def _still_wanted(self, object_id: bytes) -> bool:
        return (object_id in self._wanted_args or object_id in self._parked_on
                or self.manager.objects.waited_for(object_id) or self.reconstruction.recovering(object_id))

    def release(self, object_ids) -> None:
        """The owner released these: so may the nodes holding copies (the
        node that made a forwarded task's result keeps it pinned until then)."""
        by_address: dict[str, list[bytes]] = {}
        for oid in object_ids:
            entry = self.manager.objects.entries.get(oid)
            for copy in entry.remote if entry is not None else ():
                by_address.setdefault(copy.address, []).append(oid)
        for address, ids in by_address.items():
            if self.node_of(address):
                self.peers.get(address).send(node_pb2.ClientMessage(
                    release_objects=node_pb2.ReleaseObjects(object_ids=ids)))

    def evicted(self, object_id: bytes) -> None:
        if len(object_id) == ObjectID.SIZE:
            self._evicted_hints.append(ObjectID(object_id))

    # ====================================================== load and views

    def task_finished(self, duration_ms: int) -> None:
        if self._mean_task_ms is None:
            self._mean_task_ms = float(duration_ms)
        else:
            self._mean_task_ms += MEAN_TASK_MS_WEIGHT * (duration_ms - self._mean_task_ms)

    def _load(self) -> NodeLoad:
        sealed, evicted = list(self._sealed_hints), list(self._evicted_hints)
        self._sealed_hints.clear()
        self._evicted_hints.clear()
        reset, self._reported_once = not self._reported_once, True
        resources = self.manager.scheduler.resources
        queue_length = self.manager.scheduler.queue_length() + len(self._parked)
        return NodeLoad(NodeID(self.node_id), self.incarnation, self.manager.address, resources.total,
                        resources.available, queue_length, self._mean_task_ms, sealed, evicted, reset)

    def cluster_info(self, session, request_id: int) -> None:
        self._spawn(self._cluster_info(session, request_id))

    async def _cluster_info(self, session, request_id: int) -> None:
        views = []
        try:
            for node in await self.scheduler.cluster_view(include_dead=True):
                view = node_pb2.NodeView(node_id=node.node_id.binary(), address=node.address, alive=node.alive)
                _fill(view.resources_total, node.total)
                _fill(view.resources_available, node.available if node.alive else ResourceSet())
                views.append(view)
        except RpcError as exc:
            log.warning("cluster view from the global scheduler failed (%s); answering from node records", exc)
            for node_id, record in sorted(self.nodes.items()):
                view = node_pb2.NodeView(node_id=node_id, address=record.address, alive=record.alive)
                _fill(view.resources_total, ResourceSet.from_units(dict(record.resources_total)))
                views.append(view)
        session.send(node_pb2.NodeMessage(cluster_info=node_pb2.ClusterInfoReply(request_id=request_id,
                                                                                  nodes=views)))


def _fill(target, resources: ResourceSet) -> None:
    for name, units in resources.units_dict().items():
        target[name] = units / RESOURCE_UNIT_SCALING


def _has_remote_affinity(run, node_id: bytes) -> bool:
    strategy = specs.strategy_of(run.spec)
    return hasattr(strategy, "node_id") and strategy.node_id != node_id.hex()
