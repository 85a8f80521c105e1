"""Core API benchmark: lineagerun, and Ray in the same run when it is importable.

    .venv/bin/python bench/core.py [--repeats 3] [--tasks 3000] [--no-ray] [--only tasks,actors,small,large]

Workloads (issue 3 "Speed"): init() time, single-task round trip
(``get(f.remote())``), 3,000 no-op tasks submitted then fetched, actor call
round trip, 3,000 pipelined actor calls, small put and get rates, put and get
of a 200 MB numpy array. Each row is the median of ``--repeats`` runs (round
trips: the median of all samples). Ratios are lineagerun / Ray for rates and
Ray / lineagerun for times, so > 1 always means lineagerun is faster.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROUND_TRIP_SAMPLES = 200
SMALL_OPS = 2000
LARGE_ARRAY_BYTES = 200 * 1024 * 1024

# (key, label, unit, higher is better)
ROWS = [
    ("init_s", "init()", "s", False),
    ("task_rtt_ms", "task round trip", "ms", False),
    ("tasks_per_s", "no-op tasks submitted then fetched", "tasks/s", True),
    ("actor_rtt_ms", "actor call round trip", "ms", False),
    ("actor_calls_per_s", "pipelined actor calls", "calls/s", True),
    ("puts_per_s", "small put", "puts/s", True),
    ("gets_per_s", "small get", "gets/s", True),
    ("large_put_gb_s", "put 200 MB numpy array", "GB/s", True),
    ("large_get_gb_s", "get 200 MB numpy array", "GB/s", True),
]


def _round_trip_ms(api, submit) -> float:
    samples = []
    for _ in range(ROUND_TRIP_SAMPLES):
        t0 = time.perf_counter()
        api.get(submit())
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def _rate(api, submit, count: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        api.get([submit() for _ in range(count)])
        rates.append(count / (time.perf_counter() - t0))
    return statistics.median(rates)


def _small_objects(api, repeats: int) -> tuple[float, float]:
    put_rates, get_rates = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        refs = [api.put(i) for i in range(SMALL_OPS)]
        put_rates.append(SMALL_OPS / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for ref in refs:
            api.get(ref)
        get_rates.append(SMALL_OPS / (time.perf_counter() - t0))
        del refs
    return statistics.median(put_rates), statistics.median(get_rates)


def _large_array(api, repeats: int) -> tuple[float, float]:
    array = np.ones(LARGE_ARRAY_BYTES // 8, dtype=np.float64)
    put_rates, get_rates = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ref = api.put(array)
        put_rates.append(array.nbytes / 1e9 / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        value = api.get(ref)
        get_rates.append(array.nbytes / 1e9 / (time.perf_counter() - t0))
        assert value.shape == array.shape
        del value, ref
    return statistics.median(put_rates), statistics.median(get_rates)


# Groups of rows --only can select (init() is always measured).
GROUPS = {"tasks": ("task_rtt_ms", "tasks_per_s"), "actors": ("actor_rtt_ms", "actor_calls_per_s"),
          "small": ("puts_per_s", "gets_per_s"), "large": ("large_put_gb_s", "large_get_gb_s")}


def run_workloads(api, *, repeats: int, tasks: int, only: frozenset[str] = frozenset(GROUPS)) -> dict[str, float]:
    results: dict[str, float] = {}
    init_kwargs = {"num_cpus": os.cpu_count() or 2}
    if api.__name__ == "ray":
        init_kwargs["include_dashboard"] = False
    start_s = time.perf_counter()
    api.init(**init_kwargs)
    results["init_s"] = time.perf_counter() - start_s
    try:
        @api.remote
        def noop(*_args):
            return None

        @api.remote
        class Actor:
            def noop(self, *_args):
                return None

        api.get([noop.remote() for _ in range(50)])  # warm the worker pool
        if "tasks" in only:
            results["task_rtt_ms"] = _round_trip_ms(api, noop.remote)
            results["tasks_per_s"] = _rate(api, noop.remote, tasks, repeats)
        if "actors" in only:
            actor = Actor.remote()
            api.get(actor.noop.remote())
            results["actor_rtt_ms"] = _round_trip_ms(api, actor.noop.remote)
            results["actor_calls_per_s"] = _rate(api, actor.noop.remote, tasks, repeats)
        if "small" in only:
            results["puts_per_s"], results["gets_per_s"] = _small_objects(api, repeats)
        if "large" in only:
            results["large_put_gb_s"], results["large_get_gb_s"] = _large_array(api, repeats)
    finally:
        api.shutdown()
    return results


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def print_table(ours: dict[str, float], ray: dict[str, float] | None, ray_version: str | None) -> None:
    print()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    header = f"{'workload':40} {'unit':8} {'lineagerun':>12}"
    if ray is not None:
        header += f" {'ray ' + (ray_version or ''):>12} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for key, label, unit, higher_better in ROWS:
        line = f"{label:40} {unit:8} {_fmt(ours.get(key)):>12}"
        if ray is not None:
            theirs = ray.get(key)
            ratio = None
            if theirs and ours.get(key):
                ratio = ours[key] / theirs if higher_better else theirs / ours[key]
            line += f" {_fmt(theirs):>12} {('%.2fx' % ratio) if ratio else '-':>7}"
        print(line)
    if ray is not None:
        print("ratio > 1: lineagerun is faster")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--no-ray", action="store_true", help="skip Ray even if it is installed")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"comma-separated workload groups to run, of {', '.join(GROUPS)} (default: all)")
    args = parser.parse_args(argv)
    only = frozenset(g.strip() for g in args.only.split(",") if g.strip())
    if not only or only - set(GROUPS):
        parser.error(f"--only takes groups of {', '.join(GROUPS)}; got {args.only!r}")

    import lineagerun

    ours = run_workloads(lineagerun, repeats=args.repeats, tasks=args.tasks, only=only)
    ray_results, ray_version = None, None
    if not args.no_ray:
        try:
            ray = importlib.import_module("ray")
        except ImportError:
            print("ray is not importable: lineagerun only", file=sys.stderr)
        else:
            ray_version = getattr(ray, "__version__", "")
            ray_results = run_workloads(ray, repeats=args.repeats, tasks=args.tasks, only=only)
    print_table(ours, ray_results, ray_version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
