"""An asyncio client of the global scheduler, for node managers (and tools).

    client = GlobalSchedulerClient(address, token)
    reporter = LoadReporter(client, snapshot=manager.load, on_fenced=manager.fenced)
    reporter.start()                      # a report every heartbeat interval
    placements = await client.place([TaskToPlace(task_id, demand, strategy, args)])
    nodes = await client.cluster_view()
    await reporter.stop(); await client.close()

``snapshot()`` returns a ``NodeLoad`` (the node's resources, queue, mean task
time and the objects sealed or evicted since the previous snapshot). A load
report is also the node's heartbeat: a node that stops reporting is declared
dead after the scheduler's node timeout (default 1 s). See docs/scheduling.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from lineagerun.core.ids import NodeID, ObjectID, TaskID
from lineagerun.core.node_liveness import HEARTBEAT_INTERVAL_MS_DEFAULT
from lineagerun.core.resources import ResourceSet
from lineagerun.core.scheduling_strategies import SPREAD, NodeAffinitySchedulingStrategy, normalize_strategy
from lineagerun.exceptions import InvalidArgumentError, RpcError
from lineagerun.rpc import lineage_pb2, scheduler_pb2, scheduler_pb2_grpc
from lineagerun.transport.channels import make_aio_channel
from lineagerun.transport.errors import from_rpc_error

log = logging.getLogger(__name__)

# Per-call deadlines: a report is tiny and a placement batch is CPU-bound on
# the scheduler; a call beyond these means the scheduler is down or stuck.
REPORT_TIMEOUT_S = 2.0
PLACE_TIMEOUT_S = 10.0
VIEW_TIMEOUT_S = 5.0
# Same bounds as the server's (lineagerun.scheduler.server).
OBJECTS_PER_REPORT_MAX = 1_000
TASKS_PER_PLACE_MAX = 10_000

PLACED = "placed"
INFEASIBLE = "infeasible"
RETRY = "retry"
_OUTCOMES = {scheduler_pb2.PLACEMENT_PLACED: PLACED, scheduler_pb2.PLACEMENT_INFEASIBLE: INFEASIBLE,
             scheduler_pb2.PLACEMENT_RETRY: RETRY}

ACCEPTED = "accepted"
FENCED = "fenced"
REFUSED = "refused"
_STATUSES = {scheduler_pb2.LoadReportReply.ACCEPTED: ACCEPTED, scheduler_pb2.LoadReportReply.FENCED: FENCED,
             scheduler_pb2.LoadReportReply.REFUSED: REFUSED}


@dataclass(frozen=True)
class NodeLoad:
    node_id: NodeID
    incarnation: int
    address: str
    total: ResourceSet
    available: ResourceSet
    queue_length: int = 0
    mean_task_ms: float | None = None
    sealed_objects: Sequence[tuple[ObjectID, int]] = ()   # since the previous report, oldest first
    evicted_objects: Sequence[ObjectID] = ()
    objects_reset: bool = False


@dataclass(frozen=True)
class ReportReply:
    status: str            # ACCEPTED, FENCED or REFUSED
    reason: str
    heartbeat_interval_ms: int
    node_timeout_ms: int


@dataclass(frozen=True)
class ArgumentInfo:
    object_id: ObjectID
    size_bytes: int | None = None
    locations: Sequence[NodeID] = ()


@dataclass(frozen=True)
class TaskToPlace:
    task_id: TaskID
    demand: ResourceSet
    strategy: object = None             # None, "DEFAULT", "SPREAD" or NodeAffinitySchedulingStrategy
    args: Sequence[ArgumentInfo] = ()


@dataclass(frozen=True)
class Placement:
    task_id: TaskID
    outcome: str                        # PLACED, INFEASIBLE or RETRY
    node_id: NodeID | None = None
    address: str = ""
    estimated_wait_ms: float = 0.0
    infeasible_kind: str = ""
    reason: str = ""
    retry_after_ms: int = 0


@dataclass(frozen=True)
class NodeStatus:
    node_id: NodeID
    incarnation: int
    address: str
    alive: bool
    total: ResourceSet
    available: ResourceSet
    queue_length: int
    mean_task_ms: float | None
    last_heard_ms_ago: int | None
    died_ms: int
    death_reason: str


def load_report_message(load: NodeLoad) -> scheduler_pb2.LoadReport:
    """The wire form of ``load``; keeps the newest hints when there are too many."""
    message = scheduler_pb2.LoadReport(
        node_id=load.node_id.binary(), incarnation=load.incarnation, address=load.address,
        resources_total=load.total.units_dict(), resources_available=load.available.units_dict(),
        queue_length=load.queue_length, mean_task_ms=load.mean_task_ms or 0.0,
        objects_reset=load.objects_reset)
    sealed = list(load.sealed_objects)
    evicted = list(load.evicted_objects)
    if len(sealed) > OBJECTS_PER_REPORT_MAX or len(evicted) > OBJECTS_PER_REPORT_MAX:
        # Hints only: start over from the newest rather than send an unbounded report.
        message.objects_reset = True
        sealed, evicted = sealed[-OBJECTS_PER_REPORT_MAX:], []
    message.sealed_objects.extend(scheduler_pb2.ObjectSize(object_id=oid.binary(), size_bytes=size)
                                  for oid, size in sealed)
    message.evicted_objects.extend(oid.binary() for oid in evicted)
    return message


def strategy_message(strategy) -> lineage_pb2.SchedulingStrategy:
    strategy = normalize_strategy(strategy)
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return lineage_pb2.SchedulingStrategy(node_affinity=lineage_pb2.NodeAffinity(
            node_id=strategy.node().binary(), soft=strategy.soft))
    if strategy == SPREAD:
        return lineage_pb2.SchedulingStrategy(spread=True)
    return lineage_pb2.SchedulingStrategy(default=True)


def task_message(task: TaskToPlace) -> scheduler_pb2.TaskToPlace:
    if not isinstance(task.task_id, TaskID) or not isinstance(task.demand, ResourceSet):
        raise InvalidArgumentError("TaskToPlace needs a TaskID and a ResourceSet demand")
    message = scheduler_pb2.TaskToPlace(task_id=task.task_id.binary(), resources=task.demand.units_dict(),
                                        strategy=strategy_message(task.strategy))
    for arg in task.args:
        wire = message.args.add(object_id=arg.object_id.binary(), locations=[n.binary() for n in arg.locations])
        if arg.size_bytes is not None:
            wire.size_bytes = arg.size_bytes
    return message


def placement_from(message: scheduler_pb2.Placement) -> Placement:
    return Placement(TaskID(bytes(message.task_id)), _OUTCOMES.get(message.outcome, RETRY),
                     NodeID(bytes(message.node_id)) if message.node_id else None, message.address,
                     message.estimated_wait_ms, message.infeasible_kind, message.reason, message.retry_after_ms)


def node_status_from(message: scheduler_pb2.NodeStatus) -> NodeStatus:
    return NodeStatus(NodeID(bytes(message.node_id)), message.incarnation, message.address, message.alive,
                      ResourceSet.from_units(dict(message.resources_total)),
                      ResourceSet.from_units(dict(message.resources_available)), message.queue_length,
                      message.mean_task_ms or None,
                      None if message.last_heard_ms_ago < 0 else message.last_heard_ms_ago,
                      message.died_ms, message.death_reason)


def read_ready(session_dir: str | Path) -> dict:
    """``{"address": ..., "pid": ...}`` of the scheduler of a session, or raise FileNotFoundError."""
    return json.loads((Path(session_dir) / "scheduler" / "ready.json").read_text())


class GlobalSchedulerClient:
    def __init__(self, address: str, token: str | None, *, root_cert: bytes | None = None):
        self.address = address
        self._channel = make_aio_channel(address, token, root_cert=root_cert)
        self._stub = scheduler_pb2_grpc.GlobalSchedulerStub(self._channel)

    async def report_load(self, load: NodeLoad) -> ReportReply:
        """One report (and heartbeat). FENCED means: stop this incarnation."""
        try:
            reply = await self._stub.ReportLoad(load_report_message(load), timeout=REPORT_TIMEOUT_S)
        except grpc.RpcError as err:
            raise from_rpc_error(err, what="ReportLoad") from None
        return ReportReply(_STATUSES.get(reply.status, REFUSED), reply.reason, reply.heartbeat_interval_ms,
                           reply.node_timeout_ms)

    async def place(self, tasks: Iterable[TaskToPlace], *, requester: NodeID | None = None,
                    only_if_available: bool = False) -> list[Placement]:
        """A placement per task, in order. Batches above the server's bound
        are split into several calls."""
        messages = [task_message(t) for t in tasks]
        placements: list[Placement] = []
        for start in range(0, len(messages), TASKS_PER_PLACE_MAX):
            request = scheduler_pb2.PlaceRequest(tasks=messages[start:start + TASKS_PER_PLACE_MAX],
                                                 only_if_available=only_if_available,
                                                 requester_node_id=requester.binary() if requester else b"")
            try:
                reply = await self._stub.PlaceTasks(request, timeout=PLACE_TIMEOUT_S)
            except grpc.RpcError as err:
                raise from_rpc_error(err, what="PlaceTasks") from None
            placements.extend(placement_from(p) for p in reply.placements)
        return placements

    async def cluster_view(self, *, include_dead: bool = True) -> list[NodeStatus]:
        try:
            reply = await self._stub.ClusterView(scheduler_pb2.ClusterViewRequest(include_dead=include_dead),
                                                 timeout=VIEW_TIMEOUT_S)
        except grpc.RpcError as err:
            raise from_rpc_error(err, what="ClusterView") from None
        return [node_status_from(n) for n in reply.nodes]

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "GlobalSchedulerClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class LoadReporter:
    """Calls ``client.report_load(snapshot())`` every ``interval_ms``.

    Errors (scheduler down or restarting) are logged and the next report is
    tried on time: a scheduler that comes back rebuilds its view from them.
    ``on_fenced(reason)`` is called, and reporting stops, when the scheduler
    says this incarnation is dead; the node manager must then stop, or
    re-register with a higher incarnation and start a new reporter.
    """

    def __init__(self, client: GlobalSchedulerClient, snapshot: Callable[[], NodeLoad], *,
                 interval_ms: int = HEARTBEAT_INTERVAL_MS_DEFAULT,
                 on_fenced: Callable[[str], None] | None = None):
        if interval_ms < 1:
            raise InvalidArgumentError(f"interval_ms must be >= 1, got {interval_ms}")
        self._client = client
        self._snapshot = snapshot
        self.interval_ms = interval_ms
        self._on_fenced = on_fenced
        self._task: asyncio.Task | None = None
        self.reports_sent = 0
        self.reports_failed = 0
        self.fenced_reason: str | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_s = loop.time()
        while True:
            try:
                reply = await self._client.report_load(self._snapshot())
                self.reports_sent += 1
                if reply.status != ACCEPTED:
                    self.fenced_reason = reply.reason
                    log.error("load report %s: %s", reply.status, reply.reason)
                    if self._on_fenced is not None:
                        self._on_fenced(reply.reason)
                    return
            except RpcError as err:
                self.reports_failed += 1
                log.debug("load report failed: %s", err)
            # Fixed rate, not fixed delay, so a slow call does not stretch the
            # heartbeat period towards the node timeout.
            next_s = max(next_s + self.interval_ms / 1000, loop.time())
            await asyncio.sleep(next_s - loop.time())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
