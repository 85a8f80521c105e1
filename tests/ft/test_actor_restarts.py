"""R3: actors survive the loss of their worker process (restart, checkpoint,
replay of the recorded calls), and stay dead when they should."""

from __future__ import annotations

import os
import signal
import time

import pytest

import lineagerun
from lineagerun.core.keys import actor_key
from lineagerun.exceptions import ActorDiedError, InvalidArgumentError
from lineagerun.state.recovery_events import actor_recovery_summary
from lineagerun.rpc import lineage_pb2

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("cluster")]

CALLS = 500
CHECKPOINT_INTERVAL = 50


class _Counter:
    """Applies sequence-numbered calls; remembers which, to catch loss and duplicates."""

    def __init__(self, start):
        self.start = start
        self.value = start
        self.applied = []

    def add(self, seq):
        self.value += 1
        self.applied.append(seq)
        return seq, self.value

    def pid(self):
        return os.getpid()

    def state(self):
        return self.start, self.value, list(self.applied)


@lineagerun.remote
class Counter(_Counter):
    pass


@lineagerun.remote
class CheckpointedCounter(_Counter):
    def __lineagerun_checkpoint__(self):
        return self.start, self.value, list(self.applied)

    def __lineagerun_restore__(self, state):
        self.start, self.value, self.applied = state[0], state[1], list(state[2])


def _kill_worker_of(actor) -> int:
    pid = lineagerun.get(actor.pid.remote(), timeout=60)
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    return pid


def _run_with_kills(actor, calls: int, kill_after: tuple[int, ...]) -> list:
    """Submit ``calls`` add() calls; after each count in ``kill_after`` is
    submitted, kill the actor's worker while later calls are queued and
    keep submitting during the recovery."""
    refs, killed = [], []
    for seq in range(calls):
        refs.append(actor.add.remote(seq))
        if seq + 1 in kill_after:
            killed.append(_kill_worker_of(actor))
    assert len(set(killed)) == len(kill_after), "each kill hit a different (restarted) worker"
    return lineagerun.get(refs, timeout=90)


def _record(control_store, actor) -> lineage_pb2.ActorRecord:
    return lineage_pb2.ActorRecord.FromString(control_store.get(actor_key(actor._actor_id)))


def _wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def _check_exact(results, state, start, calls):
    # Each caller got its own call's result, once, and it saw every earlier call exactly once.
    assert results == [(seq, start + seq + 1) for seq in range(calls)]
    assert state == (start, start + calls, list(range(calls)))


def test_checkpointed_counter_survives_two_kills_with_bounded_replay(control_store):
    start = 1000  # a constructor argument: the restart must get the same one
    actor = CheckpointedCounter.options(max_restarts=-1, checkpoint_interval=CHECKPOINT_INTERVAL).remote(start)
    results = _run_with_kills(actor, CALLS, kill_after=(170, 340))
    _check_exact(results, lineagerun.get(actor.state.remote(), timeout=30), start, CALLS)
    record = _wait_for(lambda: (r := _record(control_store, actor)).num_restarts == 2 and r)
    assert record.num_restarts == 2 and record.state == lineage_pb2.ALIVE
    assert record.checkpoint_object_id, "checkpoints are committed and named by the ActorRecord"
    summary = _wait_for(lambda: (s := actor_recovery_summary(control_store, actor._actor_id))["restarts"] == 2 and s)
    assert summary["deaths"] == 2 and summary["restarts"] == 2
    assert len(summary["calls_replayed_per_recovery"]) == 2
    assert all(count <= CHECKPOINT_INTERVAL for count in summary["calls_replayed_per_recovery"]), summary
    assert summary["checkpoints"] >= CALLS // CHECKPOINT_INTERVAL - 2
    assert all(ms >= 0 for ms in summary["recovery_ms"])


