"""One table of the options of ``@remote(...)`` and ``.options(...)``.

Mirrors Ray's ``ray/_private/ray_option_utils.py``: each option has a type,
a default per kind (task / actor), what it applies to, and a validator that
returns an error message or ``None``. ``validate_task_options`` and
``validate_actor_options`` check a dict against the table (the same check for
the decorator and for ``.options()``); ``merge`` lays ``.options()`` overrides
over the decorator's options.

Actor CPU defaults follow Ray (``ray_constants.DEFAULT_ACTOR_*_CPU_*``):
an actor that names no resource needs 1 CPU to be *placed* and holds 0 CPUs
while it lives (so idle actors do not pin CPUs); an actor that names any
resource (num_cpus, num_gpus, memory, resources) holds them, and 1 CPU unless
num_cpus says otherwise, for its whole life. ``actor_resource_demands``
computes both sets.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lineagerun.core.resources import CPU, GPU, MEMORY, RESOURCE_UNIT_SCALING, ResourceSet, to_units
from lineagerun.core.scheduling_strategies import STRATEGY_NAMES, NodeAffinitySchedulingStrategy
from lineagerun.exceptions import InvalidArgumentError

TASK = "task"
ACTOR = "actor"
BOTH = "both"

DEFAULT_TASK_MAX_RETRIES = 3  # Ray's DEFAULT_TASK_MAX_RETRIES
DEFAULT_ACTOR_CREATION_CPU_SIMPLE = 0
DEFAULT_ACTOR_PLACEMENT_CPU_SIMPLE = 1
DEFAULT_ACTOR_CREATION_CPU_SPECIFIED = 1
# Names are keys in the control store (name/<namespace>/<name>); a bound
# keeps them keys, not blobs.
NAME_LENGTH_MAX = 512


@dataclass(frozen=True)
class Option:
    name: str
    applies_to: str  # TASK, ACTOR or BOTH
    allowed: str  # what a valid value is, for error messages and docs
    validator: Callable[[Any], str | None]  # None when valid, else what is wrong
    task_default: Any = None
    actor_default: Any = None
    doc: str = ""

    def default_for(self, kind: str) -> Any:
        return self.task_default if kind == TASK else self.actor_default

    def check(self, value: Any) -> None:
        problem = self.validator(value)
        if problem:
            raise InvalidArgumentError(
                f"invalid value for option '{self.name}': {value!r} ({problem}); allowed: {self.allowed}"
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _resource_amount(name: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not _is_number(value):
            return f"a number is required, got {type(value).__name__}"
        try:
            to_units(name, value)
        except InvalidArgumentError as err:
            return str(err)
        return None

    return check


def _counting(minimum: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not _is_int(value):
            return f"an int is required, got {type(value).__name__}"
        if value < minimum:
            return f"must be >= {minimum}"
        return None

    return check


def _check_resources(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return f"a dict of resource name -> amount is required, got {type(value).__name__}"
    for name in (CPU, GPU):
        if name in value:
            return f"use num_cpus / num_gpus instead of '{name}' inside resources"
    if MEMORY in value:
        return "use the memory option instead of 'memory' inside resources"
    try:
        ResourceSet(value)
    except InvalidArgumentError as err:
        return str(err)
    return None


def _check_num_returns(value: Any) -> str | None:
    if value in ("dynamic", "streaming"):
        return f"num_returns={value!r} (generators) is not supported by lineagerun yet"
    if not _is_int(value):
        return f"an int is required, got {type(value).__name__}"
    if value < 0:
        return "must be >= 0"
    return None


def _check_retry_exceptions(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (list, tuple)):
        bad = [v for v in value if not (isinstance(v, type) and issubclass(v, Exception))]
        if bad:
            return f"{bad[0]!r} is not an exception class"
        return None
    return f"a bool or a list of exception classes is required, got {type(value).__name__}"


def _check_name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return f"a str is required, got {type(value).__name__}"
    if not value:
        return "cannot be empty; use None for no name"
    if len(value) > NAME_LENGTH_MAX:
        return f"longer than {NAME_LENGTH_MAX} characters"
    if "\x00" in value:
        return "cannot contain NUL characters"
    return None


def _check_choice(*choices: Any) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if any(value == c and type(value) is type(c) for c in choices):
            return None
        return "not one of the choices"

    return check


def _check_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"a bool is required, got {type(value).__name__}"


def _check_strategy(value: Any) -> str | None:
    if value is None or isinstance(value, NodeAffinitySchedulingStrategy):
        return None
    if isinstance(value, str) and value in STRATEGY_NAMES:
        return None
    if type(value).__name__ == "PlacementGroupSchedulingStrategy":
        return "placement groups are not supported by lineagerun yet"
    return "not a supported strategy"


def _check_runtime_env(value: Any) -> str | None:
    if value is None or (isinstance(value, dict) and not value):
        return None
    return "runtime environments are not supported by lineagerun yet; pass None or {}"


_RESOURCE_ALLOWED = f"None or a number >= 0 with at most 1/{RESOURCE_UNIT_SCALING} precision"

_OPTION_LIST = [
    Option("num_cpus", BOTH, _RESOURCE_ALLOWED, _resource_amount(CPU), 1, None,
           "CPUs to reserve; an actor naming no resource needs 1 CPU to be placed and holds 0, "
           "else holds what it names (CPU default 1) for life (Ray's rule)"),
    Option("num_gpus", BOTH, _RESOURCE_ALLOWED, _resource_amount(GPU), 0, None, "GPUs to reserve"),
    Option("memory", BOTH, _RESOURCE_ALLOWED, _resource_amount(MEMORY), None, None,
           "bytes of memory to reserve for scheduling (not enforced)"),
    Option("resources", BOTH, "None or a dict str -> number >= 0, without 'CPU', 'GPU', 'memory' keys",
           _check_resources, None, None, "custom resources to reserve"),
    Option("num_returns", TASK, "an int >= 0", _check_num_returns, 1, None, "number of return values"),
    Option("max_retries", TASK, "an int >= -1 (-1 = retry forever)", _counting(-1),
           DEFAULT_TASK_MAX_RETRIES, None, "retries when the worker or node dies mid-task"),
    Option("retry_exceptions", TASK, "a bool, or a list of exception classes", _check_retry_exceptions, False, None,
           "also retry when user code raises (these exceptions, or any when True)"),
    Option("max_calls", TASK, "an int >= 0 (0 = no limit)", _counting(0), 0, None,
           "a worker that ran this many calls of the function exits and a fresh one takes over "
           "(memory a library leaks goes with it)"),
    Option("name", BOTH, f"None or a non-empty str of at most {NAME_LENGTH_MAX} characters", _check_name, None, None,
           "task name (for display) or actor name (for get_actor)"),
    Option("namespace", ACTOR, f"None or a non-empty str of at most {NAME_LENGTH_MAX} characters", _check_name,
           None, None, "namespace of a named actor"),
    Option("lifetime", ACTOR, "None, 'detached' or 'non_detached'", _check_choice(None, "detached", "non_detached"),
           None, None, "detached actors outlive their driver"),
    Option("max_restarts", ACTOR, "an int >= -1 (-1 = restart forever)", _counting(-1), None, 0,
           "restarts (with replay) after the actor's process or node dies"),
    Option("max_task_retries", ACTOR, "an int >= -1 (-1 = retry forever)", _counting(-1), None, 0,
           "retries of a method call interrupted by the actor's death"),
    Option("max_concurrency", ACTOR, "an int >= 1", _counting(1), None, 1, "method calls run at once"),
    Option("checkpoint_interval", ACTOR, "an int >= 0 (0 = never checkpoint)", _counting(0), None, 0,
           "lineagerun: checkpoint the actor every this many method calls"),
    Option("scheduling_strategy", BOTH,
           "None, 'DEFAULT', 'SPREAD' or NodeAffinitySchedulingStrategy(node_id, soft)",
           _check_strategy, None, None, "where to place the task or actor"),
    Option("get_if_exists", ACTOR, "a bool", _check_bool, None, False,
           "return the existing actor of this name instead of failing"),
    Option("runtime_env", BOTH, "None or {} (runtime environments are not supported yet)", _check_runtime_env,
           None, None, "accepted for Ray compatibility"),
]

OPTIONS: dict[str, Option] = {option.name: option for option in _OPTION_LIST}
TASK_OPTIONS: dict[str, Option] = {n: o for n, o in OPTIONS.items() if o.applies_to in (TASK, BOTH)}
ACTOR_OPTIONS: dict[str, Option] = {n: o for n, o in OPTIONS.items() if o.applies_to in (ACTOR, BOTH)}

# Ray options lineagerun knows of but does not implement: named in errors so
# a Ray user learns "not supported" rather than "misspelt".
RAY_OPTIONS_NOT_SUPPORTED = frozenset({
    "accelerator_type", "concurrency_groups", "label_selector", "max_calls", "max_pending_calls",
    "object_store_memory", "placement_group", "placement_group_bundle_index",
    "placement_group_capture_child_tasks", "_metadata", "enable_task_events", "_labels",
})


def _check_dict(options: Any, what: str) -> None:
    if not isinstance(options, Mapping):
        raise InvalidArgumentError(f"{what} options must be a dict, got {type(options).__name__}")


def _validate(options: Mapping[str, Any], kind: str, table: dict[str, Option]) -> dict[str, Any]:
    _check_dict(options, kind)
    for key, value in options.items():
        if key not in table:
            if key in RAY_OPTIONS_NOT_SUPPORTED:
                reason = "is a Ray option that lineagerun does not support"
            elif key in OPTIONS:
                other = "actors" if kind == TASK else "remote functions (tasks)"
                reason = f"applies to {other} only"
            else:
                close = difflib.get_close_matches(str(key), list(table), n=1)
                reason = f"is not an option (did you mean '{close[0]}'?)" if close else "is not an option"
            raise InvalidArgumentError(
                f"invalid option '{key}' for {'remote functions' if kind == TASK else 'actors'}: {key!r} {reason}; "
                f"valid options are {sorted(table)}"
            )
        table[key].check(value)
    return dict(options)


def validate_task_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``@remote``/``.options()`` options of a remote function; returns a copy."""
    return _validate(options, TASK, TASK_OPTIONS)


