"""``init()`` / ``shutdown()`` and the embedded cluster.

``init()`` with no address starts, under a new session directory, a control
store (``ControlStoreCluster``, 1 shard x 2 replicas) and one node manager.
The node manager needs the coordinator's address, so it is launched the
moment the coordinator is serving, while the replicas are still starting.
The driver connects over the node manager's unix socket. ``shutdown()`` (and
interpreter exit) stops what was started, by process group.
"""

from __future__ import annotations

import atexit
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lineagerun import exceptions, processes
from lineagerun.api import context, log_echo
from lineagerun.transport import tls

SESSION_ROOT = "/tmp/lineagerun"
CONTROL_STORE_REPLICAS = 2
# Waiting for the node manager's ready.json: Python start-up and imports take
# ~0.5 s; a loaded 2-core CI machine needs far more.
NODE_START_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.005
STOP_GRACE_S = 5.0
TOKEN_FILE_NAME = "token"
# init() without an address joins this cluster when set (Ray: RAY_ADDRESS).
ADDRESS_ENV = "LINEAGERUN_ADDRESS"
SESSION_FILE_NAME = "session.json"


@dataclass
class EmbeddedCluster:
    session_dir: Path
    token: str
    control_store: object = None
    node_process: subprocess.Popen | None = None
    node_ready: dict = field(default_factory=dict)

    def stop(self) -> None:
        if self.node_process is not None:
            _stop_group(self.node_process)
            self.node_process = None
        if self.control_store is not None:
            self.control_store.stop()
            self.control_store = None
            _write_session_file(self.session_dir, {"control_store_address": "", "stopped": True})
        store_session_id = self.node_ready.get("store_session_id")
        if store_session_id:
            from lineagerun.objects.store import cleanup_session

            cleanup_session(store_session_id)


@dataclass
class DriverState:
    core_worker: object
    cluster: EmbeddedCluster | None
    address: str
    session_dir: str
    namespace: str


_state: DriverState | None = None
_atexit_registered = False
_lock = threading.RLock()


