"""Control-store benchmark: for chain lengths 1, 2 and 3 (one shard), with
real coordinator and replica processes on this machine:

- batched write throughput: many client threads, each sending write_batch
  requests of BATCH_OPS puts (acknowledged ops per second);
- single-client write latency (sequential puts) p50/p99;
- read latency (sequential gets at the tail) p50/p99;
- the longest client-observed stall when a replica is killed (kill -9) under
  a write load, with the failure timeout that detection costs.

Each measurement runs REPEATS times (1 with --quick); the table shows
medians. Usage: python bench/control_store.py [--quick] [--chains 1,2,3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lineagerun.control.cluster import ControlStoreCluster  # noqa: E402
from lineagerun.control.history import percentile  # noqa: E402

BATCH_OPS = 1_000
VALUE_BYTES = 100
THROUGHPUT_THREADS = 8
FAILURE_TIMEOUT_MS = 1_000


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure_throughput(cluster: ControlStoreCluster, seconds: float, tag: str) -> float:
    stop = threading.Event()
    acked = [0] * THROUGHPUT_THREADS
    value = b"v" * VALUE_BYTES

    def work(t: int) -> None:
        with cluster.client() as client:
            i = 0
            while not stop.is_set():
                client.write_batch([("put", f"{tag}/{t}/{i + j}", value) for j in range(BATCH_OPS)])
                acked[t] += BATCH_OPS
                i += BATCH_OPS

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THROUGHPUT_THREADS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(acked) / (time.monotonic() - started)


def measure_latency(cluster: ControlStoreCluster, count: int, tag: str) -> tuple[list[float], list[float]]:
    writes, reads = [], []
    with cluster.client() as client:
        for i in range(count):
            start = time.perf_counter()
            client.put(f"{tag}/{i}", b"v" * VALUE_BYTES)
            writes.append(time.perf_counter() - start)
        for i in range(count):
            start = time.perf_counter()
            client.get(f"{tag}/{i}")
            reads.append(time.perf_counter() - start)
    return writes, reads


def measure_stall(cluster: ControlStoreCluster, seconds: float, tag: str) -> float:
    """Longest single put (over 4 writers) when a replica is killed at 1 s."""
    stop = threading.Event()
    longest = [0.0] * 4

    def work(t: int) -> None:
        with cluster.client() as client:
            i = 0
            while not stop.is_set():
                start = time.perf_counter()
                client.put(f"{tag}/{t}/{i}", b"v")
                longest[t] = max(longest[t], time.perf_counter() - start)
                i += 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    chain = cluster.chain(0)
    victim = cluster.index_of(chain[-1] if len(chain) > 1 else chain[0])
    cluster.kill_replica(*victim)
    if len(chain) == 1:  # the only replica: the shard waits for it (C8)
        time.sleep(0.5)
        cluster.restart_replica(*victim)
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return max(longest)


def run_chain(length: int, args) -> dict:
    rows: dict[str, list[float]] = {k: [] for k in ("tput", "w50", "w99", "r50", "r99", "stall")}
    for rep in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="lr-bench-") as directory:
            cluster = ControlStoreCluster(directory, shards=1, replicas=length, durability=args.durability,
                                          failure_timeout_ms=FAILURE_TIMEOUT_MS)
            with cluster.start():
                rows["tput"].append(measure_throughput(cluster, args.seconds, f"t{rep}"))
                writes, reads = measure_latency(cluster, args.latency_ops, f"l{rep}")
                rows["w50"].append(percentile(writes, 0.5) * 1000)
                rows["w99"].append(percentile(writes, 0.99) * 1000)
                rows["r50"].append(percentile(reads, 0.5) * 1000)
                rows["r99"].append(percentile(reads, 0.99) * 1000)
                rows["stall"].append(measure_stall(cluster, args.stall_seconds, f"s{rep}") * 1000)
        print(f"  chain of {length}, run {rep + 1}: {rows['tput'][-1]:,.0f} writes/s, stall {rows['stall'][-1]:.0f} ms",
              file=sys.stderr, flush=True)
    return {k: statistics.median(v) for k, v in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short run per chain length")
    parser.add_argument("--chains", default="1,2,3", help="chain lengths to measure")
    parser.add_argument("--durability", default="wal", choices=["wal", "fsync"])
    args = parser.parse_args()
    args.repeats = 1 if args.quick else 3
    args.seconds = 3.0 if args.quick else 8.0
    args.latency_ops = 200 if args.quick else 1_000
    args.stall_seconds = 2.5 if args.quick else 4.0
    load_before = os.getloadavg()[0]
    results = {int(n): run_chain(int(n), args) for n in args.chains.split(",")}
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (other work on the machine skews every figure)")
    print(f"control store, 1 shard, durability {args.durability}, {'quick' if args.quick else 'full'} run, "
          f"medians of {args.repeats}; throughput: {THROUGHPUT_THREADS} client threads x write_batch of "
          f"{BATCH_OPS} puts of {VALUE_BYTES} B; stall: kill -9 of the tail under 4 writers, failure timeout "
          f"{FAILURE_TIMEOUT_MS} ms\n")
    print("| chain | batched writes/s | put p50 ms | put p99 ms | get p50 ms | get p99 ms | longest stall on kill ms |")
    print("|---|---|---|---|---|---|---|")
    for n, r in results.items():
        print(f"| {n} | {r['tput']:,.0f} | {r['w50']:.2f} | {r['w99']:.2f} | {r['r50']:.2f} | {r['r99']:.2f} | "
              f"{r['stall']:.0f} |")


if __name__ == "__main__":
    main()
