"""``lineagerun chaos run`` and ``lineagerun chaos nemesis``.

``run SCENARIO [--seed N] [--report FILE]`` runs a scenario file
(docs/chaos.md, "Running scenarios and reading reports"): live progress on
stderr, the report on stdout, JSON with ``--report``; exit code 1 when an
invariant fails, 2 for a bad scenario file.

``nemesis`` performs one fault against a control store started with
``lineagerun control-store start --dir DIR`` (``kill-replica --dir DIR`` ...)
or a runtime cluster found by its session directory (``kill-node --session
DIR --node ID``, ``kill-worker``, ``kill-actor``, ``kill-scheduler``, their
pause/resume; ``toxic``, ``partition``, ``heal`` for a ``Cluster(chaos=True)``).
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
    """One fault against a running control store (--dir) or runtime cluster (--session)."""


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


# ------------------------------------------------- runtime clusters


def _session_option(function):
    return click.option("--session", "session_dir", required=True, type=click.Path(file_okay=False, exists=True),
                        help="The cluster's session directory (e.g. /tmp/lineagerun/session_...).")(function)


def toxic_attributes(attrs: tuple[str, ...]) -> dict[str, int]:
    """``--attr name=integer`` options as a toxic's attributes."""
    attributes = {}
    for attr in attrs:
        key, sep, value = attr.partition("=")
        if not sep or not value.lstrip("-").isdigit():
            raise click.BadParameter(f"{attr!r} is not name=integer", param_hint="--attr")
        attributes[key] = int(value)
    return attributes


def _do(action, *args) -> None:
    try:
        click.echo(action(*args))
    except (InvalidArgumentError, ConfigurationError) as err:
        raise click.ClickException(str(err)) from None


def _runtime_process_commands(verb: str, what: str) -> None:
    from lineagerun.chaos import session_nemesis as sn

    @nemesis.command(f"{verb}-node", help=f"{what} a node manager and its workers (its process group).")
    @_session_option
    @click.option("--node", required=True, help="Node id (a hex prefix is enough).")
    def node_command(session_dir: str, node: str) -> None:
        _do(sn.node_action, session_dir, verb, node)

    @nemesis.command(f"{verb}-worker", help=f"{what} a worker process of a node (the busiest, or --pid).")
    @_session_option
    @click.option("--node", required=True, help="Node id (a hex prefix is enough).")
    @click.option("--pid", type=int, default=None, help="This worker (default: the one using the most CPU).")
    def worker_command(session_dir: str, node: str, pid: int | None) -> None:
        _do(sn.worker_action, session_dir, verb, node, pid)

    @nemesis.command(f"{verb}-actor", help=f"{what} the worker process hosting an actor.")
    @_session_option
    @click.option("--actor", default="", help="Actor name or id hex prefix (default: the first live actor).")
    def actor_command(session_dir: str, actor: str) -> None:
        _do(sn.actor_action, session_dir, verb, actor)

    @nemesis.command(f"{verb}-scheduler", help=f"{what} the global scheduler.")
    @_session_option
    def scheduler_command(session_dir: str) -> None:
        _do(sn.scheduler_action, session_dir, verb)


for _verb, _what in (("kill", "kill -9"), ("pause", "SIGSTOP"), ("resume", "SIGCONT")):
    _runtime_process_commands(_verb, _what)


@nemesis.command("restart-scheduler")
@_session_option
def restart_scheduler(session_dir: str) -> None:
    """Start the global scheduler again on its address (kill -9 first if it runs)."""
    from lineagerun.chaos import session_nemesis as sn

    _do(sn.restart_scheduler, session_dir)

_LINK_KINDS = {"all": ("in", "cs", "gs"), "in": ("in",), "control-store": ("cs",), "scheduler": ("gs",)}


@nemesis.command("toxic")
@_session_option
@click.option("--node", default=None, help="Node id prefix (default: every node).")
@click.option("--links", type=click.Choice(sorted(_LINK_KINDS)), default="all", show_default=True,
              help="in: into the node (driver, peers); control-store / scheduler: from the node.")
@click.option("--type", "toxic_type", required=True,
              type=click.Choice(["latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer",
                                 "limit_data"]))
@click.option("--attr", "attrs", multiple=True, help="name=integer, e.g. --attr latency=200 --attr jitter=20")
@click.option("--stream", type=click.Choice(["downstream", "upstream"]), default="downstream", show_default=True)
@click.option("--name", default=None, help="Toxic name (default: TYPE_STREAM).")
def toxic(session_dir: str, node: str | None, links: str, toxic_type: str, attrs: tuple[str, ...], stream: str,
          name: str | None) -> None:
    """Add a toxic to links of a Cluster(chaos=True); `heal` removes every toxic."""
    from lineagerun.chaos import session_nemesis as sn

    attributes = toxic_attributes(attrs)
    _do(sn.add_toxic, session_dir, node, _LINK_KINDS[links], toxic_type, stream, attributes,
        name or f"{toxic_type}_{stream}")


@nemesis.command("partition")
@_session_option
@click.option("--node", required=True, help="Node id prefix: isolate this node.")
@click.option("--links", type=click.Choice(sorted(_LINK_KINDS)), default="all", show_default=True)
def partition(session_dir: str, node: str, links: str) -> None:
    """Cut a node's links (Cluster(chaos=True)); `heal` restores them."""
    from lineagerun.chaos import session_nemesis as sn

    _do(sn.partition, session_dir, node, _LINK_KINDS[links])


@nemesis.command("cut-pair")
@_session_option
@click.option("--node", "nodes", required=True, multiple=True, help="Node id prefix; give it twice (A and B).")
def cut_pair(session_dir: str, nodes: tuple[str, ...]) -> None:
    """Cut only the links between two nodes, both directions (Cluster(chaos=True)); `heal` restores them."""
    from lineagerun.chaos import session_nemesis as sn

    if len(nodes) != 2:
        raise click.BadParameter(f"give exactly two nodes, got {len(nodes)}", param_hint="--node")
    _do(sn.cut_pair, session_dir, nodes[0], nodes[1])


@nemesis.command("heal")
@_session_option
def heal(session_dir: str) -> None:
    """Every link enabled, every toxic removed (Cluster(chaos=True))."""
    from lineagerun.chaos import session_nemesis as sn

    _do(sn.heal, session_dir)


from lineagerun.cli.chaos_links import link as _link_command  # noqa: E402

nemesis.add_command(_link_command)
