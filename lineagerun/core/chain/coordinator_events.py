"""Values of the chain coordinator: its configuration, the events it is fed
and the effects it asks its shell to carry out.

Everything is a frozen dataclass so the core can hand values out without the
shell (or a test) being able to change its state behind its back. The shell
converts to and from the wire messages of ``common.proto``/``coordinator.proto``
(``lineagerun.control.coordinator.persistence``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from lineagerun.exceptions import ConfigurationError

# ------------------------------------------------------------ configuration


@dataclass(frozen=True)
class ReplicaInfo:
    replica_id: str
    address: str


@dataclass(frozen=True)
class ChainConfig:
    """One shard's chain in one epoch. Epoch 0 means "not formed yet"
    (bootstrap): the chain is empty until the shard's first replicas joined."""

    shard: int
    epoch: int
    chain: tuple[ReplicaInfo, ...] = ()
    joining: ReplicaInfo | None = None

    def member_ids(self) -> tuple[str, ...]:
        return tuple(r.replica_id for r in self.chain)

    def has_member(self, replica_id: str) -> bool:
        return any(r.replica_id == replica_id for r in self.chain)

    def is_joining(self, replica_id: str) -> bool:
        return self.joining is not None and self.joining.replica_id == replica_id

    @property
    def formed(self) -> bool:
        return self.epoch > 0

    def replicas(self) -> tuple[ReplicaInfo, ...]:
        """Members (head first) then the joining replica, if any."""
        return self.chain + ((self.joining,) if self.joining is not None else ())


@dataclass(frozen=True)
class ClusterConfig:
    cluster_id: str
    num_shards: int
    shards: tuple[ChainConfig, ...]
    version: int

    @staticmethod
    def initial(cluster_id: str, num_shards: int) -> "ClusterConfig":
        shards = tuple(ChainConfig(shard=s, epoch=0) for s in range(num_shards))
        return ClusterConfig(cluster_id=cluster_id, num_shards=num_shards, shards=shards, version=1)

    def with_shards(self, changed: list[ChainConfig]) -> "ClusterConfig":
        shards = list(self.shards)
        for chain in changed:
            shards[chain.shard] = chain
        return replace(self, shards=tuple(shards), version=self.version + 1)

    def check(self) -> None:
        """Raise ConfigurationError if this configuration cannot be the one the
        coordinator wrote (used on a config loaded from disk)."""
        if not self.cluster_id:
            raise ConfigurationError("cluster config has no cluster_id")
        if self.num_shards < 1 or len(self.shards) != self.num_shards:
            raise ConfigurationError(
                f"cluster config names {self.num_shards} shards but holds {len(self.shards)} chains")
        seen: dict[str, int] = {}
        for index, chain in enumerate(self.shards):
            if chain.shard != index:
                raise ConfigurationError(f"cluster config lists shard {chain.shard} at position {index}")
            if chain.formed and not chain.chain:
                raise ConfigurationError(f"shard {index} is at epoch {chain.epoch} with an empty chain")
            if not chain.formed and (chain.chain or chain.joining):
                raise ConfigurationError(f"shard {index} has replicas but epoch 0")
            for replica in chain.replicas():
                if not replica.replica_id or replica.replica_id in seen:
                    raise ConfigurationError(
                        f"replica id {replica.replica_id!r} is empty or listed twice (shards "
                        f"{seen.get(replica.replica_id)} and {index})")
                seen[replica.replica_id] = index


@dataclass(frozen=True)
class CoordinatorSettings:
    num_shards: int
    replicas_per_shard: int
    failure_timeout_ms: int = 1000
    lease_ms: int = 600
    # What a refused joiner is told to wait: long enough for the current
    # joiner to make progress, short enough that a queue of joiners drains fast.
    join_retry_after_ms: int = 200

    def __post_init__(self):
        if self.num_shards < 1:
            raise ConfigurationError(f"--shards must be at least 1, got {self.num_shards}")
        if self.replicas_per_shard < 1:
            raise ConfigurationError(f"--replicas must be at least 1, got {self.replicas_per_shard}")
        if self.failure_timeout_ms < 1:
            raise ConfigurationError(f"failure timeout must be positive, got {self.failure_timeout_ms} ms")
        if not 0 < self.lease_ms < self.failure_timeout_ms:
            # A removed tail's lease must have expired before its successor
            # serves reads as the new tail, or two tails could answer reads.
            raise ConfigurationError(
                f"lease ({self.lease_ms} ms) must be positive and shorter than the failure timeout "
                f"({self.failure_timeout_ms} ms); lower --lease-ms or raise --failure-timeout-ms")


# ------------------------------------------------------------------- events


@dataclass(frozen=True)
class FreshStart:
    """First start on an empty directory; ``cluster_id`` is chosen by the shell
    (randomness stays out of the core)."""

    cluster_id: str
    now_ms: int


@dataclass(frozen=True)
class ConfigLoaded:
    """Restart: the configuration last persisted."""

    config: ClusterConfig
    now_ms: int


@dataclass(frozen=True)
class HeartbeatReceived:
    replica_id: str
    shard: int
    address: str
    epoch: int
    applied_seq: int
    applied_epoch: int
    caught_up: bool
    now_ms: int
    cluster_id: str = ""


@dataclass(frozen=True)
class JoinRequested:
    replica_id: str
    shard: int
    address: str
    now_ms: int
    applied_seq: int = 0
    applied_epoch: int = 0
    cluster_id: str = ""


@dataclass(frozen=True)
class Tick:
    now_ms: int


@dataclass(frozen=True)
class PushFailed:
    """A replica did not answer an UpdateConfig push in time. Not a failure
    by itself (only missed heartbeats are): it only shows in Status."""

    replica_id: str
    shard: int
    epoch: int
    reason: str = ""


Event = FreshStart | ConfigLoaded | HeartbeatReceived | JoinRequested | Tick | PushFailed


# ------------------------------------------------------------------ effects


@dataclass(frozen=True)
class PersistConfig:
    """Write ``config`` durably. Comes before every effect that carries it."""

    config: ClusterConfig


@dataclass(frozen=True)
class PushConfig:
    """Best-effort UpdateConfig to one replica. ``lease_ms`` is always 0:
    a push grants no lease (leases are counted from the replica's own
    heartbeat send time, which a push does not have)."""

    target: ReplicaInfo
    config: ChainConfig
    lease_ms: int = 0


@dataclass(frozen=True)
class ReplyHeartbeat:
    replica_id: str
    config: ChainConfig
    lease_ms: int
    must_join: bool


@dataclass(frozen=True)
class ReplyJoin:
    replica_id: str
    config: ChainConfig
    cluster_id: str
    retry_later: bool = False
    retry_after_ms: int = 0


Effect = PersistConfig | PushConfig | ReplyHeartbeat | ReplyJoin


# ------------------------------------------------------------------- status


@dataclass(frozen=True)
class ReplicaHealth:
    replica_id: str
    shard: int
    address: str
    state: str  # member, joining, dead, waiting
    ms_since_heartbeat: int
    applied_seq: int
    push_failures: int = field(default=0)
