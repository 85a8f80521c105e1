"""Reading TaskSpecs: validation, return ids, resource demands, strategy."""

from __future__ import annotations

from lineagerun.core.ids import ActorID, JobID, ObjectID, TaskID
from lineagerun.core.resources import CPU, ResourceSet
from lineagerun.core.scheduling_strategies import DEFAULT, SPREAD, NodeAffinitySchedulingStrategy
from lineagerun.rpc import lineage_pb2

# More return values than this in one task is a mistake, not a workload.
NUM_RETURNS_MAX = 10_000
# Ray's rule (lineagerun.core.options.actor_resource_demands): a simple actor
# needs 1 CPU to be placed and holds none while it lives.
ACTOR_PLACEMENT_CPU_SIMPLE = 1


def return_ids(spec: lineage_pb2.TaskSpec) -> list[bytes]:
    task_id = TaskID(spec.task_id)
    return [ObjectID.from_index(task_id, i).binary() for i in range(1, min(spec.num_returns, NUM_RETURNS_MAX) + 1)]


def arg_object_ids(spec: lineage_pb2.TaskSpec) -> list[bytes]:
    """Objects passed by reference at the top level (what must be local)."""
    ids = [a.object_id for a in spec.args if a.WhichOneof("kind") == "object_id"]
    ids += [k.arg.object_id for k in spec.kwargs if k.arg.WhichOneof("kind") == "object_id"]
    return ids


def validate(spec: lineage_pb2.TaskSpec, known_functions) -> str | None:
    """What is wrong with ``spec``, or None."""
    if len(spec.task_id) != TaskID.SIZE:
        return f"task_id must be {TaskID.SIZE} bytes, got {len(spec.task_id)}"
    if spec.job_id and len(spec.job_id) != JobID.SIZE:
        return f"job_id must be {JobID.SIZE} bytes, got {len(spec.job_id)}"
    if spec.num_returns > NUM_RETURNS_MAX:
        return f"num_returns is {spec.num_returns}; at most {NUM_RETURNS_MAX} are supported"
    if spec.is_actor_task:
        if len(spec.actor_id) != ActorID.SIZE:
            return f"an actor task needs a {ActorID.SIZE}-byte actor_id, got {len(spec.actor_id)} bytes"
        if not spec.method_name:
            return "an actor task needs a method_name"
    elif spec.function_id not in known_functions:
        return (f"function {spec.function_id.hex()[:16]} was not exported on this session before the task "
                "naming it: send ExportFunction first")
    if spec.is_actor_creation and len(spec.actor_id) != ActorID.SIZE:
        return f"an actor creation needs a {ActorID.SIZE}-byte actor_id, got {len(spec.actor_id)} bytes"
    for index, arg in enumerate(list(spec.args) + [k.arg for k in spec.kwargs]):
        kind = arg.WhichOneof("kind")
        if kind is None:
            return f"argument {index} has neither a value nor an object_id"
        if kind == "object_id" and len(arg.object_id) != ObjectID.SIZE:
            return f"argument {index}: object ids are {ObjectID.SIZE} bytes, got {len(arg.object_id)}"
    try:
        demand(spec)
    except Exception as exc:  # noqa: BLE001 - reported as the task's error
        return f"bad resources {dict(spec.resources)}: {exc}"
    return None


def demand(spec: lineage_pb2.TaskSpec) -> ResourceSet:
    """What the task needs to be dispatched (for an actor: to be placed)."""
    resources = ResourceSet.from_units(dict(spec.resources))
    if spec.is_actor_creation:
        return placement_of(resources)
    return resources


def placement_of(lifetime: ResourceSet) -> ResourceSet:
    """An actor creation spec carries the actor's lifetime resources; a
    simple actor (no CPU, GPU or custom resource) needs 1 CPU more to be placed."""
    if any(name not in ("memory",) for name in lifetime):
        return lifetime
    return lifetime + ResourceSet({CPU: ACTOR_PLACEMENT_CPU_SIMPLE})


def strategy_of(spec: lineage_pb2.TaskSpec):
    strategy = spec.options.scheduling_strategy
    kind = strategy.WhichOneof("kind")
    if kind == "spread":
        return SPREAD
    if kind == "node_affinity":
        return NodeAffinitySchedulingStrategy(strategy.node_affinity.node_id.hex(), strategy.node_affinity.soft)
    return DEFAULT


def actor_naming(spec: lineage_pb2.TaskSpec, session_namespace: str) -> tuple[str, str, bool]:
    """(name, namespace, detached) of an actor creation.

    TaskSpec has no actor name, namespace or lifetime fields yet: the name is
    ``options.name``; namespace and lifetime are read from
    ``options.namespace`` / ``options.lifetime`` when the proto has them
    (proposed), else the session's namespace and non-detached."""
    options = spec.options
    fields = options.DESCRIPTOR.fields_by_name
    namespace = getattr(options, "namespace", "") if "namespace" in fields else ""
    detached = False
    if "lifetime" in fields:
        detached = options.lifetime == lineage_pb2.DETACHED
    return options.name, namespace or session_namespace, detached


def function_name(spec: lineage_pb2.TaskSpec, functions: dict) -> str:
    if spec.is_actor_task:
        return f"{spec.method_name} (actor {spec.actor_id.hex()[:8]})"
    record = functions.get(spec.function_id)
    name = (record.name if record is not None else "") or spec.options.name or spec.function_id.hex()[:8]
    return name

