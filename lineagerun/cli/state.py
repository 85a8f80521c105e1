"""``lineagerun lineage | list | get | summary | timeline``: lineage and
cluster state from the control store, live or post mortem (docs/cli.md).

Every command reads a live cluster (``--address HOST:PORT --token-file F``;
by default ``LINEAGERUN_ADDRESS`` or the newest session under
/tmp/lineagerun) or a stopped cluster's control-store directory (``--dir``).
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

import click

from lineagerun.exceptions import LineagerunError

TABLE_NAMES = ("tasks", "actors", "objects", "nodes", "events")
LIST_FORMATS = ("table", "json", "yaml")
# Table cells longer than this are cut (ids are shorter; error messages are not).
TABLE_CELL_CHARS_MAX = 80
# Plain (unquoted) YAML scalars: starting with a letter, no ": " or " #",
# no trailing space; anything else is double-quoted.
_YAML_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./:@,+() -]*$")
_YAML_SPECIAL = re.compile(r"^(true|false|yes|no|on|off|null|y|n|~)$", re.IGNORECASE)


def _source_options(command):
    @click.option("--address", default=None, help="control store (coordinator) HOST:PORT of a live cluster")
    @click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="the cluster's token file (default: from the session)")
    @click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="read a control-store directory instead (post mortem; the cluster may be stopped)")
    @click.option("--timeout-s", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True,
                  help="give up on an unreachable cluster after this long")
    @functools.wraps(command)
    def wrapper(*args, address, token_file, directory, timeout_s, **kwargs):
        if address is not None and directory is not None:
            raise click.UsageError("give either --address (a live cluster) or --dir (a control-store directory)")
        from lineagerun.state import open_source

        try:
            source = open_source(address=address, token_file=token_file, dir=directory, timeout_s=timeout_s)
            try:
                return command(*args, source=source, **kwargs)
            finally:
                source.close()
        except LineagerunError as err:
            raise click.ClickException(f"{type(err).__name__}: {err}") from None

    return wrapper


# ------------------------------------------------------------------ output


def to_yaml(value, indent: int = 0) -> str:
    """A small YAML emitter for records (dicts, lists, scalars); strings
    that YAML would read as something else are double-quoted (JSON string
    syntax is valid YAML)."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}"
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(item, indent + (2 if isinstance(item, dict) else 0)))
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return pad + "[]"
        lines = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = to_yaml(item, indent + 2)
                lines.append(pad + "- " + nested[indent + 2:])
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
        return "\n".join(lines)
    return pad + _yaml_scalar(value)


def _yaml_scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    text = str(value)
    if _YAML_PLAIN.match(text) and not _YAML_SPECIAL.match(text) and ": " not in text and " #" not in text \
            and not text.endswith((" ", ":")):
        return text
    return json.dumps(text)


def _cell(value) -> str:
    text = "" if value is None else str(value).replace("\n", " ")
    return text if len(text) <= TABLE_CELL_CHARS_MAX else text[:TABLE_CELL_CHARS_MAX - 1] + "\u2026"


def to_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    cells = [[c.upper() for c in columns]] + [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in cells)


def _emit(rows, fmt: str, columns: tuple[str, ...] | None = None) -> None:
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "yaml":
        click.echo(to_yaml(rows))
    else:
        click.echo(to_table(rows, columns or tuple(rows[0]) if rows else ()))


# ---------------------------------------------------------------- commands


@click.command("lineage")
@click.argument("the_id", metavar="ID")
@click.option("--depth", type=click.IntRange(0), default=None, help="levels of producers to follow (default: all)")
@click.option("--format", "fmt", type=click.Choice(("tree", "json", "dot")), default="tree", show_default=True)
@click.option("--render", "render_to", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also lay the graph out as SVG into this file (needs Graphviz's `dot`)")
@_source_options
def lineage_command(the_id: str, depth: int | None, fmt: str, render_to: Path | None, source) -> None:
    """Lineage of an object id (the tasks that made it and their arguments,
    recursively), a task id, or an actor id (its creation and chain of
    method calls, checkpoint marked): function, state, attempts and why
    (first run, retry, replay), node, duration, outputs present/lost/rebuilt."""
    from lineagerun.state import lineage
    from lineagerun.state.render import render, render_svg, to_dot

    graph = lineage(the_id, depth, source=source)
    if render_to is not None:
        render_svg(to_dot(graph), render_to)
        click.echo(f"wrote {render_to} ({len(graph.tasks)} tasks, {len(graph.objects)} objects)", err=True)
    click.echo(render(graph, fmt))


@click.command("list")
@click.argument("table", type=click.Choice(TABLE_NAMES))
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="keep rows whose KEY equals VALUE (or KEY!=VALUE); repeatable (all must match)")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True, help="rows at most")
@click.option("--format", "fmt", type=click.Choice(LIST_FORMATS), default="table", show_default=True)
@_source_options
def list_command(table: str, filters: tuple[str, ...], limit: int, fmt: str, source) -> None:
    """List tasks, actors, objects, nodes or events (in key order; events by time)."""
    import lineagerun.state as state

    listing = {"tasks": state.list_tasks, "actors": state.list_actors, "objects": state.list_objects,
               "nodes": state.list_nodes, "events": state.list_events}[table]
    rows = listing(list(filters), limit, source=source)
    if fmt == "table" and not rows:
        click.echo(f"no {table} found" + (" matching the filters" if filters else ""), err=True)
        return
    _emit(rows, fmt, state.TABLES[table])
    if fmt == "table" and len(rows) == limit:
        click.echo(f"(first {limit} rows; raise --limit for more)", err=True)


