"""Object transfer between two nodes' stores over loopback gRPC.

A child process (the source node) owns one store holding a 200 MB numpy
array and serves it with ``ObjectManagerServicer``; this process (the
destination node) pulls it with ``ObjectPuller`` into its own store, checks
it (first run), deletes it, and repeats. Prints the median and best GB/s, with memcpy of
the same size as a reference, and the machine.

    .venv/bin/python bench/transfer.py [--size-mb 200] [--runs 5] [--chunk-kb 4096]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import time

import grpc
import numpy as np
import psutil

from lineagerun.objects import LocalObjectStore, cleanup_session, new_session_id
from lineagerun.objects.transfer import ObjectPuller, token_channel_factory
from lineagerun.transport.auth import new_token

OBJECT_ID = bytes(range(28))

_SOURCE = r"""
import asyncio, sys
import numpy as np
from lineagerun.objects import LocalObjectStore
from lineagerun.objects.transfer import ObjectManagerServicer
from lineagerun.transport.channels import bind, make_aio_server

async def main(session_id, token, size_bytes):
    with LocalObjectStore(session_id, size_bytes * 2) as store:
        store.put(bytes(range(28)), np.arange(size_bytes, dtype=np.uint8))
        server = make_aio_server(token)
        ObjectManagerServicer(store).add_to_server(server)
        port = bind(server, "127.0.0.1", 0, token)
        await server.start()
        print(port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
        await server.stop(0)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} vCPUs, Linux {platform.release()}, Python {platform.python_version()}, "
            f"grpcio {grpc.__version__}, numpy {np.__version__}")


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def memcpy_gbps(size_bytes: int) -> float:
    src = np.arange(size_bytes, dtype=np.uint8)
    dst = np.empty_like(src)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - start)
    return size_bytes / min(times) / 1e9


async def pull_runs(address: str, token: str, size_bytes: int, runs: int, chunk_bytes: int,
                    source: psutil.Process) -> tuple[list[float], float, float]:
    """Seconds per pull, and the CPU seconds the source and this process
    spent during the pulls (not during the checks)."""
    expected = np.arange(size_bytes, dtype=np.uint8)
    seconds, source_cpu_s, destination_cpu_s = [], 0.0, 0.0
    destination = psutil.Process()
    with LocalObjectStore(new_session_id(), size_bytes * 2) as store:
        puller = ObjectPuller(store, token_channel_factory(token), token=token, chunk_size_bytes=chunk_bytes)
        try:
            for run in range(runs):
                source_before, destination_before = _cpu_s(source), _cpu_s(destination)
                start = time.perf_counter()
                await puller.pull(OBJECT_ID, [address])
                seconds.append(time.perf_counter() - start)
                source_cpu_s += _cpu_s(source) - source_before
                destination_cpu_s += _cpu_s(destination) - destination_before
                if run == 0:
                    value = store.get(OBJECT_ID)
                    assert np.array_equal(value, expected), "pulled array differs from the source"
                    del value
                store.delete(OBJECT_ID)
        finally:
            await puller.close()
    return seconds, source_cpu_s, destination_cpu_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunk-kb", type=int, default=4096)
    opts = parser.parse_args()
    size_bytes = opts.size_mb * 1_000_000
    token = new_token()
    source_session = new_session_id()
    child = subprocess.Popen([sys.executable, "-c", _SOURCE, source_session, token, str(size_bytes)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        port = int(child.stdout.readline())
        seconds, source_cpu_s, destination_cpu_s = asyncio.run(pull_runs(
            f"127.0.0.1:{port}", token, size_bytes, opts.runs, opts.chunk_kb * 1024, psutil.Process(child.pid)))
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        cleanup_session(source_session)
    rates = [size_bytes / s / 1e9 for s in seconds]
    print(f"machine: {machine()}")
    print(f"transfer of a {opts.size_mb} MB array, separate processes, loopback gRPC, "
          f"{opts.chunk_kb} KiB chunks, {opts.runs} runs")
    print(f"  median {statistics.median(rates):.2f} GB/s ({statistics.median(seconds) * 1000:.0f} ms), "
          f"best {max(rates):.2f} GB/s, worst {min(rates):.2f} GB/s")
    moved_gb = size_bytes * opts.runs / 1e9
    print(f"  CPU per GB moved: source {source_cpu_s / moved_gb:.2f} s, destination "
          f"{destination_cpu_s / moved_gb:.2f} s; load average {os.getloadavg()[0]:.1f}")
    print(f"  memcpy of the same size (reference): {memcpy_gbps(size_bytes):.2f} GB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
