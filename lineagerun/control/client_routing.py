"""The client's view of the cluster: the cached chain configuration, key
routing, and one channel per replica address."""

from __future__ import annotations

import threading
import time
import zlib
from dataclasses import dataclass
from typing import Callable

import grpc

from lineagerun.exceptions import UnavailableError
from lineagerun.rpc import common_pb2, control_store_pb2, control_store_pb2_grpc, coordinator_pb2, coordinator_pb2_grpc
from lineagerun.transport.channels import make_channel
from lineagerun.control.client_retry import TransientError, call_once

# A GetConfig that takes longer than this is treated as a coordinator failure
# (the coordinator answers from memory; seconds mean it is down or paused).
CONFIG_RPC_TIMEOUT_S = 2.0

# Asking one replica for its shard's configuration (coordinator down): a
# live replica answers from memory at once; a paused one costs this.
REPLICA_CONFIG_RPC_TIMEOUT_S = 0.5

# Refreshes triggered by failures are spaced at least this far apart per
# client, so that a thousand failing threads cause one GetConfig, not a
# thousand; smaller than the retry backoff cap so no retry waits for it.
CONFIG_REFRESH_MIN_INTERVAL_S = 0.020

# Channels to replicas that left every chain are closed once this many
# accumulate (restarts get new ports, so addresses keep changing).
STALE_CHANNELS_MAX = 64


def _newest_chains(fresh: common_pb2.ClusterConfig,
                   known: common_pb2.ClusterConfig | None) -> common_pb2.ClusterConfig:
    """``fresh``, except for shards where ``known`` (learned from replicas)
    holds a newer epoch: epochs only grow, so the newer chain is the truth."""
    if known is None or len(known.shards) != len(fresh.shards):
        return fresh
    if all(k.epoch <= f.epoch for k, f in zip(known.shards, fresh.shards)):
        return fresh
    merged = common_pb2.ClusterConfig()
    merged.CopyFrom(fresh)
    for index, shard in enumerate(known.shards):
        if shard.epoch > merged.shards[index].epoch:
            merged.shards[index].CopyFrom(shard)
    return merged


def shard_of(key: bytes, num_shards: int) -> int:
    """The shard that owns ``key`` (docs/control-store.md: crc32 % shards)."""
    return zlib.crc32(key) % num_shards


@dataclass(frozen=True)
class ShardRoute:
    shard: int
    epoch: int
    head: str
    tail: str


