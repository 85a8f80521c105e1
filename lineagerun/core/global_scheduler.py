"""The global scheduler's placement policy (pure).

A node manager spills to the global scheduler the tasks it cannot run
(infeasible there, queue too long, SPREAD or affinity elsewhere). The policy
picks the node with the lowest estimated wait, as in the Ray paper (OSDI
2018, section 4.2.2)::

    wait_ms = (queue_length + busy) * mean_task_ms + bytes_to_transfer / bandwidth_bytes_per_ms

where ``busy`` is 1 when the demand does not fit the node's available
resources now (the task must wait at least one task behind those running),
and ``bytes_to_transfer`` sums the sizes of the task's argument objects not
already on that node. Only alive nodes whose *total* resources fit the demand
(CPU, GPU, memory and custom resources) are candidates. Ties break by the
bytes already local (more first), then by node id, so the choice is
deterministic.

Strategies (``lineagerun.core.scheduling_strategies``):

- DEFAULT: lowest estimated wait;
- SPREAD: round robin over the candidates in node-id order, from a cursor
  kept by ``GlobalScheduler``; nodes where the demand fits now are preferred
  (Ray's spread policy);
- node affinity: the named node if alive and feasible; otherwise a hard
  affinity is infeasible and a soft one falls back to DEFAULT.

``place`` is a pure function; ``GlobalScheduler`` wraps it in the
``handle(event) -> list[effect]`` form with the cluster view fed in as events,
and charges each placement to the chosen node's view (its resources when
they fit, else one more queued task) until that node's next heartbeat replaces its view, so a
burst of spills does not all land on the node that looked idlest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from lineagerun.core.ids import NodeID, ObjectID, TaskID
from lineagerun.core.resources import ResourceSet
from lineagerun.core.scheduling_strategies import (
    DEFAULT,
    SPREAD,
    NodeAffinitySchedulingStrategy,
    SchedulingStrategy,
    normalize_strategy,
)
from lineagerun.exceptions import InvalidArgumentError

# A node that has not run a task yet has no mean; assume a short task rather
# than zero, so queue length still counts for something.
MEAN_TASK_MS_UNKNOWN = 10.0
# 100 MB/s, a conservative LAN figure, until transfers are measured.
BANDWIDTH_BYTES_PER_MS_DEFAULT = 100_000.0

INFEASIBLE_NO_NODE_FITS = "NO_NODE_FITS"
INFEASIBLE_AFFINITY_NODE_DEAD = "AFFINITY_NODE_DEAD"
INFEASIBLE_AFFINITY_NODE_CANNOT_FIT = "AFFINITY_NODE_CANNOT_FIT"


@dataclass(frozen=True)
class NodeView:
    """What the global scheduler knows of one node (from heartbeats)."""

    node_id: NodeID
    total: ResourceSet
    available: ResourceSet
    queue_length: int = 0
    mean_task_ms: float | None = None
    local_objects: Mapping[ObjectID, int] = field(default_factory=dict)  # object id -> size in bytes
    alive: bool = True

    def __post_init__(self):
        if not isinstance(self.node_id, NodeID):
            raise InvalidArgumentError(f"NodeView.node_id must be a NodeID, got {type(self.node_id).__name__}")
        if not isinstance(self.total, ResourceSet) or not isinstance(self.available, ResourceSet):
            raise InvalidArgumentError("NodeView.total and .available must be ResourceSets")
        if self.queue_length < 0:
            raise InvalidArgumentError(f"NodeView.queue_length cannot be negative, got {self.queue_length}")


@dataclass(frozen=True)
class PlacementRequest:
    task_id: TaskID
    demand: ResourceSet
    strategy: SchedulingStrategy = None
    # Argument objects passed by reference, with their sizes when the caller
    # knows them (otherwise sizes come from the nodes that hold them).
    arg_sizes: Mapping[ObjectID, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Placed:
    task_id: TaskID
    node_id: NodeID
    estimated_wait_ms: float


@dataclass(frozen=True)
class Infeasible:
    task_id: TaskID
    kind: str  # one of the INFEASIBLE_* constants
    reason: str


PlacementResult = Placed | Infeasible


def _arg_size(object_id: ObjectID, known: int | None, nodes: list[NodeView]) -> int:
    if known is not None:
        return known
    # Lost everywhere -> 0: it will be rebuilt, and no node is closer to it.
    return max((n.local_objects.get(object_id, 0) for n in nodes), default=0)


def estimated_wait_ms(node: NodeView, demand: ResourceSet, arg_sizes: Mapping[ObjectID, int],
                      bandwidth_bytes_per_ms: float) -> float:
    mean = MEAN_TASK_MS_UNKNOWN if node.mean_task_ms is None else node.mean_task_ms
    busy = 0 if demand.fits_in(node.available) else 1
    missing = sum(size for oid, size in arg_sizes.items() if oid not in node.local_objects)
    return (node.queue_length + busy) * mean + missing / bandwidth_bytes_per_ms


def _local_bytes(node: NodeView, arg_sizes: Mapping[ObjectID, int]) -> int:
    return sum(size for oid, size in arg_sizes.items() if oid in node.local_objects)


def _lowest_wait(request: PlacementRequest, candidates: list[NodeView], sizes: Mapping[ObjectID, int],
                 bandwidth_bytes_per_ms: float) -> Placed:
    scored = [
        (estimated_wait_ms(n, request.demand, sizes, bandwidth_bytes_per_ms), -_local_bytes(n, sizes), n.node_id, n)
        for n in candidates
    ]
    wait, _, _, best = min(scored, key=lambda s: s[:3])
    return Placed(request.task_id, best.node_id, wait)


def _spread(request: PlacementRequest, candidates: list[NodeView], sizes: Mapping[ObjectID, int],
            bandwidth_bytes_per_ms: float, cursor: int) -> tuple[Placed, int]:
    ordered = sorted(candidates, key=lambda n: n.node_id)
    count = len(ordered)
    rotation = [ordered[(cursor + i) % count] for i in range(count)]
    chosen = next((n for n in rotation if request.demand.fits_in(n.available)), rotation[0])
    index = ordered.index(chosen)
    wait = estimated_wait_ms(chosen, request.demand, sizes, bandwidth_bytes_per_ms)
    return Placed(request.task_id, chosen.node_id, wait), (index + 1) % count


def _affinity(request: PlacementRequest, strategy: NodeAffinitySchedulingStrategy, nodes: list[NodeView],
              sizes: Mapping[ObjectID, int], bandwidth_bytes_per_ms: float) -> PlacementResult | None:
    """The affinity node, an Infeasible (hard), or None (soft: fall back)."""
    target = strategy.node()
    node = next((n for n in nodes if n.node_id == target), None)
    if node is not None and node.alive and request.demand.fits_in(node.total):
        return Placed(request.task_id, target, estimated_wait_ms(node, request.demand, sizes, bandwidth_bytes_per_ms))
    if strategy.soft:
        return None
    if node is None or not node.alive:
        return Infeasible(request.task_id, INFEASIBLE_AFFINITY_NODE_DEAD,
                          f"hard node affinity to node {target.hex()}, which is dead or unknown")
    return Infeasible(request.task_id, INFEASIBLE_AFFINITY_NODE_CANNOT_FIT,
                      f"hard node affinity to node {target.hex()}, whose total {node.total.to_dict()} "
                      f"can never fit {request.demand.to_dict()}")


def place(request: PlacementRequest, nodes: list[NodeView], spread_cursor: int = 0,
          bandwidth_bytes_per_ms: float = BANDWIDTH_BYTES_PER_MS_DEFAULT) -> tuple[PlacementResult, int]:
    """Choose a node for ``request``; returns the result and the next SPREAD cursor."""
    if bandwidth_bytes_per_ms <= 0:
        raise InvalidArgumentError(f"bandwidth_bytes_per_ms must be > 0, got {bandwidth_bytes_per_ms}")
    strategy = normalize_strategy(request.strategy)
    sizes = {oid: _arg_size(oid, size, nodes) for oid, size in request.arg_sizes.items()}
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        result = _affinity(request, strategy, nodes, sizes, bandwidth_bytes_per_ms)
        if result is not None:
            return result, spread_cursor
        strategy = DEFAULT
    candidates = [n for n in nodes if n.alive and request.demand.fits_in(n.total)]
    if not candidates:
        alive = sum(1 for n in nodes if n.alive)
        reason = f"no alive node (of {alive}) has total resources for {request.demand.to_dict()}"
        return Infeasible(request.task_id, INFEASIBLE_NO_NODE_FITS, reason), spread_cursor
    if strategy == SPREAD:
        return _spread(request, candidates, sizes, bandwidth_bytes_per_ms, spread_cursor)
    return _lowest_wait(request, candidates, sizes, bandwidth_bytes_per_ms), spread_cursor


# ------------------------------------------------------------ state machine


@dataclass(frozen=True)
class NodeViewUpdated:
    """A heartbeat: replaces everything known of the node."""

    view: NodeView


@dataclass(frozen=True)
class NodeRemoved:
    node_id: NodeID


@dataclass(frozen=True)
class PlaceTask:
    request: PlacementRequest


@dataclass(frozen=True)
class PlaceOnNode:
    """Effect: send the task to ``node_id``'s node manager (no further spill)."""

    task_id: TaskID
    node_id: NodeID
    estimated_wait_ms: float


