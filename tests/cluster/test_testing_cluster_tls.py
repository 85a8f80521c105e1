"""``lineagerun.testing.Cluster(tls=True)``: a throwaway certificate, every
process serving TLS, a driver joining with ``init(address=)`` runs a task on
another node (its argument pulled over TLS) and an actor call; plaintext is
refused."""

from __future__ import annotations

import socket
import ssl

import grpc
import numpy as np
import pytest

import lineagerun
from lineagerun.exceptions import UnavailableError
from lineagerun.rpc import coordinator_pb2, coordinator_pb2_grpc
from lineagerun.testing import Cluster
from lineagerun.transport import tls
from lineagerun.transport.channels import make_channel
from lineagerun.transport.errors import from_rpc_error



@lineagerun.remote(resources={"far": 1})
def far_sum(array):
    return float(array.sum())


@lineagerun.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n


def _speaks_tls(address: str, ca_file: str) -> bool:
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = False
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw) as wrapped:
            return wrapped.version().startswith("TLS")


@pytest.mark.timeout(240)
def test_a_tls_cluster_runs_tasks_and_actors_and_refuses_plaintext():
    lineagerun.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1}, tls=True)
    try:
        far = cluster.add_node(num_cpus=1, resources={"far": 1})
        assert (cluster.session_dir / tls.SESSION_FILE_NAME).exists()
        for address in (cluster.address, cluster.scheduler_address, cluster.head_node.address, far.address):
            assert _speaks_tls(address, cluster.tls.ca_file), address
        request = coordinator_pb2.GetConfigRequest()
        with make_channel(cluster.address, cluster.token) as channel:  # plaintext: no handshake, refused
            with pytest.raises(grpc.RpcError) as caught:
                coordinator_pb2_grpc.ChainCoordinatorStub(channel).GetConfig(request, timeout=10)
        assert isinstance(from_rpc_error(caught.value), UnavailableError)
        cluster.connect()
        assert lineagerun.get(far_sum.remote(lineagerun.put(np.ones(1 << 18))), timeout=90) == float(1 << 18)
        counter = Counter.remote()
        assert lineagerun.get([counter.add.remote(2), counter.add.remote(3)], timeout=90) == [2, 5]
    finally:
        lineagerun.shutdown()
        cluster.shutdown()
    assert tls.process_tls() is None  # the driver's TLS setting went with it
    with pytest.raises(lineagerun.exceptions.ConfigurationError, match="chaos=True, tls=True"):
        Cluster(chaos=True, tls=True)
