"""The chaos scenario runner, and the workloads it drives.

``run_scenario_file(path, seed=...)`` (``lineagerun chaos run``): starts the
cluster the scenario describes, optionally runs the workload once fault-free
for the expected result (``fault_free_run = true``; the built-in control-store
workloads check against a known answer instead), runs it again while the
nemesis performs the fault schedule, with live progress on stderr (a bar and
one line per fault), heals, checks the invariants and returns the report of
RELIABILITY.md (``lineagerun.core.chaos_schedule.build_report``).

Workloads: a factory ``factory(params: dict) -> Workload``; a workload has
``start(env)`` (spawn its clients), ``progress()`` (counts for the display),
``stop()`` and ``finish(env)`` (after healing: read the final state, check,
return a ``WorkloadResult``). Built-in ones are in ``WORKLOADS``
(``register_workload``); a scenario may name ``package.module:factory``
instead. The runtime's workloads (map-reduce over numpy arrays, task chains,
a parameter-server actor, an RL-style loop, a user's ``module:function``)
are in ``lineagerun.chaos.workloads`` and its cluster launcher
(``CLUSTER_LAUNCHERS["runtime"]``) in ``lineagerun.chaos.runtime_launch``.
"""

from __future__ import annotations

import importlib
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, TextIO

from lineagerun.chaos.nemesis import Nemesis
from lineagerun.chaos.progress import PROGRESS_BAR_WIDTH, PROGRESS_LINE_INTERVAL_S, Progress  # noqa: F401
from lineagerun.chaos.scenario import Scenario, load_scenario
from lineagerun.core.chaos_schedule import (INJECT, NETWORK_ACTIONS, UNDO, FaultRecord, Finish, OpTiming, RunOutcome,
                                            ScheduleCursor, ScheduledAction, Tick, build_report, expand_schedule,
                                            recovery_times_ms, undo_of)
from lineagerun.exceptions import InvalidArgumentError, LineagerunError

# Workload client threads; the scenario file may ask for fewer.
CLIENT_THREADS_MAX = 64
# Client deadline while faults run: long enough to ride out a failover and a
# coordinator restart, short enough that a dead shard ends the run.
CLIENT_TIMEOUT_S = 20.0
# Final reads after healing may meet a chain still settling.
FINAL_READ_TIMEOUT_S = 30.0
# Operations listed in the report as the slowest.
SLOWEST_OPS_REPORTED = 3
# The change stream gets this long after healing to deliver every
# acknowledged write (duplicates are counted from it).
STREAM_CATCH_UP_S = 10.0


@dataclass
class WorkloadEnv:
    cluster: Any
    make_client: Callable[[], Any]          # a client of the workload (through chaos proxies if any)
    make_direct_client: Callable[[], Any]   # a client that bypasses the proxies (observers, final reads)
    stop_cluster: Callable[[], None]        # idempotent
    seed: int
    prefix: str
    expected: Any = None                    # the fault-free run's result, when one was made


@dataclass
class WorkloadResult:
    measured: dict[str, Any]                # keys of chaos_schedule.INVARIANTS and operation counts
    ops: list[OpTiming] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    result: Any = None                      # what the workload computed (compared with a fault-free run)
    # The slowest operations: (who, what, invoke_s, duration_ms, status); a
    # failed max_stall_ms says which operation stalled and when.
    slowest: list[tuple[str, str, float, float, str]] = field(default_factory=list)


class Workload(Protocol):
    def start(self, env: WorkloadEnv) -> None: ...

    def progress(self) -> dict[str, int]: ...

    def stop(self) -> None: ...

    def finish(self, env: WorkloadEnv) -> WorkloadResult: ...


@dataclass(frozen=True)
class WorkloadEntry:
    factory: Callable[[Mapping[str, Any]], Workload]
    cluster_kinds: tuple[str, ...]
    description: str


WORKLOADS: dict[str, WorkloadEntry] = {}


def register_workload(name: str, factory: Callable[[Mapping[str, Any]], Workload], *,
                      cluster_kinds: tuple[str, ...], description: str) -> None:
    WORKLOADS[name] = WorkloadEntry(factory, cluster_kinds, description)


