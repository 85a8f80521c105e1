"""``lineagerun demo``: a short, self-checking fault-tolerance demonstration.

By default (``make demo``) it runs the runtime chaos scenario of
``lineagerun.chaos.demo_scenario``: a local 2-node cluster started here, a
parameter-server workload, actor and worker processes killed with SIGKILL,
a node's links slowed through chaos proxies and that node killed and
replaced; it prints live progress
and the report (docs/chaos.md) and exits non-zero if an invariant fails.

``--control-store`` runs the earlier control-store demonstration instead: a
1-shard x 3-replica chain in a temporary directory, several clients writing
unique values, a replica killed with SIGKILL and restarted (twice: the head,
then the tail), and a report checked Jepsen-style from the recorded history.
"""

from __future__ import annotations

import sys
import tempfile
import time

import click


@click.command("demo")
@click.option("--control-store", "control_store", is_flag=True,
              help="the control-store demo (replica kills under writers) instead of the runtime one")
@click.option("--seconds", default=6.0, show_default=True, type=click.FloatRange(2, 600),
              help="control-store demo: how long the clients write")
@click.option("--clients", default=4, show_default=True, type=click.IntRange(1, 64),
              help="control-store demo: writing clients")
@click.option("--seed", type=int, default=None, help="runtime demo: seed of the fault schedule")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="runtime demo: also write the JSON report here")
@click.option("--keep", is_flag=True, help="keep the temporary directory (logs, data)")
def demo(control_store: bool, seconds: float, clients: int, seed: int | None, report_path: str | None,
         keep: bool) -> None:
    """Run a workload under chaos on a local cluster and print the report (--control-store: the store's demo)."""
    if not control_store:
        _runtime_demo(seed, report_path, keep)
        return
    _control_store_demo(seconds, clients, keep)


def _runtime_demo(seed: int | None, report_path: str | None, keep: bool) -> None:
    import json

    from lineagerun.chaos.demo_scenario import DEMO_SCENARIO_TOML
    from lineagerun.chaos.runner import ScenarioRunner, format_report
    from lineagerun.chaos.scenario import parse_scenario
    from lineagerun.exceptions import LineagerunError

    scenario = parse_scenario(DEMO_SCENARIO_TOML, "lineagerun/chaos/demo_scenario.py")
    work_dir = tempfile.mkdtemp(prefix="lineagerun-demo-") if keep else None
    started_s = time.monotonic()
    try:
        report = ScenarioRunner(scenario, seed=seed, progress=sys.stderr, work_dir=work_dir).run()
    except LineagerunError as err:
        raise click.ClickException(f"{type(err).__name__}: {err}") from None
    click.echo("")
    click.echo(format_report(report))
    if report_path:
        with open(report_path, "w") as out:
            json.dump(report, out, indent=2, default=str)
            out.write("\n")
        click.echo(f"report written to {report_path}")
    click.echo(f"demo took {time.monotonic() - started_s:.0f} s (cluster start included)")
    if keep:
        click.echo(f"cluster logs kept in {work_dir}")
    if report["verdict"] != "PASS":
        sys.exit(1)


def _control_store_demo(seconds: float, clients: int, keep: bool) -> None:
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
