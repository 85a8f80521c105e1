"""The pulling side of object transfer: the asyncio shell around
``lineagerun.core.pull_manager.PullManager``.

``ObjectPuller.pull(object_id, addresses)`` returns a future. The core
decides which source to stream from, when to resume elsewhere and who to
answer; this shell runs the streams (one grpc.aio channel per peer, cached),
writes every chunk straight into the object's reserved file in the local
store with ``pwrite`` at its offset, seals it, and resolves the futures.

Stalls: a stream that delivers nothing for ``stall_timeout_ms`` (a
SIGSTOPped or black-holed peer) is abandoned as ``RpcTimeoutError`` and the
next source is tried; a peer that is down fails at once (UNAVAILABLE).

Everything runs on one event loop: call ``pull`` and ``close`` from it.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from dataclasses import dataclass
from typing import Callable

import grpc

from lineagerun.core.pull_manager import (
    TRANSFERS_MAX,
    WAITING_PULLS_MAX,
    AbortReservation,
    CancelTransfer,
    ChunkArrived,
    CompletePull,
    FailPull,
    LocalStoreFailed,
    ObjectAlreadyLocal,
    ObjectSealed,
    PullManager,
    PullRequested,
    ReserveObject,
    SealObject,
    StartTransfer,
    TransferDone,
    TransferFailed,
    TransferHeader,
)
from lineagerun.exceptions import (
    ControlStoreUnavailableError,
    InvalidArgumentError,
    LineagerunError,
    RpcTimeoutError,
    UnavailableError,
)
from lineagerun.objects import shm
from lineagerun.objects.store import LocalObjectStore
from lineagerun.objects.transfer.server import CHUNK_SIZE_DEFAULT_BYTES, CHUNK_SIZE_MAX_BYTES
from lineagerun.rpc import object_transfer_pb2 as pb
from lineagerun.rpc import object_transfer_pb2_grpc as pb_grpc
from lineagerun.transport.auth import call_metadata
from lineagerun.transport.channels import make_aio_channel
from lineagerun.transport.errors import from_rpc_error

# A source that sends nothing for this long is treated as failed and the next
# one is tried. 10 s: far above a chunk's time on any working link (4 MiB at
# 10 MB/s is 0.4 s), short enough that a paused node does not hold up a task.
STALL_TIMEOUT_MS_DEFAULT = 10_000
# A stream that fails UNAVAILABLE before its first message (connection refused
# or a connect attempt that timed out, e.g. on a loaded machine) is retried on
# the same source this many times in all, after 50 ms, 100 ms: a dead peer
# costs 150 ms more, a peer slow to accept a connection is not written off.
CONNECT_ATTEMPTS_MAX = 3
CONNECT_RETRY_DELAY_S = 0.05
# The holder under which the puller reserves objects in the local store.
PULL_CREATOR = "lineagerun.transfer:pull"

ChannelFactory = Callable[[str], "grpc.aio.Channel"]


def token_channel_factory(token: str | None, *, root_cert: bytes | None = None) -> ChannelFactory:
    """Channels to peers that carry the cluster token on every call."""
    return lambda address: make_aio_channel(address, token, root_cert=root_cert)


@dataclass(frozen=True)
class PulledObject:
    """A pulled object, now sealed in the local store. ``from_address`` is
    None when the store already had it (then ``is_error`` and
    ``nested_object_ids`` are unknown here: the runtime has them). That
    includes an object a local process is still writing: the store refuses a
    second copy, so the caller waits for that writer's seal as for any local
    object."""

    object_id: bytes
    size_bytes: int
    is_error: bool
    nested_object_ids: tuple[bytes, ...]
    from_address: str | None


@dataclass(frozen=True)
class PullerStats:
    transfers_started_total: int
    bytes_received_total: int
    pulls_completed_total: int
    pulls_failed_total: int
    transfers_active: int
    pulls_waiting: int


class ObjectPuller:
    """Pulls objects from peers' object managers into ``local_store``.

    ``channel_factory(address)`` makes the channel to one peer (cached per
    address, closed by ``close``); ``token_channel_factory(token)`` is the
    usual one. Pass the cluster ``token`` too: it is put on every stream.
    """

    def __init__(self, local_store: LocalObjectStore, channel_factory: ChannelFactory, *,
                 transfers_max: int = TRANSFERS_MAX, waiting_pulls_max: int = WAITING_PULLS_MAX,
                 chunk_size_bytes: int = CHUNK_SIZE_DEFAULT_BYTES,
                 stall_timeout_ms: int = STALL_TIMEOUT_MS_DEFAULT, token: str | None = None):
        if stall_timeout_ms <= 0:
            raise InvalidArgumentError(f"stall_timeout_ms must be positive, got {stall_timeout_ms}")
        if not 0 < chunk_size_bytes <= CHUNK_SIZE_MAX_BYTES:
            raise InvalidArgumentError(f"chunk_size_bytes must be in 1..{CHUNK_SIZE_MAX_BYTES} (the server "
                                       f"caps it there), got {chunk_size_bytes}")
        self._store = local_store
        self._channel_factory = channel_factory
        self._core = PullManager(transfers_max=transfers_max, waiting_pulls_max=waiting_pulls_max)
        self._chunk_size_bytes = chunk_size_bytes
        self._stall_timeout_s = stall_timeout_ms / 1000
        # grpc.aio gives an interceptor implementing several call kinds only
        # the first kind (unary-unary), so the token interceptor of
        # make_aio_channel does not reach streams: Pull carries it itself.
        self._call_metadata = call_metadata(token) if token else None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tasks: dict[tuple[bytes, int], asyncio.Task] = {}
        self._fds: dict[bytes, int] = {}  # reserved files being written
        self._futures: dict[int, asyncio.Future] = {}
        self._last_requester_id = 0
        self._closed = False
        self._transfers_started_total = 0
        self._bytes_received_total = 0
        self._pulls_completed_total = 0
        self._pulls_failed_total = 0

    # ------------------------------------------------------------- API

    def pull(self, object_id: bytes, from_addresses) -> asyncio.Future:
        """A future of :class:`PulledObject`, resolved once the object is
        sealed in the local store; it fails with ``NotFoundError`` when no
        source has the object, or another ``LineagerunError`` (each source's
        failure listed) when the sources could not deliver it. Concurrent
        pulls of one object share one transfer; cancelling the returned
        future abandons only this caller's interest."""
        if self._closed:
            raise InvalidArgumentError("this ObjectPuller is closed")
        if not isinstance(object_id, bytes) or not object_id:
            raise InvalidArgumentError(f"object ids are non-empty bytes, got {object_id!r}")
        if isinstance(from_addresses, str):
            raise InvalidArgumentError("from_addresses is a list of 'host:port' strings, not one string")
        addresses = tuple(from_addresses)
        future = asyncio.get_running_loop().create_future()
        if self._store.contains(object_id) and self._core.phase_of(object_id) is None:
            future.set_result(PulledObject(object_id, self._local_size(object_id), False, (), None))
            return future
        self._last_requester_id += 1
        self._futures[self._last_requester_id] = future
        self._feed(PullRequested(object_id, addresses, self._last_requester_id))
        return future

    async def has(self, address: str, object_ids, *, timeout_ms: int = 5_000) -> list[int]:
        """Ask one peer which of ``object_ids`` it holds sealed: their sizes,
        0 for the absent ones (also connects this puller's channel to it)."""
        stub = pb_grpc.ObjectManagerStub(self._channel(address))
        try:
            reply = await stub.Has(pb.HasRequest(object_ids=list(object_ids)), timeout=timeout_ms / 1000,
                                   metadata=self._call_metadata)
        except grpc.aio.AioRpcError as exc:
            raise _transfer_error(exc, f"Has on {address}") from None
        return list(reply.size_bytes)

    def stats(self) -> PullerStats:
        return PullerStats(self._transfers_started_total, self._bytes_received_total,
                           self._pulls_completed_total, self._pulls_failed_total,
                           self._core.active_count(), self._core.waiting_count())

    async def close(self) -> None:
        """Stop every transfer, give back reservations, fail waiting callers."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for object_id in list(self._fds):
            self._close_fd(object_id)
            self._store.abort(object_id)
        for future in self._futures.values():
            if not future.done():
                future.set_exception(UnavailableError("the object puller was closed before the pull finished"))
        self._futures.clear()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    # ------------------------------------------------------ the core loop

    def _feed(self, event) -> None:
        pending = deque([event])
        while pending:
            for effect in self._core.handle(pending.popleft()):
                follow_up = self._execute(effect)
                if follow_up is not None:
                    pending.append(follow_up)

    def _execute(self, effect):
        """Carry out one effect; returns the event it leads to, if any."""
        if isinstance(effect, StartTransfer):
            self._transfers_started_total += 1
            task = asyncio.get_running_loop().create_task(self._run_transfer(effect))
            self._tasks[(effect.object_id, effect.attempt)] = task
        elif isinstance(effect, CancelTransfer):
            task = self._tasks.pop((effect.object_id, effect.attempt), None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()  # a task cancelling itself stops on its own (it checks is_current)
        elif isinstance(effect, ReserveObject):
            return self._reserve(effect)
        elif isinstance(effect, SealObject):
            return self._seal(effect.object_id)
        elif isinstance(effect, AbortReservation):
            self._close_fd(effect.object_id)
            self._store.abort(effect.object_id)
        elif isinstance(effect, CompletePull):
            self._pulls_completed_total += 1
            result = PulledObject(effect.object_id, effect.size_bytes or self._local_size(effect.object_id),
                                  effect.is_error, effect.nested_object_ids, effect.address)
            for requester_id in effect.requester_ids:
                future = self._futures.pop(requester_id)
                if not future.done():  # the caller may have cancelled it
                    future.set_result(result)
        elif isinstance(effect, FailPull):
            self._pulls_failed_total += 1
            for requester_id in effect.requester_ids:
                future = self._futures.pop(requester_id)
                if not future.done():
                    future.set_exception(effect.error)
        else:
            raise AssertionError(f"unknown effect {effect!r}")
        return None

    def _reserve(self, effect: ReserveObject):
        try:
            path = self._store.create(effect.object_id, effect.size_bytes, PULL_CREATOR)
        except Exception as exc:  # ObjectStoreFullError, a closed store, ...
            return LocalStoreFailed(effect.object_id, exc)
        if path is None:
            return ObjectAlreadyLocal(effect.object_id)
        try:
            self._fds[effect.object_id] = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            return LocalStoreFailed(effect.object_id, exc)
        return None

    def _seal(self, object_id: bytes):
        self._close_fd(object_id)
        try:
            self._store.seal(object_id)
        except Exception as exc:
            return LocalStoreFailed(object_id, exc)
        return ObjectSealed(object_id)

    def _close_fd(self, object_id: bytes) -> None:
        fd = self._fds.pop(object_id, None)
        if fd is not None:
            os.close(fd)

    def _local_size(self, object_id: bytes) -> int:
        try:
            return os.stat(shm.object_path(self._store.session_id, object_id, shm_dir=self._store.shm_dir)).st_size
        except FileNotFoundError:
            return 0

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = self._channel_factory(address)
        return channel

    # -------------------------------------------------------- one stream

    async def _run_transfer(self, start: StartTransfer) -> None:
        object_id, attempt, address = start.object_id, start.attempt, start.address
        try:
            await self._stream(start)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            self._feed(TransferFailed(object_id, attempt, address,
                                      _transfer_error(exc, f"pull of {object_id.hex()} from {address}")))
        except TimeoutError:
            self._feed(TransferFailed(object_id, attempt, address, RpcTimeoutError(
                f"pull of {object_id.hex()} from {address} stalled: nothing arrived for "
                f"{self._stall_timeout_s * 1000:.0f} ms")))
        except LineagerunError as exc:
            self._feed(TransferFailed(object_id, attempt, address, exc))
        except OSError as exc:  # writing into the local file
            self._feed(LocalStoreFailed(object_id, exc))
        finally:
            self._tasks.pop((object_id, attempt), None)

    async def _stream(self, start: StartTransfer) -> None:
        stub = pb_grpc.ObjectManagerStub(self._channel(start.address))
        request = pb.PullRequest(object_id=start.object_id, chunk_size_bytes=self._chunk_size_bytes,
                                 offset=start.offset)
        for connect_attempt in range(1, CONNECT_ATTEMPTS_MAX + 1):
            call = stub.Pull(request, metadata=self._call_metadata)
            try:
                async with asyncio.timeout(self._stall_timeout_s):
                    first = await call.read()
            except grpc.aio.AioRpcError as exc:
                call.cancel()
                if exc.code() != grpc.StatusCode.UNAVAILABLE or connect_attempt == CONNECT_ATTEMPTS_MAX:
                    raise
                await asyncio.sleep(CONNECT_RETRY_DELAY_S * connect_attempt)
                continue
            except BaseException:
                call.cancel()
                raise
            try:
                await self._receive(call, start, first)
            finally:
                call.cancel()
            return

    async def _receive(self, call, start: StartTransfer, first) -> None:
        object_id, attempt = start.object_id, start.attempt
        core = self._core
        size_bytes = None
        message = first
        while True:
            if message is grpc.aio.EOF:
                self._feed(TransferDone(object_id, attempt))
                return
            if size_bytes is None:
                if not message.HasField("info"):
                    raise UnavailableError(f"{start.address} started the stream of {object_id.hex()} "
                                           "without the object's size: is it the same lineagerun version?")
                size_bytes = message.info.size_bytes
                self._feed(TransferHeader(object_id, attempt, size_bytes, message.info.is_error,
                                          tuple(message.info.nested_object_ids)))
                if not core.is_current(object_id, attempt):
                    return
            data = message.data
            expected = core.received_bytes(object_id)
            if data and message.offset == expected and message.offset + len(data) <= size_bytes:
                _pwrite_all(self._fds[object_id], data, message.offset)
                self._bytes_received_total += len(data)
            # Out-of-place bytes are not written; the core rejects the chunk and
            # moves to the next source.
            self._feed(ChunkArrived(object_id, attempt, message.offset, len(data)))
            if not core.is_current(object_id, attempt):
                return
            async with asyncio.timeout(self._stall_timeout_s):
                message = await call.read()


def _transfer_error(exc: grpc.aio.AioRpcError, what: str) -> LineagerunError:
    error = from_rpc_error(exc, what=what)
    if isinstance(error, ControlStoreUnavailableError):  # from_rpc_error's name for any unreachable peer
        return UnavailableError(str(error))
    return error


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    written_total = 0
    while written_total < len(view):
        written = os.pwrite(fd, view[written_total:], offset + written_total)
        if written <= 0:
            raise OSError(f"pwrite wrote {written} bytes")
        written_total += written