def make_workload(kind: str, params: Mapping[str, Any], cluster_kind: str, where: str) -> Workload:
    """A workload from a registered name or ``module:factory``."""
    if ":" in kind and cluster_kind == "runtime":
        from lineagerun.chaos.workloads import user_workload

        return user_workload(kind, params, where)
    if ":" in kind:
        module_name, _, attr = kind.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise InvalidArgumentError(f"{where}: workload.kind: cannot load {kind!r}: {err}; the module must be "
                                       f"importable (on PYTHONPATH) and define {attr}(params)") from None
        return factory(dict(params))
    entry = WORKLOADS.get(kind)
    if entry is None:
        raise InvalidArgumentError(f"{where}: workload.kind: {kind!r} is not a built-in workload; one of "
                                   f"{', '.join(sorted(WORKLOADS))}, or 'package.module:factory'")
    if cluster_kind not in entry.cluster_kinds:
        raise InvalidArgumentError(f"{where}: workload.kind: {kind!r} runs on {', '.join(entry.cluster_kinds)} "
                                   f"clusters, not {cluster_kind!r}")
    return entry.factory(dict(params))


def _int_param(params: Mapping[str, Any], name: str, default: int, maximum: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise InvalidArgumentError(f"workload.{name}: {value!r} must be an integer from 0 to {maximum}")
    return value


def _check_params(params: Mapping[str, Any], allowed: tuple[str, ...], kind: str) -> None:
    extra = sorted(set(params) - set(allowed))
    if extra:
        raise InvalidArgumentError(f"workload {kind}: unknown field(s) {', '.join(extra)}; allowed: "
                                   f"{', '.join(allowed) or 'none'}")


# ------------------------------------------------------ kv-unique-writes


class KvUniqueWrites:
    """Jepsen-style: writers put unique values (and advance a register per
    writer), readers read registers; the history checker of
    ``lineagerun.control.history`` finds lost, duplicated (from a change
    stream) and stale operations, and compares every replica's directory."""

    def __init__(self, params: Mapping[str, Any]):
        _check_params(params, ("writers", "readers", "compare_replicas"), "kv-unique-writes")
        self.writers = max(1, _int_param(params, "writers", 4, CLIENT_THREADS_MAX))
        self.readers = _int_param(params, "readers", 1, CLIENT_THREADS_MAX)
        self.compare_replicas = bool(params.get("compare_replicas", True))
        self._workload = None
        self._observer = None
        self._subscription = None
        self._changes: list[tuple[bytes, bytes | None, int, bool]] = []
        self._changes_lock = threading.Lock()

    def start(self, env: WorkloadEnv) -> None:
        from lineagerun.control.history import HistoryWorkload

        self._observer = env.make_direct_client()

        def on_change(change) -> None:
            with self._changes_lock:
                self._changes.append((change.key, change.value, change.seq * 1000 + change.shard,
                                      getattr(change, "resync", False)))

        self._subscription = self._observer.subscribe(env.prefix + "/", on_change)
        self._workload = HistoryWorkload(env.make_client, env.prefix, writers=self.writers, readers=self.readers,
                                         seed=env.seed)
        self._workload.start()

    def progress(self) -> dict[str, int]:
        ops = self._workload.history.snapshot() if self._workload else []
        return {"attempted": len(ops), "ok": sum(op.status == "ok" for op in ops),
                "unknown": sum(op.status == "unknown" for op in ops)}

    def stop(self) -> None:
        if self._workload is not None:
            self._workload.stop()

    def finish(self, env: WorkloadEnv) -> WorkloadResult:
        from lineagerun.control.history import check

        ops = self._workload.history.snapshot()
        try:
            final_state = dict(self._observer.scan_prefix(env.prefix + "/"))
            changes = self._drain_stream(ops)
        finally:
            self._observer.close()
        replica_states = self._read_replicas(env, final_state) if self.compare_replicas else None
        report = check(ops, final_state, changes=changes, replica_states=replica_states)
        stall_s = max((op.complete_s - op.invoke_s for op in ops if op.complete_s is not None), default=0.0)
        measured = {
            "operations_attempted": len(ops), "operations_ok": sum(op.status == "ok" for op in ops),
            "operations_failed": sum(op.status == "fail" for op in ops),
            "operations_unknown": sum(op.status in ("unknown", "invoked") for op in ops),
            "lost": len(report.lost), "duplicated": len(report.duplicated), "stale": len(report.stale_reads),
            "phantoms": len(report.phantoms), "max_stall_ms": stall_s * 1000.0,
            "replicas_identical": (not report.replica_divergence) if self.compare_replicas else None,
            "result_matches": not (report.lost or report.duplicated or report.phantoms),
            "client_errors": len(self._workload.errors),
            "writes_ok": report.writes_ok,
        }
        problems = (report.lost + report.duplicated + report.stale_reads + report.phantoms
                    + report.replica_divergence + [f"client thread crashed: {e!r}" for e in self._workload.errors])
        if report.stream_missing:
            # A subscription gap is a subscription problem, not a data loss.
            problems.append(f"note: the change stream missed {len(report.stream_missing)} acknowledged writes "
                            f"(duplicates are counted from the stream)")
        timings = [OpTiming(op.invoke_s, op.complete_s, op.status == "ok") for op in ops]
        finished = sorted((op for op in ops if op.complete_s is not None), key=lambda op: op.invoke_s - op.complete_s)
        slowest = [(op.process, f"{op.kind} {op.key.decode(errors='replace')}", op.invoke_s,
                    (op.complete_s - op.invoke_s) * 1000.0, op.status + (f" ({op.error})" if op.error else ""))
                   for op in finished[:SLOWEST_OPS_REPORTED]]
        return WorkloadResult(measured, timings, problems, result={"writes_acknowledged": report.writes_ok},
                              slowest=slowest)

    def _drain_stream(self, ops) -> list:
        from lineagerun.control.history import stream_gaps

        acked = [op for op in ops if op.kind == "write" and op.status == "ok"]
        deadline_s = time.monotonic() + STREAM_CATCH_UP_S
        while time.monotonic() < deadline_s:
            with self._changes_lock:
                if not stream_gaps(acked, list(self._changes))[0]:
                    break
            time.sleep(0.1)
        self._subscription.close()
        with self._changes_lock:
            return list(self._changes)

    @staticmethod
    def _read_replicas(env: WorkloadEnv, final_state: dict[bytes, bytes]) -> dict:
        """Stop the cluster and read each chain member's directory; the final
        scan is the reference each shard's members must match."""
        from lineagerun.control.client_routing import shard_of
        from lineagerun.control.history import read_replica_directory

        cluster = env.cluster
        config = cluster.config()
        members = {r.replica_id: cluster.index_of(r.replica_id) for s in config.shards for r in s.chain}
        num_shards = len(config.shards)
        env.stop_cluster()
        states = {shard: {"(final scan)": {k: v for k, v in final_state.items() if shard_of(k, num_shards) == shard}}
                  for shard in range(num_shards)}
        for name, key in members.items():
            states.setdefault(key[0], {})[name] = read_replica_directory(cluster.replica_dir(*key) / "db",
                                                                         env.prefix.encode() + b"/")
        return states


# ------------------------------------------------------- kv-counter-cas


class KvCounterCas:
    """Clients increment shared counters with compare-and-set (read, then
    CAS old -> old + 1). Each acknowledged CAS that succeeded is one
    increment; one whose outcome is unknown may or may not have happened.
    Pass: acknowledged <= final <= acknowledged + unknown, per counter."""

    def __init__(self, params: Mapping[str, Any]):
        _check_params(params, ("clients", "counters"), "kv-counter-cas")
        self.clients = max(1, _int_param(params, "clients", 4, CLIENT_THREADS_MAX))
        self.counters = max(1, _int_param(params, "counters", 1, 1000))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._acked = [0] * self.counters
        self._unknown = [0] * self.counters
        self._ops: list[OpTiming] = []
        self._attempted = 0
        self._conflicts = 0
        self.errors: list[BaseException] = []

    def _key(self, env: WorkloadEnv, counter: int) -> bytes:
        return f"{env.prefix}/counter/{counter}".encode()

    def start(self, env: WorkloadEnv) -> None:
        for index in range(self.clients):
            thread = threading.Thread(target=self._guard, args=(env, index), daemon=True, name=f"cas-{index}")
            self._threads.append(thread)
            thread.start()

    def _guard(self, env: WorkloadEnv, index: int) -> None:
        try:
            self._loop(env, index)
        except BaseException as err:  # a crashed client must fail the run, not vanish
            self.errors.append(err)

    def _loop(self, env: WorkloadEnv, index: int) -> None:
        from lineagerun.exceptions import ControlStoreUnavailableError

        rng = random.Random(f"{env.seed}/cas/{index}")
        client = env.make_client()
        try:
            while not self._stop.is_set():
                counter = rng.randrange(self.counters)
                key = self._key(env, counter)
                invoke_s = time.monotonic()
                try:
                    current = client.get(key)
                    new = str(int(current or b"0") + 1).encode()
                    ok = client.cas(key, current, new).ok
                except ControlStoreUnavailableError:
                    with self._lock:
                        self._attempted += 1
                        self._unknown[counter] += 1  # counted even if only the read failed: a safe upper bound
                        self._ops.append(OpTiming(invoke_s, time.monotonic(), False))
                    continue
                with self._lock:
                    self._attempted += 1
                    self._ops.append(OpTiming(invoke_s, time.monotonic(), ok))
                    if ok:
                        self._acked[counter] += 1
                    else:
                        self._conflicts += 1
        finally:
            client.close()

    def progress(self) -> dict[str, int]:
        with self._lock:
            return {"attempted": self._attempted, "ok": sum(self._acked), "unknown": sum(self._unknown)}

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT_S + 5)

    def finish(self, env: WorkloadEnv) -> WorkloadResult:
        client = env.make_direct_client()
        try:
            finals = [int(client.get(self._key(env, c)) or b"0") for c in range(self.counters)]
        finally:
            client.close()
        problems, lost, extra = [], 0, 0
        for counter, final in enumerate(finals):
            low, high = self._acked[counter], self._acked[counter] + self._unknown[counter]
            if final < low:
                lost += low - final
                problems.append(f"counter {counter} is {final} but {low} increments were acknowledged")
            elif final > high:
                extra += final - high
                problems.append(f"counter {counter} is {final}, more than {low} acknowledged + "
                                f"{self._unknown[counter]} unknown increments (an increment applied twice)")
        problems += [f"client thread crashed: {e!r}" for e in self.errors]
        stall_ms = max(((op.complete_s - op.invoke_s) * 1000.0 for op in self._ops), default=0.0)
        measured = {
            "operations_attempted": self._attempted, "operations_ok": sum(self._acked) + self._conflicts,
            "operations_failed": 0, "operations_unknown": sum(self._unknown),
            "lost": lost, "duplicated": extra, "max_stall_ms": stall_ms,
            "result_matches": lost == 0 and extra == 0, "client_errors": len(self.errors),
            "cas_conflicts": self._conflicts,
        }
        return WorkloadResult(measured, list(self._ops), problems,
                              result={"counters": finals, "acknowledged_increments": list(self._acked),
                                      "unknown_increments": list(self._unknown)})


