"""``@remote`` classes (actors): creation, handles and method calls."""

from __future__ import annotations

import inspect
from typing import Any

from lineagerun import exceptions
from lineagerun.api import context
from lineagerun.api.remote_function import _Export, resources_units, scheduling_strategy_proto
from lineagerun.core import options as options_table
from lineagerun.core.ids import ActorID
from lineagerun.rpc import lineage_pb2, node_pb2

# Actor calls carry these (Ray's ``.options`` of an actor method).
_METHOD_OPTIONS = ("num_returns", "name")


class ActorClass:
    """What ``@remote`` makes of a class (Ray: ``ActorClass``)."""

    def __init__(self, cls: type, actor_options: dict[str, Any], export: _Export | None = None):
        self._cls = cls
        self._options = actor_options
        self._export = export or _Export(cls, is_actor_class=True)
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__
        self.__doc__ = cls.__doc__

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"actor class '{self.__qualname__}' cannot be instantiated directly; use "
            f"'{self.__name__}.remote(...)' to create an actor")

    def options(self, **actor_options) -> "ActorClass":
        options_table.validate_actor_options(actor_options)
        merged = options_table.merge(self._options, actor_options)
        options_table.validate_actor_options(merged)
        return ActorClass(self._cls, merged, self._export)

    def remote(self, *args, **kwargs) -> "ActorHandle":
        core_worker = context.core_worker()
        opts = options_table.with_defaults(self._options, options_table.ACTOR)
        namespace = opts["namespace"] or core_worker.namespace
        if opts["name"]:
            existing = core_worker.get_actor_info(opts["name"], namespace)
            if existing.found and existing.actor.state != lineage_pb2.DEAD:
                if opts["get_if_exists"]:
                    return ActorHandle(ActorID(existing.actor.actor_id), self._method_names())
                raise exceptions.InvalidArgumentError(
                    f"an actor named {opts['name']!r} already exists in namespace {namespace!r}; use "
                    "lineagerun.get_actor(name) or .options(get_if_exists=True)")
        _check_checkpoint_methods(self._cls, opts["checkpoint_interval"])
        actor_id, _index = core_worker.new_actor_id()
        demands = options_table.actor_resource_demands(opts)
        is_async = any(inspect.iscoroutinefunction(m) for _, m in inspect.getmembers(self._cls))
        max_concurrency = self._options.get("max_concurrency") or (0 if is_async else 1)
        spec = lineage_pb2.TaskSpec(
            function_id=self._export.function_id(core_worker), actor_id=actor_id.binary(), num_returns=1,
            resources=resources_units(demands.lifetime), is_actor_creation=True,
            options=lineage_pb2.TaskOptions(
                max_retries=0, scheduling_strategy=scheduling_strategy_proto(opts["scheduling_strategy"]),
                name=opts["name"] or ""),
            checkpoint_interval=opts["checkpoint_interval"], max_restarts=opts["max_restarts"],
            max_task_retries=opts["max_task_retries"], max_concurrency=max_concurrency)
        _set_naming(spec, namespace, opts["lifetime"])
        core_worker.submit(spec, args, kwargs, actor_id=actor_id)
        return ActorHandle(actor_id, self._method_names())

    def _method_names(self) -> dict[str, int]:
        """Method name -> its default num_returns (``@lineagerun.method``)."""
        return {name: getattr(member, "__lineagerun_num_returns__", 1)
                for name, member in inspect.getmembers(self._cls, callable) if not name.startswith("__")}

    def __repr__(self) -> str:
        return f"<ActorClass {self.__module__}.{self.__qualname__}>"


