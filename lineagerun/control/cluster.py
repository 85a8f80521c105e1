"""``ControlStoreCluster``: start, fault and stop a whole control store (one
coordinator, ``shards`` x ``replicas`` replica processes) as a unit.

Used by tests, the benchmark, the demo and ``lineagerun control-store``.
Every process is started in its own session (so it and anything it starts
form one process group), with stdout and stderr in a log file in its
directory (``lineagerun.processes``); with ``tls=`` every process serves
TLS and checks the others against the CA. The launcher signals only the processes it started, by pid or
process group, and stops them all when stopped, garbage collected with the
interpreter (``atexit``), or when starting fails. ``DIR/cluster.json``
records pids and addresses so that ``control-store stop`` can find them
from another process.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.json_format import MessageToDict

from lineagerun import processes as service_processes
from lineagerun.exceptions import ConfigurationError, InvalidArgumentError, UnavailableError
from lineagerun.processes import recorded_process_alive  # noqa: F401 - also imported from here
from lineagerun.rpc import control_store_pb2, control_store_pb2_grpc, coordinator_pb2, coordinator_pb2_grpc
from lineagerun.transport.auth import TOKEN_FILE_NAME, new_token, read_token_file, write_token_file
from lineagerun.transport.channels import make_channel
from lineagerun.transport.tls import TlsConfig, child_env
from lineagerun.transport.errors import from_rpc_error

CLUSTER_FILE_NAME = "cluster.json"
READY_FILE_NAME = "ready"
LOG_FILE_NAME = "process.log"
DURABILITY_MODES = ("wal", "fsync")

# Waiting for a process's ready file / for chains to form.
START_TIMEOUT_S = service_processes.START_TIMEOUT_S
STOP_GRACE_S = service_processes.STOP_GRACE_S
# Poll interval for ready files and configuration changes.
POLL_INTERVAL_S = service_processes.POLL_INTERVAL_S
LOG_TAIL_LINES = service_processes.LOG_TAIL_LINES
STATUS_RPC_TIMEOUT_S = 2.0
# A restarting coordinator is unreachable for about a second.
COORDINATOR_RETRY_S = 10.0


@dataclass
class ManagedProcess:
    """One process started (or recorded) by the launcher."""
    name: str                      # "coordinator" or a replica id
    role: str                      # "coordinator" | "replica"
    directory: Path
    argv: list[str]
    shard: int | None = None
    index: int | None = None
    popen: subprocess.Popen | None = None
    pid: int | None = None
    create_time: float | None = None
    address: str | None = None
    paused: bool = False
    killed: bool = False           # on purpose: not a crash

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE_NAME

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return recorded_process_alive(self.pid, self.create_time)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return service_processes.log_tail(self.log_path, lines)

    def record(self) -> dict:
        return {"name": self.name, "role": self.role, "dir": str(self.directory), "shard": self.shard,
                "index": self.index, "pid": self.pid, "create_time": self.create_time, "address": self.address,
                "argv": self.argv}


_signal_group = service_processes.signal_group


# Strong references: a cluster nobody refers to any more must still be
# stopped at exit, not garbage collected with its processes running.
_LIVE_CLUSTERS: "set[ControlStoreCluster]" = set()


@atexit.register
def _stop_every_cluster() -> None:
    for cluster in list(_LIVE_CLUSTERS):
        try:
            cluster.stop()
        except Exception:  # at exit, stopping the rest matters more
            pass


class ControlStoreCluster:
    """A control store of ``shards`` chains of ``replicas`` replicas under
    ``dir``. ``start()`` returns once every chain is formed."""

    def __init__(self, dir: str | os.PathLike, shards: int = 1, replicas: int = 3, *, token: str | None = None,
                 host: str = "127.0.0.1", durability: str = "wal", heartbeat_interval_ms: int = 100,
                 failure_timeout_ms: int = 1000, lease_ms: int = 600, coordinator_port: int = 0,
                 start_timeout_s: float = START_TIMEOUT_S, python: str = sys.executable,
                 log_retention_entries: int | None = None, tls: TlsConfig | None = None, links=None):
        if shards < 1 or replicas < 1:
            raise InvalidArgumentError(f"need at least one shard and one replica, got {shards} x {replicas}")
        if durability not in DURABILITY_MODES:
            raise InvalidArgumentError(f"durability must be one of {DURABILITY_MODES}, got {durability!r}")
        self.dir = Path(dir).absolute()
        self.shards = shards
        self.replicas = replicas
        self.host = host
        self.durability = durability
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.failure_timeout_ms = failure_timeout_ms
        self.lease_ms = lease_ms
        if log_retention_entries is not None and log_retention_entries < 1:
            raise InvalidArgumentError(f"log_retention_entries must be at least 1, got {log_retention_entries}")
        self.log_retention_entries = log_retention_entries  # None: the replicas' default
        self.start_timeout_s = start_timeout_s
        self.python = python
        self.tls = tls  # every process serves TLS, and checks its peers, with these files
        # Chaos proxies on every link (lineagerun.chaos.control_store_links.ControlStoreLinks):
        # replicas bind a port chosen there and advertise a proxy's address.
        self.links = links
        self._token = token
        self._coordinator_port = coordinator_port
        self.coordinator: ManagedProcess | None = None
        self.replica_processes: dict[tuple[int, int], ManagedProcess] = {}
        self._lock = threading.RLock()
        self._channel = None
        self._stopped = False

    # ---------------------------------------------------------- start

    @property
    def token(self) -> str:
        if self._token is None:
            raise ConfigurationError("the cluster has no token yet; call start() first")
        return self._token

    @property
    def token_file(self) -> Path:
        return self.dir / TOKEN_FILE_NAME

    @property
    def address(self) -> str:
        if self.coordinator is None or self.coordinator.address is None:
            raise ConfigurationError("the cluster is not started")
        return self.coordinator.address

    def start(self) -> "ControlStoreCluster":
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._token is None and self.token_file.exists():
            self._token = read_token_file(self.token_file)
        self._token = self._token or new_token()
        write_token_file(self.token_file, self._token)
        _LIVE_CLUSTERS.add(self)
        self._stopped = False
        try:
            self.coordinator = self._coordinator_process(self._coordinator_port)
            self._launch(self.coordinator)
            self._wait_ready([self.coordinator])
            self._coordinator_port = int(self.coordinator.address.rsplit(":", 1)[1])
            started = []
            for shard in range(self.shards):
                for index in range(self.replicas):
                    process = self._replica_process(shard, index)
                    self.replica_processes[(shard, index)] = process
                    self._launch(process)
                    started.append(process)
            self._wait_ready(started)
            self.wait_for_chains(self.replicas)
        except BaseException:
            self.stop()
            raise
        return self

    def _coordinator_process(self, port: int) -> ManagedProcess:
        directory = self.dir / "coordinator"
        argv = [self.python, "-m", "lineagerun.control.coordinator", "--dir", str(directory),
                "--shards", str(self.shards), "--replicas", str(self.replicas), "--host", self.host,
                "--port", str(port), "--token-file", str(self.token_file),
                "--heartbeat-interval-ms", str(self.heartbeat_interval_ms),
                "--failure-timeout-ms", str(self.failure_timeout_ms), "--lease-ms", str(self.lease_ms)]
        if self.links is not None:
            argv += self.links.coordinator_argv(self)
        return ManagedProcess("coordinator", "coordinator", directory, argv + self._tls_argv())

    def replica_id(self, shard: int, index: int) -> str:
        return f"s{shard}r{index}"

    def replica_dir(self, shard: int, index: int) -> Path:
        return self.dir / f"shard-{shard}" / f"replica-{index}"

    def _replica_process(self, shard: int, index: int) -> ManagedProcess:
        directory = self.replica_dir(shard, index)
        argv = [self.python, "-m", "lineagerun.control.replica", "--dir", str(directory), "--shard", str(shard),
                "--replica-id", self.replica_id(shard, index), "--coordinator", self.address,
                "--host", self.host, "--port", "0", "--token-file", str(self.token_file),
                "--durability", self.durability, "--heartbeat-interval-ms", str(self.heartbeat_interval_ms)]
        if self.log_retention_entries is not None:
            argv += ["--log-retention-entries", str(self.log_retention_entries)]
        if self.links is not None:
            launch = self.links.replica_launch(self, shard, index)
            argv[argv.index("--port") + 1] = str(launch["port"])
            argv[argv.index("--coordinator") + 1] = launch["coordinator"]
            argv += launch["extra"]
        argv += self._tls_argv()
        return ManagedProcess(self.replica_id(shard, index), "replica", directory, argv, shard=shard, index=index)

    def _tls_argv(self) -> list[str]:
        return self.tls.argv() if self.tls is not None else []

    @property
    def root_cert(self) -> bytes | None:
        """The CA this launcher checks its processes against (None: plaintext)."""
        return self.tls.ca_pem if self.tls is not None else None

    def _launch(self, process: ManagedProcess) -> None:
        if self._stopped:
            raise ConfigurationError(f"the cluster in {self.dir} is stopped; not starting {process.name}")
        process.directory.mkdir(parents=True, exist_ok=True)
        (process.directory / READY_FILE_NAME).unlink(missing_ok=True)
        process.popen = service_processes.spawn(process.argv, process.log_path, env=child_env(self.tls))
        process.pid = process.popen.pid
        process.create_time = service_processes.process_create_time(process.pid)
        process.address = None
        process.paused = False
        process.killed = False
        self._record()

    def _wait_ready(self, processes: list[ManagedProcess], timeout_s: float | None = None) -> None:
        timeout_s = timeout_s or self.start_timeout_s
        deadline_s = time.monotonic() + timeout_s
        for process in processes:  # one deadline for all: they start in parallel
            process.address = service_processes.wait_ready(
                process, service_processes.ready_text(process.directory / READY_FILE_NAME), timeout_s,
                what=f"serving (control-store {process.role})", deadline_s=deadline_s)
        self._record()

    # ------------------------------------------------------ observation

    def _coordinator_stub(self) -> coordinator_pb2_grpc.ChainCoordinatorStub:
        with self._lock:
            if self._channel is None:
                self._channel = make_channel(self.address, self.token, root_cert=self.root_cert)
            return coordinator_pb2_grpc.ChainCoordinatorStub(self._channel)

    def _ask_coordinator(self, method: str, request):
        """One coordinator RPC, retried while the coordinator is unreachable
        for up to ``COORDINATOR_RETRY_S`` (it may be restarting)."""
        deadline_s = time.monotonic() + COORDINATOR_RETRY_S
        while True:
            try:
                return getattr(self._coordinator_stub(), method)(request, timeout=STATUS_RPC_TIMEOUT_S)
            except grpc.RpcError as err:
                error = from_rpc_error(err, what=f"coordinator {method}")
                if not isinstance(error, UnavailableError) or time.monotonic() > deadline_s:
                    raise error from None
            time.sleep(POLL_INTERVAL_S * 5)

    def config(self):
        """The coordinator's ClusterConfig (raises a typed error if it cannot
        be reached)."""
        return self._ask_coordinator("GetConfig", coordinator_pb2.GetConfigRequest())

    def status(self) -> dict:
        """The coordinator's Status as a dict (protobuf field names)."""
        reply = self._ask_coordinator("Status", coordinator_pb2.CoordinatorStatusRequest())
        return MessageToDict(reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)

    def replica_status(self, shard: int, index: int) -> dict:
        """A replica's own Status as a dict."""
        return replica_status(self.replica_processes[(shard, index)].address, self.token, root_cert=self.root_cert)

    def wait_for(self, predicate, what: str, timeout_s: float | None = None):
        """Poll ``predicate(config)`` until it returns something truthy."""
        deadline_s = time.monotonic() + (timeout_s or self.start_timeout_s)
        last_error: BaseException | None = None
        while time.monotonic() < deadline_s:
            self._check_processes()
            try:
                result = predicate(self.config())
                if result:
                    return result
            except Exception as err:  # coordinator restarting: keep polling
                last_error = err
            time.sleep(POLL_INTERVAL_S)
        raise ConfigurationError(f"timed out waiting for {what} (last error: {last_error}); coordinator log tail:\n"
                                 f"{self.coordinator.log_tail() if self.coordinator else ''}")

    def wait_for_chains(self, members: int | None = None, timeout_s: float | None = None):
        """Every shard's chain formed with ``members`` replicas (default: all)
        and nobody joining."""
        members = members or self.replicas

        def formed(config):
            return len(config.shards) == self.shards and all(
                s.epoch >= 1 and len(s.chain) >= members and not s.joining.replica_id for s in config.shards
            ) and config

        return self.wait_for(formed, f"chains of {members} replicas", timeout_s)

    def wait_for_member(self, shard: int, index: int, timeout_s: float | None = None):
        """Until replica (shard, index) is in its shard's chain (not joining)."""
        replica_id = self.replica_id(shard, index)

        def member(config):
            return shard < len(config.shards) and any(
                r.replica_id == replica_id for r in config.shards[shard].chain) and config

        return self.wait_for(member, f"{replica_id} to be a chain member", timeout_s)

    def chain(self, shard: int) -> list[str]:
        """The replica ids of ``shard``'s chain, head first."""
        return [r.replica_id for r in self.config().shards[shard].chain]

    def index_of(self, replica_id: str) -> tuple[int, int]:
        for key, process in self.replica_processes.items():
            if process.name == replica_id:
                return key
        raise InvalidArgumentError(f"no replica {replica_id} in this cluster")

    def _check_processes(self) -> None:
        if self.coordinator is not None and self.coordinator.popen is not None and not self.coordinator.alive() \
                and not self.coordinator.killed:
            raise ConfigurationError(f"the coordinator exited (code {self.coordinator.popen.poll()}); log tail:\n"
                                     f"{self.coordinator.log_tail()}")

    # ----------------------------------------------------------- faults

    def _replica(self, shard: int, index: int) -> ManagedProcess:
        try:
            return self.replica_processes[(shard, index)]
        except KeyError:
            raise InvalidArgumentError(f"no replica {index} of shard {shard} in this cluster") from None

    def _kill(self, process: ManagedProcess) -> None:
        if process.pid is None:
            return
        _signal_group(process.pid, signal.SIGKILL)
        if process.popen is not None:
            process.popen.wait(timeout=STOP_GRACE_S)
        process.paused = False
        process.killed = True
        self._record()

    def kill_replica(self, shard: int, index: int) -> None:
        """kill -9 the replica and wait until it is gone."""
        self._kill(self._replica(shard, index))

    def pause_replica(self, shard: int, index: int) -> None:
        process = self._replica(shard, index)
        _signal_group(process.pid, signal.SIGSTOP)
        process.paused = True

    def resume_replica(self, shard: int, index: int) -> None:
        process = self._replica(shard, index)
        _signal_group(process.pid, signal.SIGCONT)
        process.paused = False

    def restart_replica(self, shard: int, index: int, *, wait_ready: bool = True) -> ManagedProcess:
        """Start the replica again from its directory (killing it first if it
        still runs). Returns once it serves; it rejoins the chain by itself
        (``wait_for_member`` waits for that)."""
        process = self._replica(shard, index)
        if process.alive():
            self._kill(process)
        process.argv = self._replica_process(shard, index).argv  # the coordinator may have a new address
        self._launch(process)
        if wait_ready:
            self._wait_ready([process])
        return process

    def add_replica(self, shard: int, *, wait_ready: bool = True) -> tuple[int, int]:
        """Start a brand-new replica (new id, empty directory) for ``shard``;
        returns its (shard, index)."""
        if not 0 <= shard < self.shards:
            raise InvalidArgumentError(f"shard {shard} does not exist (the cluster has {self.shards})")
        index = 1 + max(i for (s, i) in self.replica_processes if s == shard)
        process = self._replica_process(shard, index)
        self.replica_processes[(shard, index)] = process
        self._launch(process)
        if wait_ready:
            self._wait_ready([process])
        return shard, index

    def start_replica_process(self, shard: int, index: int, directory: Path) -> subprocess.CompletedProcess:
        """Run a replica for (shard, index) on ``directory`` in the
        foreground until it exits (for testing refusals such as a directory
        of another shard); returns its exit code and output."""
        argv = self._replica_process(shard, index).argv
        argv[argv.index("--dir") + 1] = str(directory)
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=self.start_timeout_s, start_new_session=True)

    def kill_coordinator(self) -> None:
        self._kill(self.coordinator)

    def restart_coordinator(self, *, wait_ready: bool = True) -> None:
        """Start the coordinator again from its directory on the same port
        (the replicas know it by that address)."""
        if self.coordinator.alive():
            self._kill(self.coordinator)
        self.coordinator = self._coordinator_process(self._coordinator_port)
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None
        deadline_s = time.monotonic() + self.start_timeout_s
        while True:
            self._launch(self.coordinator)
            try:
                if wait_ready:
                    self._wait_ready([self.coordinator])
                return
            except ConfigurationError:
                # The old port can stay busy for a moment after a kill -9.
                if time.monotonic() > deadline_s or "could not listen" not in self.coordinator.log_tail():
                    raise
                time.sleep(0.2)

    # ------------------------------------------------------------ users

    def client(self, **kwargs):
        from lineagerun.control.client import ControlStoreClient

        return ControlStoreClient(self.address, self.token, **kwargs)

    def processes(self) -> list[ManagedProcess]:
        return ([self.coordinator] if self.coordinator else []) + list(self.replica_processes.values())

    # ------------------------------------------------------------- stop

    def stop(self) -> None:
        """SIGTERM every process started here, SIGKILL what is left after
        ``STOP_GRACE_S``; idempotent."""
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None
        stop_processes(self.processes())
        self._stopped = True
        _LIVE_CLUSTERS.discard(self)
        if self.dir.exists():
            self._record()

    def detach(self) -> None:
        """Leave the processes running when this interpreter exits (the CLI's
        ``start``); ``control-store stop --dir`` stops them later."""
        _LIVE_CLUSTERS.discard(self)

    def __enter__(self) -> "ControlStoreCluster":
        if self.coordinator is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _record(self) -> None:
        record = {
            "dir": str(self.dir), "shards": self.shards, "replicas": self.replicas,
            "token_file": str(self.token_file), "durability": self.durability,
            "coordinator": self.coordinator.record() if self.coordinator else None,
            "replica_processes": [p.record() for p in self.replica_processes.values()],
            "stopped": self._stopped,
        }
        path = self.dir / CLUSTER_FILE_NAME
        tmp = path.with_suffix(".json.tmp")
        with self._lock:
            tmp.write_text(json.dumps(record, indent=2))
            os.replace(tmp, path)


