"""`lineagerun start --head`, `start --address`, `status`, `stop`: real
processes, in a session root of their own so that `stop` sees only them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.cluster.conftest import assert_gone

CLI = [sys.executable, "-m", "lineagerun.cli.cluster"]


def run(args, env, timeout=120):
    out = subprocess.run(CLI + args, capture_output=True, text=True, env=env, timeout=timeout)
    assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
    return out.stdout


def session_pids(root: Path) -> set[int]:
    """Every process whose command line names the session root, and their children."""
    pids = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(str(root) in part for part in proc.info["cmdline"] or ()):
                pids.add(proc.pid)
                pids.update(c.pid for c in proc.children(recursive=True))
        except psutil.Error:
            pass
    return pids


@pytest.mark.timeout(180)
def test_start_join_status_stop_leaves_nothing(tmp_path):
    root = tmp_path / "sessions"
    env = dict(os.environ, LINEAGERUN_SESSION_ROOT=str(root))
    try:
        out = run(["start", "--head", "--num-cpus", "1", "--replicas", "1"], env)
        address = next(line.split()[-1] for line in out.splitlines() if "cluster address:" in line)
        session = next(root.glob("session_*"))
        token = session / "token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        out = run(["start", "--address", address, "--num-cpus", "1", "--resources", '{"gpu_like": 2}'], env)
        assert "joined" in out
        status = json.loads(run(["status", "--json"], env))
        assert status["address"] == address
        assert len(status["nodes"]) == 2 and all(n["alive"] for n in status["nodes"])
        assert any(n["total"].get("gpu_like") == 2 for n in status["nodes"])
        assert status["chains"] and status["chains"][0]["chain"] == ["s0r0"]
        text = run(["status"], env)
        assert "2 alive node(s)" in text and "pending demand" in text
        pids = session_pids(root)
        assert len(pids) >= 5  # coordinator, replica, scheduler, 2 node managers (+ workers)
        out = run(["stop"], env)
        assert "stopped" in out
        time.sleep(0.2)
        assert_gone(pids)
        assert not session_pids(root)
        assert not list(session.glob("nodes/*/ready.json"))
    finally:
        subprocess.run(CLI + ["stop", "--force"], capture_output=True, env=env, timeout=60)
        assert_gone(session_pids(root))


@pytest.mark.timeout(60)
def test_start_needs_head_or_address(tmp_path):
    env = dict(os.environ, LINEAGERUN_SESSION_ROOT=str(tmp_path))
    out = subprocess.run(CLI + ["start"], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode != 0 and "--head or --address" in out.stderr
    out = subprocess.run(CLI + ["start", "--address", "127.0.0.1:1"], capture_output=True, text=True, env=env,
                         timeout=30)
    assert out.returncode != 0 and "--token-file" in out.stderr


@pytest.mark.timeout(180)
def test_tls_cluster_runs_cross_node_tasks(tmp_path):
    from lineagerun.testing.tls_certs import make_certificate

    root = tmp_path / "sessions"
    cert, key = make_certificate(tmp_path, "localhost")
    env = dict(os.environ, LINEAGERUN_SESSION_ROOT=str(root))
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    try:
        out = run(["start", "--head", "--num-cpus", "1", "--replicas", "1", *tls], env)
        address = next(line.split()[-1] for line in out.splitlines() if "cluster address:" in line)
        run(["start", "--address", address, "--num-cpus", "1", "--resources", '{"far": 1}', *tls], env)
        status = json.loads(run(["status", "--json"], env))
        assert len([n for n in status["nodes"] if n["alive"]]) == 2
        far = next(n for n in status["nodes"] if "far" in n["total"])
        script = (f"import lineagerun as ray, numpy as np\n"
                  f"ray.init(address={address!r})\n"
                  f"f = ray.remote(resources={{'far': 1}})(lambda a: float(a.sum()))\n"
                  f"print('SUM', ray.get(f.remote(ray.put(np.ones(1 << 20))), timeout=60))\n")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=90)
        assert "SUM 1048576.0" in done.stdout, done.stderr[-2000:]
        # A plaintext client cannot talk to a TLS node manager.
        import grpc

        from lineagerun.rpc import object_transfer_pb2, object_transfer_pb2_grpc
        from lineagerun.transport.channels import make_channel

        token = next(root.glob("session_*/token")).read_text()
        with make_channel(far["address"], token) as channel:
            with pytest.raises(grpc.RpcError):
                object_transfer_pb2_grpc.ObjectManagerStub(channel).Has(
                    object_transfer_pb2.HasRequest(object_ids=[b"\x01" * 28]), timeout=5)
        run(["stop"], env)
    finally:
        subprocess.run(CLI + ["stop", "--force"], capture_output=True, env=env, timeout=60)
        assert_gone(session_pids(root))
