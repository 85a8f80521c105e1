"""Commit notices straight from the tail: the chain's acknowledgement one
hop sooner.

In chain replication the tail is where a write commits. The head's answer to
``Write`` comes after the tail's ack has travelled back up the chain (tail ->
head -> client); a subscription to the tail (``Subscribe``, the committed
changes under a prefix) tells the client the same thing one hop earlier
(tail -> client). ``CommitWatch`` keeps such a subscription open per shard
and per prefix, from the writer's event loop, and confirms *expectations*:
"key K holds value V, committed".

It only ever shortens a wait: a write is still answered by its head, and
whatever the watch misses (a stream being reopened, a tail that changed, a
prefix not watched) is simply confirmed by that answer. What a confirmation
means: the tail has committed an entry that put exactly these bytes under
that key, so the value is durable on every replica of the chain. A caller
that expects every put of a single-shard request (one request is one log
entry) therefore knows that whole entry is durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from lineagerun.control.client import ControlStoreClient
from lineagerun.control.client_routing import shard_of
from lineagerun.rpc import control_store_pb2, control_store_pb2_grpc
from lineagerun.transport.channels import make_aio_channel

log = logging.getLogger(__name__)

# Pause before reopening a broken subscription (the tail may be changing;
# meanwhile the heads' answers confirm every write).
REOPEN_DELAY_S = 0.2
# Expectations waiting at once; beyond it new ones are not watched (their
# writes wait for the head's answer as before).
EXPECTED_KEYS_MAX = 50_000


@dataclass(eq=False)
class Expectation:
    """Puts of one request, confirmed together."""
    pending: int
    on_confirmed: Callable[[], None]
    cancelled: bool = False
    keys: list[bytes] = field(default_factory=list)


class _Stream:
    def __init__(self, watch: "CommitWatch", shard: int, prefix: bytes):
        self.watch, self.shard, self.prefix = watch, shard, prefix
        self.open = False  # the tail has announced where it starts
        self.closed = False
        self.channel = None
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self.closed:
            route = self.watch.client._cache.cached_route(self.shard)
            if route is not None:
                try:
                    await self._follow(route)
                except Exception as err:  # noqa: BLE001 - the heads' answers cover the gap; reopen
                    log.debug("commit watch of shard %d %r broke: %s", self.shard, self.prefix, err)
                finally:
                    self.open = False
                    await self._close_channel()
            if not self.closed:
                await asyncio.sleep(REOPEN_DELAY_S)

    async def _follow(self, route) -> None:
        cache = self.watch.client._cache
        self.channel = make_aio_channel(cache.dial_address(route.tail), cache.token())
        stub = control_store_pb2_grpc.ControlStoreReplicaStub(self.channel)
        call = stub.Subscribe(control_store_pb2.SubscribeRequest(shard=self.shard, min_epoch=route.epoch,
                                                                 prefix=self.prefix))
        async for batch in call:
            if batch.compacted_seq:
                return
            self.open = True
            for change in batch.changes:
                if not change.deleted:
                    self.watch._committed(change.key, change.value)

    async def _close_channel(self) -> None:
        channel, self.channel = self.channel, None
        if channel is not None:
            await channel.close()

    async def close(self) -> None:
        self.closed = True
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing
            pass
        await self._close_channel()


class CommitWatch:
    """Must be used from one event loop. ``prefixes``: the key prefixes that
    may be expected (one subscription each, per shard, opened on first use)."""

    def __init__(self, client: ControlStoreClient, prefixes: tuple[bytes, ...]):
        self.client = client
        self.prefixes = prefixes
        self._streams: dict[tuple[int, bytes], _Stream] = {}
        self._expected: dict[bytes, list[tuple[bytes, Expectation]]] = {}
        self._expected_count = 0
        self.confirmed = 0  # expectations confirmed by the tail (for tests and benchmarks)

    def expect(self, puts: list[tuple[bytes, bytes]], on_confirmed: Callable[[], None]) -> Expectation | None:
        """Watch for all ``puts`` (key, value) to be committed; None when they
        cannot be watched (not all under a watched prefix, several shards,
        no configuration yet, a watch not open yet, too many waiting)."""
        if not puts or self._expected_count + len(puts) > EXPECTED_KEYS_MAX:
            return None
        num_shards = self.client._cache.cached_num_shards()
        if not num_shards:
            return None
        shard = shard_of(puts[0][0], num_shards)
        streams = []
        for key, _ in puts:
            prefix = next((p for p in self.prefixes if key.startswith(p)), None)
            if prefix is None or shard_of(key, num_shards) != shard:
                return None
            streams.append(self._stream(shard, prefix))
        if not all(stream.open for stream in streams):
            return None  # changes committed before the tail started streaming would be missed
        expectation = Expectation(len(puts), on_confirmed)
        for key, value in puts:
            self._expected.setdefault(key, []).append((value, expectation))
            expectation.keys.append(key)
        self._expected_count += len(puts)
        return expectation

    def forget(self, expectation: Expectation) -> None:
        """Stop watching (the head answered first, or the write failed)."""
        if expectation.cancelled:
            return
        expectation.cancelled = True
        for key in expectation.keys:
            waiting = self._expected.get(key)
            if waiting is None:
                continue
            kept = [w for w in waiting if w[1] is not expectation]
            self._expected_count -= len(waiting) - len(kept)
            if kept:
                self._expected[key] = kept
            else:
                del self._expected[key]

    def _stream(self, shard: int, prefix: bytes) -> _Stream:
        stream = self._streams.get((shard, prefix))
        if stream is None:
            stream = self._streams[(shard, prefix)] = _Stream(self, shard, prefix)
        return stream

    def _committed(self, key: bytes, value: bytes) -> None:
        waiting = self._expected.get(key)
        if not waiting:
            return
        kept = []
        for expected_value, expectation in waiting:
            if expected_value != value:
                kept.append((expected_value, expectation))
                continue
            self._expected_count -= 1
            expectation.pending -= 1
            if expectation.pending == 0 and not expectation.cancelled:
                expectation.cancelled = True
                self.confirmed += 1
                expectation.on_confirmed()
        if kept:
            self._expected[key] = kept
        else:
            del self._expected[key]

    async def close(self) -> None:
        streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            await stream.close()
