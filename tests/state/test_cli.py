"""The state commands end to end: ``lineage``, ``list``, ``get``,
``summary``, ``timeline`` against a live control store, a directory, and
nothing at all (clear errors)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import click
import pytest
from click.testing import CliRunner

from lineagerun.cli.state import COMMANDS, to_yaml
from lineagerun.state import list_tasks
from tests.state import assert_stopped, build_scenario, node_id, start_cluster
from tests.state.test_lineage import parse_dot

pytestmark = pytest.mark.timeout(120)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli-cs")
    cluster = start_cluster(directory, shards=1)
    try:
        scenario = build_scenario()
        with cluster.client() as client:
            scenario.recorder.flush(client)
        yield scenario, cluster, directory
    finally:
        assert_stopped(cluster)


@pytest.fixture(autouse=True)
def no_ambient_cluster(monkeypatch, tmp_path):
    """Tests must not find a developer's running cluster."""
    monkeypatch.delenv("LINEAGERUN_ADDRESS", raising=False)
    monkeypatch.delenv("LINEAGERUN_TOKEN_FILE", raising=False)
    monkeypatch.setenv("LINEAGERUN_SESSIONS_ROOT", str(tmp_path / "no-sessions"))


def run(*args: str, ok: bool = True):
    group = click.Group("lineagerun", commands={c.name: c for c in COMMANDS})
    result = CliRunner().invoke(group, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output + result.stderr
    return result


def where(live) -> list[str]:
    _, cluster, _ = live
    return ["--address", cluster.address, "--token-file", str(cluster.token_file)]


def test_lineage_in_every_format(live):
    s, _, _ = live
    the_id = s.out(s.chain[-1]).hex()
    tree = run("lineage", the_id, *where(live)).stdout
    assert tree.splitlines()[0].startswith(f"object {the_id}")
    assert sum("task=" in line for line in tree.splitlines()) == 5
    assert "retry:FINISHED" in tree
    data = json.loads(run("lineage", the_id, "--format", "json", *where(live)).stdout)
    assert len(data["tasks"]) == 5
    nodes, _ = parse_dot(run("lineage", the_id, "--format", "dot", "--depth", "1", *where(live)).stdout.strip())
    assert len([n for n in nodes if n.startswith("t:")]) == 2


def test_render_without_graphviz_is_a_clear_error(live, tmp_path, monkeypatch):
    s, _, _ = live
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = run("lineage", s.actor.hex(), "--render", str(tmp_path / "a.svg"), *where(live), ok=False)
    assert result.exit_code == 1 and "ConfigurationError" in result.stderr and "dot" in result.stderr
    assert not (tmp_path / "a.svg").exists()


def test_list_formats_filters_and_limit(live):
    s, _, _ = live
    table = run("list", "tasks", "-f", "name=step", *where(live))
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["TASK_ID", "NAME", "KIND", "STATE"] and len(lines) == 4
    assert {line.split()[0] for line in lines[1:]} == {t.hex() for t in s.chain[1:4]}
    limited = run("list", "tasks", "--limit", "2", "--format", "json", *where(live))
    assert len(json.loads(limited.stdout)) == 2 and "raise --limit" not in limited.stderr
    assert "raise --limit" in run("list", "tasks", "--limit", "2", *where(live)).stderr
    yaml_text = run("list", "nodes", "-f", "alive=false", "--format", "yaml", *where(live)).stdout
    assert yaml_text.splitlines()[0] == f"- node_id: {node_id(1).hex()}" or \
        yaml_text.splitlines()[0] == f'- node_id: "{node_id(1).hex()}"'
    assert "  alive: false" in yaml_text.splitlines() and "  death_reason: missed heartbeats" in yaml_text
    empty = run("list", "actors", "-f", "state=DEAD", *where(live))
    assert empty.stdout == "" and "no actors found matching the filters" in empty.stderr
    bad = run("list", "tasks", "-f", "colour=red", *where(live), ok=False)
    assert bad.exit_code == 1 and "InvalidArgumentError" in bad.stderr and "filterable keys" in bad.stderr


def test_get_and_summary(live):
    s, _, _ = live
    task = run("get", "task", s.chain[2].hex(), *where(live)).stdout
    assert "- attempt_number: 0" in task and "  reason: RETRY" in task and "state: FINISHED" in task
    actor = json.loads(run("get", "actor", s.actor.hex(), "--format", "json", *where(live)).stdout)
    assert actor["checkpoint_sequence_number"] == 2 and len(actor["calls"]) == 4
    obj = run("get", "object", s.out(s.lost_task).hex(), *where(live)).stdout
    assert "status: lost" in obj
    summary = run("summary", "tasks", *where(live)).stdout.splitlines()
    assert summary[0].split() == ["NAME", "TOTAL", "FINISHED", "RETRIES", "REPLAYS"]
    step = next(line.split() for line in summary if line.startswith("step "))
    assert step == ["step", "3", "3", "1", "0"]
    assert summary[-1].split()[:2] == ["(all)", str(s.tasks_total)]
    actors = json.loads(run("summary", "actors", "--format", "json", *where(live)).stdout)
    assert actors["by_class"][0]["class_name"] == "Counter"


def test_summary_recovery_and_recovery_events(live):
    s, _, _ = live
    text = run("summary", "recovery", *where(live)).stdout
    assert "5 task re-execution(s) (1 retry, 4 replay), 2 object(s) lost, 1 rebuilt" in text
    assert "OBJECT_RECONSTRUCTED" in text and "TASK_STARTED" not in text
    summary = json.loads(run("summary", "recovery", "--format", "json", *where(live)).stdout)
    assert summary["by_kind"]["OBJECT_LOST"] == {"events": 2, "items": 2, "recovery_time": None}
    rows = json.loads(run("list", "events", "-f", "recovery=true", "--format", "json", *where(live)).stdout)
    assert [r["kind"] for r in rows] == ["WORKER_DIED", "NODE_DIED", "OBJECT_LOST", "OBJECT_LOST",
                                         "OBJECT_RECONSTRUCTED", "ACTOR_RESTARTED"]
    assert all(r["count"] == 1 for r in rows)


def test_timeline_writes_a_trace(live, tmp_path):
    s, _, _ = live
    out = tmp_path / "trace.json"
    result = run("timeline", "-o", str(out), *where(live))
    assert f"{s.attempts_total} task attempts" in result.stdout
    events = json.loads(out.read_text())["traceEvents"]
    assert sum(e["ph"] == "X" for e in events) == s.attempts_total


def test_timeline_of_an_empty_store_says_nothing_to_show(tmp_path):
    from rocksdict import Options, Rdict

    options = Options(raw_mode=True)
    options.create_if_missing(True)
    Rdict(str(tmp_path / "cs" / "shard-0" / "replica-0" / "db"), options=options).close()
    out = tmp_path / "trace.json"
    result = run("timeline", "-o", str(out), "--dir", str(tmp_path / "cs"))
    assert "nothing to show" in result.stderr and not out.exists()
    assert "no tasks found" in run("list", "tasks", "--dir", str(tmp_path / "cs")).stderr


def test_bad_ids_give_typed_errors(live):
    s, _, _ = live
    for args in (("lineage", "nothex"), ("get", "task", s.out(s.chain[0]).hex()), ("get", "actor", "ab")):
        result = run(*args, *where(live), ok=False)
        assert result.exit_code == 1 and "InvalidArgumentError" in result.stderr, result.stderr
    missing = run("lineage", "ab" * 24, *where(live), ok=False)
    assert missing.exit_code == 1 and "NotFoundError" in missing.stderr and "no task" in missing.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_cluster_is_reported_promptly(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("t" * 64)
    started = time.monotonic()
    result = run("list", "tasks", "--address", f"127.0.0.1:{_free_port()}", "--token-file", str(token_file),
                 "--timeout-s", "1", ok=False)
    assert result.exit_code == 1 and "ControlStoreUnavailableError" in result.stderr, result.stderr
    assert time.monotonic() - started < 15


def test_address_resolution(live, tmp_path, monkeypatch):
    s, cluster, directory = live
    nothing = run("list", "tasks", ok=False)
    assert nothing.exit_code == 1 and "no cluster to read" in nothing.stderr and "--dir" in nothing.stderr
    both = run("list", "tasks", "--address", cluster.address, "--dir", str(directory), ok=False)
    assert both.exit_code == 2 and "either --address" in both.stderr
    missing_token = run("list", "tasks", "--address", cluster.address, ok=False)
    assert missing_token.exit_code == 1 and "--token-file" in missing_token.stderr
    # The newest session that recorded its control store.
    root = tmp_path / "sessions"
    old, new = root / "session_old", root / "session_new"
    for session in (old, new):
        session.mkdir(parents=True)
    (old / "session.json").write_text(json.dumps({"control_store_address": "127.0.0.1:1", "token_file": "/nope"}))
    (new / "session.json").write_text(json.dumps({"control_store_address": cluster.address,
                                                  "token_file": str(cluster.token_file)}))
    os.utime(old / "session.json", (1, 1))
    monkeypatch.setenv("LINEAGERUN_SESSIONS_ROOT", str(root))
    assert len(json.loads(run("list", "tasks", "--limit", "3", "--format", "json").stdout)) == 3
    # A session without session.json: the record of the control store it started.
    started = tmp_path / "started"
    (started / "session_a").mkdir(parents=True)
    (started / "session_a" / "control").symlink_to(directory, target_is_directory=True)
    monkeypatch.setenv("LINEAGERUN_SESSIONS_ROOT", str(started))
    assert len(json.loads(run("list", "nodes", "--format", "json").stdout)) == 3
    # A stopped one is pointed at for post-mortem reading.
    stopped = tmp_path / "stopped" / "session_b"
    (stopped / "control").mkdir(parents=True)
    (stopped / "control" / "cluster.json").write_text(json.dumps({"coordinator": {"address": "127.0.0.1:1"},
                                                                 "token_file": "/nope", "stopped": True}))
    monkeypatch.setenv("LINEAGERUN_SESSIONS_ROOT", str(stopped.parent))
    hint = run("list", "tasks", ok=False)
    assert hint.exit_code == 1 and f"--dir {stopped}" in hint.stderr
    monkeypatch.setenv("LINEAGERUN_SESSIONS_ROOT", str(tmp_path / "none"))
    monkeypatch.setenv("LINEAGERUN_ADDRESS", cluster.address)
    monkeypatch.setenv("LINEAGERUN_TOKEN_FILE", str(cluster.token_file))
    assert len(list_tasks(limit=4)) == 4


def test_the_module_runs_as_a_program(live):
    _, _, directory = live
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, "-m", "lineagerun.cli.state", "list", "nodes", "--dir", str(directory),
                           "--format", "json"], capture_output=True, text=True, timeout=60, env=env,
                          start_new_session=True)
    assert done.returncode == 0, done.stderr
    assert {n["node_id"] for n in json.loads(done.stdout)} == {node_id(i).hex() for i in range(3)}


def test_yaml_emitter():
    assert to_yaml(["a: b", "x #y", "ends:", "-1", "1e5", "No", "ok (fine), really"]).splitlines() == [
        '- "a: b"', '- "x #y"', '- "ends:"', '- "-1"', '- "1e5"', '- "No"', "- ok (fine), really"]
    text = to_yaml([{"a": 1, "b": "plain", "c": "00000001", "d": "two words", "e": None, "f": True,
                     "g": [{"x": "yes", "y": []}], "h": {}, "i": ["k: v"]}])
    assert text.splitlines() == [
        "- a: 1", "  b: plain", '  c: "00000001"', '  d: two words', "  e: null", "  f: true", "  g:",
        '  - x: "yes"', "    y: []", "  h: {}", "  i:", '  - "k: v"']
    assert re.fullmatch(r"\[\]", to_yaml([]))
