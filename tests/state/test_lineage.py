"""Lineage graphs of chains, trees (diamonds) and actors, read from a live
control store (2 shards, so keys of one graph come from both), with retry
and replay attempts; every output format parsed back."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from lineagerun.core import keys
from lineagerun.core.ids import ActorID, ObjectID, TaskID
from lineagerun.exceptions import ConfigurationError, InvalidArgumentError, NotFoundError
from lineagerun.state import LiveSource, lineage
from lineagerun.state import ids as state_ids
from lineagerun.state.render import render, render_svg, to_dot, to_tree
from lineagerun.state import MemorySource
from lineagerun.state.lineage import DEEP_WALK_LEVELS
from tests.state import Recorder, assert_stopped, build_scenario, node_id, start_cluster

pytestmark = pytest.mark.timeout(120)
DEEP_CHAIN = DEEP_WALK_LEVELS + 8


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("lineage-cs"), shards=2)
    try:
        scenario = build_scenario()
        deep = Recorder(job=5)
        step = deep.function("deep")
        scenario.deep_chain = [deep.task(step, ["x"])]
        for _ in range(DEEP_CHAIN - 1):
            scenario.deep_chain.append(deep.task(step, [scenario.out(scenario.deep_chain[-1])]))
        scenario.deep_ops = list(deep.ops)
        with cluster.client() as client:
            scenario.recorder.flush(client)
            deep.flush(client)
        source = LiveSource(cluster.address, cluster.token)
        yield scenario, source
        source.close()
    finally:
        assert_stopped(cluster)


# ----------------------------------------------------------------- structure


def test_chain_lineage_lists_every_ancestor_with_its_attempts(store):
    s, source = store
    graph = lineage(s.out(s.chain[-1]).hex(), source=source)
    assert graph.root_kind == "object" and graph.roots == [s.chain[-1].hex()]
    assert set(graph.tasks) == {t.hex() for t in s.chain}
    assert [graph.tasks[t.hex()].depth for t in s.chain] == [4, 3, 2, 1, 0]
    assert [graph.tasks[t.hex()].name for t in s.chain] == ["load", "step", "step", "step", "total"]
    retried = graph.tasks[s.chain[2].hex()]
    assert [a["reason"] for a in retried.attempts] == ["FIRST_RUN", "RETRY"]
    assert [a["state"] for a in retried.attempts] == ["FAILED", "FINISHED"]
    assert retried.state == "FINISHED" and retried.node_id == node_id(2).hex()
    assert retried.attempts[0]["error"].startswith("WorkerCrashedError")
    assert retried.duration_ms == 10
    edges = {(e.producer, e.consumer) for e in graph.edges}
    assert edges == {(a.hex(), b.hex()) for a, b in zip(s.chain, s.chain[1:])}
    assert graph.objects[s.out(s.chain[-1]).hex()].status == "present"
    assert not graph.truncated


def test_a_deep_chain_read_by_scanning_its_job_matches_a_level_by_level_walk(store):
    s, source = store
    scanned = []

    class Spy:
        description, local = source.description, False

        def get_many(self, keys_):
            return source.get_many(keys_)

        def scan(self, prefix, page_keys=1000):
            scanned.append(prefix)
            return source.scan(prefix, page_keys)

        def close(self):
            pass

    target = s.out(s.deep_chain[-1]).hex()
    live = lineage(target, source=Spy())
    assert keys.TASK_PREFIX + s.deep_chain[0].binary()[-4:] in scanned  # the job's table was read
    local = lineage(target, source=MemorySource(dict(s.deep_ops)))
    assert live.to_dict() == local.to_dict()
    assert len(live.tasks) == DEEP_CHAIN and live.tasks[s.deep_chain[0].hex()].depth == DEEP_CHAIN - 1


def test_depth_limits_the_levels_and_says_so(store):
    s, source = store
    graph = lineage(s.out(s.chain[-1]).hex(), depth=1, source=source)
    assert set(graph.tasks) == {s.chain[-1].hex(), s.chain[-2].hex()}
    assert graph.truncated and not graph.tasks[s.chain[-2].hex()].expanded
    assert "beyond the depth limit" in to_tree(graph)
    only_root = lineage(s.chain[-1].hex(), depth=0, source=source)
    assert set(only_root.tasks) == {s.chain[-1].hex()} and only_root.root_kind == "task"
    with pytest.raises(InvalidArgumentError, match="depth"):
        lineage(s.chain[-1].hex(), depth=-1, source=source)


def test_tree_with_a_shared_ancestor_shows_it_once(store):
    s, source = store
    graph = lineage(s.out(s.tree_reduce).hex(), source=source)
    assert set(graph.tasks) == {s.tree_reduce.hex(), s.tree_load.hex(), *(m.hex() for m in s.tree_maps)}
    assert graph.tasks[s.tree_load.hex()].depth == 2
    tree = to_tree(graph)
    load_short = state_ids.short_task(s.tree_load.binary())
    load_lines = [line for line in tree.splitlines() if f"task={load_short}" in line]
    assert len(load_lines) == 4 and sum("(shown above)" in line for line in load_lines) == 3
    assert sum(1 for line in tree.splitlines() if line.startswith(" +- ")) == 4


def test_replayed_and_lost_outputs(store):
    s, source = store
    graph = lineage(s.out(s.consumer_of_rebuilt).hex(), source=source)
    make = graph.tasks[s.rebuilt_task.hex()]
    assert [a["reason"] for a in make.attempts] == ["FIRST_RUN", "REPLAY"]
    assert graph.objects[s.out(s.rebuilt_task).hex()].status == "rebuilt"
    assert graph.objects[s.out(s.consumer_of_rebuilt).hex()].status == "rebuilt"
    lost = lineage(s.out(s.lost_task).hex(), source=source)
    assert lost.objects[s.out(s.lost_task).hex()].status == "lost"
    assert "=lost" in to_tree(lost)


def test_actor_lineage_is_its_creation_and_call_chain_with_the_checkpoint(store):
    s, source = store
    graph = lineage(s.actor.hex(), source=source)
    assert graph.root_kind == "actor" and graph.actor.class_name == "Counter"
    assert graph.actor.calls == [c.hex() for c in s.actor_calls]
    assert graph.roots == [s.actor_creation.hex()] + [c.hex() for c in s.actor_calls]
    calls = [graph.tasks[c.hex()] for c in s.actor_calls]
    assert [c.name for c in calls] == ["Counter.incr", "Counter.incr", "Counter.add", "Counter.get"]
    assert [c.sequence_number for c in calls] == [1, 2, 3, 4]
    assert [c.checkpoint for c in calls] == [False, True, False, False]
    assert [c.replayed_on_restart for c in calls] == [False, False, True, True]
    assert [a["reason"] for a in calls[3].attempts] == ["FIRST_RUN", "REPLAY"]
    assert graph.tasks[s.actor_creation.hex()].name == "Counter.__init__"
    stateful = [(e.producer, e.consumer) for e in graph.edges if e.kind == "stateful"]
    chain = [s.actor_creation.hex()] + [c.hex() for c in s.actor_calls]
    assert stateful == list(zip(chain, chain[1:]))
    # The call's argument came from a normal task: its producer is in the graph.
    assert s.actor_arg_task.hex() in graph.tasks
    tree = to_tree(graph)
    assert "[checkpoint]" in tree and "checkpoint after seq 2" in tree.splitlines()[0]


def test_nested_refs_are_followed_and_puts_are_leaves(store):
    s, source = store
    graph = lineage(s.nested_task.hex(), source=source)
    assert s.chain[0].hex() in graph.tasks  # nested ref inside an inline argument
    assert graph.objects[s.put_object.hex()].is_put
    put = lineage(s.put_object.hex(), source=source)
    assert put.tasks == {} and put.objects[s.put_object.hex()].is_put
    assert "put" in to_tree(put)


# -------------------------------------------------------------------- formats


def test_json_round_trips(store):
    s, source = store
    graph = lineage(s.out(s.tree_reduce).hex(), source=source)
    data = json.loads(render(graph, "json"))
    assert data["root_id"] == s.out(s.tree_reduce).hex()
    assert {t["task_id"] for t in data["tasks"]} == set(graph.tasks)
    assert {o["object_id"] for o in data["objects"]} == set(graph.objects)
    assert len(data["edges"]) == len(graph.edges) == 8
    by_id = {t["task_id"]: t for t in data["tasks"]}
    assert by_id[s.tree_reduce.hex()]["attempts"][0]["reason"] == "FIRST_RUN"


_DOT_NODE = re.compile(r'^\s+"([^"]+)" \[(.*)\];$')
_DOT_EDGE = re.compile(r'^\s+"([^"]+)" -> "([^"]+)"(?: \[(.*)\])?;$')
_DOT_ATTR = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_dot(text: str) -> tuple[dict[str, dict], list[tuple[str, str, dict]]]:
    """A tiny parser of the DOT subset ``to_dot`` writes; refuses anything else."""
    lines = text.splitlines()
    assert lines[0] == "digraph lineage {" and lines[-1] == "}"
    nodes, edges = {}, []
    for line in lines[1:-1]:
        if line.strip() in ("rankdir=BT;",) or line.strip().startswith("node ["):
            continue
        edge = _DOT_EDGE.match(line)
        if edge:
            edges.append((edge[1], edge[2], dict(_DOT_ATTR.findall(edge[3] or ""))))
            continue
        node = _DOT_NODE.match(line)
        assert node, f"not DOT this writer makes: {line!r}"
        nodes[node[1]] = dict(_DOT_ATTR.findall(node[2]))
    for a, b, _ in edges:
        assert a in nodes and b in nodes, f"edge {a} -> {b} names an undeclared node"
    return nodes, edges


def test_dot_parses_and_matches_the_graph(store):
    s, source = store
    graph = lineage(s.actor.hex(), source=source)
    nodes, edges = parse_dot(to_dot(graph))
    assert {n[2:] for n in nodes if n.startswith("t:")} == set(graph.tasks)
    assert {n[2:] for n in nodes if n.startswith("o:")} == set(graph.objects)
    checkpoint = nodes["t:" + s.actor_calls[1].hex()]
    assert checkpoint["peripheries"] == "2" and "checkpoint" in checkpoint["label"]
    assert sum(1 for _, _, attrs in edges if attrs.get("style") == "dashed") == len(s.actor_calls)
    data_edges = {(a, b) for a, b, attrs in edges if not attrs}
    arg = "o:" + s.out(s.actor_arg_task).hex()
    assert (arg, "t:" + s.actor_calls[2].hex()) in data_edges
    assert ("t:" + s.actor_arg_task.hex(), arg) in data_edges


def test_tree_lines_match_the_graph(store):
    s, source = store
    for root in (s.out(s.chain[-1]), s.out(s.tree_reduce), s.actor.binary(), s.out(s.consumer_of_rebuilt)):
        graph = lineage(root.hex(), source=source)
        lines = to_tree(graph).splitlines()[1:]
        shown = [re.search(r"task=(\S+)", line)[1] for line in lines if "task=" in line]
        short = {state_ids.short_task(bytes.fromhex(t)): t for t in graph.tasks}
        assert set(shown) == set(short)
        for line in lines:
            if "task=" in line and "(shown above)" not in line:
                task = graph.tasks[short[re.search(r"task=(\S+)", line)[1]]]
                body = line.lstrip(" |+-")
                assert body.startswith(task.name + "  ") and f"  {task.state}  " in line
                assert f"attempts={len(task.attempts)}" in line


def test_render_svg_needs_graphviz(store, tmp_path, monkeypatch):
    s, source = store
    dot_text = to_dot(lineage(s.out(s.chain[-1]).hex(), source=source))
    with pytest.raises(InvalidArgumentError, match=".svg"):
        render_svg(dot_text, tmp_path / "out.png")
    if shutil.which("dot"):
        assert render_svg(dot_text, tmp_path / "real.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigurationError, match="not installed"):
        render_svg(dot_text, tmp_path / "out.svg")


# ---------------------------------------------------------------- bad input


def test_bad_and_unknown_ids_give_typed_errors(store):
    s, source = store
    for bad in ("xyz", "00" * 5, "zz" * 28, ""):
        with pytest.raises(InvalidArgumentError):
            lineage(bad, source=source)
    unknown_task = TaskID(b"\x01" * 8 + s.chain[0].binary()[8:])
    with pytest.raises(NotFoundError, match="no task"):
        lineage(unknown_task.hex(), source=source)
    with pytest.raises(NotFoundError, match="no object"):
        lineage(ObjectID.from_index(unknown_task, 1).hex(), source=source)
    with pytest.raises(NotFoundError, match="no actor"):
        lineage(ActorID(b"\x02" * 12 + s.actor.binary()[12:]).hex(), source=source)


def test_raw_key_builders_match_the_key_layout(store):
    s, _ = store
    for tid in s.chain + [s.actor_creation] + s.actor_calls:
        assert state_ids.task_key_raw(tid.binary()) == keys.task_key(tid)
        assert state_ids.attempt_key_raw(tid.binary(), 3) == keys.attempt_key(tid, 3)
        oid = ObjectID.from_index(tid, 2)
        assert state_ids.object_key_raw(oid.binary()) == keys.object_key(oid)
        assert state_ids.output_id_raw(tid.binary(), 2) == oid.binary()
    assert state_ids.is_put_raw(s.put_object) and not state_ids.is_put_raw(s.out(s.chain[0]))
    assert state_ids.is_driver_task_raw(s.recorder.driver.binary())
    assert not state_ids.is_driver_task_raw(s.actor_creation.binary())


def test_object_status_rules():
    from lineagerun.rpc import lineage_pb2 as pb
    from lineagerun.state.lineage import object_status

    finished = [pb.TaskAttempt(state=pb.FINISHED, reason=pb.FIRST_RUN)]
    replayed = finished + [pb.TaskAttempt(state=pb.FINISHED, reason=pb.REPLAY)]
    replaying = finished + [pb.TaskAttempt(state=pb.RUNNING, reason=pb.REPLAY)]
    here = pb.ObjectRecord(locations=[b"n" * 28])
    inline = pb.ObjectRecord(has_inline_value=True, inline_value=b"1")
    gone = pb.ObjectRecord()
    oid = b"o" * 28
    assert object_status(None, [], set(), oid) == "pending"
    assert object_status(None, finished, set(), oid) == "missing"
    assert object_status(gone, replaying, set(), oid) == "lost"
    assert object_status(here, finished, set(), oid) == "present"
    assert object_status(inline, finished, set(), oid) == "present"
    assert object_status(here, replayed, set(), oid) == "rebuilt"
    assert object_status(here, finished, {oid}, oid) == "rebuilt"


def test_an_actor_without_checkpoint_replays_every_call():
    from tests.state import Attempt

    recorder = Recorder(job=6)
    actor, _, calls = recorder.actor(recorder.function("Plain", is_actor_class=True),
                                     [("f", [Attempt()]), ("g", [Attempt()])])
    memory = MemorySource()
    recorder.flush(memory)
    graph = lineage(actor.hex(), source=memory)
    assert not graph.actor.has_checkpoint and "no checkpoint" in to_tree(graph).splitlines()[0]
    assert [(graph.tasks[c.hex()].checkpoint, graph.tasks[c.hex()].replayed_on_restart) for c in calls] == [
        (False, True), (False, True)]
