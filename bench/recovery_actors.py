"""Actor recovery time against the number of calls to replay, side by side
with Ray when ``ray`` is importable.

- lineagerun, process kill: a counter actor (``max_restarts=-1``, no
  checkpoint, so every call since the "last checkpoint" - here: since the
  start - is replayed) gets N calls; its worker process is killed (SIGKILL);
  time from the kill until the result of the next call is back. The actor
  comes back with its state (checked).
- lineagerun, node kill: the same on a 3-node cluster (head + two nodes that
  can host it), ``checkpoint_interval=0``, the host node's process group is
  killed (kill -9); time from the kill until the next call's result:
  failure detection (node timeout 1 s) + restart on the other node +
  replay. Only for the smaller N (a node kill is slow to set up).
- Ray 2.60: the same actor and kill; Ray restarts it with EMPTY state and
  does not replay (its value after the restart is 1): its time is a restart
  time only.

Each point is the median of ``runs`` runs.

    .venv/bin/python bench/recovery_actors.py [--calls 0,100,500,1000] [--runs 3] [--no-ray] [--no-node-kill]

``run_actor_recovery_bench() -> list[dict]`` is what bench/recovery.py calls.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time

CALLS_DEFAULT = (0, 100, 500, 1000)
RUNS_DEFAULT = 3
NODE_KILL_CALLS_MAX = 500  # node kills for N up to this
GET_TIMEOUT_S = 120


def _counter_class(ray, **options):
    @ray.remote(max_restarts=-1, **options)
    class Counter:
        def __init__(self):
            self.value = 0

        def add(self):
            self.value += 1
            return self.value

        def pid(self):
            return os.getpid()

        def node(self):
            return ray.get_runtime_context().get_node_id()

    return Counter


def _process_kill_once(ray, counter_class, calls: int) -> tuple[float, int]:
    actor = counter_class.remote()
    if calls:
        ray.get([actor.add.remote() for _ in range(calls)], timeout=GET_TIMEOUT_S)
    pid = ray.get(actor.pid.remote(), timeout=GET_TIMEOUT_S)
    started = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    value = ray.get(actor.add.remote(), timeout=GET_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    ray.kill(actor)
    return elapsed, value


def _process_kill_series(ray, calls_list, runs: int, system: str, replays: bool, **options) -> list[dict]:
    counter_class = _counter_class(ray, **options)
    rows = []
    for calls in calls_list:
        times, values = [], []
        for _ in range(runs):
            elapsed, value = _process_kill_once(ray, counter_class, calls)
            times.append(elapsed)
            values.append(value)
        if replays:
            assert all(v == calls + 1 for v in values), f"state lost on restart: {values} after {calls} calls"
        rows.append({"system": system, "kill": "process", "calls_since_checkpoint": calls,
                     "recovery_s": statistics.median(times), "runs": runs, "value_after": values[0],
                     "replays": replays})
    return rows


def lineagerun_process_kill(calls_list, runs: int) -> list[dict]:
    import lineagerun

    lineagerun.shutdown()
    lineagerun.init(num_cpus=2)
    try:
        return _process_kill_series(lineagerun, calls_list, runs, "lineagerun", True)
    finally:
        lineagerun.shutdown()


def lineagerun_node_kill(calls_list, runs: int) -> list[dict]:
    import lineagerun
    from lineagerun.testing import Cluster

    lineagerun.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1}, node_timeout_ms=1000)
    rows = []
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, resources={"host": 100})
        lineagerun.init(address=cluster.address)

        @lineagerun.remote(max_restarts=-1, num_cpus=0, resources={"host": 1})
        class Counter:
            def __init__(self):
                self.value = 0

            def add(self):
                self.value += 1
                return self.value

            def node(self):
                return lineagerun.get_runtime_context().get_node_id()

        for calls in calls_list:
            times = []
            for _ in range(runs):
                actor = Counter.remote()
                if calls:
                    lineagerun.get([actor.add.remote() for _ in range(calls)], timeout=GET_TIMEOUT_S)
                host = lineagerun.get(actor.node.remote(), timeout=GET_TIMEOUT_S)
                node = next(n for n in cluster.list_all_nodes() if n.node_id == host)
                started = time.perf_counter()
                cluster.remove_node(node, allow_graceful=False)
                value = lineagerun.get(actor.add.remote(), timeout=GET_TIMEOUT_S)
                times.append(time.perf_counter() - started)
                assert value == calls + 1, f"state lost on a node restart: {value} after {calls} calls"
                lineagerun.kill(actor)
                cluster.add_node(num_cpus=1, resources={"host": 100})  # keep two hosts
            rows.append({"system": "lineagerun", "kill": "node", "calls_since_checkpoint": calls,
                         "recovery_s": statistics.median(times), "runs": runs, "value_after": calls + 1,
                         "replays": True})
    finally:
        lineagerun.shutdown()
        cluster.shutdown()
    return rows


def ray_process_kill(calls_list, runs: int) -> list[dict]:
    try:
        import ray
    except ImportError:
        return []
    if ray.is_initialized():
        ray.shutdown()  # a caller's (e.g. bench/recovery.py's) session: ours needs a known size
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # max_task_retries: the call made right after the kill waits for the
        # restart (else Ray answers ActorUnavailableError), as lineagerun's does.
        return _process_kill_series(ray, calls_list, runs, f"ray {ray.__version__}", False, max_task_retries=-1)
    finally:
        ray.shutdown()


def run_actor_recovery_bench(calls=CALLS_DEFAULT, runs: int = RUNS_DEFAULT, with_ray: bool = True,
                             node_kill: bool = True) -> list[dict]:
    """Rows: system, kill (process / node), calls_since_checkpoint,
    recovery_s (median), runs, value_after (the counter after the restart:
    calls + 1 when the state survived), replays. Starts and stops its own
    lineagerun sessions (and Ray's): call it with none running. About 2
    minutes with the defaults."""
    rows = lineagerun_process_kill(calls, runs)
    if node_kill:
        rows += lineagerun_node_kill([c for c in calls if c <= NODE_KILL_CALLS_MAX], runs)
    if with_ray:
        rows += ray_process_kill(calls, runs)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'system':<14} {'kill':<8} {'calls':>6} {'recovery s':>11} {'value after':>12}  state"]
    for row in rows:
        state = "replayed" if row["replays"] else "EMPTY (no replay)"
        lines.append(f"{row['system']:<14} {row['kill']:<8} {row['calls_since_checkpoint']:>6} "
                     f"{row['recovery_s']:>11.3f} {row['value_after']:>12}  {state}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default=",".join(map(str, CALLS_DEFAULT)))
    parser.add_argument("--runs", type=int, default=RUNS_DEFAULT)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-node-kill", action="store_true")
    args = parser.parse_args(argv)
    calls = [int(c) for c in args.calls.split(",") if c]
    rows = run_actor_recovery_bench(calls, args.runs, with_ray=not args.no_ray, node_kill=not args.no_node_kill)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"actor recovery (median of {args.runs}; load average {load:.1f})")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