class ConfigCache:
    """Holds the last ClusterConfig seen and the channels to its replicas.
    Thread-safe; refreshes are coalesced."""

    def __init__(self, coordinator_address: str, token: str | None, *,
                 address_map: Callable[[str], str] | None = None):
        self._token = token
        self._address_map = address_map
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._coordinator_channel = make_channel(coordinator_address, token)
        self._coordinator = coordinator_pb2_grpc.ChainCoordinatorStub(self._coordinator_channel)
        self._config: common_pb2.ClusterConfig | None = None
        self._last_refresh_s = 0.0
        self._stubs: dict[str, tuple[grpc.Channel, control_store_pb2_grpc.ControlStoreReplicaStub]] = {}
        self._closed = False
        self.refreshes = 0
        self.refreshes_from_replicas = 0

    # ------------------------------------------------------------ config

    def config(self) -> common_pb2.ClusterConfig:
        """The cached configuration, fetched on first use (raises a
        ``TransientError`` when the coordinator cannot be reached)."""
        with self._lock:
            config = self._config
        if config is None:
            self.refresh(None)
            with self._lock:
                config = self._config
        return config

    def version(self) -> int:
        with self._lock:
            return self._config.version if self._config is not None else -1

    def refresh(self, seen_version: int | None) -> None:
        """Fetch the configuration unless someone already fetched one newer
        than ``seen_version`` (the version the failing attempt used)."""
        with self._refresh_lock:
            with self._lock:
                current = self._config
            if current is not None and seen_version is not None and current.version > seen_version:
                return
            wait_s = self._last_refresh_s + CONFIG_REFRESH_MIN_INTERVAL_S - time.monotonic()
            if current is not None and wait_s > 0:
                time.sleep(wait_s)
            self._last_refresh_s = time.monotonic()
            try:
                fresh = call_once(lambda: self._coordinator.GetConfig(
                    coordinator_pb2.GetConfigRequest(), timeout=CONFIG_RPC_TIMEOUT_S), what="GetConfig")
            except TransientError:
                # The coordinator is down: the chain may have reconfigured
                # before it died, and its replicas know the result (C6).
                if current is None or not self._adopt_from_replicas(current):
                    raise
                return
            self.refreshes += 1
            with self._lock:
                # Versions only grow; a restarted coordinator may briefly
                # answer with an older one we must not go back to.
                if self._config is None or fresh.version >= self._config.version:
                    self._config = _newest_chains(fresh, self._config)
            self._close_stale_channels()

    def _adopt_from_replicas(self, current: common_pb2.ClusterConfig) -> bool:
        """Ask the replicas ``current`` names for their shard's configuration
        and keep, per shard, the newest epoch; True if any shard moved on.
        Safe: replicas only hold configurations the coordinator made."""
        newest = common_pb2.ClusterConfig()
        newest.CopyFrom(current)
        moved = False
        for shard in newest.shards:
            members = list(shard.chain) + ([shard.joining] if shard.HasField("joining") else [])
            for member in members:
                try:
                    found = self.replica(member.address).GetChainConfig(
                        control_store_pb2.ChainConfigRequest(shard=shard.shard), timeout=REPLICA_CONFIG_RPC_TIMEOUT_S)
                except grpc.RpcError:
                    continue  # dead or paused: ask the next one
                if found.epoch > shard.epoch and found.chain:
                    shard.CopyFrom(found)
                    moved = True
        if moved:
            self.refreshes_from_replicas += 1
            with self._lock:
                self._config = _newest_chains(self._config, newest)
        return moved

    def try_refresh(self, seen_version: int | None) -> None:
        """``refresh`` that keeps the old configuration when the coordinator
        is down: the old chain may still work (C6)."""
        try:
            self.refresh(seen_version)
        except TransientError:
            pass

    def num_shards(self) -> int:
        num_shards = self.config().num_shards
        if num_shards == 0:
            raise TransientError(UnavailableError("the coordinator lists no shards yet"), refresh_config=True)
        return num_shards

    def route(self, shard: int) -> tuple[ShardRoute, int]:
        """The head/tail of ``shard`` and the config version it came from;
        a ``TransientError`` when the shard has no formed chain yet."""
        config = self.config()
        if shard >= len(config.shards):
            raise TransientError(UnavailableError(
                f"shard {shard} is not in the configuration ({len(config.shards)} shards listed)"),
                refresh_config=True)
        chain = config.shards[shard]
        if not chain.chain:
            raise TransientError(UnavailableError(
                f"shard {shard} has no chain yet (epoch {chain.epoch}); replicas are still joining"),
                refresh_config=True)
        return ShardRoute(shard, chain.epoch, chain.chain[0].address, chain.chain[-1].address), config.version

    def cached_route(self, shard: int) -> ShardRoute | None:
        """The head/tail of ``shard`` from the cached configuration, or None
        (no configuration yet, or no formed chain): never does I/O."""
        with self._lock:
            config = self._config
        if config is None or shard >= len(config.shards) or not config.shards[shard].chain:
            return None
        chain = config.shards[shard]
        return ShardRoute(shard, chain.epoch, chain.chain[0].address, chain.chain[-1].address)

    def cached_num_shards(self) -> int:
        """Shards in the cached configuration (0: none yet); never does I/O."""
        with self._lock:
            config = self._config
        return config.num_shards if config is not None else 0

    def dial_address(self, address: str) -> str:
        """Where to dial the replica advertised at ``address``."""
        return self._address_map(address) if self._address_map is not None else address

    def token(self) -> str | None:
        return self._token

    # ---------------------------------------------------------- channels

    def replica(self, address: str) -> control_store_pb2_grpc.ControlStoreReplicaStub:
        """A stub for the replica advertised at ``address`` (dialled through
        ``address_map`` when one was given)."""
        with self._lock:
            entry = self._stubs.get(address)
            if entry is None:
                dial = self._address_map(address) if self._address_map is not None else address
                channel = make_channel(dial, self._token)
                entry = (channel, control_store_pb2_grpc.ControlStoreReplicaStub(channel))
                self._stubs[address] = entry
            return entry[1]

    @property
    def address_map(self) -> Callable[[str], str] | None:
        return self._address_map

    @address_map.setter
    def address_map(self, address_map: Callable[[str], str] | None) -> None:
        # Channels dialled under the old map are closed, so every replica is
        # dialled through the new one from now on.
        with self._lock:
            self._address_map = address_map
            closing = [entry[0] for entry in self._stubs.values()]
            self._stubs.clear()
        for channel in closing:
            channel.close()

    def _close_stale_channels(self) -> None:
        with self._lock:
            if len(self._stubs) <= STALE_CHANNELS_MAX or self._config is None:
                return
            live = {r.address for s in self._config.shards for r in list(s.chain) + [s.joining]}
            stale = [a for a in self._stubs if a not in live]
            closing = [self._stubs.pop(a)[0] for a in stale]
        for channel in closing:
            channel.close()

    def coordinator(self) -> coordinator_pb2_grpc.ChainCoordinatorStub:
        return self._coordinator

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            channels = [entry[0] for entry in self._stubs.values()]
            self._stubs.clear()
        for channel in channels:
            channel.close()
        self._coordinator_channel.close()
