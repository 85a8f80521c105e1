"""Throughput of the node manager alone (fake workers, raw driver stream).
Slow and load-sensitive: excluded by default (``-m slow`` runs it)."""

from __future__ import annotations

import time

import pytest

TASKS = 3000


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_3000_tasks_submitted_then_fetched(node_factory, session_factory):
    node = node_factory(num_cpus=2, prestart=2)
    driver = session_factory(node)
    driver.register()
    echo = driver.export("echo")
    driver.get(driver.submit(driver.spec(echo, args=[b"warm"])))
    specs = [driver.spec(echo, args=[b"x"]) for _ in range(TASKS)]
    started = time.monotonic()
    refs = []
    for start in range(0, TASKS, 100):  # as a client batching per loop turn would
        refs += driver.submit(*specs[start:start + 100])
    reply = driver.get(refs, timeout_ms=100_000, wait_s=110)
    rate = TASKS / (time.monotonic() - started)
    assert not reply.timed_out and all(o.payload.inline == b"x" for o in reply.objects)
    started = time.monotonic()
    for _ in range(100):
        driver.get(driver.submit(driver.spec(echo, args=[b"y"])))
    round_trip_ms = (time.monotonic() - started) * 10
    print(f"\n{TASKS} tasks: {rate:.0f} tasks/s; single round trip {round_trip_ms:.2f} ms")
    assert rate > 200  # a floor that catches quadratic behaviour, not a performance target
