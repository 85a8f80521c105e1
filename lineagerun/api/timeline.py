"""``lineagerun.timeline()``, as Ray's ``ray.timeline()``: a Chrome trace of
the cluster's task attempts, read from their lineage records."""

from __future__ import annotations

import os

from lineagerun.api import context


def timeline(filename: str | os.PathLike | None = None) -> list[dict] | None:
    """Chrome trace events (open the file in https://ui.perfetto.dev or
    chrome://tracing) of every task and actor call attempt this cluster has
    recorded: one slice per attempt, on a lane per node and worker, with
    replays and retries marked, arrows from producers to consumers and
    instants for faults and recoveries (docs/cli.md, ``lineagerun
    timeline``). With ``filename`` the trace is written there and None is
    returned. Attempt records are written a few milliseconds after an
    attempt ends, so the very latest may be missing."""
    from lineagerun import state
    from lineagerun.state.timeline import write_trace

    worker = context.core_worker()
    events = state.timeline(address=worker.control_store_address, token=worker._token)
    if filename is None:
        return events
    write_trace(events, filename)
    return None