@dataclass(frozen=True)
class FailInfeasible:
    """Effect: fail the task to its owner with ``InfeasibleTaskError(reason)``."""

    task_id: TaskID
    kind: str
    reason: str


GlobalEvent = NodeViewUpdated | NodeRemoved | PlaceTask
GlobalEffect = PlaceOnNode | FailInfeasible


class GlobalScheduler:
    def __init__(self, bandwidth_bytes_per_ms: float = BANDWIDTH_BYTES_PER_MS_DEFAULT):
        if bandwidth_bytes_per_ms <= 0:
            raise InvalidArgumentError(f"bandwidth_bytes_per_ms must be > 0, got {bandwidth_bytes_per_ms}")
        self.bandwidth_bytes_per_ms = bandwidth_bytes_per_ms
        self.nodes: dict[NodeID, NodeView] = {}
        self.spread_cursor = 0

    def handle(self, event: GlobalEvent) -> list[GlobalEffect]:
        if isinstance(event, NodeViewUpdated):
            self.nodes[event.view.node_id] = event.view
            return []
        if isinstance(event, NodeRemoved):
            self.nodes.pop(event.node_id, None)
            return []
        if isinstance(event, PlaceTask):
            return self._place(event.request)
        raise InvalidArgumentError(f"GlobalScheduler cannot handle {type(event).__name__}")

    def _place(self, request: PlacementRequest) -> list[GlobalEffect]:
        nodes = [self.nodes[k] for k in sorted(self.nodes)]
        result, self.spread_cursor = place(request, nodes, self.spread_cursor, self.bandwidth_bytes_per_ms)
        if isinstance(result, Infeasible):
            return [FailInfeasible(result.task_id, result.kind, result.reason)]
        view = self.nodes[result.node_id]
        if request.demand.fits_in(view.available):
            charged = replace(view, available=view.available - request.demand)
        else:
            charged = replace(view, queue_length=view.queue_length + 1)
        self.nodes[result.node_id] = charged
        return [PlaceOnNode(result.task_id, result.node_id, result.estimated_wait_ms)]
