"""``get``, ``put``, ``wait``, ``cancel`` (Ray's semantics)."""

from __future__ import annotations

from typing import Any

from lineagerun import exceptions
from lineagerun.api import context
from lineagerun.api.object_ref import ObjectRef


def _check_timeout(timeout: Any, what: str) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise exceptions.InvalidArgumentError(f"{what}: timeout must be None or a number of seconds >= 0, "
                                              f"got {timeout!r}")
    return float(timeout)


def get(object_refs, *, timeout: float | None = None):
    """The value of a ref, or the values of a list of refs, in order. Raises
    the task's error (a ``TaskError`` that is also the original exception
    class), or ``GetTimeoutError`` after ``timeout`` seconds."""
    timeout_s = _check_timeout(timeout, "get")
    if type(object_refs) is ObjectRef:
        return context.core_worker().get([object_refs], timeout_s)[0]
    if isinstance(object_refs, (list, tuple)):
        for index, ref in enumerate(object_refs):
            if type(ref) is not ObjectRef:
                raise exceptions.InvalidArgumentError(
                    f"get() takes an ObjectRef or a list of ObjectRefs; item {index} is a {type(ref).__name__} "
                    f"({ref!r:.80})")
        if not object_refs:
            return []
        return context.core_worker().get(list(object_refs), timeout_s)
    raise exceptions.InvalidArgumentError(
        f"get() takes an ObjectRef or a list of ObjectRefs, got a {type(object_refs).__name__} "
        f"({object_refs!r:.80}); pass the result of f.remote(...) or put(...)")


def put(value: Any) -> ObjectRef:
    """Store ``value`` in the object store; returns its ref."""
    return context.core_worker().put(value)


def wait(object_refs, *, num_returns: int = 1, timeout: float | None = None,
         fetch_local: bool = True) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """(ready, not ready): at most ``num_returns`` ready refs, both lists in
    the order of ``object_refs``."""
    if not isinstance(object_refs, (list, tuple)):
        raise exceptions.InvalidArgumentError(
            f"wait() takes a list of ObjectRefs, got a {type(object_refs).__name__}")
    for index, ref in enumerate(object_refs):
        if type(ref) is not ObjectRef:
            raise exceptions.InvalidArgumentError(
                f"wait() takes a list of ObjectRefs; item {index} is a {type(ref).__name__}")
    if not object_refs:
        return [], []
    if len(set(object_refs)) != len(object_refs):
        raise exceptions.InvalidArgumentError("wait() expects a list of unique ObjectRefs")
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns < 1:
        raise exceptions.InvalidArgumentError(f"num_returns must be an int >= 1, got {num_returns!r}")
    if num_returns > len(object_refs):
        raise exceptions.InvalidArgumentError(
            f"num_returns ({num_returns}) cannot exceed the number of refs ({len(object_refs)})")
    if not isinstance(fetch_local, bool):
        raise exceptions.InvalidArgumentError(f"fetch_local must be a bool, got {fetch_local!r}")
    timeout_s = _check_timeout(timeout, "wait")
    refs = list(object_refs)
    ready_ids = set(context.core_worker().wait(refs, num_returns, timeout_s, fetch_local))
    ready, not_ready = [], []
    for ref in refs:
        if ref.binary() in ready_ids and len(ready) < num_returns:
            ready.append(ref)
        else:
            not_ready.append(ref)
    return ready, not_ready


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that produces ``object_ref``: a queued task never runs;
    a running one gets TaskCancelledError raised in it (``force=True``: its
    worker is killed). ``get`` of the ref then raises TaskCancelledError."""
    if type(object_ref) is not ObjectRef:
        raise exceptions.InvalidArgumentError(
            f"cancel() takes an ObjectRef (the result of f.remote()), got a {type(object_ref).__name__}; "
            "to stop an actor use lineagerun.kill(actor)")
    if object_ref.object_id().is_put():
        raise exceptions.InvalidArgumentError("cancel() of a put object: only task results can be cancelled")
    context.core_worker().cancel(object_ref.task_id(), bool(force), bool(recursive))