def test_counter_without_checkpoints_replays_the_whole_chain(control_store):
    calls = 150
    actor = Counter.options(max_restarts=2).remote(7)
    results = _run_with_kills(actor, calls, kill_after=(60,))
    _check_exact(results, lineagerun.get(actor.state.remote(), timeout=30), 7, calls)
    summary = _wait_for(lambda: (s := actor_recovery_summary(control_store, actor._actor_id))["restarts"] == 1 and s)
    # Everything up to the kill (60 adds and the pid call) at least is replayed.
    assert summary["calls_replayed_per_recovery"][0] >= 61, summary


def test_calls_submitted_during_recovery_are_queued_not_lost():
    actor = CheckpointedCounter.options(max_restarts=1, checkpoint_interval=10).remote(0)
    assert lineagerun.get([actor.add.remote(i) for i in range(25)], timeout=30)[-1] == (24, 25)
    _kill_worker_of(actor)
    late = [actor.add.remote(25 + i) for i in range(40)]  # sent while the actor is restarting
    assert lineagerun.get(late, timeout=60) == [(25 + i, 26 + i) for i in range(40)]
    assert lineagerun.get(actor.state.remote(), timeout=30) == (0, 65, list(range(65)))


def test_restarts_are_limited_by_max_restarts():
    actor = Counter.options(max_restarts=1).remote(0)
    assert lineagerun.get(actor.add.remote(0), timeout=30) == (0, 1)
    _kill_worker_of(actor)
    assert lineagerun.get(actor.add.remote(1), timeout=60) == (1, 2)
    _kill_worker_of(actor)
    with pytest.raises(ActorDiedError):
        lineagerun.get(actor.add.remote(2), timeout=60)


def test_max_restarts_zero_means_dead_after_one_crash():
    actor = Counter.remote(0)
    assert lineagerun.get(actor.add.remote(0), timeout=30) == (0, 1)
    _kill_worker_of(actor)
    with pytest.raises(ActorDiedError):
        lineagerun.get(actor.add.remote(1), timeout=30)
    with pytest.raises(ActorDiedError):
        lineagerun.get(actor.add.remote(2), timeout=30)


def test_kill_does_not_restart(control_store):
    actor = Counter.options(max_restarts=-1).remote(0)
    assert lineagerun.get(actor.add.remote(0), timeout=30) == (0, 1)
    lineagerun.kill(actor)
    with pytest.raises(ActorDiedError):
        lineagerun.get(actor.add.remote(1), timeout=30)
    record = _wait_for(lambda: (r := _record(control_store, actor)).state == lineage_pb2.DEAD and r)
    assert record.state == lineage_pb2.DEAD and record.num_restarts == 0


def test_kill_with_restart_restarts(control_store):
    actor = Counter.options(max_restarts=1).remote(3)
    assert lineagerun.get(actor.add.remote(0), timeout=30) == (0, 4)
    lineagerun.kill(actor, no_restart=False)
    assert lineagerun.get(actor.add.remote(1), timeout=60) == (1, 5)


def test_checkpoint_interval_needs_checkpoint_methods():
    with pytest.raises(InvalidArgumentError, match="__lineagerun_checkpoint__"):
        Counter.options(max_restarts=-1, checkpoint_interval=5).remote(0)


@lineagerun.remote
class SlowCounter(_Counter):
    def add(self, seq):
        time.sleep(0.004)  # so that a replay of the chain takes a while
        return super().add(seq)


def _pid_of_worker(node_pid: int, worker_id: bytes) -> int | None:
    import psutil

    for child in psutil.Process(node_pid).children():
        try:
            if f"--worker-id {worker_id.hex()}" in " ".join(child.cmdline()):
                return child.pid
        except psutil.NoSuchProcess:
            pass
    return None


