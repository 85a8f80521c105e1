"""Worker output echoed to the driver, `lineagerun logs`, `progress`, and
session.json, against a real embedded cluster (one per module, under a
private sessions root so that the CLI's "newest session" is this one)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import lineagerun
from lineagerun import exceptions
from lineagerun.api import session
from lineagerun.cli.logs import logs_command
from lineagerun.cli.state import list_command

pytestmark = pytest.mark.timeout(90)

ECHO_WAIT_S = 10.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    lineagerun.shutdown()
    root = tempfile.mkdtemp(prefix="lr-logs-")
    saved_root, session.SESSION_ROOT = session.SESSION_ROOT, root
    try:
        state = lineagerun.init(num_cpus=2)
        yield state
    finally:
        lineagerun.shutdown()
        session.SESSION_ROOT = saved_root
        shutil.rmtree(root, ignore_errors=True)


@lineagerun.remote
def chatty(i):
    print(f"to stdout {i}")
    print(f"to stderr {i}", file=sys.stderr)
    return i


@lineagerun.remote
def quiet(i):
    return i


@lineagerun.remote
def sleepy(seconds):
    time.sleep(seconds)
    return seconds


@lineagerun.remote
class Greeter:
    def greet(self, who):
        print(f"hello {who}")
        return who


def _wait_for(capsys, *needles: str) -> tuple[str, str]:
    """Accumulated (out, err) once every needle was seen in one of them."""
    out = err = ""
    deadline_s = time.monotonic() + ECHO_WAIT_S
    while True:
        captured = capsys.readouterr()
        out, err = out + captured.out, err + captured.err
        if all(n in out or n in err for n in needles) or time.monotonic() > deadline_s:
            return out, err
        time.sleep(0.05)


def test_task_output_is_echoed_with_its_prefix(cluster, capsys):
    pids = set()
    assert lineagerun.get([chatty.remote(i) for i in range(3)]) == [0, 1, 2]
    out, err = _wait_for(capsys, "to stdout 2", "to stderr 2")
    node = cluster.core_worker.node_id_hex[:8]
    for i in range(3):
        [line] = [line for line in out.splitlines() if line.endswith(f"to stdout {i}")]
        assert line.startswith("(chatty pid=") and f" node={node}) " in line, line
        pids.add(line.split("pid=")[1].split()[0])
        assert any(line.startswith("(chatty pid=") and line.endswith(f"to stderr {i}") for line in err.splitlines())
        assert f"to stderr {i}" not in out
    assert all(pid.isdigit() for pid in pids)


def test_actor_output_is_prefixed_with_its_class(cluster, capsys):
    greeter = Greeter.remote()
    assert lineagerun.get(greeter.greet.remote("bob")) == "bob"
    out, _ = _wait_for(capsys, "hello bob")
    assert any(line.startswith("(Greeter pid=") and line.endswith("hello bob") for line in out.splitlines()), out
    lineagerun.kill(greeter)


def test_log_files_are_in_the_session_and_the_cli_lists_and_prints_them(cluster, capsys):
    assert lineagerun.get(chatty.remote(42)) == 42
    _wait_for(capsys, "to stdout 42")
    logs_dir = Path(cluster.session_dir) / "logs"
    holding = [p for p in logs_dir.glob("worker-*.out") if "to stdout 42" in p.read_text()]
    assert len(holding) == 1
    assert holding[0].with_suffix(".err").exists()
    header = json.loads(holding[0].read_text().splitlines()[0].removeprefix(":lineagerun:"))
    pid = header["pid"]

    runner = CliRunner()
    listing = runner.invoke(logs_command, ["--session", cluster.session_dir])
    assert listing.exit_code == 0, listing.output
    assert str(pid) in listing.output and holding[0].stem.removeprefix("worker-") in listing.output
    assert "node_manager.log" in listing.output

    printed = runner.invoke(logs_command, ["--session", cluster.session_dir, str(pid)])
    assert printed.exit_code == 0, printed.output
    assert "(chatty pid=" in printed.output and "to stdout 42" in printed.output
    assert ":lineagerun:" not in printed.output

    tail = runner.invoke(logs_command, ["--session", cluster.session_dir, str(pid), "--tail", "1", "--raw"])
    assert tail.exit_code == 0, tail.output
    lines = [line for line in tail.output.splitlines() if not line.startswith("==>")]
    assert lines == ["to stdout 42", "to stderr 42"]

    missing = runner.invoke(logs_command, ["--session", cluster.session_dir, "deadbeefdeadbeef"])
    assert missing.exit_code == 1 and "NotFoundError" in missing.output


def test_cli_defaults_to_the_newest_session(cluster, monkeypatch):
    monkeypatch.setenv("LINEAGERUN_SESSIONS_ROOT", str(Path(cluster.session_dir).parent))
    result = CliRunner().invoke(logs_command, [])
    assert result.exit_code == 0, result.output
    assert f"session {cluster.session_dir}" in result.output


def test_logs_follow_prints_new_output(cluster, capsys):
    command = [sys.executable, "-c", "from lineagerun.cli.logs import logs_command; logs_command()",
               "--session", cluster.session_dir, "--follow"]
    follower = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                                start_new_session=True)
    try:
        time.sleep(1.5)  # its start-up; output before it starts following is not expected
        deadline_s = time.monotonic() + 20
        seen = b""
        os.set_blocking(follower.stdout.fileno(), False)
        n = 1000
        while b"to stdout" not in seen and time.monotonic() < deadline_s:
            lineagerun.get(chatty.remote(n))
            n += 1
            time.sleep(0.3)
            seen += follower.stdout.read() or b""
        assert b"(chatty pid=" in seen and b"to stdout 1" in seen, seen
    finally:
        os.killpg(follower.pid, signal.SIGKILL)
        follower.wait(10)
        follower.stdout.close()
        follower.stderr.close()


def test_progress_reaches_100_percent_and_returns_the_values(cluster):
    stream = io.StringIO()
    refs = [sleepy.remote(0.05) for _ in range(6)] + [quiet.remote(i) for i in range(4)]
    values = lineagerun.progress(refs, desc="work", file=stream)
    assert values == [0.05] * 6 + [0, 1, 2, 3]
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("work: 100%|") and "| 10/10 [" in lines[-1], lines
    assert lineagerun.progress(quiet.remote(7), file=stream) == 7
    assert lineagerun.progress([], file=stream) == []


def test_progress_draws_on_stderr_by_default_and_times_out(cluster, capsys):
    ref = sleepy.remote(5)
    with pytest.raises(exceptions.GetTimeoutError, match="1 of 1 refs"):
        lineagerun.progress([ref], timeout=0.3)
    assert "0/1" in capsys.readouterr().err
    lineagerun.cancel(ref, force=True)
    with pytest.raises(exceptions.InvalidArgumentError):
        lineagerun.progress([1, 2])


def test_session_json_lets_the_state_cli_find_the_live_cluster(cluster, monkeypatch):
    assert lineagerun.get(quiet.remote("listed")) == "listed"
    record = json.loads((Path(cluster.session_dir) / "session.json").read_text())
    assert record["control_store_address"] == cluster.cluster.control_store.coordinator.address
    assert Path(record["token_file"]).exists()
    monkeypatch.setenv("LINEAGERUN_SESSIONS_ROOT", str(Path(cluster.session_dir).parent))
    monkeypatch.delenv("LINEAGERUN_ADDRESS", raising=False)
    deadline_s = time.monotonic() + 10
    while True:  # attempt records are written asynchronously
        result = CliRunner().invoke(list_command, ["tasks", "--format", "json", "--limit", "1000"])
        assert result.exit_code == 0, result.output
        names = {row.get("name") for row in json.loads(result.output)}
        if "quiet" in names or time.monotonic() > deadline_s:
            break
        time.sleep(0.2)
    assert {"quiet", "chatty"} <= names, names
