"""Scheduling strategies, as Ray's ``ray.util.scheduling_strategies``.

A task or actor's ``scheduling_strategy`` option is one of:

- ``None`` or ``"DEFAULT"``: run where the estimated wait is lowest
  (locally when the local node can take it);
- ``"SPREAD"``: spread over the feasible nodes, round robin;
- ``NodeAffinitySchedulingStrategy(node_id, soft)``: run on that node; when it
  is dead or can never fit the task, a hard affinity fails the task and a
  soft one falls back to the default policy (Ray's semantics, where a soft
  affinity to a live, feasible but busy node still waits for that node).

Placement groups are not supported (yet); ``lineagerun.util.scheduling_strategies``
re-exports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from lineagerun.core.ids import NodeID
from lineagerun.exceptions import InvalidArgumentError

DEFAULT = "DEFAULT"
SPREAD = "SPREAD"
STRATEGY_NAMES = (DEFAULT, SPREAD)


@dataclass(frozen=True)
class NodeAffinitySchedulingStrategy:
    """Run on ``node_id`` (a hex string, as Ray's, or a ``NodeID``)."""

    node_id: str
    soft: bool = False

    def __post_init__(self):
        node_id = self.node_id
        if isinstance(node_id, NodeID):
            node_id = node_id.hex()
        if not isinstance(node_id, str):
            raise InvalidArgumentError(
                f"NodeAffinitySchedulingStrategy: node_id must be a hex string or a NodeID, "
                f"got {type(node_id).__name__} {node_id!r}"
            )
        NodeID.from_hex(node_id)  # raises a clear error for a malformed id
        if not isinstance(self.soft, bool):
            raise InvalidArgumentError(f"NodeAffinitySchedulingStrategy: soft must be a bool, got {self.soft!r}")
        object.__setattr__(self, "node_id", node_id.lower())

    def node(self) -> NodeID:
        return NodeID.from_hex(self.node_id)


SchedulingStrategy = Union[None, str, NodeAffinitySchedulingStrategy]


def normalize_strategy(strategy: SchedulingStrategy) -> str | NodeAffinitySchedulingStrategy:
    """``"DEFAULT"``, ``"SPREAD"`` or a node affinity; refuses anything else."""
    if strategy is None:
        return DEFAULT
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return strategy
    if isinstance(strategy, str) and strategy in STRATEGY_NAMES:
        return strategy
    raise InvalidArgumentError(
        f"scheduling_strategy {strategy!r} is not supported: use None, 'DEFAULT', 'SPREAD' "
        f"or NodeAffinitySchedulingStrategy(node_id, soft=...)"
    )
