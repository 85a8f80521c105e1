"""``lineagerun.node.placement.decide``: the keep / spill / fail decision of
a node's local scheduler (pure; no cluster needed)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineagerun.core.resources import ResourceSet
from lineagerun.core.scheduling_strategies import DEFAULT, SPREAD, NodeAffinitySchedulingStrategy
from lineagerun.node.placement import (
    FAIL,
    KEEP,
    LOCALITY_SPILL_MIN_BYTES,
    QUEUE_LENGTH_SPILL_THRESHOLD,
    SPILL,
    TaskFacts,
    decide,
)

HERE = "aa" * 28
THERE = "bb" * 28
TOTAL = ResourceSet({"CPU": 2, "special": 1})


def facts(demand=None, strategy=DEFAULT, actor=False, local=0, remote=0) -> TaskFacts:
    return TaskFacts(ResourceSet(demand or {"CPU": 1}), strategy, actor, local, remote)


def action(task, queue_length=0) -> str:
    return decide(task, node_id_hex=HERE, total=TOTAL, queue_length=queue_length).action


@pytest.mark.parametrize("task, queue_length, expected", [
    (facts(), 0, KEEP),
    (facts({"CPU": 3}), 0, SPILL),                                     # infeasible here
    (facts({"gpu_like": 1}), 0, SPILL),
    (facts(strategy=SPREAD), 0, SPILL),
    (facts(), QUEUE_LENGTH_SPILL_THRESHOLD, SPILL),
    (facts(), QUEUE_LENGTH_SPILL_THRESHOLD - 1, KEEP),
    (facts(strategy=NodeAffinitySchedulingStrategy(THERE)), 0, SPILL),
    (facts(strategy=NodeAffinitySchedulingStrategy(HERE)), QUEUE_LENGTH_SPILL_THRESHOLD * 2, KEEP),
    (facts({"CPU": 3}, NodeAffinitySchedulingStrategy(HERE, soft=False)), 0, FAIL),
    (facts({"CPU": 3}, NodeAffinitySchedulingStrategy(HERE, soft=True)), 0, SPILL),
    (facts(remote=LOCALITY_SPILL_MIN_BYTES), 0, SPILL),                # read where the data is
    (facts(remote=LOCALITY_SPILL_MIN_BYTES - 1), 0, KEEP),             # cheaper to pull
    (facts(local=2 * LOCALITY_SPILL_MIN_BYTES, remote=LOCALITY_SPILL_MIN_BYTES), 0, KEEP),
    (facts(actor=True, strategy=SPREAD), 0, KEEP),                     # actors stay with their creator
    (facts({"CPU": 3}, actor=True), 0, FAIL),
])
def test_decide(task, queue_length, expected):
    decision = decide(task, node_id_hex=HERE, total=TOTAL, queue_length=queue_length)
    assert decision.action == expected, decision
    assert (decision.reason == "") == (expected == KEEP)


@settings(max_examples=200, deadline=None)
@given(cpus=st.integers(0, 4), queue_length=st.integers(0, 300), local=st.integers(0, 10 * 2**20),
       remote=st.integers(0, 10 * 2**20), strategy=st.sampled_from([DEFAULT, SPREAD, "here", "there"]))
def test_never_keeps_what_cannot_fit_and_never_fails_what_another_node_may_run(cpus, queue_length, local, remote,
                                                                              strategy):
    strategy = {"here": NodeAffinitySchedulingStrategy(HERE), "there": NodeAffinitySchedulingStrategy(THERE)}.get(
        strategy, strategy)
    task = facts({"CPU": cpus}, strategy, local=local, remote=remote)
    result = action(task, queue_length)
    if cpus > 2:
        assert result != KEEP
    if result == FAIL:
        assert strategy == NodeAffinitySchedulingStrategy(HERE)  # only a hard affinity to this node fails here
    if strategy == SPREAD or strategy == NodeAffinitySchedulingStrategy(THERE):
        assert result == SPILL
