"""The pure half of chaos runs: fault schedules, invariants and reports.

A scenario's ``[[faults]]`` become ``FaultSpec``s; ``expand_schedule`` turns
them into a deterministic, time-ordered list of ``ScheduledAction``s (every
fault an *inject* and, when it has a duration, an *undo*). ``ScheduleCursor``
hands out the actions that are due as time passes (time is passed in).
``evaluate_invariants`` and ``build_report`` turn what a run measured into the
JSON report of RELIABILITY.md. No I/O, clocks or hidden randomness here: a
random schedule draws from the ``random.Random`` passed in, so a seed replays
the same run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

# Actions on processes, and on network links (through the chaos proxy).
PROCESS_ACTIONS = ("kill", "pause", "restart")
TOXIC_ACTIONS = ("latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data")
NETWORK_ACTIONS = TOXIC_ACTIONS + ("partition",)
ACTIONS = PROCESS_ACTIONS + NETWORK_ACTIONS
# What undoes an action after its duration ("restart" has no undo).
UNDO_OF = {"kill": "restart", "pause": "resume", "partition": "heal", **{t: "remove-toxic" for t in TOXIC_ACTIONS}}

# A schedule is a list in memory; a typo such as every_s = 0.001 must not
# make millions of actions.
SCHEDULED_FAULTS_MAX = 10_000
# Fault ids and descriptions quoted in a report.
REPORT_PROBLEMS_MAX = 20

INJECT = "inject"
UNDO = "undo"


@dataclass(frozen=True)
class FaultSpec:
    """One ``[[faults]]`` entry, validated (``lineagerun.chaos.scenario``).

    Timing: exactly one of ``at_ms`` (fixed times), ``every_ms`` (periodic
    from ``start_ms`` until ``stop_ms``) or ``random_count`` (that many
    uniformly random times in [start_ms, stop_ms)). ``targets`` rotate for
    fixed and periodic faults and are drawn for random ones. ``duration_ms``
    0 means: not undone until the run heals (kill) or nothing to undo.
    """
    action: str
    targets: tuple[str, ...]
    shard: int = 0
    at_ms: tuple[int, ...] = ()
    every_ms: int = 0
    random_count: int = 0
    start_ms: int = 0
    stop_ms: int | None = None            # None: the scenario's duration
    duration_ms: int = 0
    stream: str = "downstream"
    attributes: tuple[tuple[str, int], ...] = ()
    toxicity: float = 1.0


@dataclass(frozen=True)
class ScheduledAction:
    at_ms: int
    fault_id: str            # "f<spec>.<occurrence>": an inject and its undo share it
    phase: str               # INJECT | UNDO
    action: str              # the fault's action (for UNDO too: what is undone)
    target: str
    shard: int = 0
    duration_ms: int = 0
    stream: str = "downstream"
    attributes: tuple[tuple[str, int], ...] = ()
    toxicity: float = 1.0

    def describe(self) -> str:
        if self.phase == UNDO:
            return f"{UNDO_OF.get(self.action, 'undo ' + self.action)} {self.target}"
        extra = ""
        if self.attributes:
            extra = " (" + ", ".join(f"{k}={v}" for k, v in self.attributes) + f", {self.stream})"
        lasting = f" for {self.duration_ms / 1000:g} s" if self.duration_ms else ""
        return f"{self.action} {self.target}{extra}{lasting}"


def _fault_times_ms(spec: FaultSpec, run_duration_ms: int, rng: random.Random) -> list[int]:
    stop_ms = run_duration_ms if spec.stop_ms is None else min(spec.stop_ms, run_duration_ms)
    if spec.at_ms:
        return [t for t in spec.at_ms if t < run_duration_ms]
    if spec.every_ms:
        count = max(0, (stop_ms - spec.start_ms + spec.every_ms - 1) // spec.every_ms)
        if count > SCHEDULED_FAULTS_MAX:
            raise ValueError(f"every_ms={spec.every_ms} makes {count} faults (at most {SCHEDULED_FAULTS_MAX})")
        return [spec.start_ms + i * spec.every_ms for i in range(count)]
    if spec.random_count:
        if spec.random_count > SCHEDULED_FAULTS_MAX:
            raise ValueError(f"random={spec.random_count} faults (at most {SCHEDULED_FAULTS_MAX})")
        if stop_ms <= spec.start_ms:
            return []
        return sorted(rng.randrange(spec.start_ms, stop_ms) for _ in range(spec.random_count))
    return []


def expand_schedule(specs: Sequence[FaultSpec], run_duration_ms: int, rng: random.Random) -> list[ScheduledAction]:
    """Every inject and undo of ``specs`` for a run of ``run_duration_ms``,
    sorted by time (ties: the order of the specs, injects of one fault before
    its undo). Undos may fall after the run's end; the runner performs those
    when it heals. The same ``rng`` state gives the same list."""
    actions: list[tuple[int, int, int, ScheduledAction]] = []
    for spec_index, spec in enumerate(specs):
        times_ms = _fault_times_ms(spec, run_duration_ms, rng)
        for occurrence, at_ms in enumerate(times_ms):
            if spec.random_count:
                target = spec.targets[rng.randrange(len(spec.targets))]
            else:
                target = spec.targets[occurrence % len(spec.targets)]
            inject = ScheduledAction(at_ms, f"f{spec_index}.{occurrence}", INJECT, spec.action, target, spec.shard,
                                     spec.duration_ms, spec.stream, spec.attributes, spec.toxicity)
            actions.append((at_ms, spec_index, 2 * occurrence, inject))
            if spec.duration_ms and spec.action in UNDO_OF:
                undo = ScheduledAction(at_ms + spec.duration_ms, inject.fault_id, UNDO, spec.action, target,
                                       spec.shard, spec.duration_ms, spec.stream, spec.attributes, spec.toxicity)
                actions.append((undo.at_ms, spec_index, 2 * occurrence + 1, undo))
    actions.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in actions]


# ------------------------------------------------------------------ cursor


@dataclass(frozen=True)
class Tick:
    now_ms: int              # time since the faulted run started


@dataclass(frozen=True)
class Finish:
    """The run is over: every action not yet handed out is due (undos after
    the end, performed while healing)."""


class ScheduleCursor:
    """Hands out the schedule's actions as they fall due:
    ``handle(Tick(now_ms))`` returns the actions with ``at_ms <= now_ms`` not
    returned before; ``handle(Finish())`` returns the undos still pending
    (injects that never became due are dropped)."""

    def __init__(self, actions: Sequence[ScheduledAction]):
        self._actions = list(actions)
        self._next = 0
        self._injected: set[str] = set()

    @property
    def done(self) -> bool:
        return self._next >= len(self._actions)

    def next_at_ms(self) -> int | None:
        return None if self.done else self._actions[self._next].at_ms

    def handle(self, event: Tick | Finish) -> list[ScheduledAction]:
        due: list[ScheduledAction] = []
        while not self.done:
            action = self._actions[self._next]
            if isinstance(event, Tick) and action.at_ms > event.now_ms:
                break
            self._next += 1
            if action.phase == INJECT:
                if isinstance(event, Finish):
                    continue
                self._injected.add(action.fault_id)
            elif action.fault_id not in self._injected:
                continue
            due.append(action)
        return due


# -------------------------------------------------------------- invariants


@dataclass(frozen=True)
class InvariantRule:
    measure: str             # key in the measured dict
    kind: str                # "max": measured <= limit; "min": >=; "bool": == expected
    meaning: str


INVARIANTS: dict[str, InvariantRule] = {
    "acknowledged_writes_lost": InvariantRule("lost", "max", "acknowledged writes missing at the end"),
    "duplicated_writes": InvariantRule("duplicated", "max", "writes applied more than once"),
    "stale_reads": InvariantRule("stale", "max", "reads that went back in time"),
    "phantom_values": InvariantRule("phantoms", "max", "values nobody wrote"),
    "max_stall_ms": InvariantRule("max_stall_ms", "max", "longest single operation, ms"),
    "max_recovery_ms": InvariantRule("recovery_ms_max", "max", "longest recovery after a fault, ms"),
    "min_operations_ok": InvariantRule("operations_ok", "min", "operations acknowledged"),
    "result_matches_fault_free": InvariantRule("result_matches", "bool", "result equals the fault-free one"),
    "replicas_identical": InvariantRule("replicas_identical", "bool", "replicas hold the same data at the end"),
    "client_errors": InvariantRule("client_errors", "max", "workload threads that crashed"),
}


@dataclass(frozen=True)
class InvariantResult:
    name: str
    expected: Any
    actual: Any
    ok: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "expected": self.expected, "actual": self.actual, "ok": self.ok,
                "message": self.message}


def evaluate_invariants(invariants: Mapping[str, Any], measured: Mapping[str, Any]) -> list[InvariantResult]:
    """Each invariant against the measured values; one not measured by the
    workload fails (an invariant that cannot be checked must not pass)."""
    results = []
    for name, expected in invariants.items():
        rule = INVARIANTS[name]
        actual = measured.get(rule.measure)
        if actual is None:
            results.append(InvariantResult(name, expected, None, False,
                                           f"{name}: not measured by this workload ({rule.meaning})"))
            continue
        if rule.kind == "max":
            ok = actual <= expected
            relation = "<=" if ok else ">"
        elif rule.kind == "min":
            ok = actual >= expected
            relation = ">=" if ok else "<"
        else:
            ok = bool(actual) == bool(expected)
            relation = "==" if ok else "!="
        verdict = "ok" if ok else "FAILED"
        actual = round(actual, 1) if isinstance(actual, float) else actual
        results.append(InvariantResult(name, expected, actual, ok,
                                       f"{name}: {verdict}: {rule.meaning} = {actual} {relation} {expected}"))
    return results


# ------------------------------------------------------------------ report


@dataclass(frozen=True)
class OpTiming:
    invoke_s: float
    complete_s: float | None
    ok: bool


@dataclass(frozen=True)
class FaultRecord:
    at_s: float              # since the faulted run started
    fault_id: str
    phase: str
    description: str
    error: str = ""          # the nemesis could not perform it
    done_s: float | None = None  # when the action completed (a kill of three replicas takes a while)


def recovery_times_ms(inject_times_s: Iterable[float], ops: Sequence[OpTiming]) -> list[float]:
    """Per injected fault: from the injection until an operation *invoked* at
    or after it was acknowledged (service is back for new work). A fault after
    which nothing was acknowledged is left out (the report's lost/ok counts
    and stalls tell that story)."""
    acked = sorted((op.invoke_s, op.complete_s) for op in ops if op.ok and op.complete_s is not None)
    times = []
    for inject_s in inject_times_s:
        completions = [complete_s for invoke_s, complete_s in acked if invoke_s >= inject_s]
        if completions:
            times.append((min(completions) - inject_s) * 1000.0)
    return times


def percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run measured (the runner fills it in)."""
    scenario: str
    scenario_file: str
    seed: int
    cluster: Mapping[str, Any]
    workload: str
    duration_s: float
    faults: Sequence[FaultRecord]
    measured: Mapping[str, Any]          # the keys INVARIANTS read, plus operation counts
    invariants: Mapping[str, Any]
    recovery_ms: Sequence[float] = ()
    problems: Sequence[str] = ()
    expected_result: Any = None
    actual_result: Any = None
    heal_s: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def build_report(outcome: RunOutcome) -> dict[str, Any]:
    """The JSON report of RELIABILITY.md. Counters a workload cannot
    measure (tasks re-executed on a control store) are null, not 0."""
    checks = evaluate_invariants(outcome.invariants, {
        **outcome.measured,
        "recovery_ms_max": max(outcome.recovery_ms) if outcome.recovery_ms else
        outcome.measured.get("recovery_ms_max", 0.0 if not _injects(outcome.faults) else None)})
    failed_actions = [f for f in outcome.faults if f.error]
    measured = outcome.measured
    verdict = "PASS" if all(c.ok for c in checks) and not failed_actions else "FAIL"
    problems = [c.message for c in checks if not c.ok]
    problems += [f"nemesis could not {f.description}: {f.error}" for f in failed_actions]
    problems += list(outcome.problems)
    return {
        "scenario": outcome.scenario,
        "scenario_file": outcome.scenario_file,
        "seed": outcome.seed,
        "cluster": dict(outcome.cluster),
        "workload": outcome.workload,
        "duration_s": round(outcome.duration_s, 3),
        "faults_injected": len(_injects(outcome.faults)),
        "faults": [{"at_s": round(f.at_s, 3), "id": f.fault_id, "phase": f.phase, "action": f.description,
                    **({"done_s": round(f.done_s, 3)} if f.done_s is not None else {}),
                    **({"error": f.error} if f.error else {})} for f in outcome.faults],
        "operations": {"attempted": measured.get("operations_attempted", 0), "ok": measured.get("operations_ok", 0),
                       "failed": measured.get("operations_failed", 0),
                       "unknown": measured.get("operations_unknown", 0)},
        "lost": measured.get("lost"),
        "duplicated": measured.get("duplicated"),
        "stale": measured.get("stale"),
        "phantoms": measured.get("phantoms"),
        "replicas_identical": measured.get("replicas_identical"),
        "tasks_reexecuted": measured.get("tasks_reexecuted"),
        "objects_rebuilt": measured.get("objects_rebuilt"),
        "actor_calls_replayed": measured.get("actor_calls_replayed"),
        "max_stall_ms": _round(measured.get("max_stall_ms")),
        "recovery_ms": {"count": len(outcome.recovery_ms), "p50": _round(percentile(outcome.recovery_ms, 0.5)),
                        "max": _round(max(outcome.recovery_ms) if outcome.recovery_ms else None)},
        "heal_s": _round(outcome.heal_s),
        "result": {"expected": outcome.expected_result, "actual": outcome.actual_result,
                   "matches": measured.get("result_matches")},
        "invariants": [c.to_dict() for c in checks],
        "problems": problems[:REPORT_PROBLEMS_MAX],
        "problems_count": len(problems),
        "verdict": verdict,
        **dict(outcome.extra),
    }


def _injects(faults: Sequence[FaultRecord]) -> list[FaultRecord]:
    return [f for f in faults if f.phase == INJECT and not f.error]


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def undo_of(action: ScheduledAction) -> ScheduledAction:
    """The undo of an inject (for faults the run heals at its end)."""
    from dataclasses import replace

    return replace(action, phase=UNDO)
