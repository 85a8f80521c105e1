"""The chain coordinator core, one behaviour per test (no I/O, no clock)."""

import pytest

from lineagerun.core.chain.coordinator import ChainCoordinator
from lineagerun.core.chain.coordinator_events import (
    ChainConfig,
    ConfigLoaded,
    CoordinatorSettings,
    FreshStart,
    HeartbeatReceived,
    JoinRequested,
    PersistConfig,
    PushConfig,
    PushFailed,
    ReplicaInfo,
    ReplyHeartbeat,
    ReplyJoin,
    Tick,
)
from lineagerun.exceptions import BadRequestError, ConfigurationError, ShardMismatchError

CLUSTER = "c" * 32
TIMEOUT_MS = 1000
LEASE_MS = 600


def make(num_shards=1, replicas=3):
    core = ChainCoordinator(CoordinatorSettings(num_shards=num_shards, replicas_per_shard=replicas,
                                                failure_timeout_ms=TIMEOUT_MS, lease_ms=LEASE_MS))
    effects = core.handle(FreshStart(CLUSTER, now_ms=0))
    assert effects == [PersistConfig(core.config)]
    return core


def join(core, rid, shard=0, now_ms=0, cluster_id=""):
    effects = core.handle(JoinRequested(rid, shard, f"addr-{rid}", now_ms=now_ms, cluster_id=cluster_id))
    reply = effects[-1]
    assert isinstance(reply, ReplyJoin)
    return reply, effects


def beat(core, rid, shard=0, now_ms=0, caught_up=False, epoch=None):
    if epoch is None:
        epoch = core.config.shards[shard].epoch
    effects = core.handle(HeartbeatReceived(rid, shard, f"addr-{rid}", epoch, 0, 0, caught_up, now_ms))
    reply = effects[-1]
    assert isinstance(reply, ReplyHeartbeat)
    return reply, effects


def formed(core, ids=("a", "b", "c"), shard=0):
    for rid in ids:
        join(core, rid, shard)
    return core.config.shards[shard]


def keep_alive(core, ids, now_ms, shard=0):
    for rid in ids:
        beat(core, rid, shard, now_ms=now_ms)


def chain_ids(core, shard=0):
    return core.config.shards[shard].member_ids()


def test_bootstrap_waits_for_all_replicas_then_forms_chain_in_join_order():
    core = make(num_shards=2, replicas=2)
    reply, effects = join(core, "s0r1", 0)
    assert effects == [reply] and reply.config.epoch == 0 and not reply.retry_later
    assert reply.cluster_id == CLUSTER
    waiting, _ = beat(core, "s0r1", 0)
    assert waiting.lease_ms == 0 and not waiting.must_join
    stranger, _ = beat(core, "s0r9", 0)
    assert stranger.must_join
    reply, effects = join(core, "s0r0", 0)
    assert reply.config == ChainConfig(0, 1, (ReplicaInfo("s0r1", "addr-s0r1"), ReplicaInfo("s0r0", "addr-s0r0")))
    assert isinstance(effects[0], PersistConfig) and effects[0].config.shards[0] == reply.config
    assert {e.target.replica_id for e in effects if isinstance(e, PushConfig)} == {"s0r0", "s0r1"}
    assert core.config.shards[1].epoch == 0  # shard 1 still waits for its replicas
    member, _ = beat(core, "s0r1", 0)
    assert member.lease_ms == LEASE_MS and not member.must_join


def test_bootstrap_forgets_waiting_replica_that_went_silent():
    core = make(replicas=2)
    join(core, "a", now_ms=0)
    core.handle(Tick(TIMEOUT_MS))
    join(core, "b", now_ms=TIMEOUT_MS)
    assert not core.config.shards[0].formed
    join(core, "c", now_ms=TIMEOUT_MS)
    assert chain_ids(core) == ("b", "c")


