"""Chaos scenario files (TOML): cluster shape, workload, fault schedule,
invariants, duration. ``load_scenario(path)`` parses and validates one;
every mistake raises ``InvalidArgumentError`` naming the file, the field and
what is allowed. The format is documented in docs/chaos.md ("Scenarios").
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from lineagerun.core.chaos_schedule import (ACTIONS, INVARIANTS, NETWORK_ACTIONS, PROCESS_ACTIONS, TOXIC_ACTIONS,
                                            FaultSpec)
from lineagerun.core.chaos_api import TOXIC_ATTRIBUTES, STREAMS
from lineagerun.exceptions import InvalidArgumentError

CLUSTER_KINDS = ("control-store", "runtime")
# Targets each cluster kind understands (a runtime target may carry an
# argument: "node:1", "actor:my-actor", "control-store-replica:head");
# resolved when the fault fires by nemesis.ControlStoreTargets or
# runtime_targets.RuntimeTargets.
PROCESS_TARGETS = {
    "control-store": ("head", "middle", "tail", "all-replicas", "coordinator"),
    "runtime": ("node", "worker", "actor", "head-node", "global-scheduler", "control-store-replica"),
}
NETWORK_TARGETS = {
    "control-store": ("clients", "client-coordinator", "link"),
    "runtime": ("node", "head-node", "driver", "control-store", "split", "pair", "link"),
}
# "link:replica:0:1->replica:0:2" and friends: one control-store link
# (lineagerun.chaos.control_store_links; its proxies exist when a fault names one).
# A scenario is meant to be short; hours-long soaks are not a scenario file.
DURATION_S_MAX = 3600.0
SHARDS_MAX = 64
REPLICAS_MAX = 9
TOP_LEVEL_KEYS = ("name", "description", "duration_s", "seed", "smoke", "cluster", "workload", "faults",
                  "invariants", "fault_free_run")
FAULT_KEYS = ("action", "target", "targets", "shard", "at_s", "every_s", "random", "start_s", "stop_s",
              "duration_s", "stream", "attributes", "toxicity")


@dataclass(frozen=True)
class ClusterSpec:
    kind: str
    shards: int = 1
    replicas: int = 3
    nodes: int = 1
    cpus: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        base = {"kind": self.kind, "shards": self.shards, "replicas": self.replicas}
        if self.kind == "runtime":
            base.update(nodes=self.nodes, cpus=self.cpus)
        return {**base, **dict(self.options)}


@dataclass(frozen=True)
class WorkloadSpec:
    kind: str                                   # a registered name or "module:function"
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    description: str
    duration_s: float
    seed: int
    smoke: bool
    cluster: ClusterSpec
    workload: WorkloadSpec
    faults: tuple[FaultSpec, ...]
    invariants: Mapping[str, Any]
    fault_free_run: bool = False


class _Field:
    """Builds error messages naming the file and the field."""

    def __init__(self, path: str):
        self.path = path

    def error(self, where: str, message: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"{self.path}: {where}: {message}")

    def number(self, table: Mapping, key: str, where: str, *, default=None, minimum: float = 0.0,
               maximum: float | None = None, integer: bool = False):
        value = table.get(key, default)
        if value is None:
            return None
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise self.error(f"{where}.{key}", f"{value!r} is not {'an integer' if integer else 'a number'}")
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum:g}" if maximum is not None else ""
            raise self.error(f"{where}.{key}", f"{value!r} must be at least {minimum:g}{upper}")
        return value

    def string(self, table: Mapping, key: str, where: str, *, default=None, allowed: tuple[str, ...] = ()):
        value = table.get(key, default)
        if value is None:
            raise self.error(f"{where}.{key}", "is required" + (f"; one of {', '.join(allowed)}" if allowed else ""))
        if not isinstance(value, str):
            raise self.error(f"{where}.{key}", f"{value!r} is not a string")
        if allowed and value not in allowed:
            raise self.error(f"{where}.{key}", f"{value!r} is not allowed; one of {', '.join(allowed)}")
        return value

    def unknown_keys(self, table: Mapping, allowed: tuple[str, ...], where: str) -> None:
        extra = sorted(set(table) - set(allowed))
        if extra:
            raise self.error(where, f"unknown field(s) {', '.join(extra)}; allowed: {', '.join(allowed)}")


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise InvalidArgumentError(f"{path}: cannot read the scenario file: {err.strerror or err}") from None
    return parse_scenario(text, str(path))


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    fields = _Field(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InvalidArgumentError(f"{path}: not valid TOML: {err}") from None
    fields.unknown_keys(data, TOP_LEVEL_KEYS, "top level")
    name = fields.string(data, "name", "top level", default=Path(path).stem)
    duration_s = fields.number(data, "duration_s", "top level", default=None, minimum=1.0, maximum=DURATION_S_MAX)
    if duration_s is None:
        raise fields.error("duration_s", f"is required (seconds the workload runs under faults, 1 to "
                                         f"{DURATION_S_MAX:g})")
    seed = fields.number(data, "seed", "top level", default=0, integer=True)
    for flag in ("smoke", "fault_free_run"):
        if not isinstance(data.get(flag, False), bool):
            raise fields.error(flag, f"{data[flag]!r} is not true or false")
    cluster = _parse_cluster(fields, data.get("cluster"))
    workload = _parse_workload(fields, data.get("workload"))
    raw_faults = data.get("faults", [])
    if not isinstance(raw_faults, list):
        raise fields.error("faults", "must be an array of tables ([[faults]])")
    faults = tuple(_parse_fault(fields, raw, f"faults[{i}]", cluster.kind, duration_s)
                   for i, raw in enumerate(raw_faults))
    invariants = _parse_invariants(fields, data.get("invariants", {}))
    return Scenario(name=name, path=path, description=str(data.get("description", "")), duration_s=float(duration_s),
                    seed=seed, smoke=bool(data.get("smoke", False)), cluster=cluster, workload=workload,
                    faults=faults, invariants=invariants, fault_free_run=bool(data.get("fault_free_run", False)))


def _table(fields: _Field, raw: Any, where: str) -> dict:
    if raw is None:
        raise fields.error(f"[{where}]", "is required")
    if not isinstance(raw, dict):
        raise fields.error(where, "must be a table")
    return raw


def _parse_cluster(fields: _Field, raw: Any) -> ClusterSpec:
    table = _table(fields, raw, "cluster")
    kind = fields.string(table, "kind", "cluster", allowed=CLUSTER_KINDS)
    shards = fields.number(table, "shards", "cluster", default=1, minimum=1, maximum=SHARDS_MAX, integer=True)
    # A runtime cluster's control store: one replica unless asked (each is a process to start).
    replicas = fields.number(table, "replicas", "cluster", default=1 if kind == "runtime" else 3, minimum=1,
                             maximum=REPLICAS_MAX, integer=True)
    nodes = fields.number(table, "nodes", "cluster", default=1, minimum=1, integer=True)
    cpus = fields.number(table, "cpus", "cluster", default=1, minimum=1, integer=True)
    options = {k: v for k, v in table.items() if k not in ("kind", "shards", "replicas", "nodes", "cpus")}
    allowed_options = ("heartbeat_interval_ms", "failure_timeout_ms", "lease_ms", "durability") if kind != "runtime" \
        else ("heartbeat_interval_ms", "failure_timeout_ms", "resources", "object_store_memory")
    fields.unknown_keys(options, allowed_options, "cluster")
    return ClusterSpec(kind, shards, replicas, nodes, cpus, options)


def _parse_workload(fields: _Field, raw: Any) -> WorkloadSpec:
    table = _table(fields, raw, "workload")
    kind = fields.string(table, "kind", "workload")
    if ":" in kind:
        module, _, function = kind.partition(":")
        if not module or not function:
            raise fields.error("workload.kind", f"{kind!r}: a user workload is 'package.module:function'")
    return WorkloadSpec(kind, {k: v for k, v in table.items() if k != "kind"})


def _parse_fault(fields: _Field, raw: Any, where: str, cluster_kind: str, duration_s: float) -> FaultSpec:
    if not isinstance(raw, dict):
        raise fields.error(where, "must be a table")
    fields.unknown_keys(raw, FAULT_KEYS, where)
    action = fields.string(raw, "action", where, allowed=ACTIONS)
    targets = _parse_targets(fields, raw, where, action, cluster_kind)
    timings = [key for key in ("at_s", "every_s", "random") if key in raw]
    if len(timings) != 1:
        raise fields.error(where, f"give exactly one of at_s (fixed times), every_s (periodic) or random "
                                  f"(a count of seeded random times); found {timings or 'none'}")
    at_ms: tuple[int, ...] = ()
    if "at_s" in raw:
        values = raw["at_s"] if isinstance(raw["at_s"], list) else [raw["at_s"]]
        at_ms = tuple(sorted(_ms(fields.number({"at_s": v}, "at_s", where, maximum=duration_s)) for v in values))
    every_s = fields.number(raw, "every_s", where, minimum=0.1)
    random_count = fields.number(raw, "random", where, default=0, minimum=1 if "random" in raw else 0,
                                 maximum=1000, integer=True)
    start_s = fields.number(raw, "start_s", where, default=0.0, maximum=duration_s)
    stop_s = fields.number(raw, "stop_s", where, default=None, maximum=duration_s)
    if stop_s is not None and stop_s <= start_s:
        raise fields.error(f"{where}.stop_s", f"{stop_s} must be after start_s ({start_s})")
    fault_duration_s = fields.number(raw, "duration_s", where, default=1.0 if action in ("pause",) +
                                     NETWORK_ACTIONS else 0.0, maximum=DURATION_S_MAX)
    if action in ("pause",) + NETWORK_ACTIONS and fault_duration_s <= 0:
        raise fields.error(f"{where}.duration_s", f"a {action} fault needs a positive duration_s (when to undo it)")
    stream = fields.string(raw, "stream", where, default="downstream", allowed=STREAMS)
    attributes = _parse_attributes(fields, raw, where, action)
    toxicity = fields.number(raw, "toxicity", where, default=1.0, maximum=1.0)
    shard = fields.number(raw, "shard", where, default=0, integer=True)
    return FaultSpec(action=action, targets=targets, shard=shard, at_ms=at_ms, every_ms=_ms(every_s or 0),
                     random_count=random_count, start_ms=_ms(start_s), stop_ms=None if stop_s is None else _ms(stop_s),
                     duration_ms=_ms(fault_duration_s), stream=stream, attributes=attributes, toxicity=float(toxicity))


def _parse_targets(fields: _Field, raw: dict, where: str, action: str, cluster_kind: str) -> tuple[str, ...]:
    if ("target" in raw) == ("targets" in raw):
        raise fields.error(where, "give exactly one of target = \"...\" or targets = [...] (rotated or drawn)")
    targets = [raw["target"]] if "target" in raw else raw["targets"]
    if not isinstance(targets, list) or not targets:
        raise fields.error(f"{where}.targets", "must be a non-empty array of target names")
    allowed = PROCESS_TARGETS[cluster_kind] if action in PROCESS_ACTIONS else NETWORK_TARGETS[cluster_kind]
    family = "process" if action in PROCESS_ACTIONS else "network"
    for target in targets:
        base = target.split(":", 1)[0] if isinstance(target, str) else target
        if base not in allowed:
            raise fields.error(f"{where}.target", f"{target!r} is not a {family} target of a {cluster_kind} "
                                                  f"cluster for action {action!r}; allowed: {', '.join(allowed)}")
    if action == "pause" and "all-replicas" in targets:
        raise fields.error(f"{where}.target", "pause of all-replicas is not supported; pause one replica")
    return tuple(targets)


def _parse_attributes(fields: _Field, raw: dict, where: str, action: str) -> tuple[tuple[str, int], ...]:
    attributes = raw.get("attributes", {})
    if not isinstance(attributes, dict):
        raise fields.error(f"{where}.attributes", "must be a table, e.g. attributes = { latency = 100 }")
    if attributes and action not in TOXIC_ACTIONS:
        raise fields.error(f"{where}.attributes", f"only toxic actions ({', '.join(TOXIC_ACTIONS)}) take attributes")
    allowed = TOXIC_ATTRIBUTES.get(action, ())
    fields.unknown_keys(attributes, allowed, f"{where}.attributes")
    return tuple((key, fields.number(attributes, key, f"{where}.attributes", integer=True))
                 for key in sorted(attributes))


def _parse_invariants(fields: _Field, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise fields.error("invariants", "must be a table")
    fields.unknown_keys(raw, tuple(INVARIANTS), "invariants")
    out = {}
    for name, value in raw.items():
        rule = INVARIANTS[name]
        if rule.kind == "bool":
            if not isinstance(value, bool):
                raise fields.error(f"invariants.{name}", f"{value!r} is not true or false")
        else:
            fields.number(raw, name, "invariants")
        out[name] = value
    return out


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))