def validate_actor_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``@remote``/``.options()`` options of an actor class; returns a copy.

    As Ray: ``get_if_exists`` needs a ``name``; ``max_task_retries`` needs
    ``max_restarts`` (a call cannot be retried on an actor that never comes
    back). Checked on the options given, so validate the merged dict too.
    """
    checked = _validate(options, ACTOR, ACTOR_OPTIONS)
    if checked.get("get_if_exists") and not checked.get("name"):
        raise InvalidArgumentError("option 'get_if_exists' needs option 'name': only a named actor can be looked up")
    if checked.get("max_task_retries", 0) not in (0, None) and checked.get("max_restarts", 0) in (0, None):
        raise InvalidArgumentError(
            "option 'max_task_retries' needs 'max_restarts' != 0: calls cannot be retried on an actor "
            "that is never restarted"
        )
    return checked


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``.options(**overrides)`` over ``@remote(**base)``: overrides win, key
    by key (a ``resources`` dict is replaced, not merged, as in Ray)."""
    _check_dict(base, "base")
    _check_dict(overrides, "override")
    return {**base, **overrides}


def with_defaults(options: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """Every option of ``kind`` (TASK or ACTOR), given value or default."""
    if kind not in (TASK, ACTOR):
        raise InvalidArgumentError(f"kind must be {TASK!r} or {ACTOR!r}, got {kind!r}")
    table = TASK_OPTIONS if kind == TASK else ACTOR_OPTIONS
    return {name: options.get(name, option.default_for(kind)) for name, option in table.items()}


def _named_resources(options: Mapping[str, Any]) -> dict[str, Any]:
    amounts: dict[str, Any] = dict(options.get("resources") or {})
    for key, resource in (("num_cpus", CPU), ("num_gpus", GPU), ("memory", MEMORY)):
        if options.get(key) is not None:
            amounts[resource] = options[key]
    return amounts


def task_resource_demand(options: Mapping[str, Any]) -> ResourceSet:
    """What a task holds while it runs (num_cpus defaults to 1)."""
    amounts = _named_resources(options)
    amounts.setdefault(CPU, OPTIONS["num_cpus"].task_default)
    return ResourceSet(amounts)


@dataclass(frozen=True)
class ActorResourceDemands:
    placement: ResourceSet  # needed free on a node to place the actor there
    lifetime: ResourceSet  # held by the actor while it lives


def actor_resource_demands(options: Mapping[str, Any]) -> ActorResourceDemands:
    """Ray's rule (``actor.py``): no resource named -> 1 CPU to place, 0 held;
    any named -> held for life, with CPU defaulting to 1."""
    amounts = _named_resources(options)
    if not set(amounts) - {MEMORY}:
        amounts.setdefault(CPU, DEFAULT_ACTOR_CREATION_CPU_SIMPLE)
        lifetime = ResourceSet(amounts)
        placement = lifetime + ResourceSet({CPU: DEFAULT_ACTOR_PLACEMENT_CPU_SIMPLE})
        return ActorResourceDemands(placement=placement, lifetime=lifetime)
    amounts.setdefault(CPU, DEFAULT_ACTOR_CREATION_CPU_SPECIFIED)
    lifetime = ResourceSet(amounts)
    return ActorResourceDemands(placement=lifetime, lifetime=lifetime)


def options_table_markdown() -> str:
    """The options table as Markdown (docs/lineage-records.md embeds it)."""
    rows = ["| option | applies to | allowed | task default | actor default | meaning |", "|---|---|---|---|---|---|"]
    for option in _OPTION_LIST:
        task_default = repr(option.task_default) if option.applies_to != ACTOR else ""
        actor_default = repr(option.actor_default) if option.applies_to != TASK else ""
        rows.append(f"| `{option.name}` | {option.applies_to} | {option.allowed} | {task_default} "
                    f"| {actor_default} | {option.doc} |")
    return "\n".join(rows)
