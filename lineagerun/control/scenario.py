"""Run a recorded workload against a ``ControlStoreCluster`` while a nemesis
injects faults on a schedule, then heal, read the final state and check the
history (``lineagerun.control.history``). Shared by the scenario tests, the
demo and the benchmark."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from lineagerun.control.client_routing import shard_of
from lineagerun.control.cluster import ControlStoreCluster
from lineagerun.control.history import (
    CheckReport, History, HistoryWorkload, check, read_replica_directory, stream_gaps,
)

log = logging.getLogger(__name__)

# After healing, the change stream gets this long to deliver every
# acknowledged write before missing ones are reported.
STREAM_CATCH_UP_S = 15.0
# Healing: every chain back to full length.
HEAL_TIMEOUT_S = 60.0


@dataclass
class Fault:
    at_s: float                                 # seconds after the workload started
    name: str
    action: Callable[[ControlStoreCluster], object]


@dataclass
class ScenarioResult:
    report: CheckReport
    faults: list[tuple[float, str]] = field(default_factory=list)
    epochs_before: list[int] = field(default_factory=list)
    epochs_after: list[int] = field(default_factory=list)
    client_errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    stream_resyncs: int = 0                     # shards the change stream had to rescan

    def summary(self) -> str:
        faults = ", ".join(f"{name}@{at:.1f}s" for at, name in self.faults) or "none"
        return (f"{self.report.summary()}; faults: {faults}; epochs {self.epochs_before} -> {self.epochs_after}"
                + f"; stream resyncs {self.stream_resyncs} ({self.report.stream_resynced} writes seen only so)"
                + (f"; client errors: {self.client_errors[:3]}" if self.client_errors else ""))


def run_scenario(cluster: ControlStoreCluster, prefix: str, *, duration_s: float, faults: list[Fault] = (),
                 writers: int = 4, readers: int = 1, members_after: int | None = None, seed: int = 0,
                 check_stream: bool = True, compare_replicas: bool = True, client_timeout_s: float = 30.0,
                 heal: Callable[[ControlStoreCluster], None] | None = None) -> ScenarioResult:
    """Run the workload for ``duration_s`` with ``faults``; heal (``heal``
    or: wait for every chain to have ``members_after`` members), then check.
    With ``compare_replicas`` the cluster is STOPPED at the end so each
    replica's directory can be read."""
    result = ScenarioResult(CheckReport())
    result.epochs_before = [s.epoch for s in cluster.config().shards]
    changes: list[tuple[bytes, bytes | None, int]] = []
    changes_lock = threading.Lock()

    def on_change(change) -> None:
        with changes_lock:
            changes.append((change.key, change.value, change.seq * 1000 + change.shard, change.resync))

    def on_resync(resync) -> None:
        log.info("change stream resynced: %s", resync)
        result.stream_resyncs += 1

    observer = cluster.client(timeout_s=client_timeout_s)
    try:
        subscription = observer.subscribe(prefix + "/", on_change, on_resync=on_resync) if check_stream else None
        history = History()
        workload = HistoryWorkload(lambda: cluster.client(timeout_s=client_timeout_s), prefix, writers=writers,
                                   readers=readers, history=history, seed=seed)
        _run_faults(cluster, workload, faults, duration_s, result)
        result.client_errors = [f"{type(e).__name__}: {e}" for e in workload.errors]
        if heal is not None:
            heal(cluster)
        else:
            cluster.wait_for_chains(members_after or cluster.replicas, timeout_s=HEAL_TIMEOUT_S)
        result.epochs_after = [s.epoch for s in cluster.config().shards]
        final_state = dict(observer.scan_prefix(prefix + "/"))
        ops = history.snapshot()
        stream = _drain_stream(subscription, ops, changes, changes_lock) if subscription is not None else None
    finally:
        observer.close()
    replica_states = _stop_and_read_replicas(cluster, prefix, final_state) if compare_replicas else None
    result.report = check(ops, final_state, changes=stream, replica_states=replica_states)
    return result


