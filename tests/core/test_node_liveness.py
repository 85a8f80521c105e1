import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineagerun.core.ids import NodeID
from lineagerun.core.node_liveness import (
    DeclareDead,
    FenceIncarnation,
    Heartbeat,
    NodeAdmitted,
    NodeForgotten,
    NodeLiveness,
    NodeMarkedDead,
    NodeRegistered,
    RefuseNode,
    Tick,
)
from lineagerun.exceptions import InvalidArgumentError

A = NodeID(b"\x01" * 28)
B = NodeID(b"\x02" * 28)


@pytest.fixture
def live():
    machine = NodeLiveness(node_timeout_ms=1000)
    yield machine
    machine.check_invariants()


def test_first_heartbeat_admits_the_node(live):
    assert live.handle(Heartbeat(A, 1, 0)) == [NodeAdmitted(A, 1)]
    assert live.handle(Heartbeat(A, 1, 100)) == []
    assert live.is_alive(A) and live.alive_incarnation(A) == 1


def test_declared_dead_after_the_timeout_of_silence_not_before(live):
    live.handle(Heartbeat(A, 1, 0))
    live.handle(Heartbeat(A, 1, 500))
    assert live.handle(Tick(1499)) == []
    assert live.handle(Tick(1500)) == [DeclareDead(A, 1, "no heartbeat for 1000 ms (timeout 1000 ms)", 1000)]
    assert not live.is_alive(A)
    assert live.handle(Tick(5000)) == []  # declared once


def test_steady_heartbeats_keep_a_node_alive(live):
    for now in range(0, 10_000, 100):
        live.handle(Heartbeat(A, 1, now))
        assert live.handle(Tick(now + 50)) == []
    assert live.is_alive(A)


def test_a_dead_incarnation_is_fenced_and_a_higher_one_admitted(live):
    live.handle(Heartbeat(A, 1, 0))
    live.handle(Tick(2000))
    [fence] = live.handle(Heartbeat(A, 1, 2100))
    assert isinstance(fence, FenceIncarnation) and fence.incarnation == 1 and fence.fenced_through == 1
    assert not fence.from_record and "above 1" in fence.reason
    assert not live.is_alive(A)
    assert live.handle(Heartbeat(A, 2, 2200)) == [NodeAdmitted(A, 2)]
    assert isinstance(live.handle(Heartbeat(A, 1, 2300))[0], FenceIncarnation)
    assert live.handle(Heartbeat(A, 2, 2300)) == []


def test_a_stale_alive_record_of_a_dead_incarnation_is_fenced_from_record(live):
    live.handle(NodeRegistered(A, 3, 0))
    live.handle(Tick(1000))
    [fence] = live.handle(NodeRegistered(A, 3, 1100))
    assert isinstance(fence, FenceIncarnation) and fence.from_record


def test_a_fast_restart_replaces_the_old_incarnation(live):
    live.handle(Heartbeat(A, 1, 0))
    assert live.handle(NodeRegistered(A, 2, 100)) == [NodeAdmitted(A, 2)]
    [fence] = live.handle(Heartbeat(A, 1, 150))
    assert fence.fenced_through == 1
    # a record of the old life read late (scan racing the subscription) is ignored
    assert live.handle(NodeRegistered(A, 1, 160)) == []
    assert live.alive_incarnation(A) == 2


def test_record_updates_count_as_heartbeats(live):
    live.handle(NodeRegistered(A, 1, 0))
    live.handle(NodeRegistered(A, 1, 900))
    assert live.handle(Tick(1800)) == []
    assert live.handle(Tick(1900))[0].node_id == A


def test_a_clean_stop_record_fences_without_declaring(live):
    live.handle(Heartbeat(A, 1, 0))
    assert live.handle(NodeMarkedDead(A, 1, 10)) == []
    assert live.handle(Tick(5000)) == []
    assert isinstance(live.handle(Heartbeat(A, 1, 5100))[0], FenceIncarnation)


def test_restart_rebuild_reads_fences_from_dead_records(live):
    live.handle(NodeMarkedDead(A, 4, 0))
    assert isinstance(live.handle(Heartbeat(A, 4, 1))[0], FenceIncarnation)
    assert live.handle(Heartbeat(A, 5, 2)) == [NodeAdmitted(A, 5)]


