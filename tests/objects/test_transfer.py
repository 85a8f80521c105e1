"""Object transfer over real gRPC on loopback, between real object stores:
a source node in a child process (or a second store in this process) and a
destination store this test owns. Every store, child process and /dev/shm
file a test makes is gone when it ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineagerun.exceptions import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    RpcTimeoutError,
    UnavailableError,
)
from lineagerun.objects import LocalObjectStore, cleanup_session, new_session_id
from lineagerun.objects.shm import session_files, session_tag
from lineagerun.objects.transfer.server import OutgoingChunk, encode_chunk
from lineagerun.objects.transfer import (
    ObjectManagerServicer,
    ObjectPuller,
    PayloadInfo,
    token_channel_factory,
)
from lineagerun.rpc import object_transfer_pb2 as pb
from lineagerun.rpc import object_transfer_pb2_grpc as pb_grpc
from lineagerun.transport.auth import call_metadata, new_token
from lineagerun.transport.channels import bind, make_aio_channel, make_aio_server
from lineagerun.transport.errors import from_rpc_error

TOKEN = new_token()
CAPACITY_BYTES = 512 * 1024 * 1024
SMALLEST_CHUNK_BYTES = 4096


def oid(i: int) -> bytes:
    return bytes([i]) * 28


def payload(size_bytes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size_bytes, dtype=np.uint8)


def run(coroutine):
    return asyncio.run(coroutine)


@contextlib.contextmanager
def store_session():
    session_id = new_session_id()
    store = LocalObjectStore(session_id, CAPACITY_BYTES)
    try:
        yield store
    finally:
        store.close()
        cleanup_session(session_id)
        assert session_tag(session_id) not in session_files(), "shared-memory files left behind"


class SourceNode:
    """A store served by ObjectManagerServicer on this test's event loop."""

    def __init__(self, store, token=TOKEN, servicer=None):
        self.store = store
        self.servicer = servicer or ObjectManagerServicer(store)
        self.server = make_aio_server(token)
        self.servicer.add_to_server(self.server)
        self.port = bind(self.server, "127.0.0.1", 0, token)
        self.address = f"127.0.0.1:{self.port}"

    async def __aenter__(self):
        await self.server.start()
        return self

    async def __aexit__(self, *exc_info):
        await self.server.stop(0)


@contextlib.asynccontextmanager
async def puller_for(store, token=TOKEN, **options):
    puller = ObjectPuller(store, token_channel_factory(token), token=token, **options)
    try:
        yield puller
    finally:
        await puller.close()


def assert_no_partial_file(store, object_id):
    path = os.path.join(store.shm_dir, f"lr-{session_tag(store.session_id)}-{object_id.hex()}.tmp")
    assert not os.path.exists(path), "a failed pull left its reserved file behind"


# --------------------------------------------------- a source in a child process