register_workload("kv-unique-writes", KvUniqueWrites, cluster_kinds=("control-store",),
                  description="unique-value writes and register reads; Jepsen-style lost/duplicated/stale check")
register_workload("kv-counter-cas", KvCounterCas, cluster_kinds=("control-store",),
                  description="compare-and-set increments; final count = acknowledged increments")


def _register_runtime_workloads() -> None:
    from lineagerun.chaos.workloads import register_runtime_workloads

    register_runtime_workloads()


_register_runtime_workloads()


# ------------------------------------------------------------------ runner

# The scheduler loop's step; faults land within this of their time.
TICK_S = 0.05
# Healing: every chain back to full length after the faults.
HEAL_TIMEOUT_S = 60.0
# Nemesis actions running at once (restarts take a second or two each).
ACTIONS_IN_FLIGHT_MAX = 16
# Actions slower than this (restarts) say how long they took.
SLOW_ACTION_S = 0.5


@dataclass
class _ClusterHandle:
    cluster: Any
    resolver: Any
    make_client: Callable[[], Any]
    make_direct_client: Callable[[], Any]
    heal: Callable[[], None]
    stop: Callable[[], None]
    description: dict[str, Any]


def _launch_control_store(scenario: Scenario, directory: Path, needs_links: bool) -> _ClusterHandle:
    from lineagerun.chaos.nemesis import ClientLinks, ControlStoreTargets
    from lineagerun.control.cluster import ControlStoreCluster

    spec = scenario.cluster
    store_links = None
    if needs_links or any(target.startswith("link:") for fault in scenario.faults for target in fault.targets):
        from lineagerun.chaos.control_store_links import ControlStoreLinks

        store_links = ControlStoreLinks()  # every replica/coordinator link proxied
    cluster = ControlStoreCluster(directory, shards=spec.shards, replicas=spec.replicas, links=store_links,
                                  **dict(spec.options))
    links = None
    stopped = threading.Event()

    def stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        try:
            cluster.stop()
        finally:
            if links is not None:
                links.stop()
            if store_links is not None:
                store_links.stop()

    try:
        cluster.start()
        if needs_links:
            # toxiproxy-python talks to one API server per process: share it.
            links = ClientLinks(cluster, proxy_server_factory=(lambda: store_links.server) if store_links else None)
    except BaseException:
        stop()
        raise

    def make_client():
        if links is None:
            return cluster.client(timeout_s=CLIENT_TIMEOUT_S)
        from lineagerun.control.client import ControlStoreClient

        return links.wrap_client(ControlStoreClient(links.coordinator_address, cluster.token,
                                                    timeout_s=CLIENT_TIMEOUT_S))

    return _ClusterHandle(
        cluster=cluster, resolver=ControlStoreTargets(cluster, links), make_client=make_client,
        make_direct_client=lambda: cluster.client(timeout_s=FINAL_READ_TIMEOUT_S),
        heal=lambda: (store_links.heal_all() if store_links is not None else None,
                      cluster.wait_for_chains(timeout_s=HEAL_TIMEOUT_S)), stop=stop,
        description={**scenario.cluster.to_dict(), "dir": str(directory),
                     "network_faults_on": "client links" if needs_links else None})


