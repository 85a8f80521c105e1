"""Chaos scenarios end to end (``lineagerun chaos run``), scenario validation,
and the ``chaos nemesis`` commands against a running control store.

Every cluster a test starts is stopped by that test (by pid / process group);
the runner removes its temporary directory."""

from __future__ import annotations

import json
import os
import textwrap
import tomllib
from pathlib import Path

import click
import psutil
import pytest
from click.testing import CliRunner

from lineagerun.chaos.scenario import load_scenario, parse_scenario
from lineagerun.cli.chaos_run import EXIT_BAD_SCENARIO, EXIT_INVARIANT_FAILED, nemesis, run
from lineagerun.exceptions import InvalidArgumentError

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "chaos").glob("*.toml"))


def _cli() -> click.Group:
    """``lineagerun chaos`` with this module's commands (also when the
    shared ``chaos`` group does not register them yet)."""
    return click.Group("chaos", commands={"run": run, "nemesis": nemesis})


def _lineagerun_children() -> set[int]:
    """Live lineagerun processes under this one. A zombie (a child another
    test killed but did not reap yet) or a process exiting meanwhile raises
    in ``cmdline()``: skipped, it is not running anything."""
    pids = set()
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE and "lineagerun" in " ".join(process.cmdline()):
                pids.add(process.pid)
        except psutil.Error:
            continue
    return pids


def _smoke_scenario() -> Path:
    smoke = [path for path in SCENARIOS if tomllib.loads(path.read_text()).get("smoke")]
    assert len(smoke) == 1, f"exactly one scenario should be marked smoke = true, found {smoke}"
    return smoke[0]


def test_every_shipped_scenario_is_valid():
    assert len(SCENARIOS) >= 6
    for path in SCENARIOS:
        scenario = load_scenario(path)
        assert scenario.cluster.kind in ("control-store", "runtime")
        assert 1 <= scenario.duration_s <= 20, f"{path.name}: keep scenarios short"
        assert scenario.faults and scenario.invariants


@pytest.mark.timeout(180)
def test_smoke_scenario_passes_end_to_end_with_a_json_report(tmp_path):
    before = _lineagerun_children()
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(_cli(), ["run", str(_smoke_scenario()), "--report", str(report_path)],
                                catch_exceptions=False)
    if result.exit_code != 0 and report_path.exists():
        # A rare failure under load must be explainable later: keep the
        # JSON report outside pytest's rotated temporary directories.
        import shutil
        import tempfile

        kept = Path(tempfile.gettempdir()) / f"lineagerun-smoke-report-{os.getpid()}.json"
        shutil.copy(report_path, kept)
        pytest.fail(f"smoke scenario failed (JSON report kept in {kept}):\n{result.output}")
    assert result.exit_code == 0, result.output
    assert "verdict: PASS" in result.output
    report = json.loads(report_path.read_text())
    assert report["verdict"] == "PASS", report["problems"]
    assert report["faults_injected"] >= 2
    assert report["operations"]["ok"] > 0
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["stale"] == 0
    assert report["replicas_identical"] is True
    assert report["recovery_ms"]["count"] >= 1 and report["recovery_ms"]["max"] is not None
    assert report["seed"] == load_scenario(_smoke_scenario()).seed
    injects = [f for f in report["faults"] if f["phase"] == "inject"]
    assert [f["action"].split()[1] for f in injects][:3] == ["head", "middle", "tail"][:len(injects)]
    assert all(invariant["ok"] for invariant in report["invariants"])
    assert _lineagerun_children() <= before, "the runner left processes behind"
    assert not Path(report["cluster"]["dir"]).exists(), "the runner left its directory behind"


@pytest.mark.timeout(120)
def test_broken_invariant_scenario_exits_non_zero_with_a_clear_report(tmp_path):
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(_cli(), ["run", str(REPO / "chaos" / "cs-broken-invariant.toml"), "--seed", "5",
                                         "--report", str(report_path)], catch_exceptions=False)
    assert result.exit_code == EXIT_INVARIANT_FAILED, result.output
    assert "verdict: FAIL" in result.output
    assert "FAIL max_stall_ms" in result.output
    report = json.loads(report_path.read_text())
    assert report["verdict"] == "FAIL"
    assert report["seed"] == 5
    failed = [i for i in report["invariants"] if not i["ok"]]
    assert [i["name"] for i in failed] == ["max_stall_ms"]
    assert failed[0]["actual"] > 0
    assert any(p.startswith("max_stall_ms: FAILED") for p in report["problems"])
    # Only the impossible invariant failed: the store itself kept its promises.
    assert report["lost"] == 0


BASE = """
name = "t"
duration_s = 5
[cluster]
kind = "control-store"
[workload]
kind = "kv-unique-writes"
"""


