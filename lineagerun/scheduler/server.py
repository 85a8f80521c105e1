"""The global scheduler service: a thin grpc.aio shell around two pure cores.

- ``lineagerun.core.global_scheduler.GlobalScheduler`` places spilled tasks
  on the cluster view;
- ``lineagerun.core.node_liveness.NodeLiveness`` decides which nodes are
  alive from load reports (the heartbeats) and ``node/`` records.

The view is fed by ``ReportLoad`` calls and by a subscription to the control
store's ``node/`` table (read in full at start, so a restarted scheduler
rebuilds its view from there: it keeps no state of its own). A ticker runs
the liveness core; a node it declares dead gets ``alive=false``, the reason
and the time written to its ``NodeRecord`` (compare-and-swap against the
record it read, so a newer incarnation is never overwritten) and a
``NODE_DIED`` event, so every subscriber of ``node/`` learns of it.

The control-store client is synchronous (threads); its calls run in worker
threads and its subscription callbacks are handed to the event loop, so all
state is touched from the loop only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from google.protobuf.message import DecodeError

from lineagerun.control.client import ControlStoreClient
from lineagerun.control.client_subscription import Change
from lineagerun.core import global_scheduler as gs
from lineagerun.core import node_liveness as nl
from lineagerun.core.ids import NodeID, ObjectID, TaskID
from lineagerun.core.keys import NODE_PREFIX, NodeKey, event_key, node_key, parse_key
from lineagerun.core.resources import ResourceSet
from lineagerun.core.scheduling_strategies import DEFAULT, SPREAD, NodeAffinitySchedulingStrategy
from lineagerun.exceptions import BadRequestError, InvalidArgumentError, LineagerunError
from lineagerun.rpc import lineage_pb2, scheduler_pb2, scheduler_pb2_grpc
from lineagerun.transport.errors import abort_aio

log = logging.getLogger(__name__)

# Locality hints kept per node (object id -> size); the oldest are dropped
# first. Losing one only makes a placement ignore where that object is.
LOCAL_OBJECTS_TRACKED_MAX = 10_000
# Per report: keeps one report small (28 + 10 bytes per id) at 10 Hz.
OBJECTS_PER_REPORT_MAX = 1_000
# Per PlaceTasks call: one reply stays far below the message size limit.
TASKS_PER_PLACE_MAX = 10_000
ARGS_PER_TASK_MAX = 1_000
LOCATIONS_PER_ARG_MAX = 64
ADDRESS_LENGTH_MAX = 256
# Compare-and-swap attempts when writing a death record that others also write.
DEATH_WRITE_ATTEMPTS_MAX = 5


def wall_ms() -> int:
    return int(time.time() * 1000)


def monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


class TrackedObjects(OrderedDict):
    """Object id -> size of objects on one node, the newest last, bounded.

    The node's ``NodeView`` holds this very mapping, so hints learned between
    two load reports reach the placement policy without rebuilding views."""

    def remember(self, object_id: ObjectID, size_bytes: int) -> None:
        self[object_id] = max(size_bytes, self.get(object_id, 0))
        self.move_to_end(object_id)
        while len(self) > LOCAL_OBJECTS_TRACKED_MAX:
            self.popitem(last=False)


@dataclass
class NodeEntry:
    """Everything the shell knows of one node, alive or dead."""

    node_id: NodeID
    incarnation: int = 0
    address: str = ""
    total: ResourceSet = field(default_factory=ResourceSet)
    available: ResourceSet | None = None       # None until the first report
    queue_length: int = 0
    mean_task_ms: float | None = None
    objects: TrackedObjects = field(default_factory=TrackedObjects)
    last_heard_monotonic_ms: int | None = None
    died_ms: int = 0
    death_reason: str = ""

    def view(self) -> gs.NodeView:
        available = self.available if self.available is not None else self.total
        if not available.fits_in(self.total):
            available = self.total
        return gs.NodeView(self.node_id, self.total, available, self.queue_length, self.mean_task_ms,
                           self.objects, True)


@dataclass(frozen=True)
class SchedulerSettings:
    heartbeat_interval_ms: int = nl.HEARTBEAT_INTERVAL_MS_DEFAULT
    node_timeout_ms: int = nl.NODE_TIMEOUT_MS_DEFAULT

    def __post_init__(self):
        if not 1 <= self.heartbeat_interval_ms < self.node_timeout_ms:
            raise InvalidArgumentError(
                f"heartbeat interval ({self.heartbeat_interval_ms} ms) must be positive and shorter than the "
                f"node timeout ({self.node_timeout_ms} ms)")

    @property
    def tick_interval_ms(self) -> int:
        # Detection happens at most one tick after the timeout.
        return self.heartbeat_interval_ms


# --------------------------------------------------------------- decoding


def _node_id(raw: bytes, what: str) -> NodeID:
    if len(raw) != NodeID.SIZE:
        raise BadRequestError(f"{what} must be a {NodeID.SIZE}-byte NodeID, got {len(raw)} bytes")
    return NodeID(bytes(raw))


def _resources(units, what: str) -> ResourceSet:
    try:
        return ResourceSet.from_units(dict(units))
    except InvalidArgumentError as err:
        raise BadRequestError(f"{what}: {err}") from None


def _strategy(message: lineage_pb2.SchedulingStrategy, task_id: TaskID):
    kind = message.WhichOneof("kind")
    if kind is None or kind == "default":
        return DEFAULT
    if kind == "spread":
        return SPREAD
    affinity = message.node_affinity
    return NodeAffinitySchedulingStrategy(_node_id(affinity.node_id, f"task {task_id.hex()}: node affinity"),
                                          affinity.soft)


@dataclass(frozen=True)
class DecodedTask:
    request: gs.PlacementRequest
    locations: dict[ObjectID, tuple[int | None, list[NodeID]]]


def decode_task(message: scheduler_pb2.TaskToPlace) -> DecodedTask:
    if len(message.task_id) != TaskID.SIZE:
        raise BadRequestError(f"task_id must be {TaskID.SIZE} bytes, got {len(message.task_id)}")
    task_id = TaskID(bytes(message.task_id))
    if len(message.args) > ARGS_PER_TASK_MAX:
        raise BadRequestError(f"task {task_id.hex()}: {len(message.args)} arguments, at most {ARGS_PER_TASK_MAX}")
    locations: dict[ObjectID, tuple[int | None, list[NodeID]]] = {}
    for arg in message.args:
        if len(arg.object_id) != ObjectID.SIZE:
            raise BadRequestError(f"task {task_id.hex()}: argument object ids are {ObjectID.SIZE} bytes")
        if len(arg.locations) > LOCATIONS_PER_ARG_MAX:
            raise BadRequestError(f"task {task_id.hex()}: at most {LOCATIONS_PER_ARG_MAX} locations per argument")
        size = arg.size_bytes if arg.HasField("size_bytes") else None
        nodes = [_node_id(raw, f"task {task_id.hex()}: argument location") for raw in arg.locations]
        locations[ObjectID(bytes(arg.object_id))] = (size, nodes)
    try:
        request = gs.PlacementRequest(task_id, _resources(message.resources, f"task {task_id.hex()}"),
                                      _strategy(message.strategy, task_id),
                                      {oid: size for oid, (size, _) in locations.items()})
    except BadRequestError:
        raise
    except InvalidArgumentError as err:
        raise BadRequestError(str(err)) from None
    return DecodedTask(request, locations)


def _placed(task_id: TaskID, node_id: NodeID, address: str, wait_ms: float) -> scheduler_pb2.Placement:
    return scheduler_pb2.Placement(task_id=task_id.binary(), outcome=scheduler_pb2.PLACEMENT_PLACED,
                                   node_id=node_id.binary(), address=address, estimated_wait_ms=wait_ms)


# ------------------------------------------------------------------ state


class SchedulerState:
    """The cores plus the node table; every method runs on the event loop.

    Effects that need I/O (death records) go to ``write_death``, a callable
    the service provides, so this class is testable without a store."""

    def __init__(self, settings: SchedulerSettings,
                 write_death: Callable[[NodeEntry, str], None] = lambda entry, reason: None):
        self.settings = settings
        self.policy = gs.GlobalScheduler()
        self.liveness = nl.NodeLiveness(settings.node_timeout_ms)
        self.entries: dict[NodeID, NodeEntry] = {}
        self._write_death = write_death

    # ----------------------------------------------------------- liveness

    def _apply(self, effects: list[nl.LivenessEffect]) -> list[nl.LivenessEffect]:
        for effect in effects:
            if isinstance(effect, nl.NodeAdmitted):
                entry = self.entries.setdefault(effect.node_id, NodeEntry(effect.node_id))
                if entry.incarnation != effect.incarnation:
                    entry.available, entry.queue_length, entry.mean_task_ms = None, 0, None
                    entry.objects.clear()
                entry.incarnation, entry.died_ms, entry.death_reason = effect.incarnation, 0, ""
                self.policy.handle(gs.NodeViewUpdated(entry.view()))
                log.info("node %s incarnation %d is alive", effect.node_id.hex()[:16], effect.incarnation)
            elif isinstance(effect, nl.DeclareDead):
                entry = self.entries[effect.node_id]
                entry.died_ms, entry.death_reason = wall_ms(), effect.reason
                self.policy.handle(gs.NodeRemoved(effect.node_id))
                log.warning("node %s incarnation %d declared dead: %s", effect.node_id.hex()[:16],
                            effect.incarnation, effect.reason)
                self._write_death(entry, effect.reason)
            elif isinstance(effect, nl.FenceIncarnation) and effect.from_record:
                entry = self.entries[effect.node_id]
                log.warning("node %s: an alive record of fenced incarnation %d; writing its death back",
                            effect.node_id.hex()[:16], effect.incarnation)
                self._write_death(replace(entry, incarnation=effect.incarnation),
                                  entry.death_reason or "incarnation fenced")
        return effects

    def tick(self) -> None:
        self._apply(self.liveness.handle(nl.Tick(monotonic_ms())))

    def on_record(self, node_id: NodeID, record: lineage_pb2.NodeRecord | None) -> None:
        """A ``node/`` record from the scan at start or the subscription."""
        if record is None:
            self.liveness.handle(nl.NodeForgotten(node_id))
            self.policy.handle(gs.NodeRemoved(node_id))
            self.entries.pop(node_id, None)
            return
        incarnation = max(1, record.incarnation)
        entry = self.entries.setdefault(node_id, NodeEntry(node_id))
        if incarnation >= entry.incarnation:
            entry.address = record.address or entry.address
            if record.resources_total:
                try:
                    entry.total = ResourceSet.from_units(dict(record.resources_total))
                except InvalidArgumentError as err:
                    log.error("node %s: ignoring the record's resources: %s", node_id.hex()[:16], err)
        now = monotonic_ms()
        if record.alive:
            effects = self._apply(self.liveness.handle(nl.NodeRegistered(node_id, incarnation, now)))
            if self.liveness.alive_incarnation(node_id) == incarnation:
                entry.last_heard_monotonic_ms = now
                if not any(isinstance(e, nl.NodeAdmitted) for e in effects):
                    self._refresh_view(entry)
        else:
            was_alive = self.liveness.is_alive(node_id)
            self.liveness.handle(nl.NodeMarkedDead(node_id, incarnation, now))
            if was_alive and not self.liveness.is_alive(node_id):
                entry.died_ms = record.died_ms or wall_ms()
                entry.death_reason = record.death_reason or "marked dead in the control store"
                entry.incarnation = max(entry.incarnation, incarnation)
                self.policy.handle(gs.NodeRemoved(node_id))
            elif not self.liveness.is_alive(node_id):
                entry.incarnation = max(entry.incarnation, incarnation)
                entry.died_ms = entry.died_ms or record.died_ms
                entry.death_reason = entry.death_reason or record.death_reason
        if node_id not in self.liveness.nodes:
            self.entries.pop(node_id, None)  # forgotten beyond the dead-node bound

    def _refresh_view(self, entry: NodeEntry) -> None:
        current = self.policy.nodes.get(entry.node_id)
        if current is None or current.total != entry.total:
            self.policy.handle(gs.NodeViewUpdated(entry.view()))

    # ------------------------------------------------------------ reports

    def report(self, message: scheduler_pb2.LoadReport) -> scheduler_pb2.LoadReportReply:
        node_id = _node_id(message.node_id, "LoadReport.node_id")
        if message.incarnation < 1:
            raise BadRequestError("LoadReport.incarnation must be >= 1 (a node's first life is 1)")
        total = _resources(message.resources_total, "LoadReport.resources_total")
        available = _resources(message.resources_available, "LoadReport.resources_available")
        if not available.fits_in(total):
            raise BadRequestError(f"LoadReport: available {available.to_dict()} exceeds total {total.to_dict()} "
                                  f"by {available.missing_from(total)}")
        if len(message.sealed_objects) > OBJECTS_PER_REPORT_MAX or len(message.evicted_objects) > OBJECTS_PER_REPORT_MAX:
            raise BadRequestError(f"LoadReport: at most {OBJECTS_PER_REPORT_MAX} sealed and evicted objects per "
                                  f"report; send objects_reset with the newest ones instead")
        if len(message.address) > ADDRESS_LENGTH_MAX:
            raise BadRequestError(f"LoadReport.address is longer than {ADDRESS_LENGTH_MAX} characters")
        now = monotonic_ms()
        effects = self._apply(self.liveness.handle(nl.Heartbeat(node_id, message.incarnation, now)))
        reply = scheduler_pb2.LoadReportReply(heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
                                              node_timeout_ms=self.settings.node_timeout_ms)
        for effect in effects:
            if isinstance(effect, nl.FenceIncarnation):
                reply.status, reply.reason = scheduler_pb2.LoadReportReply.FENCED, effect.reason
                return reply
            if isinstance(effect, nl.RefuseNode):
                reply.status, reply.reason = scheduler_pb2.LoadReportReply.REFUSED, effect.reason
                return reply
        entry = self.entries[node_id]
        entry.address = message.address or entry.address
        entry.total, entry.available = total, available
        entry.queue_length = message.queue_length
        entry.mean_task_ms = message.mean_task_ms if message.mean_task_ms > 0 else None
        entry.last_heard_monotonic_ms = now
        if message.objects_reset:
            entry.objects.clear()
        for raw in message.evicted_objects:
            entry.objects.pop(ObjectID(bytes(raw)) if len(raw) == ObjectID.SIZE else None, None)
        for sealed in message.sealed_objects:
            if len(sealed.object_id) == ObjectID.SIZE:
                entry.objects.remember(ObjectID(bytes(sealed.object_id)), sealed.size_bytes)
        self.policy.handle(gs.NodeViewUpdated(entry.view()))
        reply.status = scheduler_pb2.LoadReportReply.ACCEPTED
        return reply

    # ---------------------------------------------------------- placement

    def place(self, message: scheduler_pb2.PlaceRequest) -> scheduler_pb2.PlaceReply:
        if len(message.tasks) > TASKS_PER_PLACE_MAX:
            raise BadRequestError(f"PlaceTasks: {len(message.tasks)} tasks in one call, at most {TASKS_PER_PLACE_MAX}")
        tasks = [decode_task(t) for t in message.tasks]  # all checked before anything is charged
        reply = scheduler_pb2.PlaceReply()
        for task in tasks:
            self._learn_locations(task)
            if message.only_if_available:
                reply.placements.append(self._place_if_available(task.request))
            else:
                reply.placements.append(self._place(task.request))
        return reply

    def _learn_locations(self, task: DecodedTask) -> None:
        for object_id, (size, nodes) in task.locations.items():
            for node_id in nodes:
                entry = self.entries.get(node_id)
                if entry is not None and self.liveness.is_alive(node_id):
                    entry.objects.remember(object_id, size or 0)

    def _place(self, request: gs.PlacementRequest) -> scheduler_pb2.Placement:
        [effect] = self.policy.handle(gs.PlaceTask(request))
        if isinstance(effect, gs.FailInfeasible):
            return scheduler_pb2.Placement(task_id=effect.task_id.binary(),
                                           outcome=scheduler_pb2.PLACEMENT_INFEASIBLE,
                                           infeasible_kind=effect.kind, reason=effect.reason)
        return _placed(effect.task_id, effect.node_id, self.entries[effect.node_id].address,
                       effect.estimated_wait_ms)

    def _place_if_available(self, request: gs.PlacementRequest) -> scheduler_pb2.Placement:
        """Place among the nodes where the demand fits now; RETRY if the task
        is feasible but none has room (and INFEASIBLE if it is not)."""
        views = [self.policy.nodes[k] for k in sorted(self.policy.nodes)]
        feasible, _ = gs.place(request, views, self.policy.spread_cursor, self.policy.bandwidth_bytes_per_ms)
        if isinstance(feasible, gs.Infeasible):
            return scheduler_pb2.Placement(task_id=request.task_id.binary(),
                                           outcome=scheduler_pb2.PLACEMENT_INFEASIBLE,
                                           infeasible_kind=feasible.kind, reason=feasible.reason)
        free = [v for v in views if request.demand.fits_in(v.available)]
        result, cursor = gs.place(request, free, self.policy.spread_cursor, self.policy.bandwidth_bytes_per_ms)
        if isinstance(result, gs.Infeasible):
            return scheduler_pb2.Placement(
                task_id=request.task_id.binary(), outcome=scheduler_pb2.PLACEMENT_RETRY,
                reason=f"no alive node has {request.demand.to_dict()} available now",
                retry_after_ms=self.settings.heartbeat_interval_ms)
        self.policy.spread_cursor = cursor
        view = self.policy.nodes[result.node_id]
        self.policy.handle(gs.NodeViewUpdated(replace(view, available=view.available - request.demand)))
        return _placed(request.task_id, result.node_id, self.entries[result.node_id].address,
                       result.estimated_wait_ms)

    # --------------------------------------------------------------- view

    def cluster_view(self, include_dead: bool, started_ms: int) -> scheduler_pb2.ClusterViewReply:
        reply = scheduler_pb2.ClusterViewReply(heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
                                               node_timeout_ms=self.settings.node_timeout_ms, started_ms=started_ms)
        now = monotonic_ms()
        for node_id in sorted(self.entries):
            entry = self.entries[node_id]
            alive = self.liveness.is_alive(node_id)
            if not alive and not include_dead:
                continue
            view = self.policy.nodes.get(node_id)
            heard = entry.last_heard_monotonic_ms
            reply.nodes.append(scheduler_pb2.NodeStatus(
                node_id=node_id.binary(), incarnation=entry.incarnation, address=entry.address, alive=alive,
                resources_total=entry.total.units_dict(),
                resources_available=(view.available if view is not None else ResourceSet()).units_dict(),
                queue_length=view.queue_length if view is not None else entry.queue_length,
                mean_task_ms=entry.mean_task_ms or 0.0,
                last_heard_ms_ago=-1 if heard is None else max(0, now - heard),
                died_ms=entry.died_ms, death_reason=entry.death_reason))
        return reply


# ---------------------------------------------------------------- service


class GlobalSchedulerServicer(scheduler_pb2_grpc.GlobalSchedulerServicer):
    def __init__(self, state: SchedulerState, started_ms: int):
        self._state = state
        self._started_ms = started_ms

    async def ReportLoad(self, request, context):
        try:
            return self._state.report(request)
        except LineagerunError as err:
            await abort_aio(context, err if isinstance(err, BadRequestError) else BadRequestError(str(err)))

    async def PlaceTasks(self, request, context):
        try:
            return self._state.place(request)
        except LineagerunError as err:
            await abort_aio(context, err if isinstance(err, BadRequestError) else BadRequestError(str(err)))

    async def ClusterView(self, request, context):
        return self._state.cluster_view(request.include_dead, self._started_ms)


def death_record(current: lineage_pb2.NodeRecord | None, entry: NodeEntry, reason: str,
                 died_ms: int) -> lineage_pb2.NodeRecord | None:
    """The record to write for ``entry``'s death over ``current``, or None
    when there is none, it already says so, or it belongs to a newer
    incarnation."""
    if current is None:
        return None  # deleted (forgotten) or never written: nobody reads a death there
    if current.incarnation > entry.incarnation:
        return None
    if not current.alive and current.incarnation == entry.incarnation:
        return None
    record = lineage_pb2.NodeRecord()
    record.CopyFrom(current)
    record.incarnation = entry.incarnation
    record.alive = False
    record.died_ms = died_ms
    record.death_reason = reason
    return record


class ControlStoreBridge:
    """Reads and writes ``node/`` records for the service (in threads)."""

    def __init__(self, client: ControlStoreClient):
        self.client = client

    def load_nodes(self) -> list[tuple[bytes, bytes]]:
        return list(self.client.scan_prefix(NODE_PREFIX))

    def write_death(self, entry: NodeEntry, reason: str) -> None:
        key = node_key(entry.node_id)
        for _ in range(DEATH_WRITE_ATTEMPTS_MAX):
            current_bytes = self.client.get(key)
            current = lineage_pb2.NodeRecord.FromString(current_bytes) if current_bytes is not None else None
            died_ms = wall_ms()
            record = death_record(current, entry, reason, died_ms)
            if record is None:
                return
            if self.client.cas(key, current_bytes, record.SerializeToString()).ok:
                event = lineage_pb2.EventRecord(kind=lineage_pb2.NODE_DIED, time_ms=died_ms,
                                                event_id=b"gs-" + entry.node_id.binary()[:8]
                                                + entry.incarnation.to_bytes(8, "big"),
                                                node_id=entry.node_id.binary(), detail=reason)
                self.client.put(event_key(died_ms, event.event_id), event.SerializeToString())
                return
        log.error("node %s: could not write its death record after %d attempts", entry.node_id.hex()[:16],
                  DEATH_WRITE_ATTEMPTS_MAX)


def parse_node_change(key: bytes, value: bytes | None) -> tuple[NodeID, lineage_pb2.NodeRecord | None] | None:
    try:
        parsed = parse_key(bytes(key))
        if not isinstance(parsed, NodeKey):
            return None
        return parsed.node_id, (lineage_pb2.NodeRecord.FromString(value) if value is not None else None)
    except (InvalidArgumentError, DecodeError) as err:
        log.error("ignoring a malformed node record %r: %s", key[:64], err)
        return None


class SchedulerService:
    """Runs the state, its ticker and its control-store feed."""

    def __init__(self, settings: SchedulerSettings, store: ControlStoreClient):
        self.settings = settings
        self.bridge = ControlStoreBridge(store)
        self.state = SchedulerState(settings, self._schedule_death_write)
        self.started_ms = wall_ms()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscription = None
        self._tasks: set[asyncio.Task] = set()
        self._ticker: asyncio.Task | None = None

    def servicer(self) -> GlobalSchedulerServicer:
        return GlobalSchedulerServicer(self.state, self.started_ms)

    def _schedule_death_write(self, entry: NodeEntry, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.bridge.write_death, entry, reason))
        self._tasks.add(task)
        task.add_done_callback(self._death_written)

    def _death_written(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("writing a death record failed: %s", task.exception())

    def _on_change(self, change: Change) -> None:
        parsed = parse_node_change(change.key, change.value)
        if parsed is not None:
            self.state.on_record(*parsed)

    async def start(self) -> None:
        """Subscribe first, then read every record, so nothing written in
        between is missed (a change seen twice is harmless)."""
        self._loop = asyncio.get_running_loop()
        loop = self._loop
        self._subscription = await asyncio.to_thread(
            self.bridge.client.subscribe, NODE_PREFIX, lambda change: loop.call_soon_threadsafe(self._on_change, change))
        for key, value in await asyncio.to_thread(self.bridge.load_nodes):
            parsed = parse_node_change(key, value)
            if parsed is not None:
                self.state.on_record(*parsed)
        self._ticker = loop.create_task(self._tick_forever())

    async def _tick_forever(self) -> None:
        interval_s = self.settings.tick_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.state.tick()
            except Exception:  # a bug in one tick must not stop failure detection
                log.exception("liveness tick failed")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._subscription is not None:
            await asyncio.to_thread(self._subscription.close)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
