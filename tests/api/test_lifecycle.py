"""init/shutdown, auto-init, another driver, a small store: each test runs
its own cluster (so this module has no shared fixture)."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys

import numpy as np
import psutil
import pytest

import lineagerun
from lineagerun import exceptions
from tests.api.conftest import shutdown_and_remove_session

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(autouse=True)
def no_cluster_before_and_after():
    shutdown_and_remove_session()
    yield
    shutdown_and_remove_session()


@lineagerun.remote
def echo(value):
    return value


def _shm_files(store_session_id: str) -> list[str]:
    return glob.glob(f"/dev/shm/lr-{store_session_id[:8]}*")


def test_shutdown_leaves_no_process_socket_or_shm_file(capsys):
    state = lineagerun.init(num_cpus=2)
    assert "lineagerun:" in capsys.readouterr().out
    lineagerun.get(lineagerun.put(np.zeros(1_000_000)))  # a shm file
    lineagerun.get(echo.remote(np.ones(500_000)))        # one made by a worker
    ready = state.cluster.node_ready
    assert _shm_files(ready["store_session_id"])
    started = psutil.Process().children(recursive=True)
    assert len(started) >= 4  # coordinator, 2 replicas, node manager (+ workers)
    shutdown_and_remove_session()
    assert not lineagerun.is_initialized()
    gone, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, f"still running: {alive}"
    assert not _shm_files(ready["store_session_id"])
    assert not os.path.exists(ready["socket"].removeprefix("unix:"))


def test_api_call_before_init_initialises_automatically():
    assert not lineagerun.is_initialized()
    assert lineagerun.get(echo.remote("auto")) == "auto"
    assert lineagerun.is_initialized()


def test_second_init_is_an_error_unless_ignored():
    lineagerun.init(num_cpus=1)
    with pytest.raises(exceptions.ConfigurationError, match="ignore_reinit_error"):
        lineagerun.init(num_cpus=1)
    lineagerun.init(num_cpus=1, ignore_reinit_error=True)


def test_bad_init_arguments_are_rejected():
    with pytest.raises(exceptions.InvalidArgumentError, match="num_cpus"):
        lineagerun.init(num_cpus=-1)
    with pytest.raises(exceptions.InvalidArgumentError, match="unsupported"):
        lineagerun.init(dashboard_port=1234)


def test_another_driver_reads_an_object_by_hex():
    state = lineagerun.init(num_cpus=1)
    ref = lineagerun.put("shared between drivers")
    script = ("import lineagerun, sys\n"
              f"lineagerun.init(address={state.address!r})\n"
              f"print(lineagerun.get(lineagerun.ObjectRef.from_hex({ref.hex()!r}), timeout=20))\n"
              "lineagerun.shutdown()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            start_new_session=True)
    assert result.returncode == 0, result.stderr
    assert "shared between drivers" in result.stdout


def test_small_store_evicts_released_objects():
    lineagerun.init(num_cpus=1, object_store_memory=40 * 1024 * 1024)
    kept = lineagerun.put(np.full(1_000_000, 99, dtype=np.int64))
    for i in range(12):  # 12 x 8 MB through a 40 MB store: only dropped refs make room
        ref = lineagerun.put(np.full(1_000_000, i, dtype=np.int64))
        del ref
    last = lineagerun.put(np.full(1_000_000, 7, dtype=np.int64))
    assert lineagerun.get(last)[0] == 7
    assert lineagerun.get(kept)[-1] == 99  # a live ref is never evicted


def test_interpreter_exit_stops_the_cluster():
    script = ("import json, psutil, lineagerun\n"
              "from lineagerun.api import session\n"
              "lineagerun.init(num_cpus=1)\n"
              "state = session.driver_state()\n"
              "pids = [p.pid for p in psutil.Process().children(recursive=True)]\n"
              "print(json.dumps({'pids': pids, 'store': state.cluster.node_ready['store_session_id']}))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            start_new_session=True)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(info["pids"]) >= 4
    try:
        procs = [psutil.Process(pid) for pid in info["pids"] if psutil.pid_exists(pid)]
        _gone, alive = psutil.wait_procs(procs, timeout=10)
        assert not alive, f"still running after the driver exited: {alive}"
        assert not _shm_files(info["store"])
    finally:
        _stop_leftovers(info["pids"])


def _stop_leftovers(pids: list[int]) -> None:
    """Failure path only: stop by process group whatever a driver left."""
    own_group = os.getpgid(0)
    for pid in pids:
        try:
            group = os.getpgid(pid)
            if group != own_group:  # a reused pid in pytest's own group is not ours to kill
                os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def test_sigterm_to_the_driver_stops_the_cluster():
    script = ("import json, time, psutil, lineagerun\n"
              "from lineagerun.api import session\n"
              "lineagerun.init(num_cpus=1)\n"
              "state = session.driver_state()\n"
              "pids = [p.pid for p in psutil.Process().children(recursive=True)]\n"
              "print(json.dumps({'pids': pids, 'store': state.cluster.node_ready['store_session_id']}), flush=True)\n"
              "time.sleep(60)\n")
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    info = {"pids": []}
    try:
        line = driver.stdout.readline()
        while line and not line.startswith("{"):  # after init()'s one line
            line = driver.stdout.readline()
        assert line, "the driver exited before printing its processes"
        info = json.loads(line)
        driver.terminate()  # SIGTERM: the driver's handler shuts the cluster down
        driver.wait(timeout=30)
        procs = [psutil.Process(pid) for pid in info["pids"] if psutil.pid_exists(pid)]
        _gone, alive = psutil.wait_procs(procs, timeout=10)
        assert not alive, f"still running after SIGTERM to the driver: {alive}"
        assert not _shm_files(info["store"])
    finally:
        if driver.poll() is None:
            driver.terminate()
            try:
                driver.wait(timeout=15)
            except subprocess.TimeoutExpired:
                driver.kill()
                driver.wait()
        _stop_leftovers(info["pids"])
