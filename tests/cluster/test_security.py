"""RELIABILITY S1 and S2 on a multi-node cluster.

S1: a default cluster listens on loopback only; a non-loopback bind without
a token is refused. S2: calls without or with a wrong token are refused, and
a pickled payload sent by such a peer is never unpickled (a canary file its
unpickling or running would create never appears), while the very same
messages with the right token do run it (so the test can fail)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time

import cloudpickle
import grpc
import psutil
import pytest

from lineagerun.core.ids import FunctionID, JobID, TaskID
from lineagerun.exceptions import AuthenticationError, ConfigurationError
from lineagerun.rpc import lineage_pb2, node_pb2, node_pb2_grpc, object_transfer_pb2, object_transfer_pb2_grpc
from lineagerun.rpc import scheduler_pb2, scheduler_pb2_grpc
from lineagerun.testing import Cluster
from lineagerun.transport.channels import check_bind, make_channel
from lineagerun.transport.errors import from_rpc_error
from tests.cluster.conftest import assert_gone, cluster_pids

CANARY_WAIT_S = 2.0


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.add_node(num_cpus=1)
        yield cluster
    finally:
        pids = cluster_pids(cluster)
        cluster.shutdown()
        assert_gone(pids)


def _canary_messages(canary: str) -> list[node_pb2.ClientMessage]:
    def touch():
        open(canary, "w").close()

    body = cloudpickle.dumps(touch)
    function_id = FunctionID.for_body(body).binary()
    job = JobID(b"\x00\x00\x00\x07")
    task_id = TaskID.for_normal_task(job, TaskID.for_driver(job), 1)
    spec = lineage_pb2.TaskSpec(task_id=task_id.binary(), job_id=job.binary(), function_id=function_id,
                                num_returns=1, resources={"CPU": 10_000})
    return [
        node_pb2.ClientMessage(register=node_pb2.Register(kind=node_pb2.Register.DRIVER, pid=os.getpid(),
                                                          job_id=job.binary())),
        node_pb2.ClientMessage(export_function=node_pb2.ExportFunction(function=lineage_pb2.FunctionRecord(
            function_id=function_id, name="touch", body=body))),
        node_pb2.ClientMessage(submit_tasks=node_pb2.SubmitTasks(specs=[spec])),
    ]


def _session_call(address: str, token: str | None, messages):
    channel = make_channel(address, token)
    stub = node_pb2_grpc.NodeManagerStub(channel)

    def requests():
        yield from messages
        time.sleep(CANARY_WAIT_S + 3)  # keep the stream open while the task would run

    return channel, stub.Session(requests())


@pytest.mark.timeout(60)
def test_s1_default_cluster_listens_on_loopback_only(cluster):
    listening = []
    for pid in cluster_pids(cluster):
        try:
            listening += [(pid, c.laddr) for c in psutil.Process(pid).net_connections(kind="inet")
                          if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            pass
    assert len(listening) >= 6  # coordinator, replica, scheduler, 3 node managers
    assert all(_loopback(addr.ip) for _, addr in listening), listening


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


@pytest.mark.timeout(60)
def test_s1_non_loopback_bind_without_token_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="without a cluster token"):
        check_bind("0.0.0.0", None)
    empty = tmp_path / "token"
    empty.write_text("")
    for argv in ([sys.executable, "-m", "lineagerun.scheduler", "--session-dir", str(tmp_path), "--control-store",
                  "127.0.0.1:1", "--token-file", str(empty), "--host", "0.0.0.0"],
                 [sys.executable, "-m", "lineagerun.node", "--session-dir", str(tmp_path), "--control-store",
                  "127.0.0.1:1", "--token-file", str(empty), "--num-cpus", "1", "--host", "0.0.0.0"]):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, start_new_session=True)
        assert out.returncode == 2, (argv, out.stderr[-1000:])
        assert "token" in out.stderr


@pytest.mark.timeout(90)
@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
def test_s2_node_manager_refuses_and_never_unpickles(cluster, tmp_path, token):
    canary = str(tmp_path / "canary")
    node = cluster.worker_nodes[0]
    channel, call = _session_call(node.address, token, _canary_messages(canary))
    with pytest.raises(grpc.RpcError) as caught:
        next(iter(call))
    assert isinstance(from_rpc_error(caught.value), AuthenticationError)
    channel.close()
    time.sleep(CANARY_WAIT_S)
    assert not os.path.exists(canary)


@pytest.mark.timeout(90)
def test_s2_same_payload_with_the_token_runs(cluster, tmp_path):
    """The control: the messages above are dangerous when authenticated."""
    canary = str(tmp_path / "canary")
    channel, call = _session_call(cluster.worker_nodes[1].address, cluster.token, _canary_messages(canary))
    try:
        first = next(iter(call))
        assert first.WhichOneof("kind") == "registered"
        deadline = time.monotonic() + 30
        while not os.path.exists(canary) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.exists(canary)
    finally:
        call.cancel()
        channel.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
def test_s2_scheduler_and_object_manager_refuse(cluster, token):
    with make_channel(cluster.scheduler_address, token) as channel:
        stub = scheduler_pb2_grpc.GlobalSchedulerStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ClusterView(scheduler_pb2.ClusterViewRequest(), timeout=10)
        assert isinstance(from_rpc_error(caught.value), AuthenticationError)
    with make_channel(cluster.head_node.address, token) as channel:
        stub = object_transfer_pb2_grpc.ObjectManagerStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Pull(object_transfer_pb2.PullRequest(object_id=b"\x01" * 28), timeout=10))
        assert isinstance(from_rpc_error(caught.value), AuthenticationError)
