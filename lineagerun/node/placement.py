"""Where a task submitted to this node goes: kept, spilled, or failed at once.

A pure function of what the node knows (no I/O, no clock); the node manager
calls it once the task's by-reference arguments exist somewhere (their
locations are then known and travel with a spill). Bottom-up, as the Ray
paper's local scheduler: keep what this node can run soon, give the rest to
the global scheduler, which weighs queues and argument locality.
"""

from __future__ import annotations

from dataclasses import dataclass

from lineagerun.core.resources import ResourceSet
from lineagerun.core.scheduling_strategies import SPREAD, NodeAffinitySchedulingStrategy

# Tasks queued or running here beyond which new ones are spilled: a long
# local queue means another node may start them sooner. The global
# scheduler may still place them back here when every node is as busy.
QUEUE_LENGTH_SPILL_THRESHOLD = 100
# Arguments elsewhere at least this large make a task worth placing by
# locality (the global scheduler charges their transfer time); smaller ones
# are cheaper to pull than a placement round trip.
LOCALITY_SPILL_MIN_BYTES = 1024 * 1024

KEEP = "keep"
SPILL = "spill"
FAIL = "fail"


@dataclass(frozen=True)
class Decision:
    action: str      # KEEP, SPILL or FAIL
    reason: str = ""


@dataclass(frozen=True)
class TaskFacts:
    demand: ResourceSet
    strategy: object
    is_actor_creation: bool
    local_arg_bytes: int      # by-reference arguments already on this node
    remote_arg_bytes: int     # ... only on other nodes


def decide(task: TaskFacts, *, node_id_hex: str, total: ResourceSet, queue_length: int,
           queue_length_spill_threshold: int = QUEUE_LENGTH_SPILL_THRESHOLD) -> Decision:
    feasible_here = task.demand.fits_in(total)
    if task.is_actor_creation:
        # Actor calls are routed to the node manager of the caller, which
        # must host the actor: actors stay on their creator's node for now.
        if feasible_here:
            return Decision(KEEP)
        return Decision(FAIL, f"actors are placed on their creator's node, whose total {total.to_dict()} "
                              f"cannot fit {task.demand.to_dict()}")
    strategy = task.strategy
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        if strategy.node_id != node_id_hex:
            return Decision(SPILL, f"node affinity to node {strategy.node_id[:16]}")
        if feasible_here:
            return Decision(KEEP)
        if not strategy.soft:
            return Decision(FAIL, f"hard node affinity to this node, whose total {total.to_dict()} "
                                  f"cannot fit {task.demand.to_dict()}")
        return Decision(SPILL, "soft node affinity to this node, which cannot fit it")
    if not feasible_here:
        return Decision(SPILL, f"infeasible here: this node lacks {task.demand.missing_from(total)}")
    if strategy == SPREAD:
        return Decision(SPILL, "SPREAD strategy")
    if queue_length >= queue_length_spill_threshold:
        return Decision(SPILL, f"local queue at its threshold of {queue_length_spill_threshold}")
    if task.remote_arg_bytes >= LOCALITY_SPILL_MIN_BYTES and task.remote_arg_bytes > task.local_arg_bytes:
        return Decision(SPILL, f"{task.remote_arg_bytes} bytes of arguments are on other nodes")
    return Decision(KEEP)