def test_instance_killed_during_its_recovery_is_restarted_again(control_store):
    from lineagerun.api import session

    calls = 300
    node_pid = session.driver_state().cluster.node_process.pid
    actor = SlowCounter.options(max_restarts=3).remote(0)
    refs = [actor.add.remote(seq) for seq in range(calls)]
    assert lineagerun.get(refs[-1], timeout=60) == (calls - 1, calls)
    first_worker = _record(control_store, actor).worker_id
    _kill_worker_of(actor)
    # The worker hosting the restart (named by the RESTARTING ActorRecord)
    # is killed while it replays the chain (~300 x 4 ms).
    record = _wait_for(lambda: (r := _record(control_store, actor)).state == lineage_pb2.RESTARTING
                       and r.worker_id not in (b"", first_worker) and r)
    assert record, "the RESTARTING record names the new worker"
    pid = _pid_of_worker(node_pid, record.worker_id)
    assert pid is not None
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    more = [actor.add.remote(calls + i) for i in range(20)]
    results = lineagerun.get(refs + more, timeout=90)
    _check_exact(results, lineagerun.get(actor.state.remote(), timeout=30), 0, calls + 20)
    summary = _wait_for(lambda: (s := actor_recovery_summary(control_store, actor._actor_id))["restarts"] == 1 and s)
    # One completed recovery; the first was cut short by the second death.
    assert summary["deaths"] == 2 and summary["restarts"] == 1, summary
    assert _record(control_store, actor).num_restarts == 2


@lineagerun.remote
class FailingCheckpoints(_Counter):
    def __lineagerun_checkpoint__(self):
        raise RuntimeError("cannot checkpoint")

    def __lineagerun_restore__(self, state):
        raise AssertionError("never restored: no checkpoint was committed")


def test_failing_checkpoints_do_not_block_calls_and_replay_everything(control_store):
    actor = FailingCheckpoints.options(max_restarts=1, checkpoint_interval=5).remote(0)
    assert lineagerun.get([actor.add.remote(i) for i in range(30)], timeout=30)[-1] == (29, 30)
    _kill_worker_of(actor)
    assert lineagerun.get(actor.state.remote(), timeout=60) == (0, 30, list(range(30)))
    assert not _record(control_store, actor).checkpoint_object_id


@lineagerun.remote
class ThreadedCounter:
    def __init__(self):
        import threading

        self.lock = threading.Lock()
        self.applied = []

    def add(self, seq):
        with self.lock:
            self.applied.append(seq)
            return len(self.applied)

    def pid(self):
        return os.getpid()

    def state(self):
        with self.lock:
            return sorted(self.applied)

    def __lineagerun_checkpoint__(self):
        with self.lock:
            return list(self.applied)

    def __lineagerun_restore__(self, state):
        self.applied = list(state)


def test_concurrent_actor_restart_applies_every_call_once():
    # Was an intermittent hang: replayed calls of a max_concurrency > 1 actor
    # finish out of order, and the planner ignored an early CallReplayed.
    actor = ThreadedCounter.options(max_restarts=-1, max_concurrency=4, checkpoint_interval=20).remote()
    refs = [actor.add.remote(seq) for seq in range(100)]
    _kill_worker_of(actor)  # calls still running or queued: replayed, answered once
    refs += [actor.add.remote(100 + seq) for seq in range(100)]
    assert all(isinstance(value, int) for value in lineagerun.get(refs, timeout=60))
    assert lineagerun.get(actor.state.remote(), timeout=30) == list(range(200))


@lineagerun.remote
class SlowCheckpointedCounter(_Counter):
    def add(self, seq):
        time.sleep(0.004)
        return super().add(seq)

    def __lineagerun_checkpoint__(self):
        return self.start, self.value, list(self.applied)

    def __lineagerun_restore__(self, state):
        self.start, self.value, self.applied = state[0], state[1], list(state[2])


def test_cancelled_call_of_a_restartable_actor_still_runs_in_the_chain():
    # A cancelled call must not stall the checkpoint window either.
    actor = SlowCheckpointedCounter.options(max_restarts=1, checkpoint_interval=5).remote(0)
    refs = [actor.add.remote(seq) for seq in range(30)]
    lineagerun.cancel(refs[20])
    with pytest.raises(lineagerun.exceptions.TaskCancelledError):
        lineagerun.get(refs[20], timeout=30)
    assert lineagerun.get(refs[-1], timeout=30) == (29, 30)
    _kill_worker_of(actor)
    assert lineagerun.get(actor.state.remote(), timeout=60) == (0, 30, list(range(30)))
