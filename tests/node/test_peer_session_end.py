"""A peer session that ends after its registration (a partition dropping the
stream) must not look ready: cluster_link._forward would record its tasks as
forwarded, fail to send them, and wait for results that never come (the 90 s
stall of rt-network after node 1's isolation)."""

from __future__ import annotations

import asyncio

import pytest

from lineagerun.node.peers import PeerConnection
from lineagerun.rpc import node_pb2, node_pb2_grpc
from lineagerun.transport.channels import bind, make_aio_server

TOKEN = "peer-session-end-test"
PEER_NODE_ID = b"p" * 28


class _RegisterThenEnd(node_pb2_grpc.NodeManagerServicer):
    """Accepts the registration, then ends the stream (the peer's side of a
    dropped connection)."""

    async def Session(self, request_iterator, context):
        await request_iterator.__anext__()  # Register
        yield node_pb2.NodeMessage(registered=node_pb2.Registered(node_id=PEER_NODE_ID))


async def _session_that_ended() -> tuple[PeerConnection, list]:
    server = make_aio_server(TOKEN)
    node_pb2_grpc.add_NodeManagerServicer_to_server(_RegisterThenEnd(), server)
    port = bind(server, "127.0.0.1", 0, TOKEN)
    await server.start()
    closed: list = []
    try:
        peer = PeerConnection(f"127.0.0.1:{port}", TOKEN, b"o" * 28, on_results=lambda p, r: None,
                              on_closed=closed.append)
        await asyncio.wait_for(asyncio.shield(peer._task), 10)  # the session is over
        return peer, closed
    finally:
        await server.stop(None)


@pytest.mark.timeout(30)
def test_ready_raises_once_the_registered_session_has_ended():
    async def main() -> None:
        peer, closed = await _session_that_ended()
        try:
            assert peer.node_id == PEER_NODE_ID  # it did register ...
            assert peer.closed and closed == [peer]  # ... and then ended
            with pytest.raises(ConnectionError, match="closed the session"):
                await peer.ready()
            assert not peer.send(node_pb2.ClientMessage())
        finally:
            await peer.close()

    asyncio.run(main())
