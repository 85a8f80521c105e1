"""A three-node cluster on one machine: cross-node transfer and small-task
throughput, side by side with Ray (``ray.cluster_utils.Cluster``) when
``ray`` is importable.

- transfer: a 200 MB float64 array made by a task on node A (custom
  resource), then ``get`` from the driver on the head: the head pulls it
  from A (chunked gRPC stream). Time of the get only (the object exists on A
  first: ``wait(fetch_local=False)``), median over runs, as GB/s.
- throughput: N no-op tasks submitted from the driver, default strategy
  (bottom-up: the head keeps what it can, spills the rest) and SPREAD
  (every task placed by the global scheduler), tasks per second.

    .venv/bin/python bench/cluster.py [--size-mb 200] [--runs 3] [--tasks 2000] [--cpus-per-node 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

MB = 1024 * 1024


def _machine() -> str:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.processor() or platform.machine()}, {cpus} CPUs, load {load:.1f}, Python {platform.python_version()}"


def run_workload(ray, size_mb: int, runs: int, tasks: int) -> dict:
    @ray.remote(resources={"a": 1})
    def make(megabytes, seed):
        return np.full(megabytes * MB // 8, float(seed))

    @ray.remote
    def noop(i):
        return i

    results = {"transfer_s": [], "gbps": []}
    for run in range(runs):
        ref = make.remote(size_mb, run)
        ready, _ = ray.wait([ref], timeout=120, fetch_local=False)
        assert ready, "the array was not made in time"
        started = time.perf_counter()
        value = ray.get(ref, timeout=120)
        elapsed = time.perf_counter() - started
        assert value.nbytes == size_mb * MB // 8 * 8 and value[0] == float(run)
        del value, ref
        results["transfer_s"].append(elapsed)
        results["gbps"].append(size_mb * MB / elapsed / 1e9)
    ray.get([noop.remote(i) for i in range(50)])  # warm every worker
    for name, options in (("default", {}), ("spread", {"scheduling_strategy": "SPREAD"})):
        task = noop.options(**options)
        started = time.perf_counter()
        out = ray.get([task.remote(i) for i in range(tasks)], timeout=600)
        elapsed = time.perf_counter() - started
        assert out == list(range(tasks))
        results[f"tasks_per_s_{name}"] = tasks / elapsed
    return results


def bench_lineagerun(args) -> dict:
    import lineagerun
    from lineagerun.testing import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.cpus_per_node})
    try:
        cluster.add_node(num_cpus=args.cpus_per_node, resources={"a": 1})
        cluster.add_node(num_cpus=args.cpus_per_node)
        lineagerun.init(address=cluster.address)
        return run_workload(lineagerun, args.size_mb, args.runs, args.tasks)
    finally:
        lineagerun.shutdown()
        cluster.shutdown()


def bench_ray(args) -> dict | None:
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        return None
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.cpus_per_node})
    try:
        cluster.add_node(num_cpus=args.cpus_per_node, resources={"a": 1})
        cluster.add_node(num_cpus=args.cpus_per_node)
        ray.init(address=cluster.address)
        return run_workload(ray, args.size_mb, args.runs, args.tasks)
    finally:
        ray.shutdown()
        cluster.shutdown()


def _row(name: str, result: dict | None) -> str:
    if result is None:
        return f"| {name} | not installed | | | |"
    return (f"| {name} | {statistics.median(result['gbps']):.2f} GB/s (best {max(result['gbps']):.2f}) "
            f"| {statistics.median(result['transfer_s']):.2f} s "
            f"| {result['tasks_per_s_default']:.0f} | {result['tasks_per_s_spread']:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--cpus-per-node", type=int, default=1)
    args = parser.parse_args()
    print(f"machine: {_machine()}", flush=True)
    ours = bench_lineagerun(args)
    theirs = bench_ray(args)
    print(f"3 nodes x {args.cpus_per_node} CPU on one machine; {args.size_mb} MB transfer x {args.runs}; "
          f"{args.tasks} no-op tasks")
    print("| system | cross-node get (median) | time | tasks/s default | tasks/s SPREAD |")
    print("|---|---|---|---|---|")
    print(_row("lineagerun", ours))
    print(_row("ray", theirs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
