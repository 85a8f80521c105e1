"""``lineagerun.util.as_completed`` and ``map_unordered``, as Ray's
``ray.util`` helpers: results as they become ready, in batches of
``chunk_size`` (the ``num_returns`` of each ``wait``)."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

from lineagerun.exceptions import InvalidArgumentError

# As Ray: a wait per result would cost a round trip each.
DEFAULT_CHUNK_SIZE = 10
# Tasks in flight before map_unordered waits for some to finish.
DEFAULT_BACKPRESSURE_SIZE = 100


def _check_sizes(chunk_size: int, backpressure_size: int | None = None) -> None:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise InvalidArgumentError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    if backpressure_size is not None and (not isinstance(backpressure_size, int)
                                          or isinstance(backpressure_size, bool) or backpressure_size < 1):
        raise InvalidArgumentError(f"backpressure_size must be None or an int >= 1, got {backpressure_size!r}")


def _next_ready(refs: list, chunk_size: int, yield_obj_refs: bool, wait_kwargs: dict) -> tuple[list, list]:
    """Up to ``chunk_size`` ready ones of ``refs`` (values, or refs), and the rest."""
    from lineagerun.api.objects import get, wait

    ready, rest = wait(refs, num_returns=min(chunk_size, len(refs)), **wait_kwargs)
    return (ready if yield_obj_refs else get(ready)), rest


def as_completed(refs: Sequence, *, chunk_size: int = DEFAULT_CHUNK_SIZE, yield_obj_refs: bool = False,
                 **wait_kwargs: Any) -> Iterator[Any]:
    """Yield the values of ``refs`` (or the refs themselves with
    ``yield_obj_refs=True``) as they become ready, ``chunk_size`` at a time;
    ``wait_kwargs`` (``timeout``, ``fetch_local``) go to each ``wait``."""
    _check_sizes(chunk_size)
    pending = list(refs)
    while pending:
        ready, pending = _next_ready(pending, chunk_size, yield_obj_refs, wait_kwargs)
        yield from ready


def map_unordered(fn, items: Iterable, *, backpressure_size: int | None = DEFAULT_BACKPRESSURE_SIZE,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, yield_obj_refs: bool = False,
                  **wait_kwargs: Any) -> Iterator[Any]:
    """Apply the remote function ``fn`` to every item, with at most
    ``backpressure_size`` tasks in flight (None: no limit), and yield the
    results as they become ready, in no particular order."""
    _check_sizes(chunk_size, backpressure_size)
    if not hasattr(fn, "remote"):
        raise InvalidArgumentError(f"map_unordered needs a remote function (@lineagerun.remote), got {fn!r}")
    pending: list = []
    for item in items:
        if backpressure_size is not None and len(pending) >= backpressure_size:
            ready, pending = _next_ready(pending, chunk_size, yield_obj_refs, wait_kwargs)
            yield from ready
        pending.append(fn.remote(item))
    yield from as_completed(pending, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs, **wait_kwargs)
