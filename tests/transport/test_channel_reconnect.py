"""A new channel to an address that refused connections a moment ago
connects at once when a server is there again: channels do not share
gRPC's process-wide subchannel pool, whose backoff after the refusals made
a new channel (a driver's ``init`` after a healed cut, a session's
reconnect) fail with the stale "Connection refused"."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from lineagerun.chaos.ports import chosen_port
from lineagerun.transport.channels import make_channel

pytestmark = pytest.mark.timeout(60)


class _Echo(grpc.GenericRpcHandler):
    def service(self, handler_call_details):
        return grpc.unary_unary_rpc_method_handler(lambda request, context: request)


def _call(channel) -> bytes:
    echo = channel.unary_unary("/test.Echo/Echo", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    return echo(b"hello", timeout=5)


def test_a_new_channel_connects_at_once_after_the_address_refused():
    address = f"127.0.0.1:{chosen_port()}"
    refused = make_channel(address, None)
    try:
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as failure:
                _call(refused)
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        server.add_generic_rpc_handlers((_Echo(),))
        server.add_insecure_port(address)
        server.start()
        fresh = make_channel(address, None)
        try:
            assert _call(fresh) == b"hello"  # no wait for the first channel's backoff
        finally:
            fresh.close()
            server.stop(None)
    finally:
        refused.close()