def _node_service(process: subprocess.Popen, log_path: Path = Path("")) -> processes.ServiceProcess:
    return processes.ServiceProcess("the node manager", "node", process.pid, None, log_path, process)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it after the grace period."""
    processes.stop_service(_node_service(process), grace_s=STOP_GRACE_S)


def _new_session_dir() -> Path:
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S") + f"_{int(time.time() * 1e6) % 1_000_000:06d}"
    path = Path(SESSION_ROOT) / f"session_{stamp}_{os.getpid()}"
    path.mkdir(parents=True, exist_ok=False, mode=0o700)
    return path


def _wait_coordinator(cluster, starter: threading.Thread, deadline_s: float) -> str:
    while True:
        coordinator = cluster.coordinator
        if coordinator is not None and coordinator.address:
            return coordinator.address
        if not starter.is_alive():
            raise exceptions.ConfigurationError("the control store failed to start; see its logs under "
                                                f"{cluster.dir}")
        if time.monotonic() > deadline_s:
            raise exceptions.ConfigurationError(f"the control store did not start in {NODE_START_TIMEOUT_S} s")
        time.sleep(POLL_INTERVAL_S)


def _default_num_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _wait_node_ready(process: subprocess.Popen, ready_path: Path, log_path: Path, deadline_s: float,
                     control_failure: list[BaseException]) -> dict:
    ready = processes.ready_json(ready_path)

    def probe() -> dict | None:
        if control_failure:  # the node manager would retry it for its whole client timeout
            raise control_failure[0]
        return ready()

    return processes.wait_ready(_node_service(process, log_path), probe, NODE_START_TIMEOUT_S, what="serving",
                                deadline_s=deadline_s, poll_interval_s=POLL_INTERVAL_S)


def start_embedded_cluster(*, num_cpus: int | None, num_gpus: float | None, resources: dict | None,
                           object_store_memory: int | None) -> EmbeddedCluster:
    from lineagerun.control.cluster import ControlStoreCluster
    from lineagerun.node.launcher import node_argv
    from lineagerun.transport.auth import new_token, write_token_file

    session_dir = _new_session_dir()
    token = new_token()
    token_file = write_token_file(session_dir / TOKEN_FILE_NAME, token)
    (session_dir / "logs").mkdir(exist_ok=True)
    cluster = EmbeddedCluster(session_dir, token)
    control_store = ControlStoreCluster(session_dir / "control", shards=1, replicas=CONTROL_STORE_REPLICAS,
                                        token=token)
    cluster.control_store = control_store
    failure: list[BaseException] = []

    def start_control_store() -> None:
        try:
            control_store.start()
        except BaseException as exc:  # reported by the caller
            failure.append(exc)

    starter = threading.Thread(target=start_control_store, name="lineagerun-control-store-start", daemon=True)
    deadline_s = time.monotonic() + NODE_START_TIMEOUT_S
    try:
        starter.start()
        # The node manager needs the coordinator's address; it starts while
        # the replicas do (its client retries until the chains serve).
        control_address = _wait_coordinator(control_store, starter, deadline_s)
        node_id_hex = os.urandom(28).hex()
        argv = node_argv(session_dir, control_address, None, node_id_hex,
                         num_cpus=num_cpus if num_cpus is not None else _default_num_cpus(),
                         num_gpus=num_gpus or 0, resources=resources, object_store_memory=object_store_memory,
                         token_file=token_file)
        log_path = session_dir / "logs" / "node_manager.log"
        cluster.node_process = processes.spawn(argv, log_path)
        ready_path = session_dir / "nodes" / node_id_hex / "ready.json"
        cluster.node_ready = _wait_node_ready(cluster.node_process, ready_path, log_path, deadline_s, failure)
        starter.join(max(0.0, deadline_s - time.monotonic()))
        if failure:
            raise failure[0]
        if starter.is_alive():
            raise exceptions.ConfigurationError(f"the control store did not form within {NODE_START_TIMEOUT_S} s")
    except BaseException:
        starter.join(STOP_GRACE_S)
        cluster.stop()
        raise
    _write_session_file(session_dir, {"control_store_address": control_address, "token_file": str(token_file),
                                      "control_store_dir": str(control_store.dir), "driver_pid": os.getpid()})
    return cluster


def _write_session_file(session_dir: Path, record: dict) -> None:
    """``SESSION/session.json``: how ``lineagerun list|get|...`` finds this
    cluster with no ``--address`` (docs/cli.md). Temp + rename, so a reader
    never sees half a file."""
    path = session_dir / SESSION_FILE_NAME
    temp = path.with_name(f".{SESSION_FILE_NAME}.{os.getpid()}.tmp")
    try:
        temp.write_text(json.dumps(record))
        os.replace(temp, path)
    except OSError:
        pass  # the session directory was removed; nothing to find any more


def _find_cluster_session(address: str) -> tuple[float, tuple[str, str, str]] | None:
    """A multi-node cluster (``lineagerun start --head`` or ``Cluster``)
    whose address (its coordinator's), scheduler or session directory is
    ``address`` ("auto": the newest): the session, a node manager of it on
    this machine (the head's when it runs) and the token."""
    from lineagerun.node import launcher
    from lineagerun.transport.auth import read_token_file

    for session_dir in launcher.cluster_sessions():
        try:
            head = launcher.read_head(session_dir)
        except (exceptions.ConfigurationError, OSError, ValueError):
            continue
        if address not in ("auto", head.get("address"), head.get("scheduler"), str(session_dir)):
            continue
        nodes = []
        for ready in session_dir.glob("nodes/*/ready.json"):
            try:
                info = json.loads(ready.read_text())
            except (OSError, ValueError):
                continue
            if _pid_alive(info.get("pid")):
                nodes.append((info.get("node_id") != head.get("head_node_id"), -ready.stat().st_mtime, info))
        if nodes:
            info = min(nodes, key=lambda n: n[:2])[2]
            mtime = (session_dir / launcher.HEAD_FILE_NAME).stat().st_mtime
            return mtime, (str(session_dir), info["socket"], read_token_file(session_dir / TOKEN_FILE_NAME))
        if address != "auto":
            raise exceptions.ConfigurationError(
                f"the cluster at {address!r} ({session_dir}) has no running node manager on this machine; "
                f"join one with: lineagerun start --address {head.get('address')}")
    return None


def _find_session(address: str) -> tuple[str, str, str]:
    """(session dir, node socket, token) of a running node manager: the most
    recent one for "auto", else the one serving ``address`` (host:port,
    unix:path or a session directory)."""
    found = _find_cluster_session(address)
    if found is not None and address != "auto":
        return found[1]
    candidates = []
    for ready in glob.glob(os.path.join(SESSION_ROOT, "session_*", "nodes", "*", "ready.json")):
        try:
            info = json.loads(Path(ready).read_text())
        except (OSError, ValueError):
            continue
        if not _pid_alive(info.get("pid")):
            continue
        session_dir = str(Path(ready).parents[2])
        if address in ("auto", info.get("address"), info.get("socket"), session_dir):
            candidates.append((os.path.getmtime(ready), session_dir, info))
    if found is not None and (not candidates or found[0] >= max(c[0] for c in candidates)):
        return found[1]
    if not candidates:
        raise exceptions.ConfigurationError(
            f"no running lineagerun node manager found for address {address!r} under {SESSION_ROOT}; "
            "start one with lineagerun.init() in another process, or call init() without an address")
    _, session_dir, info = max(candidates, key=lambda c: c[0])
    from lineagerun.transport.auth import read_token_file

    return session_dir, info["socket"], read_token_file(Path(session_dir) / TOKEN_FILE_NAME)


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def init(address: str | None = None, *, num_cpus: int | None = None, num_gpus: float | None = None,
         resources: dict | None = None, object_store_memory: int | None = None, namespace: str | None = None,
         ignore_reinit_error: bool = False, log_to_driver: bool = True, **unsupported) -> "DriverState":
    """Start an embedded cluster (no address) or connect to a running node
    manager (``"auto"``, ``"host:port"``, ``"unix:path"`` or its session directory)."""
    global _state
    if unsupported:
        raise exceptions.InvalidArgumentError(
            f"init() got unsupported arguments {sorted(unsupported)}; lineagerun supports address, num_cpus, "
            "num_gpus, resources, object_store_memory, namespace, ignore_reinit_error")
    _check_init_arguments(num_cpus, num_gpus, resources, object_store_memory, namespace)
    with _lock:
        if _state is not None:
            if ignore_reinit_error:
                return _state
            raise exceptions.ConfigurationError(
                "lineagerun.init() was already called; call lineagerun.shutdown() first, or pass "
                "ignore_reinit_error=True")
        if context.is_worker():
            raise exceptions.ConfigurationError("init() cannot be called inside a task or actor")
        cluster = None
        if address is None and os.environ.get(ADDRESS_ENV):
            address = os.environ[ADDRESS_ENV]  # as RAY_ADDRESS: join that cluster instead of starting one
        if address is None:
            cluster = start_embedded_cluster(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                                             object_store_memory=object_store_memory)
            session_dir, socket, token = str(cluster.session_dir), cluster.node_ready["socket"], cluster.token
            node_address = cluster.node_ready["address"]
        else:
            if not isinstance(address, str):
                raise exceptions.InvalidArgumentError(f"address must be a str, got {type(address).__name__}")
            session_dir, socket, token = _find_session(address)
            node_address = address
            tls.use_session_tls(session_dir)  # a TLS cluster: its control store is dialled with its CA
        try:
            core_worker = _connect(socket, token, namespace or "")
        except BaseException:
            tls.reset_process_tls()
            if cluster is not None:
                cluster.stop()
            raise
        _state = DriverState(core_worker, cluster, node_address, session_dir, namespace or "")
        context.set_driver(core_worker, session_dir)
        if log_to_driver:
            log_echo.start(session_dir, core_worker.job_id.hex())
        global _atexit_registered
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
        if cluster is not None:
            _exit_on_sigterm()
        verb = "started a local cluster" if cluster is not None else "connected to the cluster"
        print(f"lineagerun: {verb} at {node_address} (session {session_dir})", flush=True)
        return _state


def _exit_on_sigterm() -> None:
    """As Ray's driver: SIGTERM exits through ``sys.exit`` so that the atexit
    shutdown stops the embedded cluster (the default action would leave it
    running). A handler the program installed itself is kept."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum, frame) -> None:
    sys.exit(128 + signum)


def _check_init_arguments(num_cpus, num_gpus, resources, object_store_memory, namespace) -> None:
    if num_cpus is not None and (not isinstance(num_cpus, int) or isinstance(num_cpus, bool) or num_cpus < 0):
        raise exceptions.InvalidArgumentError(f"num_cpus must be an int >= 0, got {num_cpus!r}")
    if num_gpus is not None and (not isinstance(num_gpus, (int, float)) or num_gpus < 0):
        raise exceptions.InvalidArgumentError(f"num_gpus must be a number >= 0, got {num_gpus!r}")
    if resources is not None:
        from lineagerun.core.resources import ResourceSet

        if not isinstance(resources, dict):
            raise exceptions.InvalidArgumentError(f"resources must be a dict, got {type(resources).__name__}")
        ResourceSet(resources)
    if object_store_memory is not None and (not isinstance(object_store_memory, int) or object_store_memory <= 0):
        raise exceptions.InvalidArgumentError(
            f"object_store_memory must be a positive int (bytes), got {object_store_memory!r}")
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise exceptions.InvalidArgumentError(f"namespace must be a non-empty str, got {namespace!r}")


def _connect(socket: str, token: str, namespace: str):
    from lineagerun.core.ids import WorkerID
    from lineagerun.rpc import node_pb2
    from lineagerun.worker.core_worker import CoreWorker

    core_worker = CoreWorker(socket, token, kind=node_pb2.Register.DRIVER, worker_id=WorkerID(os.urandom(28)),
                             namespace=namespace)
    core_worker.connect()
    core_worker.track_refs()
    return core_worker


def shutdown() -> None:
    """Disconnect, and stop the embedded cluster if this driver started one."""
    global _state
    with _lock:
        state, _state = _state, None
        if state is None:
            return
        context.clear()
        log_echo.stop()  # echoes what tasks printed before shutdown
        try:
            state.core_worker.close()
        finally:
            tls.reset_process_tls()
            if state.cluster is not None:
                state.cluster.stop()


def is_initialized() -> bool:
    return _state is not None


def driver_state() -> DriverState | None:
    return _state
