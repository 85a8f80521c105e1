"""Object store benchmark: put/get of a large numpy array and rates of small
objects, on this machine's /dev/shm.

    .venv/bin/python bench/objects.py [--large-mb 200] [--small-count 5000] [--repeat 5]

Prints a table; "get" of a large array is zero copy (it maps the file), so
its GB/s measures mapping and unpickling, not copying. "get + read" also
touches every byte once (np.sum) for a figure comparable to a copying store.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

from lineagerun.objects.serialization import serialize
from lineagerun.objects.shm import new_session_id
from lineagerun.objects.store import LocalObjectStore

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine() -> str:
    cpu = platform.processor() or "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    shm_gb = shutil.disk_usage("/dev/shm").total / 1e9
    return (f"{cpu}, {os.cpu_count()} cpus, Linux {platform.release()}, Python {platform.python_version()}, "
            f"numpy {np.__version__}, /dev/shm {shm_gb:.1f} GB")


def timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def oid(i: int) -> bytes:
    return i.to_bytes(28, "big")


def bench_large(store: LocalObjectStore, size_mb: int, repeat: int) -> list[tuple[str, str]]:
    array = np.random.default_rng(0).integers(0, 255, size=size_mb * 1_000_000, dtype=np.uint8)
    nbytes = array.nbytes
    rows = []
    copy_s = timed(lambda: array.copy(), repeat)
    rows.append((f"memcpy {size_mb} MB (np.copy, reference)", f"{nbytes / copy_s / 1e9:8.2f} GB/s"))

    counter = iter(range(1 << 30))

    def put_once():
        object_id = oid(next(counter))
        store.put(object_id, array)
        store.delete(object_id)

    put_s = timed(put_once, repeat)
    rows.append((f"put {size_mb} MB numpy array", f"{nbytes / put_s / 1e9:8.2f} GB/s  ({put_s * 1e3:.1f} ms)"))
    store.put(oid(1), array)
    get_s = timed(lambda: store.get(oid(1)), repeat * 20)
    rows.append((f"get {size_mb} MB (zero copy)", f"{nbytes / get_s / 1e9:8.0f} GB/s  ({get_s * 1e6:.0f} us)"))
    read_s = timed(lambda: int(store.get(oid(1)).sum(dtype=np.uint64)), repeat)
    sum_s = timed(lambda: int(array.sum(dtype=np.uint64)), repeat)
    rows.append((f"get + read all {size_mb} MB (np.sum)",
                 f"{nbytes / read_s / 1e9:8.2f} GB/s  (np.sum of a private array: {nbytes / sum_s / 1e9:.2f} GB/s)"))
    child_s = child_get_seconds(store, oid(1), repeat)
    rows.append((f"get {size_mb} MB in another process",
                 f"{nbytes / child_s / 1e9:8.0f} GB/s  ({child_s * 1e6:.0f} us)"))
    store.delete(oid(1))
    return rows


def child_get_seconds(store: LocalObjectStore, object_id: bytes, repeat: int) -> float:
    code = (
        "import sys, time, statistics\n"
        "from lineagerun.objects.store import read_object\n"
        "sid, oid = sys.argv[1], bytes.fromhex(sys.argv[2])\n"
        "samples = []\n"
        f"for _ in range({repeat * 20}):\n"
        "    t = time.perf_counter(); read_object(sid, oid); samples.append(time.perf_counter() - t)\n"
        "print(statistics.median(samples))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, store.session_id, object_id.hex()], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True, timeout=120, start_new_session=True)
    return float(out.stdout.strip())


def bench_small(store: LocalObjectStore, count: int) -> list[tuple[str, str]]:
    value = {"step": 1, "loss": 0.25, "tags": ["a", "b"]}
    base = 1 << 20
    start = time.perf_counter()
    for i in range(count):
        store.put(oid(base + i), value)
    put_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(count):
        store.get(oid(base + i))
    get_s = time.perf_counter() - start
    for i in range(count):
        store.delete(oid(base + i))
    start = time.perf_counter()
    for i in range(count):
        store.place(oid(i), value)
    place_s = time.perf_counter() - start
    small_bytes = serialize(value).total_bytes
    start = time.perf_counter()
    for _ in range(count):
        serialize(value).to_bytes()
    serialize_s = time.perf_counter() - start
    return [
        (f"put small ({small_bytes} B) into shm", f"{count / put_s:8.0f} /s"),
        ("get small from shm", f"{count / get_s:8.0f} /s"),
        ("place small (inline, no shm)", f"{count / place_s:8.0f} /s"),
        ("serialize small to bytes", f"{count / serialize_s:8.0f} /s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-mb", type=int, default=200)
    parser.add_argument("--small-count", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    capacity = max(1 << 30, 3 * args.large_mb * 1_000_000)
    with LocalObjectStore(new_session_id(), capacity) as store:
        rows = bench_large(store, args.large_mb, args.repeat) + bench_small(store, args.small_count)
    print(f"machine: {machine()}")
    width = max(len(name) for name, _ in rows)
    print(f"{'operation':<{width}}  result")
    print(f"{'-' * width}  {'-' * 40}")
    for name, result in rows:
        print(f"{name:<{width}}  {result}")


if __name__ == "__main__":
    main()
