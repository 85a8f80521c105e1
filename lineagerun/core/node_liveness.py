"""Heartbeat-based failure detection of nodes (pure).

The global scheduler feeds this machine what it hears from node managers and
from the control store's ``node/`` table, and carries its effects out:

- ``Heartbeat``: a load report from (node, incarnation); also any change to
  an alive ``NodeRecord`` of that incarnation (a node manager that writes its
  heartbeat into the control store is heard that way too);
- ``NodeRegistered``: an alive ``NodeRecord`` appeared or changed;
- ``NodeMarkedDead``: a ``NodeRecord`` says alive=false (the node stopped
  cleanly, or an earlier scheduler process declared it dead);
- ``NodeForgotten``: the record was deleted;
- ``Tick``: time passed.

A node is declared dead (``DeclareDead``: write ``alive=false``, the reason
and the time to its record) once nothing was heard from its current
incarnation for ``node_timeout_ms`` (default 1,000 ms, ten heartbeats of
100 ms, so one or two lost or late reports never kill a node). The declared
incarnation, and every lower one, is fenced from then on: a heartbeat from it
is answered ``FenceIncarnation`` (the node must stop, or come back with a
higher incarnation), and an alive record of it, which only a stale writer can
have written, is answered ``FenceIncarnation(from_record=True)`` so the shell
writes the death back. A higher incarnation is a new life of the node and is
admitted (``NodeAdmitted``), with or without a death in between: a node
manager that restarted faster than the timeout simply replaces its old self.

Time is ``now_ms`` on every event, from a monotonic clock; the machine never
reads a clock and ignores time going backwards. Every node heard of starts
with a full timeout, which is also what a restarted scheduler gives every
node it finds alive in the control store.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from lineagerun.core.ids import NodeID
from lineagerun.exceptions import InvalidArgumentError

HEARTBEAT_INTERVAL_MS_DEFAULT = 100
NODE_TIMEOUT_MS_DEFAULT = 1_000
# Dead nodes are remembered to fence their incarnations; beyond this many the
# oldest are forgotten (their records in the control store still say dead,
# and a restarted scheduler reads the fence back from there).
DEAD_NODES_KEPT_MAX = 10_000
# Alive nodes: every one is a process of the cluster, so this is a sanity
# bound against a runaway client inventing node ids, not a capacity plan.
ALIVE_NODES_MAX = 10_000
INCARNATION_MAX = 2**64 - 1


def _check_node(node_id: object) -> None:
    if not isinstance(node_id, NodeID):
        raise InvalidArgumentError(f"node_id must be a NodeID, got {type(node_id).__name__}")


def _check_incarnation(incarnation: object) -> None:
    if isinstance(incarnation, bool) or not isinstance(incarnation, int) or not 1 <= incarnation <= INCARNATION_MAX:
        raise InvalidArgumentError(
            f"incarnation must be an int in [1, {INCARNATION_MAX}] (a node's first life is 1), got {incarnation!r}")


def _check_time(now_ms: object) -> None:
    if isinstance(now_ms, bool) or not isinstance(now_ms, int) or now_ms < 0:
        raise InvalidArgumentError(f"now_ms must be a non-negative int, got {now_ms!r}")


# ------------------------------------------------------------------- events


@dataclass(frozen=True)
class Heartbeat:
    node_id: NodeID
    incarnation: int
    now_ms: int

    def __post_init__(self):
        _check_node(self.node_id)
        _check_incarnation(self.incarnation)
        _check_time(self.now_ms)


@dataclass(frozen=True)
class NodeRegistered:
    """An alive ``NodeRecord`` of ``incarnation`` was written (or rewritten)."""

    node_id: NodeID
    incarnation: int
    now_ms: int

    def __post_init__(self):
        _check_node(self.node_id)
        _check_incarnation(self.incarnation)
        _check_time(self.now_ms)


@dataclass(frozen=True)
class NodeMarkedDead:
    """A ``NodeRecord`` of ``incarnation`` says alive=false."""

    node_id: NodeID
    incarnation: int
    now_ms: int

    def __post_init__(self):
        _check_node(self.node_id)
        _check_incarnation(self.incarnation)
        _check_time(self.now_ms)


@dataclass(frozen=True)
class NodeForgotten:
    """The node's record was deleted: forget it (and its fence)."""

    node_id: NodeID

    def __post_init__(self):
        _check_node(self.node_id)


