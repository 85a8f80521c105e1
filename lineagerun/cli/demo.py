"""``lineagerun demo``: a short, self-checking fault-tolerance demonstration.

For now it exercises the control store: a 1-shard x 3-replica chain in a
temporary directory, several clients writing unique values, a replica killed
with SIGKILL and restarted (twice: the head, then the tail), and a report
checked Jepsen-style from the recorded history.
"""

from __future__ import annotations

import sys
import tempfile
import time

import click


@click.command("demo")
@click.option("--seconds", default=6.0, show_default=True, type=click.FloatRange(2, 600),
              help="how long the clients write")
@click.option("--clients", default=4, show_default=True, type=click.IntRange(1, 64), help="writing clients")
@click.option("--keep", is_flag=True, help="keep the temporary directory (logs, RocksDB data)")
def demo(seconds: float, clients: int, keep: bool) -> None:
    """Write to a replicated control store while killing replicas; report losses (must be 0)."""
    from lineagerun.control.cluster import ControlStoreCluster
    from lineagerun.control.scenario import Fault, kill_and_restart, run_scenario

    directory = tempfile.mkdtemp(prefix="lineagerun-demo-")
    click.echo(f"starting a control store (1 shard x 3 replicas) in {directory} ...")
    started_s = time.monotonic()
    cluster = ControlStoreCluster(directory, shards=1, replicas=3)
    try:
        cluster.start()
        click.echo(f"chain formed in {time.monotonic() - started_s:.1f} s: {' -> '.join(cluster.chain(0))}")
        click.echo(f"{clients} clients write unique values for {seconds:.0f} s; the nemesis kills -9 the head, "
                   f"then the tail, and restarts each")
        faults = [Fault(seconds * 0.25, "kill -9 head, restart", kill_and_restart(0, "head")),
                  Fault(seconds * 0.6, "kill -9 tail, restart", kill_and_restart(0, "tail"))]
        result = run_scenario(cluster, "demo", duration_s=seconds, faults=faults, writers=clients, readers=1)
    finally:
        cluster.stop()
        if not keep:
            import shutil

            shutil.rmtree(directory, ignore_errors=True)
    report = result.report
    click.echo("")
    click.echo(f"faults injected:        {', '.join(f'{n} at {t:.1f} s' for t, n in result.faults)}")
    click.echo(f"writes acknowledged:    {report.writes_ok}  (unknown outcome: {report.writes_unknown}, "
               f"refused: {report.writes_fail})")
    click.echo(f"acknowledged but lost:  {len(report.lost)}")
    click.echo(f"applied twice:          {len(report.duplicated)}")
    click.echo(f"reads back in time:     {len(report.stale_reads)}  (of {report.reads_ok} reads)")
    click.echo(f"replicas identical:     {'yes' if not report.replica_divergence else 'NO'}")
    click.echo(f"longest client stall:   {report.longest_stall_s * 1000:.0f} ms  (p50 write "
               f"{report.latency_p50_ms:.1f} ms, p99 {report.latency_p99_ms:.1f} ms)")
    click.echo(f"epochs:                 {result.epochs_before[0]} -> {result.epochs_after[0]}")
    if report.stream_missing:
        click.echo(f"subscription missed:    {len(report.stream_missing)} changes (the stream resyncs instead of "
                   f"skipping; any count here is a bug)")
    problems = report.lost + report.duplicated + report.stale_reads + report.phantoms + report.replica_divergence \
        + result.client_errors
    for problem in problems[:10]:
        click.echo(f"  problem: {problem}", err=True)
    if problems:
        click.echo("FAILED: the control store broke a promise (see above)", err=True)
        sys.exit(1)
    click.echo("OK: nothing acknowledged was lost or applied twice")
    if keep:
        click.echo(f"data and logs kept in {directory}")
