"""``lineagerun chaos run`` and ``lineagerun chaos nemesis``.

``run SCENARIO [--seed N] [--report FILE]`` runs a scenario file
(docs/chaos.md, "Running scenarios and reading reports"): live progress on
stderr, the report on stdout, JSON with ``--report``; exit code 1 when an
invariant fails, 2 for a bad scenario file.

``nemesis`` performs one fault against a control store started with
``lineagerun control-store start --dir DIR``.
"""

from __future__ import annotations

import json
import sys

import click

from lineagerun.exceptions import ConfigurationError, InvalidArgumentError, LineagerunError

EXIT_INVARIANT_FAILED = 1
EXIT_BAD_SCENARIO = 2


@click.command("run")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--seed", type=int, default=None, help="Seed of random fault schedules and workloads "
                                                     "(default: the scenario's `seed`).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the JSON report to this file.")
@click.option("--work-dir", type=click.Path(file_okay=False), default=None,
              help="Keep the cluster's data and logs here (default: a temporary directory, removed).")
@click.option("--quiet", is_flag=True, help="No live progress on stderr.")
def run(scenario: str, seed: int | None, report_path: str | None, work_dir: str | None, quiet: bool) -> None:
    """Run a chaos SCENARIO file; exit non-zero if an invariant fails."""
    from lineagerun.chaos.runner import format_report, run_scenario_file

    try:
        report = run_scenario_file(scenario, seed=seed, progress=None if quiet else sys.stderr, work_dir=work_dir)
    except InvalidArgumentError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_BAD_SCENARIO)
    except LineagerunError as err:  # the cluster would not start, or never healed
        raise click.ClickException(f"{type(err).__name__}: {err}") from None
    if report_path:
        with open(report_path, "w") as out:
            json.dump(report, out, indent=2, default=str)
            out.write("\n")
    click.echo(format_report(report))
    if report_path:
        click.echo(f"report written to {report_path}")
    if report["verdict"] != "PASS":
        sys.exit(EXIT_INVARIANT_FAILED)


@click.group("nemesis")
def nemesis() -> None:
    """One fault against a running control store (started with `control-store start --dir DIR`)."""


def _dir_option(function):
    return click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, exists=True),
                        help="The store's directory (holds cluster.json).")(function)


def _replica_options(function):
    function = click.option("--index", required=True, type=click.IntRange(0), help="Replica index in its shard.")(
        function)
    function = click.option("--shard", default=0, show_default=True, type=click.IntRange(0))(function)
    return _dir_option(function)


def _act(directory: str, name: str, verb: str) -> None:
    from lineagerun.chaos.nemesis import RecordedProcessTarget

    target = RecordedProcessTarget(directory, name)
    try:
        outcome = getattr(target, verb)()
    except (InvalidArgumentError, ConfigurationError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{verb} {name}" + (f": serving at {outcome}" if isinstance(outcome, str) else ""))


def _replica_command(verb: str, help_text: str):
    @nemesis.command(f"{verb}-replica", help=help_text)
    @_replica_options
    def command(directory: str, shard: int, index: int) -> None:
        _act(directory, f"s{shard}r{index}", verb)

    return command


def _coordinator_command(verb: str, help_text: str):
    @nemesis.command(f"{verb}-coordinator", help=help_text)
    @_dir_option
    def command(directory: str) -> None:
        _act(directory, "coordinator", verb)

    return command


kill_replica = _replica_command("kill", "kill -9 a replica (its process group).")
pause_replica = _replica_command("pause", "SIGSTOP a replica.")
resume_replica = _replica_command("resume", "SIGCONT a paused replica.")
restart_replica = _replica_command("restart", "Start a replica again from its directory (kill -9 first if it runs).")
kill_coordinator = _coordinator_command("kill", "kill -9 the coordinator.")
pause_coordinator = _coordinator_command("pause", "SIGSTOP the coordinator.")
resume_coordinator = _coordinator_command("resume", "SIGCONT the coordinator.")
restart_coordinator = _coordinator_command("restart", "Start the coordinator again on its port and directory.")
