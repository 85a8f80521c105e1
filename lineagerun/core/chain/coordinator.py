"""The chain coordinator as a pure state machine (no I/O, no clock).

It owns, per shard, ``(epoch, chain, joining)`` and changes it on four
stimuli: replicas joining, heartbeats (which may report a joiner caught up),
the passing of time (missed heartbeats) and a restart from disk. Every change
bumps the shard's epoch by one and the cluster version by one, and comes out
as ``PersistConfig`` followed by the pushes and replies that carry it, so the
shell that executes effects in order never tells anyone a configuration that
is not on disk. See docs/control-store.md, "Configuration and fencing".

Decisions where the docs are silent:
- Bootstrap is per shard: a shard's chain forms (epoch 1, join order) as soon
  as ``replicas_per_shard`` replicas of that shard have joined; a waiting
  replica gets an epoch-0 (empty) config, no lease and ``must_join=False``.
  Waiting replicas that stop heartbeating are forgotten.
- A join of a replica that is already a member and not the only one removes
  it and makes it the joiner in one epoch (or only removes it, with
  ``retry_later``, when another replica is joining).
- A rejoin of the current joiner (it restarted) bumps the epoch, so its new
  incarnation never shares an epoch with the old one.
- Promotion requires ``caught_up`` reported in the shard's current epoch, so a
  report about an older chain (another tail) never promotes.
- Chains may grow beyond ``replicas_per_shard``: a new replica id that joins a
  full chain is admitted like any other joiner.
- At most one member per shard is removed per tick; the one silent the
  longest (the tail-most on ties) goes first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lineagerun.core.chain.coordinator_events import (
    ChainConfig,
    ClusterConfig,
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
    ReplicaHealth,
    ReplicaInfo,
    ReplyHeartbeat,
    ReplyJoin,
    Tick,
)
from lineagerun.exceptions import (
    BadRequestError,
    ConfigurationError,
    ShardMismatchError,
    UnavailableError,
)

# Health records of replicas that are neither members nor joining (removed,
# strangers) are kept for Status only; this bounds them when many replica ids
# come and go.
HEALTH_RECORDS_MAX = 4096

REPLICA_ID_LENGTH_MAX = 256
ADDRESS_LENGTH_MAX = 1024


@dataclass
class _Health:
    shard: int
    address: str
    last_heard_ms: int
    applied_seq: int = 0
    push_failures: int = 0


class ChainCoordinator:
    """Feed events with :meth:`handle`; carry out the returned effects in order."""

    def __init__(self, settings: CoordinatorSettings):
        self.settings = settings
        self._config: ClusterConfig | None = None
        self._health: dict[str, _Health] = {}
        # Per shard, replicas that joined before the chain formed, in join order.
        self._waiting: list[list[ReplicaInfo]] = []

    # ---------------------------------------------------------------- queries

    @property
    def config(self) -> ClusterConfig:
        if self._config is None:
            raise UnavailableError("the coordinator has not loaded its configuration yet")
        return self._config

    @property
    def started(self) -> bool:
        return self._config is not None

    def health(self, now_ms: int) -> list[ReplicaHealth]:
        """Every replica the coordinator knows about, for Status."""
        out = []
        for rid, h in sorted(self._health.items()):
            chain = self.config.shards[h.shard]
            silent_ms = max(0, now_ms - h.last_heard_ms)
            if chain.has_member(rid):
                state = "dead" if silent_ms >= self.settings.failure_timeout_ms else "member"
            elif chain.is_joining(rid):
                state = "joining"
            elif any(r.replica_id == rid for r in self._waiting[h.shard]):
                state = "waiting"
            else:
                state = "dead"
            out.append(ReplicaHealth(rid, h.shard, h.address, state, silent_ms, h.applied_seq, h.push_failures))
        return out

    # ---------------------------------------------------------------- mutator

    def handle(self, event: Event) -> list[Effect]:
        """Apply one event. Bad requests raise a typed error (BadRequestError,
        ShardMismatchError) before anything changes."""
        if isinstance(event, (FreshStart, ConfigLoaded)):
            return self._on_start(event)
        if self._config is None:
            raise UnavailableError("the coordinator has not loaded its configuration yet; retry shortly")
        if isinstance(event, HeartbeatReceived):
            return self._on_heartbeat(event)
        if isinstance(event, JoinRequested):
            return self._on_join(event)
        if isinstance(event, Tick):
            return self._on_tick(event.now_ms)
        if isinstance(event, PushFailed):
            health = self._health.get(event.replica_id)
            if health is not None:
                health.push_failures += 1
            return []
        raise TypeError(f"not a coordinator event: {event!r}")

    # ---------------------------------------------------------------- start

    def _on_start(self, event: FreshStart | ConfigLoaded) -> list[Effect]:
        if self._config is not None:
            raise ConfigurationError("the coordinator was already started; make a new one to restart")
        if isinstance(event, FreshStart):
            if not event.cluster_id:
                raise ConfigurationError("a fresh coordinator needs a cluster id")
            config = ClusterConfig.initial(event.cluster_id, self.settings.num_shards)
            effects: list[Effect] = [PersistConfig(config)]
        else:
            config = event.config
            config.check()
            if config.num_shards != self.settings.num_shards:
                raise ConfigurationError(
                    f"the persisted configuration has {config.num_shards} shards, not {self.settings.num_shards}; "
                    f"start with --shards {config.num_shards} or use a new directory")
            effects = []
        self._config = config
        self._waiting = [[] for _ in range(config.num_shards)]
        # Restart grace: everyone listed gets a full failure timeout from now.
        for chain in config.shards:
            for replica in chain.replicas():
                self._health[replica.replica_id] = _Health(chain.shard, replica.address, event.now_ms)
        return effects

    # ---------------------------------------------------------------- heartbeat

    def _on_heartbeat(self, ev: HeartbeatReceived) -> list[Effect]:
        self._check_request(ev.replica_id, ev.shard, ev.address or "-", ev.cluster_id)
        rid = ev.replica_id
        chain = self.config.shards[ev.shard]
        if not chain.formed:
            waiting = any(r.replica_id == rid for r in self._waiting[ev.shard])
            if waiting:
                self._touch(rid, ev.shard, ev.address, ev.now_ms, ev.applied_seq)
            return [ReplyHeartbeat(rid, chain, lease_ms=0, must_join=not waiting)]
        listed = chain.has_member(rid) or chain.is_joining(rid)
        if not listed:
            # Recorded for Status only, unless the id is listed in another
            # shard: a misdirected heartbeat must not keep that member alive.
            if self._listed_shard(rid) is None:
                self._touch(rid, ev.shard, ev.address, ev.now_ms, ev.applied_seq)
            return [ReplyHeartbeat(rid, chain, lease_ms=0, must_join=True)]
        # A listed replica keeps the address it joined with: the config is
        # what its neighbours connect to, and only a Join may change it.
        self._touch(rid, ev.shard, None, ev.now_ms, ev.applied_seq)
        effects: list[Effect] = []
        if chain.is_joining(rid) and ev.caught_up and ev.epoch == chain.epoch:
            promoted = ChainConfig(ev.shard, chain.epoch + 1, chain.chain + (chain.joining,), None)
            effects = self._commit([(promoted, ())])
            chain = promoted
        effects.append(ReplyHeartbeat(rid, chain, lease_ms=self.settings.lease_ms, must_join=False))
        return effects

    # ---------------------------------------------------------------- join

    def _on_join(self, ev: JoinRequested) -> list[Effect]:
        self._check_request(ev.replica_id, ev.shard, ev.address, ev.cluster_id)
        if not ev.address:
            raise BadRequestError(f"Join of {ev.replica_id!r} has no address; send the replica's host:port")
        rid, shard = ev.replica_id, ev.shard
        listed_shard = self._listed_shard(rid)
        if listed_shard is not None and listed_shard != shard:
            raise ShardMismatchError(
                f"replica {rid!r} is listed in shard {listed_shard}, not shard {shard}; "
                f"start it with its own directory and shard number")
        info = ReplicaInfo(rid, ev.address)
        self._touch(rid, shard, ev.address, ev.now_ms, ev.applied_seq)
        chain = self.config.shards[shard]
        if not chain.formed:
            return self._join_bootstrap(shard, info)
        epoch = chain.epoch + 1
        if chain.has_member(rid) and len(chain.chain) == 1:
            # The only copy of the shard's data: never drop it; a new epoch
            # makes its new incarnation distinguishable from the old one.
            kept = ChainConfig(shard, epoch, (info,), chain.joining)
            return self._commit([(kept, ())]) + [self._join_reply(rid, kept)]
        without = tuple(r for r in chain.chain if r.replica_id != rid)
        if chain.joining is None or chain.joining.replica_id == rid:
            joined = ChainConfig(shard, epoch, without, info)
            return self._commit([(joined, ())]) + [self._join_reply(rid, joined)]
        retry = ReplyJoin(rid, chain, self.config.cluster_id, retry_later=True,
                          retry_after_ms=self.settings.join_retry_after_ms)
        if len(without) == len(chain.chain):
            return [retry]
        # Its memory is gone: it must leave the chain now even though it
        # cannot become the joiner yet.
        removed = ChainConfig(shard, epoch, without, chain.joining)
        return self._commit([(removed, ())]) + [replace(retry, config=removed)]

    def _join_bootstrap(self, shard: int, info: ReplicaInfo) -> list[Effect]:
        waiting = self._waiting[shard]
        waiting[:] = [r for r in waiting if r.replica_id != info.replica_id] + [info]
        if len(waiting) < self.settings.replicas_per_shard:
            return [self._join_reply(info.replica_id, self.config.shards[shard])]
        formed = ChainConfig(shard, 1, tuple(waiting), None)
        waiting.clear()
        return self._commit([(formed, ())]) + [self._join_reply(info.replica_id, formed)]

    def _join_reply(self, replica_id: str, chain: ChainConfig) -> ReplyJoin:
        return ReplyJoin(replica_id, chain, self.config.cluster_id)

    # ---------------------------------------------------------------- tick

    def _on_tick(self, now_ms: int) -> list[Effect]:
        timeout_ms = self.settings.failure_timeout_ms
        changes: list[tuple[ChainConfig, tuple[ReplicaInfo, ...]]] = []
        for chain in self.config.shards:
            if not chain.formed:
                self._waiting[chain.shard][:] = [
                    r for r in self._waiting[chain.shard] if now_ms - self._last_heard(r, now_ms) < timeout_ms]
                continue
            dropped: list[ReplicaInfo] = []
            joining = chain.joining
            if joining is not None and now_ms - self._last_heard(joining, now_ms) >= timeout_ms:
                dropped.append(joining)
                joining = None
            members = chain.chain
            silent = [(self._last_heard(r, now_ms), -i, r) for i, r in enumerate(members)
                      if now_ms - self._last_heard(r, now_ms) >= timeout_ms]
            if silent and len(members) > 1:
                victim = min(silent, key=lambda s: (s[0], s[1]))[2]
                dropped.append(victim)
                members = tuple(r for r in members if r.replica_id != victim.replica_id)
            if dropped:
                changes.append((ChainConfig(chain.shard, chain.epoch + 1, members, joining), tuple(dropped)))
        return self._commit(changes) if changes else []

    # ---------------------------------------------------------------- helpers

    def _commit(self, changes: list[tuple[ChainConfig, tuple[ReplicaInfo, ...]]]) -> list[Effect]:
        """Adopt new shard configs: persist first, then push each to its
        replicas and to the replicas it dropped (so a suspected-but-alive one
        learns the new epoch and stops serving)."""
        old = self.config
        for chain, _ in changes:
            previous = old.shards[chain.shard]
            assert chain.epoch == previous.epoch + 1, (previous, chain)
            assert chain.chain, f"shard {chain.shard} would have an empty chain"
            assert chain.joining is None or not chain.has_member(chain.joining.replica_id), chain
        self._config = old.with_shards([chain for chain, _ in changes])
        effects: list[Effect] = [PersistConfig(self._config)]
        for chain, dropped in changes:
            targets = {r.replica_id: r for r in chain.replicas()}
            for r in dropped:
                targets.setdefault(r.replica_id, r)
            effects.extend(PushConfig(target, chain) for target in targets.values())
        return effects

    def _check_request(self, replica_id: str, shard: int, address: str, cluster_id: str) -> None:
        if not replica_id:
            raise BadRequestError("replica_id is empty; every replica needs a stable id such as 's0r1'")
        if len(replica_id) > REPLICA_ID_LENGTH_MAX or len(address) > ADDRESS_LENGTH_MAX:
            raise BadRequestError(
                f"replica_id or address too long (max {REPLICA_ID_LENGTH_MAX} / {ADDRESS_LENGTH_MAX} chars)")
        if not 0 <= shard < self.config.num_shards:
            raise BadRequestError(
                f"shard {shard} does not exist: this cluster has {self.config.num_shards} shards "
                f"(0..{self.config.num_shards - 1})")
        if cluster_id and cluster_id != self.config.cluster_id:
            raise ShardMismatchError(
                f"replica {replica_id!r} belongs to cluster {cluster_id}, this coordinator runs cluster "
                f"{self.config.cluster_id}; start it on a fresh directory or with its own coordinator")

    def _listed_shard(self, replica_id: str) -> int | None:
        """The shard that lists ``replica_id`` as member, joiner or waiting."""
        for chain in self.config.shards:
            if chain.has_member(replica_id) or chain.is_joining(replica_id):
                return chain.shard
            if any(r.replica_id == replica_id for r in self._waiting[chain.shard]):
                return chain.shard
        return None

    def _last_heard(self, replica: ReplicaInfo, now_ms: int) -> int:
        health = self._health.get(replica.replica_id)
        if health is None:  # cannot happen for listed replicas; be lenient
            self._health[replica.replica_id] = health = _Health(0, replica.address, now_ms)
        return health.last_heard_ms

    def _touch(self, replica_id: str, shard: int, address: str | None, now_ms: int, applied_seq: int) -> None:
        health = self._health.get(replica_id)
        if health is None:
            if len(self._health) >= HEALTH_RECORDS_MAX:
                self._forget_oldest_unlisted()
            health = self._health[replica_id] = _Health(shard, address or "", now_ms)
        health.shard = shard
        health.last_heard_ms = max(health.last_heard_ms, now_ms)
        health.applied_seq = applied_seq
        if address:
            health.address = address

    def _forget_oldest_unlisted(self) -> None:
        listed = {r.replica_id for chain in self.config.shards for r in chain.replicas()}
        listed.update(r.replica_id for waiting in self._waiting for r in waiting)
        unlisted = [(h.last_heard_ms, rid) for rid, h in self._health.items() if rid not in listed]
        if unlisted:
            del self._health[min(unlisted)[1]]