_CHILD_SOURCE = r"""
import asyncio, sys
import numpy as np
from lineagerun.objects import LocalObjectStore
from lineagerun.objects.transfer import ObjectManagerServicer, PayloadInfo
from lineagerun.transport.channels import bind, make_aio_server

async def main(session_id, token, size_bytes):
    array = np.random.default_rng(0).integers(0, 256, size_bytes, dtype=np.uint8)
    with LocalObjectStore(session_id, size_bytes + (64 << 20)) as store:
        store.put(bytes([1]) * 28, array)
        del array
        info = {bytes([1]) * 28: PayloadInfo(False, (bytes([9]) * 28,))}
        server = make_aio_server(token)
        ObjectManagerServicer(store, payload_info=info.get).add_to_server(server)
        port = bind(server, "127.0.0.1", 0, token)
        await server.start()
        print(port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop(0)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@contextlib.contextmanager
def child_source(size_bytes: int):
    """A source node in another process holding payload(size_bytes) as oid(1)."""
    session_id = new_session_id()
    child = subprocess.Popen([sys.executable, "-c", _CHILD_SOURCE, session_id, TOKEN, str(size_bytes)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = child.stdout.readline()
        assert line.strip().isdigit(), f"source process did not start (exit code {child.poll()})"
        yield child, f"127.0.0.1:{int(line)}"
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        child.stdin.close()
        child.stdout.close()
        cleanup_session(session_id)  # a SIGKILLed owner cannot clean its own files
        assert session_tag(session_id) not in session_files()


@pytest.mark.timeout(60)
def test_100mb_array_from_another_process_arrives_bit_identical_and_reads_zero_copy():
    size_bytes = 100 * 1000 * 1000
    with child_source(size_bytes) as (_child, address), store_session() as destination:
        async def scenario():
            async with puller_for(destination) as puller:
                return await puller.pull(oid(1), [address])

        pulled = run(scenario())
        assert pulled.from_address == address
        assert pulled.nested_object_ids == (oid(9),) and pulled.is_error is False
        value = destination.get(oid(1))
        assert not value.flags.writeable
        base = value
        while not isinstance(base, memoryview):
            base = base.base
        mapping = np.frombuffer(base.obj, np.uint8)
        assert np.shares_memory(value, mapping), "the value is a copy, not a view of the shared-memory file"
        assert pulled.size_bytes == mapping.nbytes
        assert np.array_equal(value, payload(size_bytes))
        del value, base, mapping


@pytest.mark.timeout(60)
def test_source_killed_mid_transfer_is_resumed_from_the_next_source():
    size_bytes = 40 * 1000 * 1000
    expected = payload(size_bytes)
    with child_source(size_bytes) as (child, doomed_address), store_session() as spare, \
            store_session() as destination:
        spare.put(oid(1), expected)

        async def scenario():
            async with SourceNode(spare) as spare_node, puller_for(destination,
                                                                   chunk_size_bytes=64 * 1024) as puller:
                # Connect to the spare first: under load a connection made
                # while this loop is busy receiving can miss its deadline.
                assert await puller.has(spare_node.address, [oid(1)]) == [spare.get_buffer(oid(1)).nbytes]
                pull = puller.pull(oid(1), [doomed_address, spare_node.address])
                while puller.stats().bytes_received_total == 0:
                    await asyncio.sleep(0.001)
                os.killpg(child.pid, signal.SIGKILL)
                pulled = await pull
                return pulled, spare_node.address, spare_node.servicer.bytes_sent_total, puller.stats()

        pulled, spare_address, spare_sent_bytes, stats = run(scenario())
        assert pulled.from_address == spare_address
        assert stats.transfers_started_total == 2
        assert 0 < spare_sent_bytes < pulled.size_bytes, "the second source did not resume at the offset reached"
        assert np.array_equal(destination.get(oid(1)), expected)


@pytest.mark.timeout(30)
def test_only_source_stopping_mid_transfer_fails_with_a_typed_error_and_frees_the_reservation():
    with store_session() as source, store_session() as destination:
        source.put(oid(1), payload(8 * 1000 * 1000))

        async def scenario():
            async with SourceNode(source) as node, puller_for(destination, chunk_size_bytes=4096) as puller:
                pull = puller.pull(oid(1), [node.address])
                while puller.stats().bytes_received_total == 0:
                    await asyncio.sleep(0.001)
                await node.server.stop(0)
                with pytest.raises(UnavailableError) as failure:
                    await pull
                return str(failure.value)

        message = run(scenario())
        assert oid(1).hex() in message and "127.0.0.1" in message
        assert not destination.contains(oid(1))
        assert destination.stats().used_bytes == 0
        assert_no_partial_file(destination, oid(1))


# ------------------------------------------------------------------ sharing


@pytest.mark.timeout(30)
def test_concurrent_pulls_of_one_object_share_one_transfer():
    with store_session() as source, store_session() as destination:
        expected = payload(3 * 1000 * 1000, seed=2)
        source.put(oid(2), expected)

        async def scenario():
            async with SourceNode(source) as node, puller_for(destination) as puller:
                results = await asyncio.gather(*(puller.pull(oid(2), [node.address]) for _ in range(5)))
                return results, node.servicer.streams_started_total, puller.stats()

        results, streams, stats = run(scenario())
        assert streams == 1 and stats.transfers_started_total == 1
        assert len({r.size_bytes for r in results}) == 1 and stats.pulls_completed_total == 1
        assert np.array_equal(destination.get(oid(2)), expected)
        assert source.stats().pinned_bytes == 0, "the source kept its pin after the stream"


@pytest.mark.timeout(30)
def test_pull_of_an_object_already_local_makes_no_transfer():
    with store_session() as destination:
        destination.put(oid(3), payload(200_000))

        async def scenario():
            async with puller_for(destination) as puller:
                return await puller.pull(oid(3), ["127.0.0.1:1"]), puller.stats()

        pulled, stats = run(scenario())
        assert pulled.from_address is None and pulled.size_bytes > 200_000
        assert stats.transfers_started_total == 0


@pytest.mark.timeout(30)
def test_transfers_beyond_the_bound_wait_and_all_complete():
    with store_session() as source, store_session() as destination:
        for i in range(1, 6):
            source.put(oid(i), payload(300_000, seed=i))

        async def scenario():
            async with SourceNode(source) as node, puller_for(destination, transfers_max=2) as puller:
                pulls = [puller.pull(oid(i), [node.address]) for i in range(1, 6)]
                stats = puller.stats()
                await asyncio.gather(*pulls)
                return stats, node.servicer.streams_started_total

        stats_while_starting, streams = run(scenario())
        assert stats_while_starting.transfers_active == 2 and stats_while_starting.pulls_waiting == 3
        assert streams == 5
        for i in range(1, 6):
            assert np.array_equal(destination.get(oid(i)), payload(300_000, seed=i))


# ------------------------------------------------------------------ failures


@pytest.mark.timeout(30)
def test_missing_object_is_not_found_after_asking_every_source():
    with store_session() as source_a, store_session() as source_b, store_session() as destination:
        async def scenario():
            async with SourceNode(source_a) as a, SourceNode(source_b) as b, puller_for(destination) as puller:
                with pytest.raises(NotFoundError) as failure:
                    await puller.pull(oid(4), [a.address, b.address])
                return str(failure.value), a.address, b.address

        message, address_a, address_b = run(scenario())
        assert address_a in message and address_b in message
        assert_no_partial_file(destination, oid(4))


@pytest.mark.timeout(30)
def test_wrong_token_is_refused():
    with store_session() as source, store_session() as destination:
        source.put(oid(5), payload(200_000))

        async def scenario():
            async with SourceNode(source) as node:
                async with puller_for(destination, token="not-the-cluster-token") as puller:
                    with pytest.raises(AuthenticationError):
                        await puller.pull(oid(5), [node.address])
                async with make_aio_channel(node.address, None) as channel:
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await pb_grpc.ObjectManagerStub(channel).Has(pb.HasRequest(object_ids=[oid(5)]))
                    assert isinstance(from_rpc_error(refused.value), AuthenticationError)
                return node.servicer.streams_started_total

        assert run(scenario()) == 0
        assert not destination.contains(oid(5))


@pytest.mark.timeout(30)
def test_source_that_is_down_is_skipped_for_the_next_one():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down_address = f"127.0.0.1:{probe.getsockname()[1]}"  # nothing listens once it is closed
    with store_session() as source, store_session() as destination:
        expected = payload(300_000, seed=3)
        source.put(oid(3), expected)

        async def scenario():
            async with SourceNode(source) as node, puller_for(destination) as puller:
                with pytest.raises(UnavailableError, match=down_address):
                    await puller.pull(oid(3), [down_address])
                pulled = await puller.pull(oid(3), [down_address, node.address])
                return pulled, node.address, puller.stats()

        pulled, address, stats = run(scenario())
        assert pulled.from_address == address and stats.transfers_started_total == 3
        assert np.array_equal(destination.get(oid(3)), expected)


class _SilentServicer(pb_grpc.ObjectManagerServicer):
    """A peer that accepts the stream and then sends nothing (paused node)."""

    async def Pull(self, request, context):
        await asyncio.sleep(60)
        yield pb.ObjectChunk()


@pytest.mark.timeout(30)
def test_stalled_source_times_out_and_the_next_source_is_used():
    with store_session() as source, store_session() as destination:
        expected = payload(500_000, seed=6)
        source.put(oid(6), expected)

        async def scenario():
            silent = make_aio_server(TOKEN)
            pb_grpc.add_ObjectManagerServicer_to_server(_SilentServicer(), silent)
            silent_address = f"127.0.0.1:{bind(silent, '127.0.0.1', 0, TOKEN)}"
            await silent.start()
            try:
                async with puller_for(destination, stall_timeout_ms=300) as puller:
                    with pytest.raises(RpcTimeoutError):
                        await puller.pull(oid(6), [silent_address])
                    async with SourceNode(source) as node:
                        return await puller.pull(oid(6), [silent_address, node.address]), node.address
            finally:
                await silent.stop(0)

        pulled, address = run(scenario())
        assert pulled.from_address == address and np.array_equal(destination.get(oid(6)), expected)


@pytest.mark.timeout(30)
def test_object_deleted_at_the_source_mid_transfer_is_still_sent_whole():
    with store_session() as source, store_session() as destination:
        expected = payload(4 * 1000 * 1000, seed=7)
        source.put(oid(7), expected)

        async def scenario():
            async with SourceNode(source) as node, puller_for(destination, chunk_size_bytes=4096) as puller:
                pull = puller.pull(oid(7), [node.address])
                while puller.stats().bytes_received_total == 0:
                    await asyncio.sleep(0.001)
                assert source.stats().pinned_bytes > 0, "the stream does not pin the object it sends"
                source.delete(oid(7))
                assert not source.contains(oid(7))
                return await pull

        run(scenario())
        assert np.array_equal(destination.get(oid(7)), expected)
        assert source.stats().object_count == 0, "the deleted object was not removed after the stream"


@pytest.mark.timeout(30)
def test_closing_the_puller_mid_transfer_fails_callers_and_gives_back_the_reservation():
    with store_session() as source, store_session() as destination:
        source.put(oid(9), payload(8 * 1000 * 1000))

        async def scenario():
            async with SourceNode(source) as node:
                puller = ObjectPuller(destination, token_channel_factory(TOKEN), token=TOKEN,
                                      chunk_size_bytes=4096)
                pull = puller.pull(oid(9), [node.address])
                while puller.stats().bytes_received_total == 0:
                    await asyncio.sleep(0.001)
                await puller.close()
                with pytest.raises(UnavailableError, match="closed"):
                    await pull
                with pytest.raises(ValueError, match="closed"):
                    puller.pull(oid(9), [node.address])
                for _ in range(100):  # the source notices the cancelled stream
                    if node.servicer.streams_active == 0:
                        break
                    await asyncio.sleep(0.01)
                return node.servicer.streams_active

        assert run(scenario()) == 0
        assert destination.stats().used_bytes == 0 and source.stats().pinned_bytes == 0
        assert_no_partial_file(destination, oid(9))


# ----------------------------------------------------------- wire details


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value_bytes", [1, SMALLEST_CHUNK_BYTES - 200, SMALLEST_CHUNK_BYTES,
                                         3 * SMALLEST_CHUNK_BYTES + 1, 150_001])
def test_objects_of_sizes_around_chunk_boundaries_arrive_whole(value_bytes):
    with store_session() as source, store_session() as destination:
        expected = payload(value_bytes, seed=value_bytes)
        source.put(oid(8), expected)

        async def scenario():
            async with SourceNode(source) as node, \
                    puller_for(destination, chunk_size_bytes=SMALLEST_CHUNK_BYTES) as puller:
                return await puller.pull(oid(8), [node.address])

        pulled = run(scenario())
        assert np.array_equal(destination.get(oid(8)), expected)
        assert pulled.size_bytes == source.get_buffer(oid(8)).nbytes


@pytest.mark.timeout(30)
def test_pull_stream_chunks_offsets_and_errors_on_the_wire():
    with store_session() as source:
        source.put(oid(10), payload(10_000))
        size_bytes = source.get_buffer(oid(10)).nbytes
        info = {oid(10): PayloadInfo(True, (oid(11), oid(12)))}

        async def scenario():
            servicer = ObjectManagerServicer(source, payload_info=info.get)
            async with SourceNode(source, servicer=servicer) as node, \
                    make_aio_channel(node.address, TOKEN) as channel:
                stub = pb_grpc.ObjectManagerStub(channel)

                async def pull(**fields):
                    call = stub.Pull(pb.PullRequest(**fields), metadata=call_metadata(TOKEN))
                    try:
                        return [message async for message in call]
                    except grpc.aio.AioRpcError as exc:
                        raise from_rpc_error(exc) from None

                chunks = await pull(object_id=oid(10), chunk_size_bytes=1)  # raised to the minimum
                assert [c.offset for c in chunks] == [0, 4096, 8192]
                assert b"".join(c.data for c in chunks) == bytes(source.get_buffer(oid(10)))
                assert chunks[0].info.size_bytes == size_bytes and chunks[0].info.is_error
                assert list(chunks[0].info.nested_object_ids) == [oid(11), oid(12)]
                assert not any(c.HasField("info") for c in chunks[1:])
                (last,) = await pull(object_id=oid(10), offset=size_bytes)
                assert last.info.size_bytes == size_bytes and last.data == b""
                resumed = await pull(object_id=oid(10), offset=5000, chunk_size_bytes=8192)
                assert [c.offset for c in resumed] == [5000] and len(resumed[0].data) == size_bytes - 5000
                with pytest.raises(BadRequestError, match="past its end"):
                    await pull(object_id=oid(10), offset=size_bytes + 1)
                with pytest.raises(BadRequestError):
                    await pull(object_id=b"")
                with pytest.raises(NotFoundError):
                    await pull(object_id=oid(13))
                has = await stub.Has(pb.HasRequest(object_ids=[oid(10), oid(13)]))
                assert list(has.size_bytes) == [size_bytes, 0]
            return servicer

        servicer = run(scenario())
        assert servicer.streams_active == 0
        assert source.stats().pinned_bytes == 0


@settings(max_examples=200, deadline=None)
@given(offset=st.integers(0, 2**63), data=st.binary(max_size=300), with_info=st.booleans(),
       size_bytes=st.integers(0, 2**40), is_error=st.booleans(),
       nested=st.lists(st.binary(min_size=1, max_size=28), max_size=3))
def test_encoded_chunks_parse_as_protobuf_object_chunks(offset, data, with_info, size_bytes, is_error, nested):
    info = pb.TransferredObjectInfo(size_bytes=size_bytes, is_error=is_error, nested_object_ids=nested)
    wire = encode_chunk(OutgoingChunk(offset, memoryview(data), info if with_info else None))
    parsed = pb.ObjectChunk.FromString(wire)
    assert parsed.offset == offset and parsed.data == data and parsed.HasField("info") == with_info
    if with_info:
        assert parsed.info == info


def test_bad_arguments_are_refused_with_clear_errors():
    with store_session() as destination:
        async def scenario():
            async with puller_for(destination) as puller:
                with pytest.raises(ValueError, match="non-empty bytes"):
                    puller.pull("abc", ["127.0.0.1:1"])
                with pytest.raises(ValueError, match="not one string"):
                    puller.pull(oid(1), "127.0.0.1:1")
                with pytest.raises(NotFoundError, match="no known location"):
                    await puller.pull(oid(1), [])
            with pytest.raises(ValueError, match="chunk_size_bytes"):
                ObjectPuller(destination, token_channel_factory(TOKEN), chunk_size_bytes=0)

        run(scenario())
