"""Post-mortem reading of a control store's directory: while the replicas
still run (read-only, beside them) and after the cluster is stopped, the
same answers as the live cluster; the most advanced replica of each shard
is the one read."""

from __future__ import annotations

import json

import pytest
from rocksdict import Options, Rdict

from lineagerun.exceptions import ConfigurationError
from lineagerun.rpc import common_pb2
from lineagerun.state import (
    DirectorySource, LiveSource, get_actor, lineage, list_events, list_tasks, summarize_tasks, timeline,
)
from lineagerun.state.render import to_tree
from tests.state import assert_stopped, build_scenario, start_cluster

pytestmark = pytest.mark.timeout(120)


def _answers(**where) -> dict:
    s = build_scenario()
    return {
        "tasks": list_tasks(limit=None, **where),
        "events": list_events(limit=None, **where),
        "summary": summarize_tasks(**where),
        "lineage": lineage(s.out(s.tree_reduce).hex(), **where).to_dict(),
        "actor": get_actor(s.actor.hex(), **where),
        "tree": to_tree(lineage(s.actor.hex(), **where)),
        "timeline": json.dumps(timeline(**where), sort_keys=True),
    }


@pytest.fixture(scope="module")
def stopped_store(tmp_path_factory):
    directory = tmp_path_factory.mktemp("postmortem-cs")
    cluster = start_cluster(directory, shards=2)
    try:
        with cluster.client() as client:
            build_scenario().recorder.flush(client)
        with LiveSource(cluster.address, cluster.token) as source:
            live = _answers(source=source)
        beside_running = _answers(dir=directory)
    finally:
        assert_stopped(cluster)
    yield directory, live, beside_running


def test_reading_beside_running_replicas_matches_the_live_cluster(stopped_store):
    _, live, beside_running = stopped_store
    assert beside_running == live


def test_reading_a_stopped_cluster_matches_the_live_cluster(stopped_store):
    directory, live, _ = stopped_store
    assert _answers(dir=directory) == live
    assert len(live["tasks"]) == build_scenario().tasks_total


def test_a_session_directory_above_the_store_is_accepted(stopped_store, tmp_path):
    directory, live, _ = stopped_store
    session = tmp_path / "session"
    session.mkdir()
    (session / "logs").mkdir()
    (session / "control_store").symlink_to(directory, target_is_directory=True)
    assert list_tasks(limit=None, dir=session) == live["tasks"]
    with DirectorySource(directory) as source:
        assert source.num_shards == 2 and sorted(source.chosen) == [0, 1]


# ------------------------------------------------------------ replica choice


def _replica(path, applied: tuple[int, int], data: dict[bytes, bytes], snapshot_in_progress: bool = False):
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    db = Rdict(str(path), options=options)
    db[b"m/applied"] = applied[0].to_bytes(8, "big") + applied[1].to_bytes(8, "big")
    if snapshot_in_progress:
        db[b"m/snapshot_in_progress"] = b"1"
    for key, value in data.items():
        db[b"d" + key] = value
    db.close()


def test_the_replica_with_the_highest_applied_seq_is_read(tmp_path):
    shard = tmp_path / "shard-0"
    _replica(shard / "replica-0" / "db", (5, 2), {b"node/a": b"old"})
    _replica(shard / "replica-1" / "db", (9, 1), {b"node/a": b"new", b"node/b": b"new-b"})
    _replica(shard / "replica-2" / "db", (50, 3), {b"node/a": b"torn"}, snapshot_in_progress=True)
    with DirectorySource(tmp_path) as source:
        assert source.chosen[0] == shard / "replica-1" / "db"
        assert source.get_many([b"node/a", b"node/c"]) == [b"new", None]
        assert list(source.scan(b"node/")) == [(b"node/a", b"new"), (b"node/b", b"new-b")]


def test_missing_or_empty_directories_give_clear_errors(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        DirectorySource(tmp_path / "nope")
    with pytest.raises(ConfigurationError, match="holds no control-store replicas"):
        DirectorySource(tmp_path)
    _replica(tmp_path / "shard-0" / "replica-0" / "db", (1, 1), {})
    (tmp_path / "coordinator").mkdir()
    (tmp_path / "coordinator" / "config.pb").write_bytes(
        common_pb2.ClusterConfig(num_shards=2).SerializeToString())
    with pytest.raises(ConfigurationError, match=r"lacks the replicas of shard\(s\) \[1\]"):
        DirectorySource(tmp_path)
    with pytest.raises(ConfigurationError):
        list_tasks(dir=tmp_path)