def _launch_runtime(scenario: Scenario, directory: Path, needs_links: bool) -> _ClusterHandle:
    from lineagerun.chaos.runtime_launch import launch_runtime

    return launch_runtime(scenario, directory, needs_links)


# cluster.kind -> launcher(scenario, directory, needs_network_links)
CLUSTER_LAUNCHERS: dict[str, Callable[[Scenario, Path, bool], _ClusterHandle]] = {
    "control-store": _launch_control_store,
    "runtime": _launch_runtime,
}


class ScenarioRunner:
    """Runs one scenario: start the cluster, (optionally) a fault-free pass,
    the faulted pass with live progress, heal, check, report."""

    def __init__(self, scenario: Scenario, *, seed: int | None = None, progress: TextIO | None = sys.stderr,
                 work_dir: str | Path | None = None):
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.progress = Progress(progress, scenario.duration_s)
        self.work_dir = Path(work_dir) if work_dir else None
        self.records: list[FaultRecord] = []
        self._records_lock = threading.Lock()

    def run(self) -> dict[str, Any]:
        scenario = self.scenario
        # Validate everything before starting a process.
        workload = make_workload(scenario.workload.kind, scenario.workload.params, scenario.cluster.kind,
                                 scenario.path)
        try:
            schedule = expand_schedule(scenario.faults, int(scenario.duration_s * 1000), random.Random(self.seed))
        except ValueError as err:
            raise InvalidArgumentError(f"{scenario.path}: faults: {err}") from None
        launcher = CLUSTER_LAUNCHERS[scenario.cluster.kind]
        needs_links = any(spec.action in NETWORK_ACTIONS for spec in scenario.faults)
        temporary = self.work_dir is None
        directory = Path(tempfile.mkdtemp(prefix=f"lineagerun-chaos-{scenario.name}-")) if temporary \
            else self.work_dir
        self.progress.line(f"scenario {scenario.name} (seed {self.seed}): starting a {scenario.cluster.kind} "
                           f"cluster in {directory}")
        try:
            handle = launcher(scenario, directory, needs_links)
        except BaseException:
            if temporary:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        try:
            expected = self._fault_free_pass(handle) if scenario.fault_free_run else None
            env = WorkloadEnv(handle.cluster, handle.make_client, handle.make_direct_client, handle.stop,
                              self.seed, prefix=f"chaos-{scenario.name}", expected=expected)
            if hasattr(workload, "prepare"):  # runtime workloads: actors, a user function's expected value
                self.progress.line("preparing the workload (no faults yet) ...")
                workload.prepare(env)
            started_s, duration_s, heal_s = self._faulted_pass(handle, workload, env, schedule)
            self.progress.line("checking ...")
            result = workload.finish(env)
        finally:
            handle.stop()
            if temporary:
                shutil.rmtree(directory, ignore_errors=True)
        return self._report(handle, result, expected, started_s, duration_s, heal_s)

    def _fault_free_pass(self, handle: _ClusterHandle) -> Any:
        workload = make_workload(self.scenario.workload.kind, self.scenario.workload.params,
                                 self.scenario.cluster.kind, self.scenario.path)
        env = WorkloadEnv(handle.cluster, handle.make_direct_client, handle.make_direct_client, lambda: None,
                          self.seed, prefix=f"chaos-{self.scenario.name}-fault-free")
        self.progress.line("fault-free pass for the expected result ...")
        workload.start(env)
        time.sleep(min(self.scenario.duration_s, 5.0))
        workload.stop()
        return workload.finish(env).result

    def _faulted_pass(self, handle: _ClusterHandle, workload: Workload, env: WorkloadEnv,
                      schedule: list[ScheduledAction]) -> tuple[float, float, float]:
        nemesis = Nemesis(handle.resolver)
        cursor = ScheduleCursor(schedule)
        in_flight: dict[str, threading.Thread] = {}
        self.progress.line(f"running {self.scenario.workload.kind} for {self.scenario.duration_s:g} s under "
                           f"{sum(a.phase == INJECT for a in schedule)} scheduled fault(s)")
        started_s = time.monotonic()
        workload.start(env)
        try:
            while True:
                elapsed_s = time.monotonic() - started_s
                if elapsed_s >= self.scenario.duration_s:
                    break
                for action in cursor.handle(Tick(int(elapsed_s * 1000))):
                    self._dispatch(nemesis, action, started_s, in_flight)
                self.progress.update(elapsed_s, workload.progress(), self._injected_count())
                time.sleep(TICK_S)
            self.progress.update(self.scenario.duration_s, workload.progress(), self._injected_count(), force=True)
            self.progress.end_bar()
        finally:
            duration_s = time.monotonic() - started_s
            workload.stop()
            heal_s = self._heal(handle, nemesis, cursor, started_s, in_flight)
        return started_s, duration_s, heal_s

    def _dispatch(self, nemesis: Nemesis, action: ScheduledAction, started_s: float,
                  in_flight: dict[str, threading.Thread]) -> None:
        """Perform ``action`` in the background (a restart takes seconds and
        must not delay the next fault); an undo first waits for its inject."""
        previous = in_flight.get(action.fault_id)
        running = [t for t in in_flight.values() if t.is_alive()]
        if len(running) >= ACTIONS_IN_FLIGHT_MAX:
            running[0].join()

        def perform() -> None:
            if previous is not None:
                previous.join()
            at_s = time.monotonic() - started_s
            try:
                done = nemesis.perform(action)
                error = ""
            except Exception as err:  # reported, and fails the run's verdict
                done, error = action.describe(), f"{type(err).__name__}: {err}"
            with self._records_lock:
                self.records.append(FaultRecord(at_s, action.fault_id, action.phase, done, error,
                                                done_s=time.monotonic() - started_s))
            mark = "+" if action.phase == INJECT else "-"
            took_s = time.monotonic() - started_s - at_s
            took = f"  (took {took_s:.1f} s)" if took_s >= SLOW_ACTION_S else ""
            self.progress.line(f"  {mark} {at_s:6.2f} s  {done}{took}" + (f"  FAILED: {error}" if error else ""))

        thread = threading.Thread(target=perform, daemon=True, name=f"nemesis-{action.fault_id}")
        in_flight[action.fault_id] = thread
        thread.start()

    def _injected_count(self) -> int:
        with self._records_lock:
            return sum(r.phase == INJECT and not r.error for r in self.records)

    def _heal(self, handle: _ClusterHandle, nemesis: Nemesis, cursor: ScheduleCursor, started_s: float,
              in_flight: dict[str, threading.Thread]) -> float:
        """Undo every fault still in force, wait for the cluster to be whole."""
        heal_started_s = time.monotonic()
        for action in cursor.handle(Finish()):
            self._dispatch(nemesis, action, started_s, in_flight)
        for thread in list(in_flight.values()):
            thread.join()
        for action in nemesis.outstanding():
            self._dispatch(nemesis, undo_of(action), started_s, in_flight)
        for thread in list(in_flight.values()):
            thread.join()
        self.progress.line("healing: waiting for the cluster to be whole again ...")
        try:
            handle.heal()
        except LineagerunError as err:
            with self._records_lock:
                self.records.append(FaultRecord(time.monotonic() - started_s, "heal", UNDO, "heal the cluster",
                                                f"{type(err).__name__}: {err}"))
        return time.monotonic() - heal_started_s

    def _report(self, handle: _ClusterHandle, result: WorkloadResult, expected: Any, started_s: float,
                duration_s: float, heal_s: float) -> dict[str, Any]:
        records = sorted(self.records, key=lambda r: r.at_s)
        injects_s = [started_s + (r.done_s if r.done_s is not None else r.at_s) for r in records
                     if r.phase == INJECT and not r.error]
        measured = dict(result.measured)
        if expected is not None and "result_matches" not in measured:
            # Workloads with a known answer judge themselves; others are
            # compared with their fault-free pass.
            measured["result_matches"] = expected == result.result
        outcome = RunOutcome(
            scenario=self.scenario.name, scenario_file=self.scenario.path, seed=self.seed,
            cluster=handle.description, workload=self.scenario.workload.kind, duration_s=duration_s,
            faults=records, measured=measured, invariants=self.scenario.invariants,
            recovery_ms=recovery_times_ms(injects_s, result.ops), problems=result.problems,
            expected_result=expected if expected is not None else "known answer (checked from the history)",
            actual_result=result.result, heal_s=heal_s,
            extra={"recovery_counters": getattr(result, "runtime_counters", None), "slowest_operations": [
                {"by": who, "op": what, "at_s": round(invoke_s - started_s, 3), "ms": round(ms, 1), "status": status}
                for who, what, invoke_s, ms, status in result.slowest]})
        return build_report(outcome)