@dataclass(frozen=True)
class Tick:
    now_ms: int

    def __post_init__(self):
        _check_time(self.now_ms)


LivenessEvent = Heartbeat | NodeRegistered | NodeMarkedDead | NodeForgotten | Tick


# ------------------------------------------------------------------ effects


@dataclass(frozen=True)
class NodeAdmitted:
    """``incarnation`` of the node is alive from now on (a first life or a new one)."""

    node_id: NodeID
    incarnation: int


@dataclass(frozen=True)
class DeclareDead:
    """Write alive=false, ``reason`` and the death time to the node's record;
    drop the node from placement."""

    node_id: NodeID
    incarnation: int
    reason: str
    silent_ms: int


@dataclass(frozen=True)
class FenceIncarnation:
    """Refuse ``incarnation``: it is at most ``fenced_through``. From a
    heartbeat: answer FENCED. From a record (``from_record``): write the
    death back over it."""

    node_id: NodeID
    incarnation: int
    fenced_through: int
    reason: str
    from_record: bool = False


@dataclass(frozen=True)
class RefuseNode:
    """A new node cannot be taken (too many alive nodes)."""

    node_id: NodeID
    incarnation: int
    reason: str


LivenessEffect = NodeAdmitted | DeclareDead | FenceIncarnation | RefuseNode


# -------------------------------------------------------------------- state


@dataclass
class NodeLife:
    incarnation: int            # the current (alive) or last (dead) incarnation
    alive: bool
    last_heard_ms: int
    fenced_through: int = 0     # incarnations <= this are refused
    died_ms: int | None = None


