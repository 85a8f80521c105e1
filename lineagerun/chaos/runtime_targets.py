"""Nemesis targets of a runtime cluster (``lineagerun.testing.Cluster``).

Process targets (``kill`` = SIGKILL, ``pause``/``resume`` = SIGSTOP/SIGCONT):

* ``node`` (a non-head node, rotating), ``node:<i>`` (``list_all_nodes()[i]``),
  ``head-node``: the node manager's whole process group (its workers too);
  the undo of a kill starts a replacement node with the same resources;
* ``worker`` / ``worker:<i>``: one worker process of a node (the busiest);
  the node replaces it, the task it ran is retried;
* ``actor`` (any live actor) / ``actor:<name or id hex>``: the worker process
  hosting the actor, found from its ``actor/`` record (node id, worker id)
  and the worker's command line (``--worker-id``);
* ``global-scheduler``: restarted on the same port by the undo;
* ``control-store-replica[:head|middle|tail]`` (default tail).

Network targets (need ``Cluster(chaos=True)``, see ``runtime_links``):
``node``/``node:<i>``/``head-node`` (every link of one node: into it, to the
control store and scheduler, to and from each other node; a ``partition``
isolates it), ``pair:<i>-<j>`` (only the links between nodes i and j, both
directions), ``driver`` (the inbound link of the node the driver talks to),
``control-store`` (every node's control-store links: the coordinator and each
replica), ``split`` / ``split:<i>,<j>`` (two groups: the later half of the
nodes, or the nodes listed, against the rest; the links between the groups are
cut, and the group without the head node also loses its links to the control
store, the scheduler and the driver: the head's services are on the head's
side).

The pid lookups work from a session directory too (``SessionProcesses``),
for ``lineagerun chaos nemesis`` against a cluster started elsewhere.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil

from lineagerun.exceptions import ConfigurationError, InvalidArgumentError
from lineagerun.node import launcher

WORKER_MODULE_MARK = "lineagerun.worker"
# CPU use is sampled this long to find the worker running a task.
BUSY_SAMPLE_S = 0.1
# A node whose worker was just killed starts another within this long.
WORKER_WAIT_S = 5.0
# Actor records scanned to find one actor (a scenario has a handful).
ACTOR_RECORDS_SCANNED_MAX = 10_000
# How long a just-created actor may take to show as ALIVE in its record.
ACTOR_LOOKUP_TIMEOUT_S = 5.0


# ------------------------------------------------------ pid lookups


def worker_processes(node_pid: int) -> list[psutil.Process]:
    """Worker processes of the node manager ``node_pid`` (its children
    running ``lineagerun.worker``)."""
    try:
        children = psutil.Process(node_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for child in children:
        try:
            if any(WORKER_MODULE_MARK in part for part in child.cmdline()):
                out.append(child)
        except psutil.Error:
            continue
    return out


def busiest_worker(node_pid: int) -> psutil.Process:
    """The worker that used the most CPU over the last ``BUSY_SAMPLE_S``
    (the one running a task, most likely), else any."""
    deadline_s = time.monotonic() + WORKER_WAIT_S
    workers = worker_processes(node_pid)
    while not workers and time.monotonic() < deadline_s:  # one just killed is being replaced
        time.sleep(0.05)
        workers = worker_processes(node_pid)
    if not workers:
        raise ConfigurationError(f"node manager pid {node_pid} has no worker process")

    def cpu(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return -1.0
    before = {p.pid: cpu(p) for p in workers}
    time.sleep(BUSY_SAMPLE_S)
    return max(workers, key=lambda p: cpu(p) - before[p.pid])


def worker_pid_of(node_pid: int, worker_id_hex: str) -> int | None:
    for process in worker_processes(node_pid):
        try:
            argv = process.cmdline()
        except psutil.Error:
            continue
        if "--worker-id" in argv and argv[argv.index("--worker-id") + 1] == worker_id_hex:
            return process.pid
    return None


def actor_records(client) -> list:
    """Every ``actor/`` record of the control store (ActorRecord)."""
    from lineagerun.core.keys import ACTOR_PREFIX
    from lineagerun.rpc import lineage_pb2

    records = []
    for _key, value in client.scan_prefix(ACTOR_PREFIX):
        records.append(lineage_pb2.ActorRecord.FromString(value))
        if len(records) >= ACTOR_RECORDS_SCANNED_MAX:
            break
    return records


def find_actor(client, which: str, timeout_s: float = ACTOR_LOOKUP_TIMEOUT_S):
    """A live actor's ``ActorRecord``: the first one for ``""``, else by
    name or id (hex prefix). Records are written asynchronously: a
    just-created actor may take a moment to show as ALIVE, hence the
    polling."""
    from lineagerun.rpc import lineage_pb2

    deadline_s = time.monotonic() + timeout_s
    while True:
        alive = [r for r in actor_records(client) if r.state == lineage_pb2.ALIVE and r.worker_id]
        for record in alive:
            if not which or record.name == which or record.actor_id.hex().startswith(which.lower()):
                return record
        if time.monotonic() > deadline_s:
            names = ", ".join(r.name or r.actor_id.hex()[:12] for r in alive) or "none"
            raise ConfigurationError(f"no live actor {which!r}; live actors: {names}")
        time.sleep(0.1)


def signal_pid(pid: int, sig: int, *, group: bool) -> None:
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except ProcessLookupError:
        raise ConfigurationError(f"process {pid} is not running") from None


# ------------------------------------------------- process targets


class NodeTarget:
    def __init__(self, cluster, node):
        self.cluster = cluster
        self.node = node
        self.name = f"node {node.node_id[:8]}" + (" (head)" if node.is_head else "")
        self.replacement = None

    def kill(self) -> None:
        self.cluster.remove_node(self.node, allow_graceful=False)

    def pause(self) -> None:
        signal_pid(self.node.pid, signal.SIGSTOP, group=True)

    def resume(self) -> None:
        signal_pid(self.node.pid, signal.SIGCONT, group=True)

    def restart(self) -> None:
        """A replacement node with the same resources (a new node id)."""
        if self.node.alive():
            return
        self.replacement = self.cluster.add_node(wait=False, **self.node.args)


class PidTarget:
    """One process (a worker, an actor's worker): killed or paused; the
    runtime itself replaces it, so the undo of a kill does nothing."""

    self_healing = True   # the nemesis does not undo its kill

    def __init__(self, name: str, pid: int):
        self.name = f"{name} pid {pid}"
        self.pid = pid

    def kill(self) -> None:
        signal_pid(self.pid, signal.SIGKILL, group=False)

    def pause(self) -> None:
        signal_pid(self.pid, signal.SIGSTOP, group=False)

    def resume(self) -> None:
        try:
            os.kill(self.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    def restart(self) -> None:
        """The node replaces a dead worker; the runtime restarts an actor."""


class SchedulerTarget:
    name = "global-scheduler"

    def __init__(self, cluster):
        self.cluster = cluster

    def kill(self) -> None:
        signal_pid(self.cluster.scheduler_process.pid, signal.SIGKILL, group=True)

    def pause(self) -> None:
        signal_pid(self.cluster.scheduler_process.pid, signal.SIGSTOP, group=True)

    def resume(self) -> None:
        signal_pid(self.cluster.scheduler_process.pid, signal.SIGCONT, group=True)

    def restart(self) -> None:
        """Start it again on the same port: the nodes know it by address."""
        cluster = self.cluster
        if cluster.scheduler_process is not None and cluster.scheduler_process.alive():
            return
        launcher.stop_process(cluster.scheduler_process, force=True)
        port = int(cluster.scheduler_address.rsplit(":", 1)[1])
        cluster.scheduler_process, cluster.scheduler_address = launcher.start_scheduler(
            cluster.session_dir, cluster.control_store.address, port=port,
            heartbeat_interval_ms=cluster.heartbeat_interval_ms, node_timeout_ms=cluster.node_timeout_ms,
            tls=cluster.tls)


# ------------------------------------------------- network targets


class RuntimeLinkTarget:
    """A set of proxies faulted together."""

    def __init__(self, name: str, links, proxies: list):
        self.name = name
        self.links = links
        self.proxies = proxies

    def add_toxic(self, name, type, stream, toxicity, attributes) -> None:
        self.links.add_toxic(self.proxies, name, type, stream, toxicity, attributes)

    def remove_toxic(self, name: str) -> None:
        self.links.remove_toxic(self.proxies, name)

    def partition(self) -> None:
        self.links.set_enabled(self.proxies, False)

    def heal(self) -> None:
        self.links.set_enabled(self.proxies, True)


# -------------------------------------------------------- resolver


class RuntimeTargets:
    """``TargetResolver`` (nemesis.py) for a ``lineagerun.testing.Cluster``."""

    def __init__(self, cluster, driver_node=None):
        self.cluster = cluster
        self.driver_node = driver_node
        self._rotation = 0
        self._lock = threading.Lock()

    # ---- nodes

    def _node(self, target: str):
        base, _, arg = target.partition(":")
        nodes = self.cluster.list_all_nodes()
        if base == "head-node":
            if self.cluster.head_node is None:
                raise ConfigurationError("the head node is not running")
            return self.cluster.head_node
        if arg:
            try:
                return nodes[int(arg)]
            except (ValueError, IndexError):
                raise InvalidArgumentError(f"{target!r}: node index must be 0..{len(nodes) - 1}") from None
        others = list(self.cluster.worker_nodes) or nodes
        if not others:
            raise ConfigurationError("the cluster has no running node")
        with self._lock:
            self._rotation += 1
            return others[self._rotation % len(others)]

    def process_targets(self, target: str, shard: int) -> list:
        base, _, arg = target.partition(":")
        if base in ("node", "head-node"):
            return [NodeTarget(self.cluster, self._node(target))]
        if base == "worker":
            node = self._node(target)
            process = busiest_worker(node.pid)
            return [PidTarget(f"worker on node {node.node_id[:8]}", process.pid)]
        if base == "actor":
            return [self._actor_target(arg)]
        if base == "global-scheduler":
            return [SchedulerTarget(self.cluster)]
        if base == "control-store-replica":
            from lineagerun.chaos.nemesis import ControlStoreTargets

            return ControlStoreTargets(self.cluster.control_store).process_targets(arg or "tail", shard)
        raise InvalidArgumentError(f"unknown runtime process target {target!r}")

    def _actor_target(self, which: str) -> PidTarget:
        client = self.cluster.control_store.client(timeout_s=10.0)
        try:
            record = find_actor(client, which)
        finally:
            client.close()
        node_hex, worker_hex = record.node_id.hex(), record.worker_id.hex()
        node = next((n for n in self.cluster.list_all_nodes() if n.node_id == node_hex), None)
        if node is None:
            raise ConfigurationError(f"actor {record.actor_id.hex()[:12]} is on node {node_hex[:8]}, not running")
        pid = worker_pid_of(node.pid, worker_hex)
        if pid is None:
            raise ConfigurationError(f"actor {record.actor_id.hex()[:12]}: no process for worker {worker_hex[:12]} "
                                     f"on node {node_hex[:8]}")
        return PidTarget(f"actor {record.name or record.actor_id.hex()[:12]}", pid)

    # ---- links

    def network_targets(self, target: str, shard: int) -> list:
        links = self.cluster.links
        if links is None:
            raise ConfigurationError("network faults need a cluster started with chaos=True (proxied links)")
        base = target.partition(":")[0]
        if base == "link":  # one control-store link (lineagerun.chaos.control_store_links)
            from lineagerun.chaos.control_store_links import StoreLinkTarget

            return [StoreLinkTarget(self.cluster.control_store.links, target)]
        if base in ("node", "head-node"):
            node = self._node(target)
            return [RuntimeLinkTarget(f"links of node {node.node_id[:8]}", links,
                                      links.isolation_proxies(links.for_address(node.address)))]
        if base == "driver":
            node = self.driver_node or self.cluster.head_node
            return [RuntimeLinkTarget(f"driver -> node {node.node_id[:8]}", links,
                                      links.proxies([links.for_address(node.address)], ("in",)))]
        if base == "control-store":
            return [RuntimeLinkTarget("nodes -> control store", links, links.proxies(list(links.nodes), ("cs",)))]
        if base == "pair":
            first, second = self._pair(target)
            return [RuntimeLinkTarget(f"node {first.node_id[:8]} <-> node {second.node_id[:8]}", links,
                                      links.pair_proxies([links.for_address(first.address)],
                                                         [links.for_address(second.address)]))]
        if base == "split":
            return [self._split(target, links)]
        raise InvalidArgumentError(f"unknown runtime network target {target!r}")

    def _indexed(self, text: str, target: str):
        nodes = self.cluster.list_all_nodes()
        try:
            return nodes[int(text)]
        except (ValueError, IndexError):
            raise InvalidArgumentError(f"{target!r}: node index must be 0..{len(nodes) - 1}, got {text!r}") from None

    def _pair(self, target: str) -> tuple:
        first, sep, second = target.partition(":")[2].partition("-")
        if not sep:
            raise InvalidArgumentError(f"{target!r}: expected pair:<i>-<j> (node indexes, 0 = head)")
        a, b = self._indexed(first, target), self._indexed(second, target)
        if a is b:
            raise InvalidArgumentError(f"{target!r}: a pair needs two different nodes")
        return a, b

    def _split(self, target: str, links) -> RuntimeLinkTarget:
        nodes = self.cluster.list_all_nodes()
        listed = target.partition(":")[2]
        group = ([self._indexed(i.strip(), target) for i in listed.split(",")] if listed
                 else nodes[(len(nodes) + 1) // 2:])
        rest = [n for n in nodes if n not in group]
        if not group or not rest:
            raise ConfigurationError(f"{target!r}: a split needs nodes on both sides ({len(nodes)} running)")
        # The side without the head loses the head's services too.
        cut_off = rest if self.cluster.head_node in group else group
        proxies = links.pair_proxies([links.for_address(n.address) for n in group],
                                     [links.for_address(n.address) for n in rest])
        proxies += links.proxies([links.for_address(n.address) for n in cut_off])
        return RuntimeLinkTarget(f"split: {len(nodes) - len(cut_off)} | {len(cut_off)} nodes", links, proxies)


# ----------------------------------------- a cluster started elsewhere


class SessionProcesses:
    """Processes of a cluster session directory (``lineagerun start`` or a
    ``Cluster``), for the CLI nemesis. Pids come from ``procs/*.json`` with
    their start time, so a reused pid is never signalled."""

    def __init__(self, session_dir: str | os.PathLike):
        self.session_dir = Path(session_dir)
        if not (self.session_dir / launcher.PROCS_DIR_NAME).is_dir():
            raise InvalidArgumentError(f"{self.session_dir} is not a cluster session directory (no procs/)")

    def _recorded(self, role: str) -> list[launcher.LaunchedProcess]:
        return [p for p in launcher.recorded_processes(self.session_dir) if p.role == role and p.alive()]

    def nodes(self) -> list[tuple[str, launcher.LaunchedProcess]]:
        """(node id hex, process) of each running node manager."""
        out = []
        for process in self._recorded("node"):
            prefix = process.name.removeprefix("node-")
            for ready in self.session_dir.glob(f"nodes/{prefix}*/ready.json"):
                try:
                    out.append((json.loads(ready.read_text())["node_id"], process))
                except (OSError, ValueError, KeyError):
                    continue
        return out

    def node(self, which: str) -> tuple[str, launcher.LaunchedProcess]:
        nodes = self.nodes()
        for node_id, process in nodes:
            if which and node_id.startswith(which.lower()):
                return node_id, process
        known = ", ".join(n[:12] for n, _ in nodes) or "none"
        raise InvalidArgumentError(f"no running node {which!r} in {self.session_dir}; running: {known}")

    def scheduler(self) -> launcher.LaunchedProcess:
        running = self._recorded("scheduler")
        if not running:
            raise ConfigurationError(f"no running global scheduler recorded in {self.session_dir}")
        return running[0]

    def control_client(self):
        from lineagerun.control.client import ControlStoreClient
        from lineagerun.transport.auth import read_token_file

        head = launcher.read_head(self.session_dir)
        return ControlStoreClient(head["address"], read_token_file(self.session_dir / launcher.TOKEN_FILE_NAME),
                                  timeout_s=10.0)

    def actor_pid(self, which: str) -> tuple[str, int]:
        client = self.control_client()
        try:
            record = find_actor(client, which)
        finally:
            client.close()
        _, process = self.node(record.node_id.hex())
        pid = worker_pid_of(process.pid, record.worker_id.hex())
        if pid is None:
            raise ConfigurationError(f"actor {record.actor_id.hex()[:12]}: its worker process is not running")
        return record.name or record.actor_id.hex()[:12], pid
