"""R6: a driver exits while its tasks and actor calls run, cleanly or by
kill -9. The cluster frees what it held within a bound: every CPU is
available again (its running tasks are stopped, its non-detached actors
die and give their resources back), its objects leave the object stores,
and its detached actor lives on. The lineage of its tasks stays readable."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lineagerun
from lineagerun.state import LiveSource, get_actor, get_task, lineage
from lineagerun.testing import Cluster
from tests.cluster.conftest import assert_gone, cluster_pids

pytestmark = pytest.mark.timeout(180)

# What the cluster held for the driver is back within this long after it is gone.
FREED_WITHIN_S = 20.0
DRIVER_READY_S = 60.0
LONG_TASK_S = 120  # far longer than the test: they only end if the cluster stops them
REPO = Path(__file__).resolve().parents[2]

DRIVER = r'''
import json, os, sys, time
import lineagerun

address, mode, out = sys.argv[1:4]
lineagerun.init(address=address)


@lineagerun.remote(num_cpus=1)
def long(i):
    time.sleep(LONG_TASK_S)
    return i


@lineagerun.remote(num_cpus=1)
class Holder:
    def ping(self):
        return os.getpid()

    def work(self):
        time.sleep(LONG_TASK_S)


@lineagerun.remote(num_cpus=0)
class Keeper:
    def ping(self):
        return "alive"


holder = Holder.remote()
keeper = Keeper.options(name="keeper-" + mode, lifetime="detached").remote()
lineagerun.get([holder.ping.remote(), keeper.ping.remote()], timeout=60)
calls = [holder.work.remote() for _ in range(3)]
tasks = [long.remote(i) for i in range(2)]
big = lineagerun.put(b"x" * (4 << 20))  # in the object store, not inline
deadline = time.time() + 60  # the actor and at least one task hold CPUs
while lineagerun.available_resources().get("CPU", 0) > 1 and time.time() < deadline:
    time.sleep(0.05)
with open(out + ".tmp", "w") as f:
    json.dump({"holder": holder._actor_id.hex(), "keeper": keeper._actor_id.hex(),
               "tasks": [t.task_id().hex() for t in tasks], "calls": [c.task_id().hex() for c in calls],
               "big": big.hex(), "cpu_free": lineagerun.available_resources().get("CPU", 0)}, f)
os.rename(out + ".tmp", out)
if mode == "kill":
    time.sleep(600)  # killed by the test
'''.replace("LONG_TASK_S", str(LONG_TASK_S))


@pytest.fixture(scope="module")
def cluster():
    """Head (2 CPUs) + a node (1 CPU): the driver's work fills all three."""
    lineagerun.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2}, node_timeout_ms=1000)
    source = None
    try:
        cluster.add_node(num_cpus=1)
        lineagerun.init(address=cluster.address)
        source = LiveSource(cluster.address, cluster.token)
        yield cluster, source
    finally:
        if source is not None:
            source.close()
        pids = cluster_pids(cluster)
        lineagerun.shutdown()
        cluster.shutdown()
        assert_gone(pids)


def _run_driver(cluster, tmp_path, mode: str) -> dict:
    script, out = tmp_path / "driver.py", tmp_path / "driver.json"
    script.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, str(script), cluster.address, mode, str(out)], cwd=str(tmp_path),
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + DRIVER_READY_S
        while not out.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the driver did not get going (exit {proc.poll()}): "
                                     f"{proc.stdout.read().decode(errors='replace') if proc.poll() is not None else ''}")
            time.sleep(0.05)
        if mode == "kill":
            os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) in (0, -signal.SIGKILL), proc.stdout.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stdout.close()
    return json.loads(out.read_text())


def _until(check, timeout_s=FREED_WITHIN_S):
    """Seconds until ``check()`` is true; fails with its last value after ``timeout_s``."""
    started = time.monotonic()
    while True:
        value = check()
        if value is True:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not freed within {timeout_s} s: {value}")
        time.sleep(0.1)


@pytest.mark.parametrize("mode", ["clean", "kill"])
def test_a_driver_that_exits_mid_work_leaves_nothing_held(cluster, tmp_path, mode):
    cluster, source = cluster
    held = _run_driver(cluster, tmp_path, mode)
    assert held["cpu_free"] <= 1, "the driver's work held CPUs"
    total = lineagerun.cluster_resources()["CPU"]

    def cpus_free():
        free = lineagerun.available_resources().get("CPU", 0)
        return True if free == total else f"{free} of {total} CPUs free"

    def holder_dead():
        record = get_actor(held["holder"], source=source)
        return True if record["state"] == "DEAD" else f"its actor is {record['state']}"

    def object_gone():
        files = glob.glob(f"/dev/shm/lr-*-{held['big']}")
        return True if not files else f"its object is still in the store: {files}"

    waited_s = [_until(check) for check in (cpus_free, holder_dead, object_gone)]
    print(f"driver exit ({mode}): CPUs free after {waited_s[0]:.2f} s, actor dead after {waited_s[1]:.2f} s, "
          f"object gone after {waited_s[2]:.2f} s (each counted from the previous)")
    assert "owner" in get_actor(held["holder"], source=source)["death_cause"]
    # Its detached actor lives on.
    assert lineagerun.get(lineagerun.get_actor(f"keeper-{mode}").ping.remote(), timeout=30) == "alive"
    # The lineage of its tasks is still readable, and says they did not finish.
    for task_hex in held["tasks"] + held["calls"]:
        task = get_task(task_hex, source=source)
        assert task["state"] != "FINISHED", task
    graph = lineage(held["tasks"][0], source=source)
    assert held["tasks"][0] in graph.tasks and graph.tasks[held["tasks"][0]].name.endswith("long")