@pytest.mark.parametrize("extra, field, allowed", [
    ("[[faults]]\naction = 'explode'\ntarget = 'head'\nat_s = 1\n", "faults[0].action", "kill, pause, restart"),
    ("[[faults]]\naction = 'kill'\ntarget = 'node'\nat_s = 1\n", "faults[0].target", "head, middle, tail"),
    ("[[faults]]\naction = 'kill'\ntarget = 'head'\n", "faults[0]", "exactly one of at_s"),
    ("[[faults]]\naction = 'kill'\ntarget = 'head'\nat_s = 1\nevery_s = 2\n", "faults[0]", "exactly one of at_s"),
    ("[[faults]]\naction = 'latency'\ntarget = 'clients'\nat_s = 1\nattributes = { rate = 5 }\n",
     "faults[0].attributes", "latency, jitter"),
    ("[[faults]]\naction = 'kill'\ntarget = 'head'\nat_s = 9\n", "faults[0].at_s", "at most 5"),
    ("[[faults]]\naction = 'pause'\ntarget = 'tail'\nat_s = 1\nduration_s = 0\n", "faults[0].duration_s",
     "positive duration_s"),
    ("[invariants]\nlost_writes = 0\n", "invariants", "acknowledged_writes_lost"),
    ("[invariants]\nreplicas_identical = 1\n", "invariants.replicas_identical", "true or false"),
])
def test_scenario_errors_name_the_file_the_field_and_what_is_allowed(extra, field, allowed):
    with pytest.raises(InvalidArgumentError) as info:
        parse_scenario(BASE + extra, "chaos/bad.toml")
    message = str(info.value)
    assert message.startswith("chaos/bad.toml: ")
    assert field in message and allowed in message


