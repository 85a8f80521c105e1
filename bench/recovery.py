"""Recovery after a node is killed, side by side with Ray
(``ray.cluster_utils.Cluster``) when ``ray`` is importable.

Chain: a 10-task chain of 1 MiB numpy arrays (each task takes the previous
array) runs on a worker node (the only one with the custom resource "w";
the head has no CPUs). A spare node with "w" is added, the chain's node is
killed (SIGKILL of its process group: ``remove_node(allow_graceful=False)``)
and the driver ``get``s the last array. Measured: seconds from the kill
until that get returns (failure detection included, default settings:
lineagerun declares a node dead after 1 s without heartbeats; Ray's own
defaults), median over runs; the value is checked bit-identical with a
fault-free computation. The spare is the next run's victim.

Actor recovery rows come from ``bench/recovery_actors.py`` when it exists.

    .venv/bin/python bench/recovery.py [--runs 3] [--length 10] [--no-ray] [--no-actors]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

ARRAY_BYTES = 1024 * 1024
GET_TIMEOUT_S = 300


def _machine() -> str:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    processor = platform.processor() or platform.machine()
    return f"{processor}, {cpus} cores, load {load:.1f}, Python {platform.python_version()}"


def _start() -> np.ndarray:
    return (np.arange(ARRAY_BYTES, dtype=np.uint32) % 251).astype(np.uint8)


def _step(previous: np.ndarray, index: int) -> np.ndarray:
    return ((previous.astype(np.uint16) * 7 + index) % 256).astype(np.uint8)


def _expected(length: int) -> bytes:
    value = _start()
    for index in range(1, length):
        value = _step(value, index)
    return value.tobytes()


def run_chain(ray, add_spare, kill, length: int, runs: int) -> list[float]:
    """Seconds from each kill until the chain's last value is back."""

    @ray.remote(resources={"w": 1})
    def start():
        return _start()

    @ray.remote(resources={"w": 1})
    def step(previous, index):
        return _step(previous, index)

    expected = _expected(length)
    times = []
    for _ in range(runs):
        refs = [start.remote()]
        for index in range(1, length):
            refs.append(step.remote(refs[-1], index))
        ready, _ = ray.wait(refs, num_returns=length, timeout=GET_TIMEOUT_S, fetch_local=False)
        assert len(ready) == length, "the chain did not finish"
        victim = add_spare()
        killed_at = time.perf_counter()
        kill(victim)
        value = ray.get(refs[-1], timeout=GET_TIMEOUT_S)
        times.append(time.perf_counter() - killed_at)
        assert value.tobytes() == expected, "the rebuilt value differs from the fault-free one"
        print(f"  run {len(times)}: {times[-1]:.2f} s", flush=True)
        del refs, value
    return times


def bench_lineagerun(length: int, runs: int) -> list[float]:
    import lineagerun
    from lineagerun.testing import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        cluster.add_node(num_cpus=1, resources={"w": 1})
        lineagerun.init(address=cluster.address)

        def add_spare():
            (victim,) = cluster.worker_nodes
            cluster.add_node(num_cpus=1, resources={"w": 1})
            return victim

        return run_chain(lineagerun, add_spare, lambda node: cluster.remove_node(node, allow_graceful=False),
                         length, runs)
    finally:
        lineagerun.shutdown()
        cluster.shutdown()


def bench_ray(length: int, runs: int) -> list[float] | None:
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        return None
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        nodes = [cluster.add_node(num_cpus=1, resources={"w": 1})]
        ray.init(address=cluster.address)

        def add_spare():
            victim = nodes.pop(0)
            nodes.append(cluster.add_node(num_cpus=1, resources={"w": 1}))
            cluster.wait_for_nodes()
            return victim

        return run_chain(ray, add_spare, lambda node: cluster.remove_node(node, allow_graceful=False),
                         length, runs)
    finally:
        ray.shutdown()
        cluster.shutdown()


def _actor_rows() -> list[str]:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        from recovery_actors import run_actor_recovery_bench
    except ImportError:
        return []
    try:
        rows = run_actor_recovery_bench()
    except Exception as exc:  # noqa: BLE001 - the chain table above stands on its own
        return [f"actor recovery bench failed: {type(exc).__name__}: {exc}"]
    if not rows:
        return []
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row.get(k):.3f}" if isinstance(row.get(k), float) else str(row.get(k))
                                         for k in keys) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--length", type=int, default=10)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-actors", action="store_true")
    args = parser.parse_args()
    print(f"machine: {_machine()}", flush=True)
    print("lineagerun:", flush=True)
    ours = bench_lineagerun(args.length, args.runs)
    theirs = None
    if not args.no_ray:
        print("ray:", flush=True)
        theirs = bench_ray(args.length, args.runs)
    print(f"\n{args.length}-task chain of 1 MiB arrays on a killed node; seconds from the kill until the last "
          f"value is back (failure detection included), {args.runs} runs")
    print("| system | median | min | max | runs |")
    print("|---|---|---|---|---|")
    for name, times in (("lineagerun", ours), ("ray", theirs)):
        if times is None:
            print(f"| {name} | {'skipped (--no-ray)' if args.no_ray else 'not installed'} | | | |")
        else:
            print(f"| {name} | {statistics.median(times):.2f} s | {min(times):.2f} s | {max(times):.2f} s "
                  f"| {len(times)} |")
    if theirs:
        print(f"ratio (ray / lineagerun, medians): {statistics.median(theirs) / statistics.median(ours):.1f}x")
    print(f"machine: {_machine()}")
    if not args.no_actors:
        lines = _actor_rows()
        if lines:
            print("\nactor recovery (bench/recovery_actors.py):")
            print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
