"""Getting objects that live on other nodes onto this one.

``ObjectFetcher.want(object_id)``: an object this node needs (a get, a wait,
a task's argument) but does not hold.

- A copy elsewhere is known (``ObjectTable.remote_copies``: a forwarded
  task's result, or a location a peer sent with a task): pull it with the
  ``ObjectPuller`` (chunked gRPC stream from the holder's ``ObjectManager``;
  concurrent wants share one transfer) and account it in the object table.
- Nothing is known and no task here will make it (an object another node or
  driver made, e.g. a ref nested in a value): look its record up in the
  control store (``obj/``: size, locations, small values inline), then ask a
  holder over a peer session (an inline value comes back as bytes, a stored
  one as a location to pull). Records are written shortly after an object is
  made, so a missing record is looked up again, backing off, for as long as
  somebody still wants the object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from lineagerun.core.ids import ObjectID
from lineagerun.core.keys import object_key
from lineagerun.exceptions import LineagerunError, NotFoundError
from lineagerun.node.object_table import ObjectTable, RemoteCopy
from lineagerun.node.peers import PeerPool, location_of
from lineagerun.objects.transfer import ObjectPuller
from lineagerun.rpc import lineage_pb2, node_pb2

log = logging.getLogger(__name__)

# Concurrent control-store lookups of unknown objects; more wait their turn.
LOOKUPS_MAX = 1_000
# Back-off between lookups of an object whose record is not written yet.
LOOKUP_RETRY_FIRST_S = 0.02
LOOKUP_RETRY_MAX_S = 1.0


class ObjectFetcher:
    def __init__(self, objects: ObjectTable, puller: ObjectPuller, peers: PeerPool, *, own_node_id: bytes,
                 read_record: Callable[[bytes], "asyncio.Future[bytes | None]"],
                 address_of: Callable[[bytes], str | None],
                 node_of: Callable[[str], bytes],
                 still_wanted: Callable[[bytes], bool],
                 on_known: Callable[[bytes], None]):
        self.objects = objects
        self.puller = puller
        self.peers = peers
        self.own_node_id = own_node_id
        self._read_record = read_record          # key -> value, off the event loop
        self._address_of = address_of            # node id -> node manager address
        self._node_of = node_of                  # and back (b"" when unknown)
        self._still_wanted = still_wanted
        self._on_known = on_known                # a copy elsewhere became known
        self._pulling: set[bytes] = set()
        self._looking_up: set[bytes] = set()
        self._lookup_slots = asyncio.Semaphore(LOOKUPS_MAX)
        self._tasks: set[asyncio.Task] = set()
        self.pulls_completed = 0
        self.lookups_started = 0
        # Set by the node's reconstruction driver (reconstruction_driver.py):
        # a wanted object with no known copy that it knows is lost; a record
        # naming no live holder; a failed pull. Each returns True when the
        # driver takes the object over.
        self.on_unavailable: Callable[[bytes], bool] | None = None
        self.on_no_live_copy: Callable[[bytes, lineage_pb2.ObjectRecord], bool] | None = None
        self.on_pull_failed: Callable[[bytes, RemoteCopy, BaseException], bool] | None = None

    def want(self, object_id: bytes, *, produced_here: bool) -> None:
        if self.objects.is_ready(object_id):
            return
        copies = self.objects.remote_copies(object_id)
        if copies:
            self._pull(object_id, copies)
        elif self.on_unavailable is not None and self.on_unavailable(object_id):
            return
        elif not produced_here:
            self.lookup(object_id)

    # ------------------------------------------------------------- pulls

    def _pull(self, object_id: bytes, copies: list[RemoteCopy]) -> None:
        if object_id in self._pulling:
            return
        self._pulling.add(object_id)
        future = self.puller.pull(object_id, [c.address for c in copies])
        future.add_done_callback(lambda f: self._pulled(object_id, copies[0], f))

    def _pulled(self, object_id: bytes, copy: RemoteCopy, future: asyncio.Future) -> None:
        self._pulling.discard(object_id)
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            if self.on_pull_failed is not None and self.on_pull_failed(object_id, copy, error):
                return
            kind = "ObjectLostError" if isinstance(error, NotFoundError) else type(error).__name__
            if not isinstance(error, LineagerunError):
                kind = "ObjectLostError"
            self.objects.add_error(object_id, kind, f"could not pull object {object_id.hex()} "
                                                    f"from {copy.address}: {error}")
            return
        pulled = future.result()
        self.pulls_completed += 1
        if pulled.from_address is None:  # already in the store: the copy's metadata stands
            self.objects.add_pulled(object_id, pulled.size_bytes, copy.is_error, copy.nested_object_ids)
        else:
            self.objects.add_pulled(object_id, pulled.size_bytes, pulled.is_error, pulled.nested_object_ids)

    # ----------------------------------------------------------- lookups

    def lookup(self, object_id: bytes) -> None:
        if object_id in self._looking_up or len(object_id) != ObjectID.SIZE:
            return
        self._looking_up.add(object_id)
        self.lookups_started += 1
        task = asyncio.get_running_loop().create_task(self._lookup(object_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _lookup(self, object_id: bytes) -> None:
        delay_s = LOOKUP_RETRY_FIRST_S
        try:
            async with self._lookup_slots:
                while self._still_wanted(object_id) and not self.objects.is_known(object_id):
                    if await self._lookup_once(object_id):
                        return
                    await asyncio.sleep(delay_s)
                    delay_s = min(delay_s * 2, LOOKUP_RETRY_MAX_S)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a lookup must not end the node
            log.exception("looking up object %s failed", object_id.hex())
        finally:
            self._looking_up.discard(object_id)

    async def _lookup_once(self, object_id: bytes) -> bool:
        """One attempt; True once the object (or a copy elsewhere) is known."""
        try:
            raw = await self._read_record(object_key(ObjectID(object_id)))
        except LineagerunError as exc:
            log.debug("object record %s unreadable: %s", object_id.hex(), exc)
            return False
        if raw is None:
            return False
        record = lineage_pb2.ObjectRecord.FromString(raw)
        if record.has_inline_value:
            self.objects.add_payload(object_id, node_pb2.ObjectPayload(
                inline=record.inline_value, size_bytes=len(record.inline_value)))
            return True
        for node_id in record.locations:
            address = self._address_of(node_id) if node_id != self.own_node_id else None
            if address and await self._ask_holder(object_id, address, node_id):
                return True
        if self.on_no_live_copy is not None and not self.objects.is_known(object_id):
            return self.on_no_live_copy(object_id, record)
        return False

    async def _ask_holder(self, object_id: bytes, address: str, node_id: bytes) -> bool:
        try:
            results = await self.peers.get(address).get_objects([object_id], timeout_ms=0)
        except (ConnectionError, TimeoutError, asyncio.TimeoutError) as exc:
            log.debug("asking %s for %s: %s", address, object_id.hex(), exc)
            return False
        for result in results:
            if result.error_kind == "ObjectLostError" or not result.object_id:
                continue  # not there (yet): another holder, or a later lookup
            self.record_result(result, address, node_id)
            return True
        return False

    def record_result(self, result: node_pb2.ObjectResult, address: str, node_id: bytes) -> None:
        """Record an object a peer sent: a value, an error, or a location."""
        oid = result.object_id
        if not result.HasField("payload"):
            self.objects.add_error(oid, result.error_kind or "ObjectLostError",
                                   result.error_message or f"node {address} reported an error without a message")
            return
        holder = location_of(result.payload)
        if holder is None:
            self.objects.add_payload(oid, result.payload)
            return
        payload = result.payload
        copy = RemoteCopy(holder, node_id if holder == address else self._node_of(holder), payload.size_bytes,
                          payload.is_error, tuple(payload.nested_object_ids))
        if self.objects.add_remote(oid, copy):
            self._on_known(oid)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
