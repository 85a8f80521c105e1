"""The event loop of the node manager and the control-store replicas.

uvloop (libuv) where it is installed, else asyncio's own loop: the node
manager and the replicas are on every task's critical path, and their loop
turns (callbacks, futures, gRPC's aio completions) cost measurably less on
uvloop: in alternated runs on the 2-core bench machine the actor round
trip was 0.04-0.25 ms shorter in all 14 pairs, the task round trip in 9
(session 6, docs/benchmarks.md).
``LINEAGERUN_EVENT_LOOP=asyncio`` keeps asyncio's loop (to compare, or if
a platform's uvloop misbehaves)."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Coroutine

EVENT_LOOP_ENV = "LINEAGERUN_EVENT_LOOP"


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run(main)`` on the service event loop."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def _loop_factory():
    if os.environ.get(EVENT_LOOP_ENV, "uvloop") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # an install without it: asyncio's loop does the same work
        return None
    return uvloop.new_event_loop