def stop_processes(processes: list[ManagedProcess], grace_s: float = STOP_GRACE_S) -> list[str]:
    """SIGTERM, wait, SIGKILL; by pid / process group only. Returns the
    names of the processes that had to be killed."""
    return service_processes.stop_services([p for p in processes if p is not None], grace_s=grace_s)


def load_record(dir: str | os.PathLike) -> dict:
    path = Path(dir) / CLUSTER_FILE_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"{path} does not exist: no control store was started in {dir}") from None


def recorded_processes(record: dict) -> list[ManagedProcess]:
    processes = []
    for entry in ([record["coordinator"]] if record.get("coordinator") else []) + record.get("replica_processes", []):
        processes.append(ManagedProcess(entry["name"], entry["role"], Path(entry["dir"]), entry.get("argv", []),
                                        shard=entry.get("shard"), index=entry.get("index"), pid=entry.get("pid"),
                                        create_time=entry.get("create_time"), address=entry.get("address")))
    return processes


def stop_recorded(dir: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Stop the processes recorded in ``dir/cluster.json`` by a launcher in
    another process. Returns (stopped, already gone) names."""
    record = load_record(dir)
    processes = recorded_processes(record)
    running = [p for p in processes if p.alive()]
    gone = [p.name for p in processes if p not in running]
    stop_processes(running)
    record["stopped"] = True
    path = Path(dir) / CLUSTER_FILE_NAME
    path.write_text(json.dumps(record, indent=2))
    return [p.name for p in running], gone


def replica_status(address: str, token: str, *, root_cert: bytes | None = None) -> dict:
    with make_channel(address, token, root_cert=root_cert) as channel:
        stub = control_store_pb2_grpc.ControlStoreReplicaStub(channel)
        try:
            reply = stub.Status(control_store_pb2.ReplicaStatusRequest(), timeout=STATUS_RPC_TIMEOUT_S)
        except grpc.RpcError as err:
            raise from_rpc_error(err, what=f"replica Status at {address}") from None
    return MessageToDict(reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def coordinator_status(address: str, token: str, *, root_cert: bytes | None = None) -> dict:
    with make_channel(address, token, root_cert=root_cert) as channel:
        stub = coordinator_pb2_grpc.ChainCoordinatorStub(channel)
        try:
            reply = stub.Status(coordinator_pb2.CoordinatorStatusRequest(), timeout=STATUS_RPC_TIMEOUT_S)
        except grpc.RpcError as err:
            raise from_rpc_error(err, what="coordinator Status") from None
    return MessageToDict(reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
