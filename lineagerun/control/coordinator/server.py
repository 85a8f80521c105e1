"""The coordinator process: a grpc.aio shell around the pure core.

One event loop runs everything; the core is only ever called from it, so it
needs no lock. Each RPC or tick becomes one event; the effects are carried out
in order: ``PersistConfig`` synchronously (a small fsynced file, and nothing
may carry a config that is not on disk yet), pushes as background tasks with a
short deadline (best effort: a replica also learns its config from its next
heartbeat reply), replies returned to the caller.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import logging
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc

from lineagerun.control import dial_map
from lineagerun.control.coordinator.persistence import (
    ConfigStore,
    chain_to_proto,
    config_to_proto,
    write_file_atomically,
)
from lineagerun.core.chain.coordinator import ChainCoordinator
from lineagerun.core.chain.coordinator_events import (
    ConfigLoaded,
    CoordinatorSettings,
    Effect,
    Event,
    FreshStart,
    HeartbeatReceived,
    JoinRequested,
    PersistConfig,
    PushConfig,
    PushFailed,
    ReplyHeartbeat,
    ReplyJoin,
    Tick,
)
from lineagerun.exceptions import ConfigurationError, LineagerunError, RpcError, UnavailableError
from lineagerun.rpc import control_store_pb2, control_store_pb2_grpc, coordinator_pb2, coordinator_pb2_grpc
from lineagerun.transport import channels
from lineagerun.transport.errors import abort_aio

log = logging.getLogger("lineagerun.coordinator")

READY_FILE_NAME = "ready"
LOCK_FILE_NAME = "lock"

# Pushes are an optimisation (heartbeat replies carry the config too), so when
# this many are in flight a new one is dropped rather than queued.
PUSHES_IN_FLIGHT_MAX = 256
# Short: a replica that cannot answer in this time learns the config from its
# next heartbeat reply anyway.
PUSH_DEADLINE_S = 0.3
# Push channels are cached per address; old ones are closed beyond this many.
PUSH_CHANNELS_MAX = 256
# Each watcher holds only the latest config (no queue), so this bounds memory.
WATCHERS_MAX = 1024
STOP_GRACE_S = 0.5


@dataclass(frozen=True)
class CoordinatorOptions:
    directory: Path
    num_shards: int
    replicas_per_shard: int
    token: str
    host: str = channels.DEFAULT_HOST
    port: int = 0
    heartbeat_interval_ms: int = 100
    failure_timeout_ms: int = 1000
    lease_ms: int = 600


class FatalCoordinatorError(Exception):
    """The coordinator cannot go on (e.g. config.pb cannot be written)."""


class ConfigPusher:
    """Best-effort UpdateConfig calls, bounded in number and time."""

    def __init__(self, token: str, on_failure):
        self._token = token
        self._on_failure = on_failure
        self._channels: collections.OrderedDict[str, grpc.aio.Channel] = collections.OrderedDict()
        self._tasks: set[asyncio.Task] = set()

    def push(self, effect: PushConfig) -> None:
        if len(self._tasks) >= PUSHES_IN_FLIGHT_MAX:
            self._on_failure(effect, f"more than {PUSHES_IN_FLIGHT_MAX} pushes in flight")
            return
        task = asyncio.get_running_loop().create_task(self._push(effect))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push(self, effect: PushConfig) -> None:
        update = control_store_pb2.ConfigUpdate(config=chain_to_proto(effect.config), lease_ms=effect.lease_ms)
        try:
            stub = control_store_pb2_grpc.ControlStoreReplicaStub(self._channel(effect.target.address))
            await stub.UpdateConfig(update, timeout=PUSH_DEADLINE_S)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # any failure of a best-effort push is just reported
            reason = err.code().name if isinstance(err, grpc.aio.AioRpcError) else repr(err)
            self._on_failure(effect, reason)

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = channels.make_aio_channel(dial_map.dial_address(address),
                                                                          self._token)
            while len(self._channels) > PUSH_CHANNELS_MAX:
                _, old = self._channels.popitem(last=False)
                asyncio.get_running_loop().create_task(old.close())
        self._channels.move_to_end(address)
        return channel

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


class CoordinatorService(coordinator_pb2_grpc.ChainCoordinatorServicer):
    def __init__(self, core: ChainCoordinator, store: ConfigStore, options: CoordinatorOptions, on_fatal):
        self.core = core
        self.store = store
        self.options = options
        self._on_fatal = on_fatal
        self._pusher = ConfigPusher(options.token, self._push_failed)
        self._changed = asyncio.Event()
        self._watchers = 0
        self._broken: BaseException | None = None

    @staticmethod
    def now_ms() -> int:
        return int(time.monotonic() * 1000)

    # ------------------------------------------------------------ effects

    def run(self, event: Event) -> list[Effect]:
        """Feed one event to the core, carry out persist and push effects,
        return the replies."""
        if self._broken is not None:
            raise UnavailableError(f"the coordinator is stopping: {self._broken}")
        replies: list[Effect] = []
        for effect in self.core.handle(event):
            if isinstance(effect, PersistConfig):
                self._persist(effect)
            elif isinstance(effect, PushConfig):
                self._pusher.push(effect)
            else:
                replies.append(effect)
        return replies

    def _persist(self, effect: PersistConfig) -> None:
        try:
            self.store.save(effect.config)
        except OSError as err:
            # The core already moved on; nothing may carry this config, and
            # the only safe way out is to stop and restart from disk.
            self._broken = FatalCoordinatorError(f"cannot write {self.store.path}: {err}")
            self._on_fatal(self._broken)
            raise UnavailableError("the coordinator cannot persist its configuration; it is stopping") from err
        for chain in effect.config.shards:
            log.debug("shard %d epoch %d chain %s joining %s", chain.shard, chain.epoch,
                      chain.member_ids(), chain.joining and chain.joining.replica_id)
        log.info("config version %d: %s", effect.config.version,
                 "; ".join(f"s{c.shard}@{c.epoch} {list(c.member_ids())}"
                           + (f" +{c.joining.replica_id}" if c.joining else "") for c in effect.config.shards))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _push_failed(self, effect: PushConfig, reason: str) -> None:
        log.debug("push of shard %d epoch %d to %s failed: %s", effect.config.shard, effect.config.epoch,
                  effect.target.replica_id, reason)
        self.core.handle(PushFailed(effect.target.replica_id, effect.config.shard, effect.config.epoch, str(reason)))

    def tick(self) -> None:
        self.run(Tick(self.now_ms()))

    async def close(self) -> None:
        await self._pusher.close()

    # ------------------------------------------------------------ RPCs

    async def _serve(self, context, event_factory):
        try:
            return self.run(event_factory())
        except LineagerunError as err:
            await abort_aio(context, err)
        except Exception as err:  # a bug must not take the coordinator down
            log.exception("internal error")
            await abort_aio(context, RpcError(f"internal error in the coordinator: {err!r}"))

    async def Heartbeat(self, request, context):
        replies = await self._serve(context, lambda: HeartbeatReceived(
            replica_id=request.replica_id, shard=request.shard, address=request.address, epoch=request.epoch,
            applied_seq=request.applied_seq, applied_epoch=request.applied_epoch, caught_up=request.caught_up,
            now_ms=self.now_ms(), cluster_id=request.cluster_id))
        reply = next(r for r in replies if isinstance(r, ReplyHeartbeat))
        return coordinator_pb2.HeartbeatReply(config=chain_to_proto(reply.config), lease_ms=reply.lease_ms,
                                              must_join=reply.must_join)

    async def Join(self, request, context):
        replies = await self._serve(context, lambda: JoinRequested(
            replica_id=request.replica_id, shard=request.shard, address=request.address, now_ms=self.now_ms(),
            applied_seq=request.applied_seq, applied_epoch=request.applied_epoch, cluster_id=request.cluster_id))
        reply = next(r for r in replies if isinstance(r, ReplyJoin))
        if not reply.retry_later:
            log.info("join of %s to shard %d at %s", request.replica_id, request.shard, request.address)
        return coordinator_pb2.JoinReply(config=chain_to_proto(reply.config), cluster_id=reply.cluster_id,
                                         retry_later=reply.retry_later, retry_after_ms=reply.retry_after_ms)

    async def GetConfig(self, request, context):
        if self._broken is not None:
            await abort_aio(context, UnavailableError(f"the coordinator is stopping: {self._broken}"))
        return config_to_proto(self.core.config)

    async def WatchConfig(self, request, context):
        if self._watchers >= WATCHERS_MAX:
            await abort_aio(context, UnavailableError(f"more than {WATCHERS_MAX} config watchers; use GetConfig"))
        self._watchers += 1
        try:
            known = request.known_version
            while True:
                changed = self._changed
                config = self.core.config
                if self._broken is not None:
                    await abort_aio(context, UnavailableError(f"the coordinator is stopping: {self._broken}"))
                if config.version > known:
                    known = config.version
                    yield config_to_proto(config)
                    continue
                await changed.wait()
        finally:
            self._watchers -= 1

    async def Status(self, request, context):
        if self._broken is not None:
            await abort_aio(context, UnavailableError(f"the coordinator is stopping: {self._broken}"))
        now_ms = self.now_ms()
        replicas = [coordinator_pb2.ReplicaHealth(replica_id=h.replica_id, shard=h.shard, address=h.address,
                                                  state=h.state, ms_since_heartbeat=h.ms_since_heartbeat,
                                                  applied_seq=h.applied_seq)
                    for h in self.core.health(now_ms)]
        return coordinator_pb2.CoordinatorStatus(config=config_to_proto(self.core.config), replicas=replicas,
                                                 heartbeat_interval_ms=self.options.heartbeat_interval_ms,
                                                 failure_timeout_ms=self.options.failure_timeout_ms)


# ---------------------------------------------------------------- process


def lock_directory(directory: Path):
    """Hold DIR/lock for the life of the process: two coordinators on one
    directory would hand out the same epochs twice."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigurationError(f"another coordinator is running on {directory} (it holds {LOCK_FILE_NAME})") from None
    return fd