def _check_checkpoint_methods(cls: type, checkpoint_interval: int) -> None:
    """A checkpoint interval is only meaningful for a class that can save and
    restore its state; without both methods every restart would fail later."""
    if not checkpoint_interval:
        return
    missing = [name for name in ("__lineagerun_checkpoint__", "__lineagerun_restore__")
               if not callable(getattr(cls, name, None))]
    if missing:
        raise exceptions.InvalidArgumentError(
            f"actor class '{cls.__qualname__}' has checkpoint_interval={checkpoint_interval} but does not define "
            f"{' and '.join(missing)}; define __lineagerun_checkpoint__(self) -> state and "
            "__lineagerun_restore__(self, state), or leave checkpoint_interval at 0 (every call is replayed)")


def _set_naming(spec: lineage_pb2.TaskSpec, namespace: str, lifetime: str | None) -> None:
    """Namespace and lifetime of a named actor go in ``TaskOptions.namespace``
    / ``TaskOptions.lifetime`` when the proto has them (proposed in the
    report); until then the node manager uses the driver's namespace and
    non-detached (lineagerun.node.specs.actor_naming)."""
    fields = spec.options.DESCRIPTOR.fields_by_name
    if "namespace" in fields:
        spec.options.namespace = namespace
    if "lifetime" in fields:
        spec.options.lifetime = lineage_pb2.DETACHED if lifetime == "detached" else lineage_pb2.NON_DETACHED


class ActorMethod:
    def __init__(self, handle: "ActorHandle", name: str, method_options: dict[str, Any] | None = None):
        self._handle = handle
        self._name = name
        self._options = method_options or {}

    def __call__(self, *args, **kwargs):
        raise TypeError(f"actor method '{self._name}' cannot be called directly; use "
                        f"'actor.{self._name}.remote(...)'")

    def options(self, **method_options) -> "ActorMethod":
        unknown = set(method_options) - set(_METHOD_OPTIONS)
        if unknown:
            raise exceptions.InvalidArgumentError(
                f"invalid option(s) {sorted(unknown)} for an actor method; valid: {list(_METHOD_OPTIONS)}")
        options_table.validate_task_options(method_options)
        return ActorMethod(self._handle, self._name, {**self._options, **method_options})

    def remote(self, *args, **kwargs):
        methods = self._handle._method_names or {}
        num_returns = self._options.get("num_returns", methods.get(self._name, 1))
        spec = lineage_pb2.TaskSpec(function_id=b"", actor_id=self._handle._actor_id.binary(),
                                    method_name=self._name, num_returns=num_returns, is_actor_task=True,
                                    options=lineage_pb2.TaskOptions(name=self._options.get("name") or ""))
        refs = context.core_worker().submit(spec, args, kwargs, actor_id=self._handle._actor_id)
        return refs[0] if num_returns == 1 else refs


class ActorHandle:
    """A reference to an actor; picklable (pass it to tasks and other actors)."""

    def __init__(self, actor_id: ActorID, method_names: dict[str, int] | None = None):
        self._actor_id = actor_id
        self._method_names = method_names

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._method_names is not None and name not in self._method_names:
            raise AttributeError(f"actor {self._actor_id.hex()[:8]} has no method {name!r}")
        return ActorMethod(self, name)

    def __reduce__(self):
        return (ActorHandle, (self._actor_id, self._method_names))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __repr__(self) -> str:
        return f"Actor({self._actor_id.hex()})"


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    if not isinstance(name, str) or not name:
        raise exceptions.InvalidArgumentError(f"get_actor needs a non-empty actor name, got {name!r}")
    core_worker = context.core_worker()
    info: node_pb2.ActorInfo = core_worker.get_actor_info(name, namespace or core_worker.namespace)
    if not info.found or info.actor.state == lineage_pb2.DEAD:
        raise ValueError(f"Failed to look up actor with name '{name}' in namespace "
                         f"{(namespace or core_worker.namespace)!r}: no live actor has that name")
    return ActorHandle(ActorID(info.actor.actor_id))


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    if not isinstance(actor, ActorHandle):
        raise exceptions.InvalidArgumentError(f"kill() takes an actor handle, got {type(actor).__name__}; "
                                              "to stop a task use lineagerun.cancel(ref)")
    context.core_worker().kill_actor(actor._actor_id, no_restart)