@pytest.mark.parametrize("dead, expected", [("a", ("b", "c")), ("b", ("a", "c")), ("c", ("a", "b"))],
                         ids=["head", "middle", "tail"])
def test_silent_member_is_removed_with_new_epoch(dead, expected):
    core = make()
    formed(core)
    alive = [r for r in ("a", "b", "c") if r != dead]
    keep_alive(core, alive, now_ms=900)
    assert core.handle(Tick(999)) == []
    effects = core.handle(Tick(1000))
    chain = core.config.shards[0]
    assert chain.member_ids() == expected and chain.epoch == 2
    assert effects[0] == PersistConfig(core.config)
    # The removed one is told too, so a suspected-but-alive member fences itself.
    assert {e.target.replica_id for e in effects[1:]} == {"a", "b", "c"}
    removed, _ = beat(core, dead, now_ms=1001)
    assert removed.must_join and removed.lease_ms == 0


def test_last_member_is_never_removed():
    core = make(replicas=2)
    formed(core, ("a", "b"))
    core.handle(Tick(1000))
    core.handle(Tick(1100))
    core.handle(Tick(5000))
    chain = core.config.shards[0]
    assert len(chain.chain) == 1 and chain.epoch == 2
    assert core.handle(Tick(60_000)) == []


def test_at_most_one_member_removed_per_tick_and_the_head_survives_all_silent():
    core = make()
    formed(core)
    core.handle(Tick(1000))
    assert chain_ids(core) == ("a", "b")
    core.handle(Tick(1100))
    assert chain_ids(core) == ("a",)


def test_restarted_member_rejoins_as_joining():
    core = make()
    formed(core)
    reply, effects = join(core, "b", now_ms=10)
    assert reply.config.member_ids() == ("a", "c") and reply.config.joining.replica_id == "b"
    assert reply.config.epoch == 2 and not reply.retry_later
    assert isinstance(effects[0], PersistConfig)


def test_only_member_that_rejoins_is_kept_with_new_epoch():
    core = make(replicas=1)
    formed(core, ("a",))
    effects = core.handle(JoinRequested("a", 0, "new-addr", now_ms=5))
    chain = core.config.shards[0]
    assert chain == ChainConfig(0, 2, (ReplicaInfo("a", "new-addr"),))
    assert effects[-1].config == chain and not effects[-1].retry_later


def test_one_joiner_at_a_time():
    core = make()
    formed(core)
    join(core, "d")
    reply, effects = join(core, "e")
    assert reply.retry_later and reply.retry_after_ms > 0 and effects == [reply]
    assert core.config.shards[0].joining.replica_id == "d"
    # A member that restarts while another joins still leaves the chain.
    reply, effects = join(core, "b")
    assert reply.retry_later and isinstance(effects[0], PersistConfig)
    assert chain_ids(core) == ("a", "c") and core.config.shards[0].joining.replica_id == "d"


def test_joiner_promoted_to_tail_when_caught_up_in_current_epoch():
    core = make()
    formed(core)
    join(core, "d")
    epoch = core.config.shards[0].epoch
    reply, effects = beat(core, "d", caught_up=False)
    assert effects == [reply] and reply.lease_ms == LEASE_MS and not reply.must_join
    _, effects = beat(core, "d", caught_up=True, epoch=epoch - 1)  # about an older chain: no
    assert core.config.shards[0].joining.replica_id == "d"
    reply, effects = beat(core, "d", caught_up=True, epoch=epoch)
    assert reply.config == ChainConfig(0, epoch + 1, core.config.shards[0].chain, None)
    assert chain_ids(core) == ("a", "b", "c", "d")
    assert isinstance(effects[0], PersistConfig)


def test_silent_joiner_is_dropped():
    core = make()
    formed(core)
    join(core, "d", now_ms=0)
    keep_alive(core, ("a", "b", "c"), now_ms=900)
    core.handle(Tick(1000))
    chain = core.config.shards[0]
    assert chain.joining is None and chain.member_ids() == ("a", "b", "c")