def _run_faults(cluster: ControlStoreCluster, workload: HistoryWorkload, faults: list[Fault], duration_s: float,
                result: ScenarioResult) -> None:
    """Run the workload for ``duration_s``, injecting ``faults`` on time;
    waits for restarts still running in the background."""
    background: list[threading.Thread] = []
    started_s = time.monotonic()
    workload.start()
    try:
        for fault in sorted(faults, key=lambda f: f.at_s):
            delay_s = started_s + fault.at_s - time.monotonic()
            if delay_s > 0:
                time.sleep(delay_s)
            log.info("nemesis: %s at %.2f s", fault.name, time.monotonic() - started_s)
            outcome = fault.action(cluster)
            if isinstance(outcome, threading.Thread):
                background.append(outcome)
            result.faults.append((time.monotonic() - started_s, fault.name))
        remaining_s = started_s + duration_s - time.monotonic()
        if remaining_s > 0:
            time.sleep(remaining_s)
    finally:
        workload.stop()
        for thread in background:
            thread.join(timeout=HEAL_TIMEOUT_S)
    result.duration_s = time.monotonic() - started_s


def _drain_stream(subscription, ops, changes: list, changes_lock: threading.Lock) -> list:
    """Wait (bounded) until the change stream has delivered every
    acknowledged write, then close it and return what it delivered."""
    writes = [op for op in ops if op.kind == "write" and op.status == "ok"]
    deadline_s = time.monotonic() + STREAM_CATCH_UP_S
    while time.monotonic() < deadline_s:
        with changes_lock:
            delivered = list(changes)
        if not stream_gaps(writes, delivered)[0]:
            break
        time.sleep(0.1)
    subscription.close()
    with changes_lock:
        return list(changes)


def _stop_and_read_replicas(cluster: ControlStoreCluster, prefix: str,
                            final_state: dict[bytes, bytes]) -> dict[int, dict[str, dict[bytes, bytes]]]:
    """Stop the cluster and read every chain member's directory. The final
    scan through the client is the reference each shard's replicas must
    match."""
    members = _chain_members(cluster)
    num_shards = len(cluster.config().shards)
    cluster.stop()
    states = {shard: {"(final scan)": {k: v for k, v in final_state.items() if shard_of(k, num_shards) == shard}}
              for shard in range(num_shards)}
    for name, key in members.items():
        states.setdefault(key[0], {})[name] = read_replica_directory(cluster.replica_dir(*key) / "db",
                                                                     prefix.encode() + b"/")
    return states


def _chain_members(cluster: ControlStoreCluster) -> dict[str, tuple[int, int]]:
    """Replicas currently in a chain (only they must agree after healing)."""
    config = cluster.config()
    members = {}
    for shard in config.shards:
        for replica in shard.chain:
            members[replica.replica_id] = cluster.index_of(replica.replica_id)
    return members


# ----------------------------------------------------------- fault helpers


def kill_and_restart(shard: int, position: str | int, *,
                     down_s: float = 0.5) -> Callable[[ControlStoreCluster], threading.Thread]:
    """A fault: kill -9 the replica at ``position`` (head, middle, tail or an
    index in the chain) of ``shard``'s current chain, then restart it from its
    directory after ``down_s`` (in the background, so the schedule goes on)."""

    def act(cluster: ControlStoreCluster) -> threading.Thread:
        chain = cluster.chain(shard)
        at = {"head": 0, "middle": len(chain) // 2, "tail": len(chain) - 1}.get(position, position)
        key = cluster.index_of(chain[at])
        cluster.kill_replica(*key)

        def restart() -> None:
            time.sleep(down_s)
            try:
                cluster.restart_replica(*key)
            except Exception:  # reported by the heal step (chain never refills)
                log.exception("restarting %s failed", chain[at])

        thread = threading.Thread(target=restart, daemon=True)
        thread.start()
        return thread

    return act