@click.command("get")
@click.argument("kind", type=click.Choice(("task", "actor", "object")))
@click.argument("the_id", metavar="ID")
@click.option("--format", "fmt", type=click.Choice(("yaml", "json")), default="yaml", show_default=True)
@_source_options
def get_command(kind: str, the_id: str, fmt: str, source) -> None:
    """One task (with all its attempts), actor (with its calls) or object."""
    import lineagerun.state as state

    getter = {"task": state.get_task, "actor": state.get_actor, "object": state.get_object}[kind]
    record = getter(the_id, source=source)
    click.echo(json.dumps(record, indent=2) if fmt == "json" else to_yaml(record))


@click.command("summary")
@click.argument("kind", type=click.Choice(("tasks", "actors", "recovery")))
@click.option("--format", "fmt", type=click.Choice(LIST_FORMATS), default="table", show_default=True)
@_source_options
def summary_command(kind: str, fmt: str, source) -> None:
    """Counts by function (or class) and state, with retries and replays;
    or (recovery) losses, re-executions, rebuilt objects, actor restarts and
    replayed calls, recovery time p50/max, by event kind."""
    import lineagerun.state as state

    if kind == "recovery":
        summary = state.recovery_summary(source=source)
        if fmt == "table":
            click.echo("\n".join(state.recovery_lines(summary)))
        else:
            click.echo(json.dumps(summary, indent=2) if fmt == "json" else to_yaml(summary))
        return
    summary = state.summarize_tasks(source=source) if kind == "tasks" else state.summarize_actors(source=source)
    if fmt != "table":
        click.echo(json.dumps(summary, indent=2) if fmt == "json" else to_yaml(summary))
        return
    rows = summary["by_name"] if kind == "tasks" else summary["by_class"]
    first = ("name",) if kind == "tasks" else ("class_name",)
    extra = ("retries", "replays") if kind == "tasks" else ("restarts",)
    states = sorted({k for row in rows for k in row} - set(first) - set(extra) - {"total"})
    columns = first + ("total",) + tuple(states) + extra
    totals = {first[0]: "(all)", "total": summary["total"], **summary["by_state"],
              **{k: summary[k] for k in extra}}
    click.echo(to_table([{c: r.get(c, 0) for c in columns} for r in rows + [totals]], columns))


@click.command("timeline")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("timeline.json"),
              show_default=True, help="Chrome trace / Perfetto JSON file to write")
@_source_options
def timeline_command(output: Path, source) -> None:
    """Chrome trace / Perfetto JSON: one slice per task attempt on its node
    (pid) and worker (tid), replays marked, dependency arrows, fault events."""
    import lineagerun.state as state

    events = state.timeline(source=source)
    if not events:
        click.echo(state.NOTHING_TO_SHOW + f"; {output} not written", err=True)
        return
    state.write_trace(events, output)
    counts = {ph: sum(1 for e in events if e["ph"] == ph) for ph in ("X", "s", "i")}
    click.echo(f"wrote {output}: {counts['X']} task attempts, {counts['s']} dependency arrows, {counts['i']} fault "
               f"events; open it in https://ui.perfetto.dev or chrome://tracing")


COMMANDS = (lineage_command, list_command, get_command, summary_command, timeline_command)


def main(argv: list[str] | None = None) -> None:
    """Run one state command without the full ``lineagerun`` group (tests,
    bench)."""
    group = click.Group("lineagerun", commands={c.name: c for c in COMMANDS})
    group.main(args=argv if argv is not None else sys.argv[1:], prog_name="lineagerun")


if __name__ == "__main__":
    main()