def start_core(options: CoordinatorOptions, store: ConfigStore) -> ChainCoordinator:
    """The core, loaded from config.pb or freshly started (and persisted)."""
    settings = CoordinatorSettings(num_shards=options.num_shards, replicas_per_shard=options.replicas_per_shard,
                                   failure_timeout_ms=options.failure_timeout_ms, lease_ms=options.lease_ms)
    core = ChainCoordinator(settings)
    now_ms = CoordinatorService.now_ms()
    loaded = store.load()
    if loaded is None:
        for effect in core.handle(FreshStart(uuid.uuid4().hex, now_ms)):
            if isinstance(effect, PersistConfig):
                store.save(effect.config)
        log.info("new cluster %s with %d shards", core.config.cluster_id, options.num_shards)
    else:
        core.handle(ConfigLoaded(loaded, now_ms))
        log.info("cluster %s restarted at config version %d", loaded.cluster_id, loaded.version)
    return core


async def serve(options: CoordinatorOptions) -> int:
    """Run until SIGTERM/SIGINT (returns 0) or a fatal error (raises)."""
    directory = options.directory
    lock_fd = lock_directory(directory)
    ready = directory / READY_FILE_NAME
    ready.unlink(missing_ok=True)
    store = ConfigStore(directory)
    core = start_core(options, store)
    stop = asyncio.Event()
    fatal: list[BaseException] = []

    def on_fatal(err: BaseException) -> None:
        fatal.append(err)
        stop.set()

    service = CoordinatorService(core, store, options, on_fatal)
    server = channels.make_aio_server(options.token)
    coordinator_pb2_grpc.add_ChainCoordinatorServicer_to_server(service, server)
    try:
        port = channels.bind(server, options.host, options.port, options.token)
    except RuntimeError as err:  # grpc's way of saying the port is taken
        os.close(lock_fd)
        raise FatalCoordinatorError(f"could not listen on {options.host}:{options.port} ({err})") from None
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ticker = loop.create_task(_tick_forever(service, options.heartbeat_interval_ms, on_fatal))
    write_file_atomically(ready, f"{options.host}:{port}")
    log.info("coordinator serving on %s:%d (dir %s)", options.host, port, directory)
    try:
        await stop.wait()
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        await server.stop(STOP_GRACE_S)
        await service.close()
        ready.unlink(missing_ok=True)
        os.close(lock_fd)
    if fatal:
        raise fatal[0]
    return 0


async def _tick_forever(service: CoordinatorService, interval_ms: int, on_fatal) -> None:
    while True:
        await asyncio.sleep(interval_ms / 1000)
        try:
            service.tick()
        except UnavailableError:
            return  # persisting failed; on_fatal already stops the process
        except Exception as err:
            log.exception("tick failed")
            on_fatal(err)
            return
