"""The object table's multi-node bookkeeping: copies on other nodes, pulled
copies, waits that do not fetch, node deaths; and the peer location payload."""

from __future__ import annotations

import asyncio

import pytest

from lineagerun.node.object_table import NodeObjectStore, ObjectTable, RemoteCopy
from lineagerun.node.peers import location_of, location_payload
from lineagerun.objects import new_session_id
from lineagerun.rpc import node_pb2

OID = b"\x11" * 28
OTHER = b"\x22" * 28
NODE_B = b"\xbb" * 28
COPY = RemoteCopy("127.0.0.1:1111", NODE_B, 4096, False, (OTHER,))


@pytest.fixture
def table():
    store = NodeObjectStore(new_session_id(), 1 << 20)
    available = []
    yield ObjectTable(store, available.append), available
    store.close()


def pulled_into(store, object_id: bytes, size: int) -> None:
    """What ObjectPuller does: reserve, write, seal."""
    path = store.create(object_id, size, "test:pull")
    with open(path, "r+b") as f:
        f.write(b"\x07" * size)
    store.seal(object_id)
    store.release("test:pull")


def test_remote_copy_is_known_but_not_ready(table):
    objects, available = table
    assert objects.add_remote(OID, COPY)
    assert not objects.add_remote(OID, COPY)  # the same holder twice
    assert objects.is_known(OID) and not objects.is_ready(OID)
    assert objects.remote_copies(OID) == [COPY]
    assert available == []


def test_pulled_copy_becomes_ready_and_eviction_reverts_to_remote(table):
    objects, available = table
    objects.add_remote(OID, COPY)
    pulled_into(objects.store, OID, 4096)
    objects.add_pulled(OID, 4096, False, (OTHER,))
    assert objects.is_ready(OID) and available == [OID]
    payload = objects.result(OID).payload
    assert payload.size_bytes == 4096 and list(payload.nested_object_ids) == [OTHER]
    objects.evicted(OID)  # a pulled copy is not the only one: back to remote, not lost
    assert not objects.is_ready(OID) and objects.remote_copies(OID) == [COPY]


def test_node_death_loses_objects_with_no_other_copy(table):
    objects, _ = table
    objects.add_remote(OID, COPY)
    objects.add_remote(OTHER, COPY)
    objects.add_remote(OTHER, RemoteCopy("127.0.0.1:2222", b"\xcc" * 28, 4096))
    assert objects.drop_remote_node(NODE_B) == [OID]
    assert objects.remote_copies(OTHER)[0].address == "127.0.0.1:2222"


def test_wait_without_fetch_counts_remote_copies(table):
    objects, _ = table

    async def scenario():
        fetching, not_fetching = [], []
        assert not objects.wait([OID], 1, -1, fetching.append, fetch_local=True)
        assert not objects.wait([OID], 1, -1, not_fetching.append, fetch_local=False)
        assert objects.waited_for(OID)  # the fetching wait wants it here
        objects.add_remote(OID, COPY)
        assert not_fetching == [[OID]] and fetching == []
        objects.add_payload(OID, node_pb2.ObjectPayload(inline=b"v", size_bytes=1))
        assert fetching == [[OID]]
        assert not objects.waited_for(OID)

    asyncio.run(scenario())


def test_location_payload_round_trip():
    payload = location_payload("10.0.0.7:4321", 123, True, [OID])
    assert location_of(payload) == "10.0.0.7:4321"
    assert payload.size_bytes == 123 and payload.is_error and list(payload.nested_object_ids) == [OID]
    assert location_of(node_pb2.ObjectPayload(shm_name="lr-abcd-1122")) is None
    assert location_of(node_pb2.ObjectPayload(inline=b"@x")) is None
