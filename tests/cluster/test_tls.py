"""A cluster started with ``lineagerun start --head --tls-cert --tls-key``
runs every TCP link over TLS (control store, scheduler, node managers,
object transfer), with the token still required: a task and an actor call
work end to end; every listening TCP port of the cluster speaks TLS; a
plaintext client and a client trusting another CA are refused."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from lineagerun.exceptions import AuthenticationError, UnavailableError
from lineagerun.testing.tls_certs import make_certificate
from lineagerun.transport import tls
from lineagerun.transport.errors import from_rpc_error

from tests.cluster.conftest import assert_gone
from tests.cluster.test_cli import CLI, run, session_pids

DRIVER = """
import sys
import lineagerun as ray
import numpy as np

ray.init(address=sys.argv[1])

@ray.remote(resources={"far": 1})
def far_sum(a):
    return float(a.sum()), ray.get_runtime_context().get_node_id()

@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n

total, node = ray.get(far_sum.remote(ray.put(np.ones(1 << 20))), timeout=60)
counter = Counter.remote()
ray.get(counter.add.remote(2), timeout=60)
print("RESULT", total, node, ray.get(counter.add.remote(3), timeout=60), flush=True)
ray.shutdown()
"""


def listening_ports(pids: set[int]) -> set[int]:
    ports = set()
    for pid in pids:
        try:
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    ports.add(conn.laddr.port)
        except psutil.Error:
            pass
    return ports


def tls_handshake(port: int, ca: Path) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped:
            return wrapped.version()


@pytest.mark.timeout(240)
def test_tls_cluster_every_link(tmp_path):
    import grpc

    from lineagerun.rpc import coordinator_pb2, coordinator_pb2_grpc
    from lineagerun.transport.channels import make_channel

    cert, key = make_certificate(tmp_path, "cluster")
    other_ca, _ = make_certificate(tmp_path, "impostor")
    root = tmp_path / "sessions"
    env = dict(os.environ, LINEAGERUN_SESSION_ROOT=str(root))
    try:
        out = run(["start", "--head", "--num-cpus", "1", "--replicas", "2", "--tls-cert", str(cert),
                   "--tls-key", str(key)], env)
        address = next(line.split()[-1] for line in out.splitlines() if "cluster address:" in line)
        session = next(root.glob("session_*"))
        assert json.loads((session / tls.SESSION_FILE_NAME).read_text())["ca"] == str(cert)
        # Joining on this machine takes the cluster's TLS files from its session.
        run(["start", "--address", address, "--num-cpus", "1", "--resources", '{"far": 1}'], env)
        status = json.loads(run(["status", "--json"], env))
        assert len([n for n in status["nodes"] if n["alive"]]) == 2, status
        assert sorted(status["chains"][0]["chain"]) == ["s0r0", "s0r1"], status  # the control store, over TLS
        far = next(n for n in status["nodes"] if "far" in n["total"])

        done = subprocess.run([sys.executable, "-c", DRIVER, address], capture_output=True, text=True, env=env,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
        assert line.split()[1:] == [str(float(1 << 20)), far["node_id"], "5"], line

        # Every TCP listener of the cluster (coordinator, 2 replicas, scheduler, 2 node managers) is TLS.
        ports = listening_ports(session_pids(root))
        assert len(ports) >= 6, ports
        for port in ports:
            assert tls_handshake(port, cert).startswith("TLSv1"), port

        token = (session / "token").read_text()
        request = coordinator_pb2.GetConfigRequest()
        with make_channel(address, token, root_cert=cert.read_bytes()) as channel:  # the right CA: served
            assert coordinator_pb2_grpc.ChainCoordinatorStub(channel).GetConfig(request, timeout=10).shards
        with make_channel(address, token, root_cert=other_ca.read_bytes()) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                coordinator_pb2_grpc.ChainCoordinatorStub(channel).GetConfig(request, timeout=10)
        error = from_rpc_error(caught.value, what="coordinator GetConfig")
        assert isinstance(error, AuthenticationError)
        assert "not signed by the CA this process trusts" in str(error)
        with make_channel(address, token) as channel:  # plaintext
            with pytest.raises(grpc.RpcError) as caught:
                coordinator_pb2_grpc.ChainCoordinatorStub(channel).GetConfig(request, timeout=10)
        assert isinstance(from_rpc_error(caught.value), UnavailableError)
        with make_channel(far["address"], "wrong-token", root_cert=cert.read_bytes()) as channel:
            with pytest.raises(grpc.RpcError) as caught:  # TLS does not replace the token
                coordinator_pb2_grpc.ChainCoordinatorStub(channel).GetConfig(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

        run(["stop"], env)
    finally:
        subprocess.run(CLI + ["stop", "--force"], capture_output=True, env=env, timeout=60)
        assert_gone(session_pids(root))


def test_tls_files_are_checked_with_clear_errors(tmp_path):
    from lineagerun.exceptions import ConfigurationError

    cert, key = make_certificate(tmp_path, "cluster")
    with pytest.raises(ConfigurationError, match="go together"):
        tls.TlsConfig.load(cert, None)
    with pytest.raises(ConfigurationError, match="cannot read the TLS certificate"):
        tls.TlsConfig.load(tmp_path / "missing.crt", key)
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="is not PEM"):
        tls.TlsConfig.load(cert, key, tmp_path / "junk.pem")
    config = tls.TlsConfig.load(cert, key)
    assert config.ca_file == str(cert) and config.can_serve
    assert config.client_only().can_serve is False
    env = tls.child_env(config, base={tls.CA_ENV: "/stale", "PATH": "/bin"})
    assert env == {"PATH": "/bin", tls.CA_ENV: str(cert), tls.CERT_ENV: str(cert), tls.KEY_ENV: str(key)}
    assert tls.child_env(None, base=env) == {"PATH": "/bin"}


def test_process_tls_setting_drives_bind_and_channels(tmp_path):
    """No TLS argument anywhere: the process setting decides, as in the
    control store's processes."""
    import grpc

    from lineagerun.rpc import coordinator_pb2, coordinator_pb2_grpc
    from lineagerun.transport.channels import bind, make_channel, make_server

    cert, key = make_certificate(tmp_path, "cluster")
    tls.configure_process_tls(tls.TlsConfig.load(cert, key))
    server = make_server("tok")
    try:
        port = bind(server, "127.0.0.1", 0, "tok")
        server.start()
        assert tls_handshake(port, cert).startswith("TLSv1")
        with make_channel(f"127.0.0.1:{port}", "tok") as channel:  # checked against the process's CA
            with pytest.raises(grpc.RpcError) as caught:
                coordinator_pb2_grpc.ChainCoordinatorStub(channel).GetConfig(
                    coordinator_pb2.GetConfigRequest(), timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED  # reached the server
    finally:
        tls.reset_process_tls()
        server.stop(0)
