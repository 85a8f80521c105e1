"""A lineage graph as text: a tree for people (in the spirit of Spark's
``RDD.toDebugString``), JSON for scripts, DOT for Graphviz (and SVG through
the ``dot`` program when it is installed).

Tree layout: one line per task; a task's producers follow it. A task with
one producer continues on the same column (`` |  ``), as Spark prints a
narrow dependency; a task with several opens a branch (`` +- ``) per producer
and indents. A task reached a second time (a diamond) is printed once in
full and then as ``(shown above)``. Printing is iterative, so a chain of
10,000 tasks neither recurses 10,000 deep nor indents 10,000 times.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from lineagerun.exceptions import ConfigurationError, InvalidArgumentError
from lineagerun.state.ids import short_node, short_object, short_task
from lineagerun.state.lineage import LineageGraph, TaskNode

FORMATS = ("tree", "json", "dot")
# Graphs with more tasks than this get compact JSON: indenting 10,000s of
# records triples the output and the time to write it.
JSON_INDENTED_TASKS_MAX = 2_000
# The dot program gets this long to lay out a graph before we give up.
DOT_TIMEOUT_S = 120.0
BRANCH = " +- "
SAME_COLUMN = " |  "


def render(graph: LineageGraph, fmt: str) -> str:
    if fmt == "tree":
        return to_tree(graph)
    if fmt == "json":
        indent = 2 if len(graph.tasks) <= JSON_INDENTED_TASKS_MAX else None
        return json.dumps(graph.to_dict(), indent=indent)
    if fmt == "dot":
        return to_dot(graph)
    raise InvalidArgumentError(f"unknown format {fmt!r}; use one of {FORMATS}")


# ------------------------------------------------------------------------ tree


def _attempts_text(task: TaskNode) -> str:
    parts = [f"{a['reason'].lower()}:{a['state']}@{short_node(bytes.fromhex(a['node_id']))}" for a in task.attempts]
    return f"attempts={len(task.attempts)} [{', '.join(parts)}]" if parts else "attempts=0"


def task_line(graph: LineageGraph, task: TaskNode) -> str:
    text = [task.name, f"task={short_task(bytes.fromhex(task.task_id))}", task.state, _attempts_text(task),
            f"node={short_node(bytes.fromhex(task.node_id)) if task.node_id else '-'}"]
    if task.duration_ms is not None:
        text.append(f"{task.duration_ms}ms")
    if task.sequence_number is not None:
        text.append(f"seq={task.sequence_number}")
    if task.checkpoint:
        text.append("[checkpoint]")
    elif task.replayed_on_restart and graph.actor is not None and graph.actor.has_checkpoint:
        text.append("(after checkpoint)")
    if task.missing:
        text.append("(no TaskSpec recorded)")
    outputs = [f"{short_object(bytes.fromhex(o))}={graph.objects[o].status}" for o in task.outputs
               if o in graph.objects]
    if outputs:
        text.append("outputs: " + " ".join(outputs))
    if not task.expanded and task.args:
        text.append(f"(+{len(task.args)} args beyond the depth limit)")
    return "  ".join(text)


def _header(graph: LineageGraph) -> list[str]:
    if graph.root_kind == "object":
        info = graph.objects[graph.root_id]
        where = f"{len(info.locations)} location(s)" if info.locations else "no copy"
        put = " (put)" if info.is_put else ""
        return [f"object {graph.root_id}{put}  {info.status}  {where}  size={info.size_bytes}"]
    if graph.root_kind == "actor" and graph.actor is not None:
        actor = graph.actor
        checkpoint = f"checkpoint after seq {actor.checkpoint_sequence_number}" \
            if actor.has_checkpoint else "no checkpoint"
        return [f"actor {actor.actor_id}  {actor.class_name}  {actor.state}  restarts={actor.num_restarts}  "
                f"calls={len(actor.calls)}  {checkpoint}"]
    return [f"task {graph.root_id}"]


def to_tree(graph: LineageGraph) -> str:
    lines = _header(graph)
    children = graph.children()
    shown: set[str] = set()
    # (task id, line prefix, marker, prefix for the task's own children)
    stack: list[tuple[str, str, str, str]] = []
    for root in reversed(graph.roots):
        stack.append((root, "", "", ""))
    if graph.root_kind == "actor":
        stack = [(r, "", SAME_COLUMN if i else "", "") for i, r in reversed(list(enumerate(graph.roots)))]
    while stack:
        task_id, prefix, marker, child_prefix = stack.pop()
        task = graph.tasks[task_id]
        if task_id in shown:
            lines.append(f"{prefix}{marker}{task.name}  task={short_task(bytes.fromhex(task_id))}  (shown above)")
            continue
        shown.add(task_id)
        lines.append(prefix + marker + task_line(graph, task))
        producers = [p for p, _ in children[task_id]]
        producers = list(dict.fromkeys(producers))
        if graph.root_kind == "actor" and task.depth == 0:
            # The actor's chain is listed flat; its calls' producers branch off.
            items = [(p, child_prefix + SAME_COLUMN, BRANCH, child_prefix + SAME_COLUMN + "    ") for p in producers]
        elif len(producers) == 1:
            items = [(producers[0], child_prefix, SAME_COLUMN, child_prefix)]
        else:
            items = []
            for i, producer in enumerate(producers):
                last = i == len(producers) - 1
                items.append((producer, child_prefix, BRANCH, child_prefix + ("    " if last else SAME_COLUMN)))
        stack.extend(reversed(items))
    if graph.root_kind == "object" and not graph.roots:
        lines.append(f"{SAME_COLUMN}(no producing task: a put by "
                     f"{short_task(bytes.fromhex(graph.objects[graph.root_id].producing_task_id))})")
    lines.extend(f"note: {n}" for n in graph.notes)
    return "\n".join(lines)


# ------------------------------------------------------------------------- dot


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_OBJECT_COLORS = {"present": "black", "rebuilt": "darkorange", "lost": "red", "pending": "gray", "missing": "red"}
_TASK_COLORS = {"FINISHED": "black", "FAILED": "red", "RUNNING": "blue", "CANCELLED": "gray"}


def to_dot(graph: LineageGraph) -> str:
    out = ["digraph lineage {", "  rankdir=BT;", '  node [fontname="Helvetica", fontsize=10];']
    for task in graph.tasks.values():
        reasons = ",".join(a["reason"].lower() for a in task.attempts) or "none"
        label = f"{task.name}\n{short_task(bytes.fromhex(task.task_id))}\n{task.state}  attempts: {reasons}"
        if task.checkpoint:
            label += "\ncheckpoint"
        attrs = {"label": label, "shape": "box", "color": _TASK_COLORS.get(task.state, "black")}
        if task.checkpoint:
            attrs["peripheries"] = "2"
        out.append(f"  {_quote('t:' + task.task_id)} [{_attrs(attrs)}];")
    for obj in graph.objects.values():
        label = f"{short_object(bytes.fromhex(obj.object_id))}\n{obj.status}"
        attrs = {"label": label, "shape": "ellipse", "color": _OBJECT_COLORS.get(obj.status, "black")}
        out.append(f"  {_quote('o:' + obj.object_id)} [{_attrs(attrs)}];")
    for task in graph.tasks.values():
        for output in task.outputs:
            out.append(f"  {_quote('t:' + task.task_id)} -> {_quote('o:' + output)};")
        for arg in task.args:
            out.append(f"  {_quote('o:' + arg)} -> {_quote('t:' + task.task_id)};")
    for edge in graph.edges:
        if edge.kind == "stateful":
            out.append(f"  {_quote('t:' + edge.producer)} -> {_quote('t:' + edge.consumer)} "
                       f"[{_attrs({'style': 'dashed', 'label': 'stateful'})}];")
    out.append("}")
    return "\n".join(out)


def _attrs(attrs: dict[str, str]) -> str:
    return ", ".join(f"{k}={_quote(v)}" for k, v in attrs.items())


def render_svg(dot_text: str, path: str | Path) -> Path:
    """Lay ``dot_text`` out with Graphviz into ``path`` (SVG)."""
    path = Path(path)
    if path.suffix.lower() != ".svg":
        raise InvalidArgumentError(f"--render writes SVG; give a file name ending in .svg, not {path.name!r}")
    dot = shutil.which("dot")
    if dot is None:
        raise ConfigurationError(
            "rendering needs Graphviz's `dot` program, which is not installed (e.g. `apt-get install graphviz`); "
            "or write DOT with `--format dot > lineage.dot` and render it elsewhere")
    try:
        subprocess.run([dot, "-Tsvg", "-o", str(path)], input=dot_text.encode(), check=True,
                       capture_output=True, timeout=DOT_TIMEOUT_S)
    except subprocess.CalledProcessError as err:
        raise ConfigurationError(f"dot failed: {err.stderr.decode(errors='replace')[:2000]}") from None
    except subprocess.TimeoutExpired:
        raise ConfigurationError(f"dot did not finish within {DOT_TIMEOUT_S:.0f} s; the graph may be too large "
                                 f"(use --depth)") from None
    return path