@pytest.mark.parametrize("text, field", [
    ("duration_s = 5\n[cluster]\nkind = 'control-store'\n", "[workload]"),
    ("duration_s = 5\n[cluster]\nkind = 'kubernetes'\n[workload]\nkind = 'x'\n", "cluster.kind"),
    ("[cluster]\nkind = 'control-store'\n[workload]\nkind = 'x'\n", "duration_s"),
    ("duration_s = = 5", "not valid TOML"),
    ("duration_s = 5\ncolour = 'red'\n[cluster]\nkind = 'control-store'\n[workload]\nkind = 'x'\n", "colour"),
])
def test_malformed_scenarios_are_refused(text, field):
    with pytest.raises(InvalidArgumentError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_scenario(text, "bad.toml")


def test_cli_exits_2_for_an_unknown_workload_before_starting_anything(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(BASE.replace("kv-unique-writes", "no-such-workload"))
    result = CliRunner().invoke(_cli(), ["run", str(path)])
    assert result.exit_code == EXIT_BAD_SCENARIO
    assert "no-such-workload" in result.output and "kv-counter-cas" in result.output


def test_runtime_clusters_and_missing_user_workloads_are_refused_clearly(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(BASE.replace('"control-store"', '"runtime"'))
    result = CliRunner().invoke(_cli(), ["run", str(path)])
    assert result.exit_code == EXIT_BAD_SCENARIO
    assert "runs on control-store clusters, not 'runtime'" in result.output
    path.write_text(BASE.replace("kv-unique-writes", "no_such_module_xyz:factory"))
    result = CliRunner().invoke(_cli(), ["run", str(path)])
    assert result.exit_code == EXIT_BAD_SCENARIO
    assert "cannot load 'no_such_module_xyz:factory'" in result.output


# ------------------------------------------------------------------ nemesis


def _wait_status(pid: int, stopped: bool, timeout_s: float = 5.0) -> bool:
    """Signals are delivered asynchronously: poll until the process is (or
    is no longer) stopped."""
    import time

    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        if (psutil.Process(pid).status() == psutil.STATUS_STOPPED) == stopped:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.timeout(120)
def test_nemesis_commands_against_a_running_control_store(tmp_path):
    from lineagerun.control.cluster import ControlStoreCluster, load_record, stop_recorded

    cluster = ControlStoreCluster(tmp_path / "cs", shards=1, replicas=3)
    try:
        cluster.start()
        directory = str(cluster.dir)
        runner = CliRunner()

        def nemesis_cli(*args: str) -> str:
            result = runner.invoke(_cli(), ["nemesis", *args, "--dir", directory], catch_exceptions=False)
            assert result.exit_code == 0, result.output
            return result.output

        with cluster.client(timeout_s=30) as client:
            client.put(b"before", b"1")
            target_pid = cluster.replica_processes[(0, 1)].pid
            nemesis_cli("pause-replica", "--shard", "0", "--index", "1")
            assert _wait_status(target_pid, stopped=True)
            nemesis_cli("resume-replica", "--shard", "0", "--index", "1")
            assert _wait_status(target_pid, stopped=False)

            epoch_before = cluster.config().shards[0].epoch
            nemesis_cli("kill-replica", "--index", "1")
            cluster.replica_processes[(0, 1)].popen.wait(timeout=10)
            assert "serving at 127.0.0.1:" in nemesis_cli("restart-replica", "--index", "1")
            entry = next(e for e in load_record(directory)["replica_processes"] if e["name"] == "s0r1")
            assert entry["pid"] != target_pid and psutil.pid_exists(entry["pid"])
            # Rejoined: removed (a new epoch), joining, then tail again with
            # nobody joining. (A quick restart finds itself still listed, so
            # membership alone does not say the rejoin is over.)
            cluster.wait_for(lambda config: config.shards[0].epoch > epoch_before and len(config.shards[0].chain) == 3
                             and not config.shards[0].joining.replica_id, "s0r1 to rejoin", timeout_s=60)
            # Refresh the client's configuration while the coordinator can
            # answer: with a stale one it cannot write once the coordinator is
            # gone (the replicas answer STALE_EPOCH and only the coordinator
            # hands out configurations).
            client.put(b"after-rejoin", b"1")

            nemesis_cli("kill-coordinator")
            cluster.coordinator.killed = True  # on purpose (by another launcher), not a crash
            client.put(b"while-coordinator-down", b"2")  # chains keep serving
            nemesis_cli("restart-coordinator")
            cluster.wait_for_chains(3, timeout_s=60)
            assert client.get(b"before") == b"1" and client.get(b"while-coordinator-down") == b"2"

        unknown = runner.invoke(_cli(), ["nemesis", "kill-replica", "--dir", directory, "--index", "7"])
        assert unknown.exit_code != 0 and "no process 's0r7'" in unknown.output
    finally:
        if (tmp_path / "cs" / "cluster.json").exists():
            stop_recorded(tmp_path / "cs")  # what the nemesis restarted, by its recorded pid
        cluster.stop()
    for entry in load_record(tmp_path / "cs")["replica_processes"]:
        assert not (entry["pid"] and psutil.pid_exists(entry["pid"])
                    and psutil.Process(entry["pid"]).status() != psutil.STATUS_ZOMBIE)
    assert os.path.exists(tmp_path / "cs")


@pytest.mark.timeout(120)
def test_client_links_carry_latency_and_partitions_to_the_control_store(tmp_path):
    import time

    from lineagerun.chaos.nemesis import ClientLinks, ControlStoreTargets
    from lineagerun.control.client import ControlStoreClient
    from lineagerun.control.cluster import ControlStoreCluster
    from lineagerun.exceptions import ControlStoreUnavailableError

    cluster = ControlStoreCluster(tmp_path / "cs", shards=1, replicas=3)
    links = None
    try:
        cluster.start()
        links = ClientLinks(cluster)
        [clients] = ControlStoreTargets(cluster, links).network_targets("clients", 0)
        with links.wrap_client(ControlStoreClient(links.coordinator_address, cluster.token, timeout_s=2.0)) as client:
            client.put(b"k", b"0")
            assert len(links.links()) >= 2  # the coordinator's and the head's

            clients.add_toxic("slow", "latency", "downstream", 1.0, {"latency": 200})
            started_s = time.monotonic()
            client.put(b"k", b"1")
            assert time.monotonic() - started_s >= 0.2
            clients.remove_toxic("slow")
            started_s = time.monotonic()
            client.put(b"k", b"2")
            assert time.monotonic() - started_s < 0.2

            clients.partition()
            with pytest.raises(ControlStoreUnavailableError):
                client.put(b"k", b"3")
            clients.heal()
            client.put(b"k", b"4")
            assert client.get(b"k") == b"4"
    finally:
        if links is not None:
            links.stop()
        cluster.stop()


class SquaresWorkload:
    """A user workload (loaded as ``module:factory``): writes i*i under
    keys 0..n-1 as fast as it can, cycling; its result is the sum it reads
    back, the same with or without faults."""

    def __init__(self, params):
        self.n = params.get("keys", 50)
        self.ok = 0
        self._stop = None
        self._thread = None

    def start(self, env):
        import threading

        self._stop = threading.Event()

        def loop():
            with env.make_client() as client:
                i = 0
                while not self._stop.is_set():
                    client.put(f"{env.prefix}/{i % self.n}".encode(), str((i % self.n) ** 2).encode())
                    self.ok += 1
                    i += 1

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def progress(self):
        return {"attempted": self.ok, "ok": self.ok, "unknown": 0}

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)

    def finish(self, env):
        from lineagerun.chaos.runner import WorkloadResult

        with env.make_direct_client() as client:
            total = sum(int(client.get(f"{env.prefix}/{i}".encode()) or b"0") for i in range(self.n))
        return WorkloadResult({"operations_attempted": self.ok, "operations_ok": self.ok}, result=total)


def make_squares(params):
    return SquaresWorkload(params)


@pytest.mark.timeout(120)
def test_user_workload_is_compared_with_its_fault_free_pass(tmp_path):
    path = tmp_path / "user.toml"
    path.write_text(textwrap.dedent(f"""
        name = "user-squares"
        duration_s = 2
        fault_free_run = true
        [cluster]
        kind = "control-store"
        [workload]
        kind = "{__name__}:make_squares"
        keys = 40
        [[faults]]
        action = "kill"
        target = "head"
        at_s = 0.5
        duration_s = 0.5
        [invariants]
        result_matches_fault_free = true
        min_operations_ok = 40
        """))
    from lineagerun.chaos.runner import run_scenario_file

    report = run_scenario_file(path, progress=None)
    assert report["verdict"] == "PASS", report["problems"]
    assert report["result"]["expected"] == report["result"]["actual"] == sum(i * i for i in range(40))
    assert report["result"]["matches"] is True
    assert report["faults_injected"] == 1
