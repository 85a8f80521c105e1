"""R7 for the driver's own link: a driver connected over TCP (through its
node's chaos proxy) whose session is reset mid-workload reconnects and the
workload completes, every task run exactly once; a cut longer than the
reconnect bound fails the driver's calls with NodeConnectionLostError
within the bound, not a hang."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import lineagerun
from lineagerun.chaos.cluster_nemesis import ClusterNemesis
from lineagerun.chaos.runtime_links import connect_driver
from lineagerun.testing import Cluster
from lineagerun.worker import session_resume

TASKS = 60


@lineagerun.remote
def mark(directory, i):
    time.sleep(0.05)
    with open(Path(directory) / f"{i}", "a") as out:  # one line per execution
        out.write("ran\n")
    return i * i


@lineagerun.remote
class Counter:
    def __init__(self):
        self.count = 0

    def incr(self):
        self.count += 1
        return self.count


@pytest.fixture(scope="module")
def tcp_driver_cluster():
    lineagerun.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2}, chaos=True)
    try:
        connect_driver(cluster)
        yield cluster
    finally:
        lineagerun.shutdown()
        cluster.shutdown()


@pytest.mark.timeout(240)
def test_a_reset_driver_link_resumes_and_every_task_runs_once(tcp_driver_cluster, tmp_path):
    cluster = tcp_driver_cluster
    nemesis = ClusterNemesis(cluster)
    driver = lineagerun.api.session._state.core_worker
    refs = [mark.remote(str(tmp_path), i) for i in range(TASKS // 2)]
    # Every connection through the driver's link is reset, for a second,
    # while tasks are queued and running.
    name = nemesis.toxic("reset_peer", {"timeout": 0}, what="driver")
    refs += [mark.remote(str(tmp_path), i) for i in range(TASKS // 2, TASKS)]
    time.sleep(1.0)
    nemesis.targets.network_targets("driver", 0)[0].remove_toxic(name)
    assert lineagerun.get(refs, timeout=120) == [i * i for i in range(TASKS)]
    assert driver._resume.resumed_count >= 1
    runs = {int(p.name): p.read_text().count("ran") for p in tmp_path.iterdir()}
    assert runs == {i: 1 for i in range(TASKS)}
    assert lineagerun.get(mark.remote(str(tmp_path), TASKS), timeout=60) == TASKS * TASKS  # still connected


@pytest.mark.timeout(240)
def test_a_cut_longer_than_the_bound_fails_with_a_clear_error(tcp_driver_cluster, monkeypatch, tmp_path):
    cluster = tcp_driver_cluster
    lineagerun.shutdown()
    monkeypatch.setattr(session_resume, "RECONNECT_TIMEOUT_S", 3.0)
    connect_driver(cluster)
    nemesis = ClusterNemesis(cluster)
    assert lineagerun.get(mark.remote(str(tmp_path), 1), timeout=60) == 1
    nemesis.cut_driver()  # isolating the node would get it declared dead (and fenced)
    try:
        started_s = time.monotonic()
        with pytest.raises(session_resume.NodeConnectionLostError, match="could not reconnect within 3 s"):
            lineagerun.get(mark.remote(str(tmp_path), 2))  # no timeout: the bound ends it
        assert time.monotonic() - started_s < 3.0 + session_resume.ATTEMPT_TIMEOUT_S + 5
        with pytest.raises(session_resume.NodeConnectionLostError):
            mark.remote(str(tmp_path), 3)  # later calls too
    finally:
        nemesis.heal()
        lineagerun.shutdown()
    connect_driver(cluster)  # a new driver works once the link is back
    assert lineagerun.get(mark.remote(str(tmp_path), 4), timeout=60) == 16


@pytest.mark.timeout(240)
def test_a_black_holed_driver_link_is_noticed_and_resumed(tcp_driver_cluster, tmp_path):
    cluster = tcp_driver_cluster
    lineagerun.shutdown()
    connect_driver(cluster)
    driver = lineagerun.api.session._state.core_worker
    nemesis = ClusterNemesis(cluster)
    assert lineagerun.get(mark.remote(str(tmp_path), 1), timeout=60) == 1
    # Nothing gets through and nothing breaks: only the watchdog notices.
    names = [nemesis.toxic("timeout", {"timeout": 0}, what="driver", stream=stream)
             for stream in ("downstream", "upstream")]
    ref = mark.remote(str(tmp_path), 2)
    results = []
    getter = threading.Thread(target=lambda: results.append(lineagerun.get(ref)), daemon=True)  # no timeout
    getter.start()
    deadline_s = time.monotonic() + session_resume.SILENCE_PROBE_S + session_resume.PROBE_TIMEOUT_S + 10
    while not driver._resume.silent_streams_ended and time.monotonic() < deadline_s:
        time.sleep(0.2)
    assert driver._resume.silent_streams_ended == 1  # noticed while the link is still a black hole
    target = nemesis.targets.network_targets("driver", 0)[0]
    for name in names:
        target.remove_toxic(name)
    getter.join(timeout=60)
    assert results == [4]  # the resumed session answered it
    assert driver._resume.resumed_count >= 1
    assert (tmp_path / "2").read_text().count("ran") == 1


@pytest.mark.timeout(240)
def test_a_kill_lost_in_a_black_hole_is_resent_after_the_reconnect(tcp_driver_cluster, tmp_path):
    """The kill goes into a black-holed link; once the watchdog has ended
    the silent stream and the link is back, the resumed session resends it
    and the actor dies (the node drops it if it had arrived: by request id)."""
    cluster = tcp_driver_cluster
    lineagerun.shutdown()
    connect_driver(cluster)
    driver = lineagerun.api.session._state.core_worker
    nemesis = ClusterNemesis(cluster)
    counter = Counter.remote()
    assert lineagerun.get(counter.incr.remote(), timeout=60) == 1
    names = [nemesis.toxic("timeout", {"timeout": 0}, what="driver", stream=stream)
             for stream in ("downstream", "upstream")]
    lineagerun.kill(counter)  # lost with the link
    ref = mark.remote(str(tmp_path), 3)  # a waiting get makes the watchdog probe
    results = []
    getter = threading.Thread(target=lambda: results.append(lineagerun.get(ref)), daemon=True)
    getter.start()
    deadline_s = time.monotonic() + session_resume.SILENCE_PROBE_S + session_resume.PROBE_TIMEOUT_S + 10
    while not driver._resume.silent_streams_ended and time.monotonic() < deadline_s:
        time.sleep(0.2)
    assert driver._resume.silent_streams_ended == 1
    target = nemesis.targets.network_targets("driver", 0)[0]
    for name in names:
        target.remove_toxic(name)
    getter.join(timeout=60)
    assert results == [9]
    with pytest.raises(lineagerun.exceptions.ActorDiedError):
        lineagerun.get(counter.incr.remote(), timeout=30)
