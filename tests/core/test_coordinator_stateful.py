"""Random histories of the coordinator core (joins, heartbeats, silences,
ticks, failed pushes, restarts from the last persisted config), checked
against the configuration invariants after every step."""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lineagerun.core.chain.coordinator import ChainCoordinator
from lineagerun.core.chain.coordinator_events import (
    ConfigLoaded,
    CoordinatorSettings,
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
from lineagerun.exceptions import ShardMismatchError

NUM_SHARDS = 2
REPLICAS = 2
IDS_PER_SHARD = 4
TIMEOUT_MS = 1000
SETTINGS = CoordinatorSettings(num_shards=NUM_SHARDS, replicas_per_shard=REPLICAS,
                               failure_timeout_ms=TIMEOUT_MS, lease_ms=600)

shards = st.integers(0, NUM_SHARDS - 1)
indexes = st.integers(0, IDS_PER_SHARD - 1)
small_steps_ms = st.integers(0, 300)


class CoordinatorHistory(RuleBasedStateMachine):
    @initialize()
    def start(self):
        self.now_ms = 0
        self.core = ChainCoordinator(SETTINGS)
        self.persisted = None       # the last config written to "disk"
        self.seen = {}              # (shard, epoch) -> the one ChainConfig with that epoch
        self.max_epochs = [0] * NUM_SHARDS
        self.formed = [False] * NUM_SHARDS
        self.apply(FreshStart("cluster-1", self.now_ms))

    # ------------------------------------------------------------ driver

    def apply(self, event):
        for effect in self.core.handle(event):
            if isinstance(effect, PersistConfig):
                self.persisted = effect.config
                for chain in effect.config.shards:
                    self.remember(chain)
            else:
                assert isinstance(effect, (PushConfig, ReplyHeartbeat, ReplyJoin)), effect
                # Whatever leaves the core was persisted before it.
                assert self.persisted is not None
                assert effect.config == self.persisted.shards[effect.config.shard], effect
                if isinstance(effect, PushConfig):
                    assert effect.lease_ms == 0
                self.remember(effect.config)

    def remember(self, chain):
        key = (chain.shard, chain.epoch)
        assert self.seen.setdefault(key, chain) == chain, f"two configs for {key}: {self.seen[key]} / {chain}"

    def listed_shard(self, rid):
        for chain in self.core.config.shards:
            if any(r.replica_id == rid for r in chain.replicas()):
                return chain.shard
        waiting = [h.shard for h in self.core.health(self.now_ms) if h.replica_id == rid and h.state == "waiting"]
        return waiting[0] if waiting else None

    def rid(self, shard, index):
        return f"s{shard}r{index}"

    # ------------------------------------------------------------ rules

    @rule(shard=shards, index=indexes, incarnation=st.integers(0, 2), dt=small_steps_ms,
          foreign=st.booleans())
    def join(self, shard, index, incarnation, dt, foreign):
        self.now_ms += dt
        # A replica id of another shard joining here must be refused when
        # that id is listed there.
        rid = self.rid((shard + 1) % NUM_SHARDS if foreign else shard, index)
        event = JoinRequested(rid, shard, f"{rid}-{incarnation}", now_ms=self.now_ms, cluster_id="cluster-1")
        listed_elsewhere = self.listed_shard(rid) not in (None, shard)
        try:
            self.apply(event)
        except ShardMismatchError:
            assert listed_elsewhere
        else:
            assert not listed_elsewhere

    @rule(shard=shards, index=indexes, caught_up=st.booleans(), behind=st.integers(0, 1), dt=small_steps_ms)
    def heartbeat(self, shard, index, caught_up, behind, dt):
        self.now_ms += dt
        epoch = max(0, self.core.config.shards[shard].epoch - behind)
        rid = self.rid(shard, index)
        self.apply(HeartbeatReceived(rid, shard, rid, epoch, 0, 0, caught_up, self.now_ms))

    @rule(shard=shards, caught_up=st.booleans(), dt=small_steps_ms)
    def everyone_listed_beats(self, shard, caught_up, dt):
        self.now_ms += dt
        chain = self.core.config.shards[shard]
        for replica in chain.replicas():
            self.apply(HeartbeatReceived(replica.replica_id, shard, replica.address, chain.epoch, 0, 0,
                                         caught_up, self.now_ms))

    @rule(dt=st.integers(0, 1500))
    def tick(self, dt):
        self.now_ms += dt
        self.apply(Tick(self.now_ms))

    @rule(shard=shards, index=indexes)
    def push_fails(self, shard, index):
        self.apply(PushFailed(self.rid(shard, index), shard, self.core.config.shards[shard].epoch))

    @rule(clock_jump_ms=st.integers(-10_000, 10_000))
    def coordinator_restarts(self, clock_jump_ms):
        # A new process: new monotonic clock, only what was persisted survives.
        self.now_ms = max(0, self.now_ms + clock_jump_ms)
        self.core = ChainCoordinator(SETTINGS)
        self.apply(ConfigLoaded(self.persisted, self.now_ms))

    # ------------------------------------------------------------ invariants

    @invariant()
    def memory_matches_disk(self):
        assert self.core.config == self.persisted

    @invariant()
    def epochs_never_decrease_and_chains_stay_whole(self):
        for chain in self.core.config.shards:
            assert chain.epoch >= self.max_epochs[chain.shard]
            self.max_epochs[chain.shard] = chain.epoch
            if chain.formed:
                self.formed[chain.shard] = True
            if self.formed[chain.shard]:
                assert chain.chain, f"shard {chain.shard} lost its last member"
            if chain.joining is not None:
                assert not chain.has_member(chain.joining.replica_id)
            ids = chain.member_ids()
            assert len(ids) == len(set(ids))


CoordinatorHistory.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_coordinator_history = CoordinatorHistory.TestCase