def test_forgotten_node_starts_over(live):
    live.handle(Heartbeat(A, 1, 0))
    live.handle(NodeForgotten(A))
    assert not live.is_alive(A)
    assert live.handle(Heartbeat(A, 1, 10)) == [NodeAdmitted(A, 1)]


def test_time_going_backwards_is_ignored(live):
    live.handle(Heartbeat(A, 1, 5000))
    assert live.handle(Tick(100)) == []
    assert live.handle(Tick(5999)) == []
    assert len(live.handle(Tick(6000))) == 1


def test_bounds_on_alive_and_dead_nodes():
    live = NodeLiveness(1000, dead_nodes_kept_max=2, alive_nodes_max=2)
    ids = [NodeID(bytes([i]) * 28) for i in range(1, 5)]
    live.handle(Heartbeat(ids[0], 1, 0))
    live.handle(Heartbeat(ids[1], 1, 0))
    [refused] = live.handle(Heartbeat(ids[2], 1, 0))
    assert isinstance(refused, RefuseNode) and "at most 2" in refused.reason
    for i, node in enumerate(ids):
        live.handle(NodeMarkedDead(node, 1, 10 + i))
    live.check_invariants()
    assert set(live.nodes) == {ids[2], ids[3]}  # the oldest dead are forgotten


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(InvalidArgumentError, match="incarnation"):
        Heartbeat(A, 0, 0)
    with pytest.raises(InvalidArgumentError, match="NodeID"):
        Heartbeat(b"x" * 28, 1, 0)
    with pytest.raises(InvalidArgumentError, match="now_ms"):
        Tick(-1)
    with pytest.raises(InvalidArgumentError, match="node_timeout_ms"):
        NodeLiveness(0)
    with pytest.raises(InvalidArgumentError, match="cannot handle"):
        NodeLiveness().handle("tick")


# ----------------------------------------------------------------- property

NODES = [NodeID(bytes([i]) * 28) for i in range(1, 4)]

events = st.one_of(
    st.tuples(st.just("hb"), st.sampled_from(NODES), st.integers(1, 4), st.integers(0, 400)),
    st.tuples(st.just("reg"), st.sampled_from(NODES), st.integers(1, 4), st.integers(0, 400)),
    st.tuples(st.just("dead"), st.sampled_from(NODES), st.integers(1, 4), st.integers(0, 400)),
    st.tuples(st.just("tick"), st.just(None), st.just(0), st.integers(0, 700)),
    st.tuples(st.just("forget"), st.sampled_from(NODES), st.just(0), st.just(0)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(events, max_size=60))
def test_liveness_properties(script):
    """Never declared dead while heard within the timeout; always declared
    on the first tick after it; a fenced incarnation is never accepted."""
    timeout_ms = 1000
    live = NodeLiveness(timeout_ms)
    now = 0
    fenced: dict[NodeID, int] = {}
    heard: dict[NodeID, int] = {}
    for kind, node, incarnation, step_ms in script:
        now += step_ms
        if kind == "tick":
            effects = live.handle(Tick(now))
            for effect in effects:
                assert isinstance(effect, DeclareDead)
                assert now - heard[effect.node_id] >= timeout_ms
                fenced[effect.node_id] = max(fenced.get(effect.node_id, 0), effect.incarnation)
            for node_id in live.alive_nodes():
                assert now - heard[node_id] < timeout_ms
        elif kind == "forget":
            live.handle(NodeForgotten(node))
            fenced.pop(node, None)
        elif kind == "dead":
            live.handle(NodeMarkedDead(node, incarnation, now))
            if not (live.is_alive(node) and live.alive_incarnation(node) > incarnation):
                fenced[node] = max(fenced.get(node, 0), incarnation)
        else:
            event = Heartbeat if kind == "hb" else NodeRegistered
            effects = live.handle(event(node, incarnation, now))
            if incarnation <= fenced.get(node, 0):
                assert not any(isinstance(e, NodeAdmitted) for e in effects)
                if kind == "hb":
                    assert isinstance(effects[0], FenceIncarnation)
            if live.alive_incarnation(node) == incarnation and not any(isinstance(e, FenceIncarnation) for e in effects):
                heard[node] = now
            if any(isinstance(e, NodeAdmitted) for e in effects):
                # a fast restart fences the earlier lives
                fenced[node] = max(fenced.get(node, 0), incarnation - 1)
        live.check_invariants()
