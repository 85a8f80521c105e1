"""``@remote`` functions: ``f.remote(...)``, ``f.options(...)``."""

from __future__ import annotations

import threading
from typing import Any

import cloudpickle

from lineagerun import exceptions
from lineagerun.api import context
from lineagerun.core import options as options_table
from lineagerun.core.resources import ResourceSet
from lineagerun.rpc import lineage_pb2

PICKLE_PROTOCOL = 5


def scheduling_strategy_proto(strategy) -> lineage_pb2.SchedulingStrategy:
    from lineagerun.core.scheduling_strategies import SPREAD, NodeAffinitySchedulingStrategy, normalize_strategy

    strategy = normalize_strategy(strategy)
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return lineage_pb2.SchedulingStrategy(node_affinity=lineage_pb2.NodeAffinity(
            node_id=strategy.node().binary(), soft=strategy.soft))
    if strategy == SPREAD:
        return lineage_pb2.SchedulingStrategy(spread=True)
    return lineage_pb2.SchedulingStrategy(default=True)


def resources_units(demand: ResourceSet) -> dict[str, int]:
    return demand.units_dict()


class _Export:
    """A function or class pickled once (at its first use: a function
    defined later in ``__main__`` may be captured by it)."""

    def __init__(self, target: Any, is_actor_class: bool):
        self.target = target
        self.is_actor_class = is_actor_class
        self._body: bytes | None = None
        self._lock = threading.Lock()

    def __getstate__(self):
        # Remote functions used inside other remote functions are pickled
        # with them; the lock stays behind.
        return {"target": self.target, "is_actor_class": self.is_actor_class}

    def __setstate__(self, state):
        self.target = state["target"]
        self.is_actor_class = state["is_actor_class"]
        self._body = None
        self._lock = threading.Lock()

    def function_id(self, core_worker) -> bytes:
        with self._lock:
            if self._body is None:
                try:
                    self._body = cloudpickle.dumps(self.target, protocol=PICKLE_PROTOCOL)
                except Exception as exc:
                    raise exceptions.SerializationError(
                        f"cannot serialise {self.target.__qualname__} for the workers ({type(exc).__name__}: "
                        f"{exc}); it captures something process-bound (a lock, socket, open file...)") from exc
        return core_worker.export_function(self._body, self.target.__qualname__, self.target.__module__,
                                           self.is_actor_class)


class RemoteFunction:
    """What ``@remote`` makes of a function (Ray: ``RemoteFunction``)."""

    def __init__(self, function, task_options: dict[str, Any], export: _Export | None = None):
        if not callable(function):
            raise exceptions.InvalidArgumentError(f"@remote needs a function or class, got {function!r}")
        self._function = function
        self._options = task_options
        self._export = export or _Export(function, is_actor_class=False)
        # (num_returns, resource units, TaskOptions): the same for every call
        # with these options, so built once (a call's own cost is on its path).
        self._template: tuple | None = None
        self.__name__ = getattr(function, "__name__", "remote_function")
        self.__qualname__ = getattr(function, "__qualname__", self.__name__)
        self.__doc__ = getattr(function, "__doc__", None)
        self.__module__ = getattr(function, "__module__", None)

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"remote function '{self.__qualname__}' cannot be called directly; use "
            f"'{self.__name__}.remote(...)' to run it as a task, and lineagerun.get() on the result")

    def options(self, **task_options) -> "RemoteFunction":
        options_table.validate_task_options(task_options)
        return RemoteFunction(self._function, options_table.merge(self._options, task_options), self._export)

    def remote(self, *args, **kwargs):
        core_worker = context.core_worker()
        num_returns, resources, task_options = self._template or self._build_template()
        spec = lineage_pb2.TaskSpec(function_id=self._export.function_id(core_worker), num_returns=num_returns,
                                    resources=resources, options=task_options)
        refs = core_worker.submit(spec, args, kwargs)
        if num_returns == 1:
            return refs[0]
        return refs

    def _build_template(self) -> tuple:
        opts = options_table.with_defaults(self._options, options_table.TASK)
        retry = opts["retry_exceptions"]
        task_options = lineage_pb2.TaskOptions(
            max_retries=opts["max_retries"], retry_exceptions=retry is True,
            retry_exception_names=[f"{c.__module__}.{c.__qualname__}" for c in retry]
            if isinstance(retry, (list, tuple)) else [],
            scheduling_strategy=scheduling_strategy_proto(opts["scheduling_strategy"]),
            name=opts["name"] or "", max_calls=opts["max_calls"] or 0)
        self._template = (opts["num_returns"], resources_units(options_table.task_resource_demand(opts)),
                          task_options)
        return self._template

    def __repr__(self) -> str:
        return f"<RemoteFunction {self.__module__}.{self.__qualname__}>"
