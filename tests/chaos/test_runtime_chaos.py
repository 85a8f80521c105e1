"""Runtime chaos: nemesis actions on a real 2-node ``Cluster(chaos=True)``
(from Python and from ``lineagerun chaos nemesis``), proxied links (latency
measurably slows a driver -> node call; a cut link fails with a clear error;
a new driver works after heal), and runtime scenarios end to end.

One cluster per module (a cluster start costs seconds); every process it
started is stopped (and checked gone) at the end."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click
import psutil
import pytest
from click.testing import CliRunner

import lineagerun
from lineagerun.chaos.cluster_nemesis import ClusterNemesis
from lineagerun.chaos.runtime_links import connect_driver
from lineagerun.chaos.runtime_targets import worker_processes
from lineagerun.chaos.scenario import load_scenario, parse_scenario
from lineagerun.cli.chaos_run import EXIT_INVARIANT_FAILED, nemesis, run
from lineagerun.exceptions import InvalidArgumentError, LineagerunError
from lineagerun.objects import shm
from lineagerun.testing import Cluster
from lineagerun.util.scheduling_strategies import NodeAffinitySchedulingStrategy

REPO = Path(__file__).resolve().parents[2]
RUNTIME_SCENARIOS = sorted((REPO / "chaos").glob("rt-*.toml"))


def _cli() -> click.Group:
    return click.Group("chaos", commands={"run": run, "nemesis": nemesis})


def _all_pids(cluster: Cluster) -> set[int]:
    roots = [n.pid for n in cluster.list_all_nodes()]
    if cluster.scheduler_process is not None:
        roots.append(cluster.scheduler_process.pid)
    roots += [p.pid for p in cluster.control_store.processes() if p.pid]
    pids = set()
    for pid in roots:
        try:
            pids.add(pid)
            pids.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            pass
    return pids


def _gone(pids: set[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@lineagerun.remote
def add_one(x):
    return x + 1


@lineagerun.remote(max_retries=0)
def make_array(size):
    import numpy as np

    return np.zeros(size, dtype=np.uint8)


@lineagerun.remote(max_retries=3)
def busy_add(x, seconds):
    """Spins (uses CPU, so the nemesis picks its worker as the busiest)."""
    deadline_s = time.monotonic() + seconds
    while time.monotonic() < deadline_s:
        pass
    return x + 1, os.getpid()


@lineagerun.remote(max_restarts=5)
class Counter:
    def __init__(self):
        self.value = 0

    def incr(self):
        self.value += 1
        return self.value


@pytest.fixture(scope="module")
def chaos_cluster():
    lineagerun.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1}, chaos=True)
    pids: set[int] = set()
    try:
        cluster.add_node(num_cpus=1)
        connect_driver(cluster)
        yield cluster
    finally:
        lineagerun.shutdown()
        pids = _all_pids(cluster)
        cluster.shutdown()
        deadline_s = time.monotonic() + 10
        while _gone(pids) and time.monotonic() < deadline_s:
            time.sleep(0.1)
    assert not _gone(pids), f"processes left running: {_gone(pids)}"


def _wait(predicate, timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline_s = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline_s:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _median_call_s(n: int = 5) -> float:
    times = []
    for i in range(n):
        started_s = time.monotonic()
        assert lineagerun.get(add_one.remote(i), timeout=30) == i + 1
        times.append(time.monotonic() - started_s)
    return sorted(times)[n // 2]


@pytest.mark.timeout(240)
def test_latency_on_the_driver_link_slows_calls_and_a_cut_link_fails_clearly(chaos_cluster):
    cluster = chaos_cluster
    nemesis_ = ClusterNemesis(cluster)
    base_s = _median_call_s()
    name = nemesis_.toxic("latency", {"latency": 300}, what="driver")
    try:
        slowed_s = _median_call_s(3)
    finally:
        nemesis_.targets.network_targets("driver", 0)[0].remove_toxic(name)
    assert slowed_s >= base_s + 0.25, (base_s, slowed_s)
    assert _median_call_s(3) < slowed_s  # removing the toxic takes the delay away
    # A cut link shorter than the driver's reconnect bound: the driver
    # reconnects once it heals and the call completes (a longer cut fails
    # with a typed error: tests/chaos/test_driver_reconnect.py).
    nemesis_.cut_driver()
    try:
        ref = add_one.remote(1)
        with pytest.raises(LineagerunError):  # GetTimeoutError: the link is down, not a hang
            lineagerun.get(ref, timeout=1)
    finally:
        nemesis_.heal()
    assert lineagerun.get(ref, timeout=60) == 2
    lineagerun.shutdown()
    # After heal a driver connects again through the same proxy (only the
    # driver's link was cut: the node kept its heartbeats).
    connect_driver(cluster)
    assert lineagerun.get(add_one.remote(41), timeout=30) == 42
    # A split isolates the later half (node 1): its proxies are disabled,
    # the head's are not; the driver's node keeps working.
    assert "split" in nemesis_.split()
    try:
        head_links, other_links = cluster.links.nodes
        assert all(not p.enabled for p in other_links.proxies.values())
        assert all(p.enabled for p in head_links.proxies.values())
        assert lineagerun.get(add_one.remote(1), timeout=30) == 2
    finally:
        nemesis_.heal()
    assert all(p.enabled for p in other_links.proxies.values())


@pytest.mark.timeout(240)
def test_process_nemesis_worker_actor_node_pause_and_scheduler(chaos_cluster):
    cluster = chaos_cluster
    nemesis_ = ClusterNemesis(cluster)
    head = cluster.head_node
    # A worker killed mid-task: the task is retried and returns its value.
    ref = busy_add.remote(1, 2.0)
    _wait(lambda: worker_processes(head.pid), what="a worker")
    time.sleep(0.7)
    done = nemesis_.kill_worker(head)
    killed_pid = int(done.split("pid ")[1].split()[0])
    value, pid = lineagerun.get(ref, timeout=60)
    assert value == 2 and pid != killed_pid, (done, pid)
    # An actor's process killed: restarted, its calls replayed, state exact.
    counter = Counter.options(name="chaos-counter").remote()
    assert lineagerun.get([counter.incr.remote() for _ in range(3)], timeout=60) == [1, 2, 3]
    done = nemesis_.kill_actor("chaos-counter")
    assert "chaos-counter" in done
    assert lineagerun.get(counter.incr.remote(), timeout=60) == 4
    # Pause / resume a node's process group.
    other = cluster.worker_nodes[0]
    nemesis_.pause_node(other)
    try:
        _wait(lambda: psutil.Process(other.pid).status() == psutil.STATUS_STOPPED, 5, "SIGSTOP")
    finally:
        nemesis_.resume_node(other)
    _wait(lambda: psutil.Process(other.pid).status() != psutil.STATUS_STOPPED, 5, "SIGCONT")
    # A node killed (its whole process group) and replaced.
    node_pids = {other.pid} | {w.pid for w in worker_processes(other.pid)}
    nemesis_.kill_node(other)
    _wait(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                          for p in node_pids), 10, "the node's processes to die")
    replacement = nemesis_.replace_node(other)
    assert replacement is not None and replacement in cluster.worker_nodes
    cluster.wait_for_nodes(timeout=60)
    # The global scheduler: killed, restarted on the same address.
    address = cluster.scheduler_address
    nemesis_.kill_scheduler()
    _wait(lambda: not cluster.scheduler_process.alive(), 5, "the scheduler to die")
    nemesis_.restart_scheduler()
    assert cluster.scheduler_address == address
    cluster.wait_for_nodes(timeout=60)
    assert lineagerun.get(add_one.remote(1), timeout=30) == 2


@pytest.mark.timeout(240)
def test_cli_nemesis_against_the_cluster_session(chaos_cluster):
    cluster = chaos_cluster
    session = str(cluster.session_dir)
    other = cluster.worker_nodes[0]
    runner = CliRunner()
    result = runner.invoke(_cli(), ["nemesis", "pause-node", "--session", session, "--node", other.node_id[:10]])
    assert result.exit_code == 0, result.output
    assert "pause node" in result.output
    _wait(lambda: psutil.Process(other.pid).status() == psutil.STATUS_STOPPED, 5, "SIGSTOP")
    result = runner.invoke(_cli(), ["nemesis", "resume-node", "--session", session, "--node", other.node_id[:10]])
    assert result.exit_code == 0, result.output
    result = runner.invoke(_cli(), ["nemesis", "toxic", "--session", session, "--node", cluster.head_node.node_id[:10],
                                    "--links", "in", "--type", "latency", "--attr", "latency=300"])
    assert result.exit_code == 0, result.output
    try:
        assert _median_call_s(3) >= 0.25
    finally:
        result = runner.invoke(_cli(), ["nemesis", "heal", "--session", session])
    assert result.exit_code == 0 and "healed" in result.output, result.output
    assert _median_call_s(3) < 0.25
    counter = Counter.options(name="cli-counter").remote()
    assert lineagerun.get(counter.incr.remote(), timeout=60) == 1
    result = runner.invoke(_cli(), ["nemesis", "kill-actor", "--session", session, "--actor", "cli-counter"])
    assert result.exit_code == 0, result.output
    assert "kill actor cli-counter" in result.output
    assert lineagerun.get(counter.incr.remote(), timeout=60) == 2
    result = runner.invoke(_cli(), ["nemesis", "kill-scheduler", "--session", session])
    assert result.exit_code == 0, result.output
    _wait(lambda: not cluster.scheduler_process.alive(), 5, "the scheduler to die")
    result = runner.invoke(_cli(), ["nemesis", "restart-scheduler", "--session", session])
    assert result.exit_code == 0 and cluster.scheduler_address in result.output, result.output
    from lineagerun.chaos.runtime_targets import SessionProcesses

    cluster.scheduler_process = SessionProcesses(session).scheduler()  # so the cluster stops the new one
    cluster.wait_for_nodes(timeout=60)
    result = runner.invoke(_cli(), ["nemesis", "kill-node", "--session", session, "--node", "ffffffffffff"])
    assert result.exit_code != 0 and "no running node" in result.output
    # A node killed from the CLI leaves no shared-memory files or socket behind.
    ready = json.loads((cluster.session_dir / "nodes" / other.node_id / "ready.json").read_text())
    socket_path = ready["socket"].removeprefix("unix:")
    on_other = NodeAffinitySchedulingStrategy(other.node_id, soft=False)
    kept = make_array.options(scheduling_strategy=on_other).remote(1 << 20)
    assert lineagerun.wait([kept], timeout=60)[0] == [kept]
    kept_file = shm.object_path(ready["store_session_id"], kept.binary())
    assert os.path.exists(socket_path) and os.path.exists(kept_file)
    result = runner.invoke(_cli(), ["nemesis", "kill-node", "--session", session, "--node", other.node_id[:10]])
    assert result.exit_code == 0 and "kill node" in result.output, result.output
    assert not os.path.exists(socket_path) and not os.path.exists(kept_file)


# ------------------------------------------------------------ scenarios


def test_runtime_scenarios_are_valid_and_short():
    assert len(RUNTIME_SCENARIOS) >= 6
    for path in RUNTIME_SCENARIOS:
        scenario = load_scenario(path)
        assert scenario.cluster.kind == "runtime"
        assert scenario.duration_s <= 30 and scenario.faults and scenario.invariants


def test_runtime_schema_errors_are_clear():
    base = '[cluster]\nkind = "runtime"\n[workload]\nkind = "map-reduce"\n'
    with pytest.raises(InvalidArgumentError, match="allowed: node, worker, actor"):
        parse_scenario('duration_s = 5\n' + base + '[[faults]]\naction = "kill"\ntarget = "head"\nat_s = 1\n')
    with pytest.raises(InvalidArgumentError, match="cluster: unknown field"):
        parse_scenario('duration_s = 5\n' + base.replace('kind = "runtime"', 'kind = "runtime"\nlease_ms = 5'))
    assert parse_scenario('duration_s = 5\n' + base).cluster.replicas == 1


def _our_children() -> set[int]:
    pids = set()
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE and "lineagerun" in " ".join(process.cmdline()):
                pids.add(process.pid)
        except psutil.Error:
            continue
    return pids


def _small_scenario(tmp_path: Path, invariants: str) -> Path:
    path = tmp_path / "rt.toml"
    path.write_text(f"""