class NodeLiveness:
    """Which nodes are alive, from what was heard and when."""

    def __init__(self, node_timeout_ms: int = NODE_TIMEOUT_MS_DEFAULT, *,
                 dead_nodes_kept_max: int = DEAD_NODES_KEPT_MAX, alive_nodes_max: int = ALIVE_NODES_MAX):
        if isinstance(node_timeout_ms, bool) or not isinstance(node_timeout_ms, int) or node_timeout_ms < 1:
            raise InvalidArgumentError(f"node_timeout_ms must be a positive int, got {node_timeout_ms!r}")
        if dead_nodes_kept_max < 0 or alive_nodes_max < 1:
            raise InvalidArgumentError("dead_nodes_kept_max must be >= 0 and alive_nodes_max >= 1")
        self.node_timeout_ms = node_timeout_ms
        self.dead_nodes_kept_max = dead_nodes_kept_max
        self.alive_nodes_max = alive_nodes_max
        self.nodes: dict[NodeID, NodeLife] = {}
        # Dead nodes in order of death, to forget the oldest first.
        self._dead_order: OrderedDict[NodeID, None] = OrderedDict()
        self._alive_count = 0
        self.now_ms = 0

    # ----------------------------------------------------------- queries

    def is_alive(self, node_id: NodeID) -> bool:
        life = self.nodes.get(node_id)
        return life is not None and life.alive

    def alive_incarnation(self, node_id: NodeID) -> int | None:
        life = self.nodes.get(node_id)
        return life.incarnation if life is not None and life.alive else None

    def alive_nodes(self) -> list[NodeID]:
        return sorted(n for n, life in self.nodes.items() if life.alive)

    def check_invariants(self) -> None:
        alive = 0
        for node_id, life in self.nodes.items():
            if life.alive:
                alive += 1
                assert life.incarnation > life.fenced_through, (node_id, life)
                assert node_id not in self._dead_order, node_id
            else:
                assert life.fenced_through >= life.incarnation, (node_id, life)
                assert node_id in self._dead_order, node_id
        assert alive == self._alive_count <= self.alive_nodes_max
        assert len(self._dead_order) <= self.dead_nodes_kept_max
        assert all(n in self.nodes for n in self._dead_order)

    # ----------------------------------------------------------- mutator

    def handle(self, event: LivenessEvent) -> list[LivenessEffect]:
        if isinstance(event, Tick):
            self.now_ms = max(self.now_ms, event.now_ms)
            return self._on_tick()
        if isinstance(event, NodeForgotten):
            self._forget(event.node_id)
            return []
        if isinstance(event, (Heartbeat, NodeRegistered, NodeMarkedDead)):
            self.now_ms = max(self.now_ms, event.now_ms)
            if isinstance(event, NodeMarkedDead):
                self._mark_dead(event.node_id, event.incarnation)
                return []
            return self._on_sign_of_life(event.node_id, event.incarnation, from_record=isinstance(event, NodeRegistered))
        raise InvalidArgumentError(f"NodeLiveness cannot handle {type(event).__name__}")

    # ---------------------------------------------------------- handlers

    def _on_sign_of_life(self, node_id: NodeID, incarnation: int, from_record: bool) -> list[LivenessEffect]:
        life = self.nodes.get(node_id)
        if from_record and life is not None and life.alive and incarnation < life.incarnation:
            return []  # a stale record read racing a newer one; the newer life stands
        if life is not None and incarnation <= life.fenced_through:
            return [FenceIncarnation(node_id, incarnation, life.fenced_through,
                                     f"node {node_id.hex()} incarnation {incarnation} was declared dead; "
                                     f"restart it with an incarnation above {life.fenced_through}", from_record)]
        if life is not None and life.alive and incarnation == life.incarnation:
            life.last_heard_ms = self.now_ms
            return []
        if life is not None and life.alive and incarnation < life.incarnation:
            return [FenceIncarnation(node_id, incarnation, life.incarnation - 1,
                                     f"node {node_id.hex()} now runs incarnation {life.incarnation}; "
                                     f"incarnation {incarnation} is replaced", from_record)]
        return self._admit(node_id, incarnation, life)

    def _admit(self, node_id: NodeID, incarnation: int, life: NodeLife | None) -> list[LivenessEffect]:
        was_alive = life is not None and life.alive
        if not was_alive and self._alive_count >= self.alive_nodes_max:
            return [RefuseNode(node_id, incarnation,
                               f"the global scheduler tracks at most {self.alive_nodes_max} alive nodes")]
        if life is None:
            life = self.nodes[node_id] = NodeLife(incarnation, True, self.now_ms)
        else:
            # A higher incarnation: a restart, after a death or faster than the timeout.
            if was_alive:
                life.fenced_through = max(life.fenced_through, incarnation - 1)
            life.incarnation, life.alive, life.last_heard_ms, life.died_ms = incarnation, True, self.now_ms, None
            self._dead_order.pop(node_id, None)
        if not was_alive:
            self._alive_count += 1
        return [NodeAdmitted(node_id, incarnation)]

    def _mark_dead(self, node_id: NodeID, incarnation: int) -> None:
        life = self.nodes.get(node_id)
        if life is None:
            life = self.nodes[node_id] = NodeLife(incarnation, False, self.now_ms, incarnation, self.now_ms)
            self._remember_dead(node_id)
            return
        if life.alive and incarnation < life.incarnation:
            return  # the death of an earlier life, read late
        if life.alive:
            self._alive_count -= 1
        life.fenced_through = max(life.fenced_through, incarnation)
        life.incarnation = max(life.incarnation, incarnation)
        if life.alive or life.died_ms is None:
            life.died_ms = self.now_ms
        life.alive = False
        self._remember_dead(node_id)

    def _remember_dead(self, node_id: NodeID) -> None:
        self._dead_order[node_id] = None
        self._dead_order.move_to_end(node_id)
        while len(self._dead_order) > self.dead_nodes_kept_max:
            oldest, _ = self._dead_order.popitem(last=False)
            del self.nodes[oldest]

    def _forget(self, node_id: NodeID) -> None:
        life = self.nodes.pop(node_id, None)
        if life is None:
            return
        if life.alive:
            self._alive_count -= 1
        self._dead_order.pop(node_id, None)

    def _on_tick(self) -> list[LivenessEffect]:
        effects: list[LivenessEffect] = []
        for node_id in sorted(self.nodes):
            life = self.nodes.get(node_id)  # forgetting the oldest dead can remove later entries
            if life is None:
                continue
            silent_ms = self.now_ms - life.last_heard_ms
            if life.alive and silent_ms >= self.node_timeout_ms:
                self._mark_dead(node_id, life.incarnation)
                effects.append(DeclareDead(node_id, life.incarnation,
                                           f"no heartbeat for {silent_ms} ms (timeout {self.node_timeout_ms} ms)",
                                           silent_ms))
        return effects
