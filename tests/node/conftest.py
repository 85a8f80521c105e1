"""A real control store, a real node manager process, raw Session clients."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from lineagerun.control.cluster import ControlStoreCluster
from lineagerun.core.ids import FunctionID, JobID, ObjectID, TaskID
from lineagerun.rpc import lineage_pb2, node_pb2, node_pb2_grpc
from lineagerun.transport.channels import make_channel

REPO = Path(__file__).resolve().parents[2]
FAKE_WORKER = "tests.node.fake_worker"
READY_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A client of a real control store of 1 shard x 2 replicas (one per
    module), with the chain's configuration already cached."""
    from lineagerun.control.client import ControlStoreClient

    cluster = ControlStoreCluster(tmp_path_factory.mktemp("cs2"), shards=1, replicas=2)
    cluster.start()
    client = ControlStoreClient(cluster.address, cluster.token)
    client.put(b"warm", b"")
    try:
        yield client
    finally:
        client.close()
        cluster.stop()
        assert not [p.name for p in cluster.processes() if p.alive()]


@pytest.fixture(scope="package")
def control_store():
    directory = tempfile.mkdtemp(prefix="lrcs")
    cluster = ControlStoreCluster(directory, shards=1, replicas=1)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


class NodeProcess:
    def __init__(self, control_store, *, num_cpus=2, extra=(), prestart=None):
        # Short: the unix socket path must fit in 107 bytes.
        self.session_dir = Path(tempfile.mkdtemp(prefix="lrn"))
        self.token = control_store.token
        self.token_file = control_store.token_file
        argv = [sys.executable, "-m", "lineagerun.node", "--session-dir", str(self.session_dir),
                "--control-store", control_store.address, "--token-file", str(self.token_file),
                "--num-cpus", str(num_cpus), "--worker-module", FAKE_WORKER,
                "--object-store-memory", str(64 * 1024 * 1024), *extra]
        if prestart is not None:
            argv += ["--prestart-workers", str(prestart)]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.log = open(self.session_dir / "node.log", "wb")
        self.popen = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.ready = self._wait_ready()
        self.store_session_id = self.ready["store_session_id"]

    def _wait_ready(self) -> dict:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            for path in (self.session_dir / "nodes").glob("*/ready.json"):
                return json.loads(path.read_text())
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"node manager not ready: {self.log_text()}")

    def log_text(self) -> str:
        return (self.session_dir / "node.log").read_text(errors="replace")[-5000:]

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.popen.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        code = self.popen.poll()
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # the group we started, if anything is left
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait()
        self.log.close()
        return code

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.session_dir, ignore_errors=True)


@pytest.fixture
def node_factory(control_store):
    nodes = []

    def make(**kwargs) -> NodeProcess:
        node = NodeProcess(control_store, **kwargs)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.cleanup()


@pytest.fixture(scope="package")
def shared_node(control_store):
    """One node manager for the tests that do not change its configuration
    or kill its workers (each node start costs seconds on a loaded CI box)."""
    node = NodeProcess(control_store, num_cpus=2, prestart=2, extra=["--resources", '{"widget": 3}'])
    try:
        yield node
    finally:
        node.cleanup()


class RawSession:
    """A driver (or worker) Session stream, driven by hand."""

    def __init__(self, address: str, token: str):
        self.channel = make_channel(address, token)
        self._out: queue.Queue = queue.Queue()
        self.inbox: queue.Queue = queue.Queue()
        self._kept: list = []
        stub = node_pb2_grpc.NodeManagerStub(self.channel)
        self.call = stub.Session(iter(self._out.get, None))
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self._request_id = 0
        self._submitted = 0

    def _read(self) -> None:
        try:
            for message in self.call:
                self.inbox.put(message)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            self.error = exc
        self.inbox.put(None)

    def send(self, **kind) -> None:
        self._out.put(node_pb2.ClientMessage(**kind))

    def next_request_id(self) -> int:
        self._request_id += 1
        return self._request_id

    def expect(self, kind: str, timeout_s: float = 10.0, where=lambda m: True):
        """The next message of ``kind`` matching ``where`` (others are kept)."""
        for i, message in enumerate(self._kept):
            if message.WhichOneof("kind") == kind and where(getattr(message, kind)):
                return getattr(self._kept.pop(i), kind)
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind} message within {timeout_s} s; kept {self._kept}")
            try:
                message = self.inbox.get(timeout=remaining)
            except queue.Empty:
                continue
            if message is None:
                raise AssertionError(f"the stream ended while waiting for {kind}: {self.error}")
            if message.WhichOneof("kind") == kind and where(getattr(message, kind)):
                return getattr(message, kind)
            self._kept.append(message)

    def register(self, namespace: str = "") -> node_pb2.Registered:
        self.send(register=node_pb2.Register(kind=node_pb2.Register.DRIVER, pid=os.getpid(), namespace=namespace))
        self.registered = self.expect("registered")
        self.job = JobID(self.registered.job_id)
        self.driver_task = TaskID.for_driver(self.job)
        return self.registered

    # ------------------------------------------------------------ helpers

    def export(self, name: str, is_actor_class: bool = False) -> bytes:
        body = name.encode()
        function_id = FunctionID.for_body(body).binary()
        self.send(export_function=node_pb2.ExportFunction(function=lineage_pb2.FunctionRecord(
            function_id=function_id, name=name, body=body, is_actor_class=is_actor_class)))
        return function_id

    def spec(self, function_id: bytes, args=(), num_returns=1, resources=None, max_retries=0,
             **fields) -> lineage_pb2.TaskSpec:
        index = self._submitted
        self._submitted += 1
        task_id = TaskID.for_normal_task(self.job, self.driver_task, index)
        spec = lineage_pb2.TaskSpec(task_id=task_id.binary(), job_id=self.job.binary(),
                                    parent_task_id=self.driver_task.binary(), submission_index=index,
                                    function_id=function_id, num_returns=num_returns,
                                    resources=resources if resources is not None else {"CPU": 10_000},
                                    options=lineage_pb2.TaskOptions(max_retries=max_retries), **fields)
        for arg in args:
            if isinstance(arg, ObjectID):
                spec.args.append(lineage_pb2.TaskArg(object_id=arg.binary()))
            else:
                spec.args.append(lineage_pb2.TaskArg(value=arg))
        return spec

    def submit(self, *specs_) -> list[ObjectID]:
        self.send(submit_tasks=node_pb2.SubmitTasks(specs=list(specs_)))
        return [ObjectID.from_index(TaskID(s.task_id), 1) for s in specs_]

    def get(self, object_ids, timeout_ms: int = 10_000, wait_s: float = 15.0) -> node_pb2.ObjectsReply:
        rid = self.next_request_id()
        self.send(get_objects=node_pb2.GetObjects(request_id=rid, object_ids=[o.binary() for o in object_ids],
                                                  timeout_ms=timeout_ms))
        return self.expect("objects_reply", wait_s, lambda m: m.request_id == rid)

    def close(self) -> None:
        self._out.put(None)
        self.channel.close()


@pytest.fixture
def session_factory():
    sessions = []

    def make(node: NodeProcess, token: str | None = None, address: str | None = None) -> RawSession:
        session = RawSession(address or node.ready["socket"], token or node.token)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


def no_shm_files(store_session_id: str) -> list[str]:
    tag = store_session_id[:8]
    return [name for name in os.listdir("/dev/shm") if name.startswith(f"lr-{tag}")]
