"""Starting and stopping the processes of a multi-node cluster on this
machine, for ``lineagerun start/stop`` and ``lineagerun.testing.Cluster``.

A cluster's session directory (``/tmp/lineagerun/session_<time>_<pid>/``)::

    token                  cluster token, mode 0600
    head.json              {"address": coordinator, "scheduler": ..., "head_node_id": ..., "host": ...}
    control/               the control store (its own cluster.json, RocksDB directories)
    scheduler/ready.json   the global scheduler's address and pid
    nodes/<id>/ready.json  one per node manager (address, unix socket, pid, store session)
    procs/<name>.json      every process started here: pid, start time, role (for ``stop``)
    logs/                  scheduler.log, node-<id>.log, worker logs

Every process is started in its own session, so it and what it starts (a
node manager's workers) form one process group, stopped together: SIGTERM,
then SIGKILL after a grace period (``--force``: SIGKILL at once). Pids are
checked against their recorded start time before any signal (pids are reused).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from lineagerun import processes
from lineagerun.exceptions import ConfigurationError
from lineagerun.processes import ServiceProcess
from lineagerun.transport.tls import TlsConfig, child_env

# LINEAGERUN_SESSION_ROOT moves every session of the CLI and of Cluster
# elsewhere (tests isolate `lineagerun stop` from other clusters that way).
SESSION_ROOT = os.environ.get("LINEAGERUN_SESSION_ROOT", "/tmp/lineagerun")
HEAD_FILE_NAME = "head.json"
PROCS_DIR_NAME = "procs"
TOKEN_FILE_NAME = "token"
START_TIMEOUT_S = processes.START_TIMEOUT_S
STOP_GRACE_S = processes.STOP_GRACE_S

# A scheduler or node manager process (``role``: "scheduler" | "node").
LaunchedProcess = ServiceProcess


def new_session_dir(root: str | None = None) -> Path:
    root = root or SESSION_ROOT
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S") + f"_{int(time.time() * 1e6) % 1_000_000:06d}"
    path = Path(root) / f"session_{stamp}_{os.getpid()}"
    path.mkdir(parents=True, exist_ok=False, mode=0o700)
    (path / "logs").mkdir()
    (path / PROCS_DIR_NAME).mkdir()
    return path


def write_json_atomic(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


def launch(session_dir: Path, name: str, role: str, argv: list[str], *, env: dict | None = None) -> ServiceProcess:
    """Start a scheduler or node manager of the session and record it for ``stop``."""
    process = processes.start_service(argv, session_dir / "logs" / f"{name}.log", name=name, role=role, env=env)
    procs = session_dir / PROCS_DIR_NAME
    procs.mkdir(exist_ok=True)
    write_json_atomic(procs / f"{name}.json", process.record())
    return process


def wait_ready(process: ServiceProcess, ready_path: Path, timeout_s: float = START_TIMEOUT_S) -> dict:
    return processes.wait_ready(process, processes.ready_json(ready_path), timeout_s,
                                what=f"serving (no {ready_path})")


def start_scheduler(session_dir: Path, control_address: str, *, host: str = "127.0.0.1", port: int = 0,
                    heartbeat_interval_ms: int = 100, node_timeout_ms: int = 1000,
                    tls: TlsConfig | None = None) -> tuple[LaunchedProcess, str]:
    argv = [sys.executable, "-m", "lineagerun.scheduler", "--session-dir", str(session_dir),
            "--control-store", control_address, "--token-file", str(session_dir / TOKEN_FILE_NAME),
            "--host", host, "--port", str(port), "--heartbeat-interval-ms", str(heartbeat_interval_ms),
            "--node-timeout-ms", str(node_timeout_ms)]
    if tls is not None:
        argv += tls.argv()
    (session_dir / "scheduler" / "ready.json").unlink(missing_ok=True)
    process = launch(session_dir, "scheduler", "scheduler", argv, env=child_env(tls))
    ready = wait_ready(process, session_dir / "scheduler" / "ready.json")
    return process, ready["address"]


def node_argv(session_dir: Path, control_address: str, scheduler_address: str | None, node_id_hex: str, *,
              num_cpus: float, num_gpus: float = 0, resources: dict | None = None,
              object_store_memory: int | None = None, host: str = "127.0.0.1", port: int = 0,
              heartbeat_interval_ms: int = 100, tls: TlsConfig | None = None,
              token_file: Path | None = None, extra: list[str] | None = None) -> list[str]:
    argv = [sys.executable, "-m", "lineagerun.node", "--session-dir", str(session_dir),
            "--control-store", control_address, "--token-file", str(token_file or session_dir / TOKEN_FILE_NAME),
            "--num-cpus", str(num_cpus), "--node-id", node_id_hex, "--host", host, "--port", str(port),
            "--heartbeat-interval-ms", str(heartbeat_interval_ms)]
    if scheduler_address:  # None: a single-node cluster, which has no global scheduler
        argv += ["--global-scheduler", scheduler_address]
    if num_gpus:
        argv += ["--num-gpus", str(num_gpus)]
    if resources:
        argv += ["--resources", json.dumps(resources)]
    if object_store_memory:
        argv += ["--object-store-memory", str(object_store_memory)]
    if tls is not None:
        argv += tls.argv()
    return argv + list(extra or [])


def start_node(session_dir: Path, control_address: str, scheduler_address: str, **node_args
               ) -> tuple[LaunchedProcess, dict]:
    node_id_hex = os.urandom(28).hex()
    argv = node_argv(session_dir, control_address, scheduler_address, node_id_hex, **node_args)
    # Its workers inherit the TLS setting through the environment.
    process = launch(session_dir, f"node-{node_id_hex[:16]}", "node", argv, env=child_env(node_args.get("tls")))
    ready = wait_ready(process, session_dir / "nodes" / node_id_hex / "ready.json")
    return process, ready


def stop_process(process: ServiceProcess, *, force: bool = False, grace_s: float = STOP_GRACE_S) -> None:
    """Stop a process and its process group (it was started as a session leader)."""
    processes.stop_service(process, force=force, grace_s=grace_s)


def recorded_processes(session_dir: Path) -> list[ServiceProcess]:
    recorded = []
    for path in sorted((session_dir / PROCS_DIR_NAME).glob("*.json")):
        try:
            recorded.append(ServiceProcess.from_record(json.loads(path.read_text())))
        except (OSError, ValueError, KeyError):
            continue
    return recorded


def cleanup_node_store(session_dir: Path, node_id_hex: str) -> None:
    """Remove what a stopped node could not clean up itself (killed): its
    shared-memory files and its unix socket (under /tmp when the session
    directory's path is too long for one, so not removed with the session)."""
    from lineagerun.objects.store import cleanup_session

    try:
        ready = json.loads((session_dir / "nodes" / node_id_hex / "ready.json").read_text())
    except (OSError, ValueError):
        return
    if ready.get("store_session_id"):
        cleanup_session(ready["store_session_id"])
    sock = ready.get("socket", "").removeprefix("unix:")
    if sock:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock)


def read_head(session_dir: Path) -> dict:
    try:
        return json.loads((session_dir / HEAD_FILE_NAME).read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"{session_dir} is not a cluster session (no {HEAD_FILE_NAME})") from None


def cluster_sessions(root: str | None = None) -> list[Path]:
    """Session directories of clusters started with ``start --head`` or
    ``Cluster``, newest first."""
    root = root or SESSION_ROOT
    sessions = [p.parent for p in Path(root).glob(f"session_*/{HEAD_FILE_NAME}")]
    return sorted(sessions, key=lambda p: p.stat().st_mtime, reverse=True)


def scheduler_view(address: str, token: str, *, root_cert: bytes | None = None) -> list:
    """Every node the global scheduler knows (``NodeStatus``), from a
    synchronous caller (not from inside an event loop)."""
    import asyncio

    from lineagerun.scheduler.client import GlobalSchedulerClient

    async def ask():
        async with GlobalSchedulerClient(address, token, root_cert=root_cert) as client:
            return await client.cluster_view(include_dead=True)

    return asyncio.run(ask())
