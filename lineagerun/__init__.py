"""lineagerun: a Ray-compatible task/actor runtime that records every call's
lineage in a replicated control store. ``import lineagerun as ray`` works for
the core API below."""

from lineagerun import actor, exceptions
from lineagerun.api.actor import ActorClass, ActorHandle, get_actor, kill
from lineagerun.api.object_ref import ObjectRef
from lineagerun.api.objects import cancel, get, put, wait
from lineagerun.api.progress import progress
from lineagerun.api.remote_function import RemoteFunction
from lineagerun.api.runtime_context import available_resources, cluster_resources, get_runtime_context, nodes
from lineagerun.api.session import init, is_initialized, shutdown
from lineagerun.api.timeline import timeline


def remote(*args, **options):
    """``@remote`` / ``@remote(**options)`` on a function (a remote function)
    or a class (an actor class); options are checked against
    ``lineagerun.core.options``."""
    from lineagerun.core import options as options_table

    def make(target):
        if isinstance(target, type):
            return ActorClass(target, options_table.validate_actor_options(options))
        if callable(target):
            return RemoteFunction(target, options_table.validate_task_options(options))
        raise exceptions.InvalidArgumentError(
            f"@remote decorates a function or a class, got a {type(target).__name__}")

    if len(args) == 1 and not options and callable(args[0]):
        return make(args[0])
    if args:
        raise exceptions.InvalidArgumentError(
            "@remote takes either no arguments or only keyword options, e.g. @remote(num_cpus=2)")
    return make


def method(*, num_returns: int = 1):
    """``@lineagerun.method(num_returns=...)`` on an actor method (accepted for
    Ray compatibility; use ``actor.m.options(num_returns=n)`` per call)."""

    def mark(function):
        function.__lineagerun_num_returns__ = num_returns
        return function

    return mark


__all__ = [
    "ActorClass", "ActorHandle", "ObjectRef", "RemoteFunction", "actor", "available_resources", "cancel",
    "cluster_resources", "exceptions", "get", "get_actor", "get_runtime_context", "init", "is_initialized",
    "kill", "method", "nodes", "progress", "put", "remote", "shutdown", "timeline", "wait",
]
