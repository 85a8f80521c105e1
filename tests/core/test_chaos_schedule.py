"""Fault schedules, invariants and reports (lineagerun.core.chaos_schedule): pure."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineagerun.core.chaos_schedule import (INJECT, UNDO, FaultRecord, FaultSpec, Finish, OpTiming, RunOutcome,
                                            ScheduleCursor, Tick, build_report, evaluate_invariants,
                                            expand_schedule, recovery_times_ms, undo_of)


def test_periodic_faults_rotate_through_targets_and_are_undone_after_their_duration():
    spec = FaultSpec("kill", ("head", "middle", "tail"), every_ms=2000, start_ms=1000, duration_ms=500)
    actions = expand_schedule([spec], 8000, random.Random(0))
    injects = [(a.at_ms, a.target) for a in actions if a.phase == INJECT]
    undos = [(a.at_ms, a.target) for a in actions if a.phase == UNDO]
    assert injects == [(1000, "head"), (3000, "middle"), (5000, "tail"), (7000, "head")]
    assert undos == [(1500, "head"), (3500, "middle"), (5500, "tail"), (7500, "head")]
    assert [a.at_ms for a in actions] == sorted(a.at_ms for a in actions)
    assert {a.fault_id for a in actions} == {"f0.0", "f0.1", "f0.2", "f0.3"}


def test_fixed_times_beyond_the_run_are_dropped_and_undos_may_fall_after_the_end():
    spec = FaultSpec("pause", ("tail",), at_ms=(1000, 9000, 12000), duration_ms=2000)
    actions = expand_schedule([spec], 10_000, random.Random(0))
    assert [(a.at_ms, a.phase) for a in actions] == [(1000, INJECT), (3000, UNDO), (9000, INJECT), (11000, UNDO)]


def test_restart_has_no_undo_and_kill_without_duration_is_left_to_healing():
    actions = expand_schedule([FaultSpec("restart", ("coordinator",), at_ms=(500,), duration_ms=1000),
                               FaultSpec("kill", ("head",), at_ms=(700,))], 5000, random.Random(0))
    assert [(a.action, a.phase) for a in actions] == [("restart", INJECT), ("kill", INJECT)]
    assert undo_of(actions[1]).phase == UNDO and undo_of(actions[1]).fault_id == actions[1].fault_id


def test_random_schedules_replay_from_the_seed():
    spec = FaultSpec("kill", ("head", "middle", "tail"), random_count=5, start_ms=1000, stop_ms=9000,
                     duration_ms=300)
    first = expand_schedule([spec], 10_000, random.Random(42))
    again = expand_schedule([spec], 10_000, random.Random(42))
    other = expand_schedule([spec], 10_000, random.Random(43))
    assert first == again
    assert first != other
    injects = [a for a in first if a.phase == INJECT]
    assert len(injects) == 5
    assert all(1000 <= a.at_ms < 9000 for a in injects)


def test_a_schedule_too_large_is_refused():
    with pytest.raises(ValueError, match="at most"):
        expand_schedule([FaultSpec("kill", ("head",), every_ms=1)], 3_600_000, random.Random(0))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), count=st.integers(1, 20), duration_ms=st.integers(0, 3000),
       run_ms=st.integers(1000, 60_000))
def test_every_undo_follows_its_inject_and_the_schedule_is_sorted(seed, count, duration_ms, run_ms):
    specs = [FaultSpec("kill", ("head", "tail"), random_count=count, duration_ms=duration_ms),
             FaultSpec("latency", ("clients",), every_ms=1500, duration_ms=duration_ms or 100,
                       attributes=(("latency", 50),))]
    actions = expand_schedule(specs, run_ms, random.Random(seed))
    assert actions == expand_schedule(specs, run_ms, random.Random(seed))
    assert [a.at_ms for a in actions] == sorted(a.at_ms for a in actions)
    injected_at = {}
    for action in actions:
        if action.phase == INJECT:
            assert action.fault_id not in injected_at
            injected_at[action.fault_id] = action.at_ms
        else:
            assert injected_at[action.fault_id] <= action.at_ms


def test_cursor_hands_out_due_actions_once_and_pending_undos_at_finish():
    spec = FaultSpec("pause", ("tail",), at_ms=(1000, 4000, 9500), duration_ms=2000)
    cursor = ScheduleCursor(expand_schedule([spec], 10_000, random.Random(0)))
    assert cursor.handle(Tick(999)) == []
    assert [(a.at_ms, a.phase) for a in cursor.handle(Tick(1000))] == [(1000, INJECT)]
    assert cursor.handle(Tick(1000)) == []
    assert [(a.at_ms, a.phase) for a in cursor.handle(Tick(5000))] == [(3000, UNDO), (4000, INJECT)]
    assert cursor.next_at_ms() == 6000
    # The run ends at 5.5 s: the undo of 4000 is still due, the 9500 fault never happened.
    assert [(a.at_ms, a.phase) for a in cursor.handle(Finish())] == [(6000, UNDO)]
    assert cursor.done


def test_invariants_compare_max_min_and_booleans_and_fail_when_not_measured():
    results = {r.name: r for r in evaluate_invariants(
        {"acknowledged_writes_lost": 0, "max_stall_ms": 100, "min_operations_ok": 10,
         "replicas_identical": True, "result_matches_fault_free": True},
        {"lost": 0, "max_stall_ms": 250.04, "operations_ok": 12, "replicas_identical": False})}
    assert results["acknowledged_writes_lost"].ok
    assert not results["max_stall_ms"].ok and "250.0 > 100" in results["max_stall_ms"].message
    assert results["min_operations_ok"].ok
    assert not results["replicas_identical"].ok
    assert not results["result_matches_fault_free"].ok
    assert "not measured" in results["result_matches_fault_free"].message


def test_recovery_time_runs_from_the_fault_to_the_first_ack_of_an_operation_invoked_after_it():
    ops = [OpTiming(0.0, 0.1, True), OpTiming(0.9, 2.5, True),   # in flight at the fault: ignored
           OpTiming(1.2, 1.9, False), OpTiming(1.3, 2.0, True), OpTiming(5.0, 5.1, True)]
    times = recovery_times_ms([1.0, 4.0, 10.0], ops)
    assert times == pytest.approx([1000.0, 1100.0])  # nothing acknowledged after 10.0: left out


def _outcome(**overrides) -> RunOutcome:
    base = dict(scenario="s", scenario_file="chaos/s.toml", seed=7, cluster={"kind": "control-store"},
                workload="kv-unique-writes", duration_s=10.0,
                faults=[FaultRecord(1.0, "f0.0", INJECT, "kill head [s0r0]"),
                        FaultRecord(1.5, "f0.0", UNDO, "restart head [s0r0]")],
                measured={"operations_attempted": 100, "operations_ok": 98, "operations_unknown": 2, "lost": 0,
                          "duplicated": 0, "stale": 0, "max_stall_ms": 900.0, "result_matches": True},
                invariants={"acknowledged_writes_lost": 0, "max_stall_ms": 1000}, recovery_ms=[100.0, 300.0, 200.0])
    base.update(overrides)
    return RunOutcome(**base)


def test_report_has_the_reliability_fields_and_passes():
    report = build_report(_outcome())
    assert report["verdict"] == "PASS"
    assert report["seed"] == 7
    assert report["faults_injected"] == 1
    assert report["operations"] == {"attempted": 100, "ok": 98, "failed": 0, "unknown": 2}
    assert (report["lost"], report["duplicated"], report["stale"]) == (0, 0, 0)
    assert report["recovery_ms"] == {"count": 3, "p50": 200.0, "max": 300.0}
    # A control store has no tasks: null, not a misleading 0.
    assert report["tasks_reexecuted"] is None and report["actor_calls_replayed"] is None
    assert report["problems"] == []


def test_report_fails_on_a_broken_invariant_and_on_a_fault_the_nemesis_could_not_inject():
    broken = build_report(_outcome(invariants={"max_stall_ms": 0}))
    assert broken["verdict"] == "FAIL"
    assert any("max_stall_ms: FAILED" in p for p in broken["problems"])
    failed_action = build_report(_outcome(faults=[FaultRecord(1.0, "f0.0", INJECT, "kill head", "boom")]))
    assert failed_action["verdict"] == "FAIL"
    assert failed_action["faults_injected"] == 0
    assert any("boom" in p for p in failed_action["problems"])


def test_max_recovery_invariant_uses_the_measured_recoveries():
    report = build_report(_outcome(invariants={"max_recovery_ms": 250}))
    assert report["verdict"] == "FAIL"
    assert report["invariants"][0]["actual"] == 300.0