def run_scenario_file(path: str | Path, *, seed: int | None = None, progress: TextIO | None = sys.stderr,
                      work_dir: str | Path | None = None) -> dict[str, Any]:
    """Load, validate and run a scenario file; returns the report dict."""
    return ScenarioRunner(load_scenario(path), seed=seed, progress=progress, work_dir=work_dir).run()


def format_report(report: Mapping[str, Any]) -> str:
    """The report as text for a terminal."""
    ops = report["operations"]
    recovery = report["recovery_ms"]
    lines = [
        f"scenario {report['scenario']} ({report['scenario_file']}), seed {report['seed']}, "
        f"workload {report['workload']}, {report['duration_s']:.1f} s",
        f"faults injected:      {report['faults_injected']}",
        f"operations:           {ops['attempted']} attempted, {ops['ok']} ok, {ops['failed']} failed, "
        f"{ops['unknown']} unknown",
        f"lost / duplicated / stale: {_na(report['lost'])} / {_na(report['duplicated'])} / "
        f"{_na(report['stale'])}",
        f"replicas identical:   {_yes_no(report['replicas_identical'])}",
        f"tasks re-executed:    {_na(report['tasks_reexecuted'])}   objects rebuilt: "
        f"{_na(report['objects_rebuilt'])}   actor calls replayed: {_na(report['actor_calls_replayed'])}",
        f"recovery:             p50 {_na(recovery['p50'])} ms, max {_na(recovery['max'])} ms "
        f"({recovery['count']} faults)",
        f"longest stall:        {_na(report['max_stall_ms'])} ms;  healed in {_na(report['heal_s'])} s",
        f"result correct:       {_yes_no(report['result']['matches'])}",
        "invariants:",
    ]
    lines += [f"  {'ok  ' if c['ok'] else 'FAIL'} {c['message']}" for c in report["invariants"]]
    for slow in report.get("slowest_operations", [])[:1]:
        lines.append(f"slowest operation:    {slow['op']} by {slow['by']} at {slow['at_s']} s took {slow['ms']} ms "
                     f"({slow['status']})")
    if report["problems"]:
        lines.append("problems:")
        lines += [f"  - {p}" for p in report["problems"]]
    lines.append(f"verdict: {report['verdict']}")
    return "\n".join(lines)


def _na(value: Any) -> str:
    return "n/a" if value is None else str(value)


def _yes_no(value: Any) -> str:
    return "n/a" if value is None else ("yes" if value else "NO")
