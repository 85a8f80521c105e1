"""``lineagerun.timeline()``, as Ray's ``ray.timeline()``."""

from __future__ import annotations

import json
import time

import pytest

import lineagerun

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("cluster")]


@lineagerun.remote
def traced(index):
    return index


def _slices(events, name):
    return [e for e in events if e.get("ph") == "X" and name in e["name"]]


def test_timeline_lists_every_task_attempt():
    lineagerun.get([traced.remote(i) for i in range(5)], timeout=60)
    deadline = time.monotonic() + 10
    while len(_slices(lineagerun.timeline(), "traced")) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)  # attempt records land a few milliseconds after the attempt
    slices = _slices(lineagerun.timeline(), "traced")
    assert len(slices) >= 5
    assert all(s["dur"] >= 1 and s["args"]["state"] == "FINISHED" for s in slices)


def test_timeline_writes_a_chrome_trace_file(tmp_path):
    lineagerun.get(traced.remote(99), timeout=60)
    path = tmp_path / "trace.json"
    assert lineagerun.timeline(str(path)) is None
    document = json.loads(path.read_text())
    assert document["displayTimeUnit"] == "ms" and _slices(document["traceEvents"], "traced")