def test_restart_gives_every_member_a_full_failure_timeout():
    core = make()
    formed(core)
    persisted = core.config
    # Long silence while the coordinator was down (the clock of a new process
    # starts anywhere): nobody is judged before a full timeout after loading.
    restarted = ChainCoordinator(core.settings)
    assert restarted.handle(ConfigLoaded(persisted, now_ms=50_000)) == []
    assert restarted.handle(Tick(50_999)) == []
    keep_alive(restarted, ("a", "c"), now_ms=50_500)
    restarted.handle(Tick(51_000))
    assert chain_ids(restarted) == ("a", "c")
    assert restarted.config.shards[0].epoch == persisted.shards[0].epoch + 1
    assert restarted.config.cluster_id == CLUSTER


def test_join_with_other_cluster_id_is_refused():
    core = make()
    with pytest.raises(ShardMismatchError, match="belongs to cluster"):
        join(core, "a", cluster_id="other")
    reply, _ = join(core, "a", cluster_id=CLUSTER)
    assert reply.cluster_id == CLUSTER


def test_bad_requests_raise_typed_errors_without_changing_anything():
    core = make(num_shards=2)
    before = core.config
    with pytest.raises(BadRequestError, match="shard 2 does not exist"):
        join(core, "a", shard=2)
    with pytest.raises(BadRequestError, match="replica_id is empty"):
        join(core, "")
    with pytest.raises(BadRequestError, match="no address"):
        core.handle(JoinRequested("a", 0, "", now_ms=0))
    with pytest.raises(BadRequestError):
        beat(core, "a", shard=7, epoch=0)
    assert core.config == before


def test_replica_listed_in_another_shard_cannot_join_here():
    core = make(num_shards=2, replicas=1)
    formed(core, ("a",), shard=0)
    with pytest.raises(ShardMismatchError, match="listed in shard 0"):
        join(core, "a", shard=1)


def test_persist_comes_before_every_push_and_reply_of_the_config():
    core = make()
    formed(core)
    for effects in (join(core, "d", now_ms=1)[1], beat(core, "d", now_ms=2, caught_up=True)[1],
                    core.handle(Tick(5000))):
        assert isinstance(effects[0], PersistConfig)
        persisted = effects[0].config
        for effect in effects[1:]:
            assert not isinstance(effect, PersistConfig)
            assert effect.config == persisted.shards[effect.config.shard]


def test_push_failure_is_not_a_failure():
    core = make()
    formed(core)
    before = core.config
    assert core.handle(PushFailed("a", 0, 1, "DEADLINE_EXCEEDED")) == []
    assert core.config == before
    assert {h.replica_id: h.push_failures for h in core.health(0)}["a"] == 1


def test_version_grows_on_every_change_and_health_reports_states():
    core = make(replicas=2)
    versions = [core.config.version]
    formed(core, ("a", "b"))
    versions.append(core.config.version)
    join(core, "c")
    versions.append(core.config.version)
    assert versions == sorted(set(versions))
    states = {h.replica_id: h.state for h in core.health(10)}
    assert states == {"a": "member", "b": "member", "c": "joining"}
    assert {h.replica_id: h.state for h in core.health(TIMEOUT_MS + 10)}["a"] == "dead"


def test_loaded_config_with_other_shard_count_is_refused():
    core = make(num_shards=2)
    other = ChainCoordinator(CoordinatorSettings(num_shards=3, replicas_per_shard=1))
    with pytest.raises(ConfigurationError, match="2 shards, not 3"):
        other.handle(ConfigLoaded(core.config, now_ms=0))


def test_lease_must_be_shorter_than_failure_timeout():
    with pytest.raises(ConfigurationError, match="shorter than the failure timeout"):
        CoordinatorSettings(num_shards=1, replicas_per_shard=1, failure_timeout_ms=500, lease_ms=500)
