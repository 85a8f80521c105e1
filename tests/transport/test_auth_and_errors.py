"""Token enforcement and typed errors across a real gRPC server (S2 basics)."""

import asyncio

import grpc
import pytest

from lineagerun.exceptions import AuthenticationError, ConfigurationError, NotHeadError
from lineagerun.rpc import common_pb2, coordinator_pb2, coordinator_pb2_grpc
from lineagerun.transport import channels, errors

TOKEN = "t" * 64


class _Coordinator(coordinator_pb2_grpc.ChainCoordinatorServicer):
    def __init__(self):
        self.calls = 0

    def GetConfig(self, request, context):
        self.calls += 1
        return common_pb2.ClusterConfig(cluster_id="c1", num_shards=1)

    def Status(self, request, context):
        errors.abort(context, NotHeadError("replica s0r1 is not the head of shard 0"))


@pytest.fixture
def server():
    servicer = _Coordinator()
    srv = channels.make_server(TOKEN)
    coordinator_pb2_grpc.add_ChainCoordinatorServicer_to_server(servicer, srv)
    port = channels.bind(srv, "127.0.0.1", 0, TOKEN)
    srv.start()
    yield f"127.0.0.1:{port}", servicer
    srv.stop(None)


def _call(address, token, method="GetConfig"):
    with channels.make_channel(address, token) as ch:
        stub = coordinator_pb2_grpc.ChainCoordinatorStub(ch)
        try:
            if method == "GetConfig":
                return getattr(stub, method)(coordinator_pb2.GetConfigRequest(), timeout=5)
            return getattr(stub, method)(coordinator_pb2.CoordinatorStatusRequest(), timeout=5)
        except grpc.RpcError as err:
            raise errors.from_rpc_error(err) from None


def test_right_token_is_served(server):
    address, servicer = server
    assert _call(address, TOKEN).cluster_id == "c1"
    assert servicer.calls == 1


@pytest.mark.parametrize("token", [None, "wrong", TOKEN[:-1]])
def test_missing_or_wrong_token_is_refused_before_the_handler(server, token):
    address, servicer = server
    with pytest.raises(AuthenticationError):
        _call(address, token)
    assert servicer.calls == 0


def test_typed_error_crosses_the_wire(server):
    address, _ = server
    with pytest.raises(NotHeadError, match="not the head"):
        _call(address, TOKEN, "Status")


def test_non_loopback_bind_without_token_is_refused():
    srv = channels.make_server(None)
    with pytest.raises(ConfigurationError, match="without a cluster token"):
        channels.bind(srv, "0.0.0.0", 0, None)


def test_aio_server_refuses_wrong_token():
    async def run():
        servicer = _Coordinator()
        srv = channels.make_aio_server(TOKEN)
        coordinator_pb2_grpc.add_ChainCoordinatorServicer_to_server(servicer, srv)
        port = channels.bind(srv, "127.0.0.1", 0, TOKEN)
        await srv.start()
        try:
            # The sync servicer method works on an aio server too (run in executor).
            async with channels.make_aio_channel(f"127.0.0.1:{port}", "bad") as ch:
                stub = coordinator_pb2_grpc.ChainCoordinatorStub(ch)
                with pytest.raises(grpc.RpcError) as info:
                    await stub.GetConfig(coordinator_pb2.GetConfigRequest(), timeout=5)
                assert isinstance(errors.from_rpc_error(info.value), AuthenticationError)
            async with channels.make_aio_channel(f"127.0.0.1:{port}", TOKEN) as ch:
                stub = coordinator_pb2_grpc.ChainCoordinatorStub(ch)
                reply = await stub.GetConfig(coordinator_pb2.GetConfigRequest(), timeout=5)
                assert reply.cluster_id == "c1"
            assert servicer.calls == 1
        finally:
            await srv.stop(None)

    asyncio.run(run())


def test_aio_channel_carries_token_on_streaming_calls():
    """grpc.aio registers an interceptor under one call kind only; a
    server-streaming call must carry the token too."""

    class _Watcher(_Coordinator):
        async def WatchConfig(self, request, context):
            for version in (1, 2):
                yield common_pb2.ClusterConfig(version=version)

    async def run():
        srv = channels.make_aio_server(TOKEN)
        coordinator_pb2_grpc.add_ChainCoordinatorServicer_to_server(_Watcher(), srv)
        port = channels.bind(srv, "127.0.0.1", 0, TOKEN)
        await srv.start()
        try:
            async with channels.make_aio_channel(f"127.0.0.1:{port}", TOKEN) as ch:
                stub = coordinator_pb2_grpc.ChainCoordinatorStub(ch)
                versions = [c.version async for c in stub.WatchConfig(coordinator_pb2.WatchConfigRequest(), timeout=5)]
            assert versions == [1, 2]
        finally:
            await srv.stop(None)

    asyncio.run(run())