name = "rt-test"
duration_s = 5
seed = 11
[cluster]
kind = "runtime"
nodes = 2
cpus = 1
[workload]
kind = "task-chain"
length = 5
[[faults]]
action = "kill"
target = "worker:0"
at_s = 2
[[faults]]
action = "latency"
target = "node:1"
at_s = 1
duration_s = 2
attributes = {{ latency = 30 }}
[invariants]
{invariants}
""")
    return path


@pytest.mark.timeout(240)
def test_short_runtime_scenario_passes_with_a_json_report(tmp_path):
    lineagerun.shutdown()
    before = _our_children()
    report_path = tmp_path / "report.json"
    scenario = _small_scenario(tmp_path, "result_matches_fault_free = true\nacknowledged_writes_lost = 0\n"
                                         "min_operations_ok = 2\n")
    result = CliRunner().invoke(_cli(), ["run", str(scenario), "--report", str(report_path)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["verdict"] == "PASS" and report["faults_injected"] == 2
    assert report["result"]["matches"] is True and report["lost"] == 0
    for key in ("tasks_reexecuted", "objects_rebuilt", "actor_calls_replayed"):
        assert isinstance(report[key], int), (key, report[key])
    assert "latency node:1" in result.output and "kill worker:0" in result.output
    assert "result correct:       yes" in result.output
    assert not lineagerun.is_initialized()
    assert _our_children() <= before, "the runner left processes behind"
    assert not Path(report["cluster"]["dir"]).exists(), "the runner left its directory behind"


@pytest.mark.timeout(240)
def test_broken_invariant_runtime_scenario_fails_with_a_clear_report(tmp_path):
    lineagerun.shutdown()
    report_path = tmp_path / "report.json"
    scenario = _small_scenario(tmp_path, "min_operations_ok = 1000000000\n")
    result = CliRunner().invoke(_cli(), ["run", str(scenario), "--report", str(report_path)])
    assert result.exit_code == EXIT_INVARIANT_FAILED, result.output
    report = json.loads(report_path.read_text())
    assert report["verdict"] == "FAIL"
    assert any("min_operations_ok: FAILED" in p for p in report["problems"])
    assert "FAIL min_operations_ok" in result.output and "verdict: FAIL" in result.output


# Scenarios that found runtime bugs not fixed yet (their reports say what).
KNOWN_FAILING: dict[str, str] = {}  # scenario stem -> why it may fail (xfail, not strict)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.xfail(reason=KNOWN_FAILING[p.stem], strict=False))
    if p.stem in KNOWN_FAILING else p for p in RUNTIME_SCENARIOS], ids=lambda p: p.stem)
def test_runtime_scenario(path, tmp_path):
    lineagerun.shutdown()
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(_cli(), ["run", str(path), "--report", str(report_path)])
    assert result.exit_code == 0, result.output


def test_user_workload_module_function_is_checked_against_its_fault_free_value(tmp_path):
    from lineagerun.chaos.runner import make_workload
    from lineagerun.chaos.workloads import UserFunction

    workload = make_workload("lineagerun.chaos.example_workload:word_count", {"words": 50, "chunks": 2},
                             "runtime", "t.toml")
    assert isinstance(workload, UserFunction)
    with pytest.raises(InvalidArgumentError, match="cannot load"):
        make_workload("no_such_module_abc:f", {}, "runtime", "t.toml")


def test_demo_scenario_parses_and_the_control_store_demo_stays_reachable():
    from lineagerun.chaos.demo_scenario import DEMO_SCENARIO_TOML
    from lineagerun.cli.demo import demo

    scenario = parse_scenario(DEMO_SCENARIO_TOML, "demo")
    assert scenario.cluster.kind == "runtime" and scenario.duration_s <= 30
    assert {f.action for f in scenario.faults} >= {"kill", "latency"}
    result = CliRunner().invoke(demo, ["--help"])
    assert result.exit_code == 0 and "--control-store" in result.output


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_runs_under_two_minutes_and_passes(tmp_path):
    from lineagerun.cli.demo import demo

    lineagerun.shutdown()
    started_s = time.monotonic()
    result = CliRunner().invoke(demo, ["--report", str(tmp_path / "demo.json")])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started_s < 120
    assert "verdict: PASS" in result.output
    assert json.loads((tmp_path / "demo.json").read_text())["faults_injected"] >= 4
