"""State-command benchmark: the ``lineagerun`` state CLI on a control store
holding TASKS recorded tasks (default 100,000), one of which ends a chain of
ANCESTORS (default 10,000) tasks.

Records are synthetic but laid out as the runtime writes them (a TaskSpec,
a TaskAttempt and an ObjectRecord per task; every 10th task retried, with a
WORKER_DIED and a TASK_RETRIED event, and every 100th an OBJECT_LOST and
OBJECT_RECONSTRUCTED pair: ~20,000 recovery events), all in one job, written through ControlStoreClient to a real control store (1 shard
x 1 replica by default). Each command runs as its own process, as a user
runs it; the table gives its wall time, its CPU time (user + system of the
CLI process alone: less sensitive to a loaded machine than wall time; live
reads also spend CPU in the replica process) and its peak RSS, against the
live cluster and post mortem (``--dir``) after the cluster is stopped.

Usage: python bench/state.py [--tasks 100000] [--ancestors 10000] [--shards 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lineagerun.control.cluster import ControlStoreCluster  # noqa: E402
from lineagerun.core.ids import ObjectID  # noqa: E402
from lineagerun.rpc import lineage_pb2 as pb  # noqa: E402
from tests.state import Attempt, Recorder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Records written per flush: bounds the benchmark's own memory.
FLUSH_TASKS = 10_000
COMMAND_TIMEOUT_S = 600

# Runs a state command in this process and reports its peak RSS on stderr
# (ru_maxrss is in KiB on Linux), however the command exits.
_RUNNER = """
import resource, sys
from lineagerun.cli.state import main
try:
    main(sys.argv[1:])
finally:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print("PEAK_RSS_KIB", usage.ru_maxrss, file=sys.stderr)
    print("CPU_SECONDS", usage.ru_utime + usage.ru_stime, file=sys.stderr)
"""


def populate(client, tasks: int, ancestors: int) -> str:
    """Write the records; returns the hex id of the chain's last object."""
    recorder = Recorder(job=7)
    step, other = recorder.function("step"), recorder.function("independent")
    previous = recorder.task(step, ["seed"])
    written = 1
    for i in range(1, tasks):
        if i < ancestors:
            previous = recorder.task(step, [ObjectID.from_index(previous, 1).binary()])
        else:
            attempts = [Attempt()] if i % 10 else [Attempt(pb.FIRST_RUN, pb.FAILED, node=1), Attempt(pb.RETRY)]
            tid = recorder.task(other, [], attempts=attempts)
            if i % 10 == 0:
                recorder.event(pb.WORKER_DIED, i, 4 * i, task_id=tid.binary())
                recorder.event(pb.TASK_RETRIED, i, 4 * i + 1, task_id=tid.binary(), attempt_number=1,
                               duration_ms=i % 97)
            if i % 100 == 0:
                oid = ObjectID.from_index(tid, 1).binary()
                recorder.event(pb.OBJECT_LOST, i, 4 * i + 2, object_id=oid)
                recorder.event(pb.OBJECT_RECONSTRUCTED, i + 5, 4 * i + 3, object_id=oid, duration_ms=5 + i % 89)
        written += 1
        if written % FLUSH_TASKS == 0:
            recorder.flush(client)
    recorder.flush(client)
    return ObjectID.from_index(previous, 1).hex()


def run_command(argv: list[str], where: list[str]) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _RUNNER, *argv, *where], capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          start_new_session=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    peak = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_KIB"))
    cpu = next(float(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("CPU_SECONDS"))
    shown = ["trace.json" if a.endswith(".json") else a for a in argv]
    shown = [a if len(a) < 40 else a[:12] + "..." for a in shown]
    return {"command": "lineagerun " + " ".join(shown),
            "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "peak_rss_mib": round(peak / 1024, 1),
            "stdout_bytes": len(done.stdout)}


def commands(target: str, trace: Path) -> list[list[str]]:
    return [
        ["lineage", target, "--format", "json"],
        ["lineage", target, "--format", "tree"],
        ["list", "tasks"],
        ["list", "tasks", "-f", "reasons=first_run,retry", "--limit", "100000", "--format", "json"],
        ["summary", "tasks"],
        ["summary", "recovery"],
        ["list", "events", "-f", "recovery=true", "--limit", "100000", "--format", "json"],
        ["timeline", "-o", str(trace)],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--ancestors", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if not 1 <= args.ancestors <= args.tasks:
        raise SystemExit("need 1 <= --ancestors <= --tasks")
    results = {"tasks": args.tasks, "ancestors": args.ancestors, "shards": args.shards, "runs": [],
               "load_before": round(os.getloadavg()[0], 1)}
    with tempfile.TemporaryDirectory(prefix="lr-bench-state-") as tmp:
        directory = Path(tmp) / "cs"
        cluster = ControlStoreCluster(directory, shards=args.shards, replicas=1).start()
        try:
            started = time.perf_counter()
            with cluster.client() as client:
                target = populate(client, args.tasks, args.ancestors)
            results["write_seconds"] = round(time.perf_counter() - started, 1)
            print(f"wrote {args.tasks} tasks in {results['write_seconds']} s; target object {target}", flush=True)
            live = ["--address", cluster.address, "--token-file", str(cluster.token_file)]
            for argv in commands(target, Path(tmp) / "trace-live.json"):
                run = {"source": "live", **run_command(argv, live)}
                results["runs"].append(run)
                print(json.dumps(run), flush=True)
        finally:
            cluster.stop()
        for argv in commands(target, Path(tmp) / "trace-dir.json"):
            run = {"source": "dir", **run_command(argv, ["--dir", str(directory)])}
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
    print()
    print(f"load average before / after: {results['load_before']} / {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    print("| command | source | wall s | CPU s (client) | peak RSS (MiB) | output bytes |")
    print("|---|---|---|---|---|---|")
    for run in results["runs"]:
        print(f"| `{run['command']}` | {run['source']} | {run['seconds']} | {run['cpu_seconds']} | "
              f"{run['peak_rss_mib']} | {run['stdout_bytes']} |")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
