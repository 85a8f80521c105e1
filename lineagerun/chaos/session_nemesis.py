"""One fault against a runtime cluster running elsewhere, found by its
session directory (``lineagerun chaos nemesis ... --session DIR``).

Processes come from ``procs/*.json`` (pid + start time, see
``runtime_targets.SessionProcesses``). Network faults need a cluster started
with ``Cluster(chaos=True)``: its ``chaos.json`` names the Toxiproxy API (in
the process that owns the cluster) and each node's proxies.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from lineagerun.chaos.proxy_api import bound_api
from lineagerun.chaos.runtime_links import CHAOS_FILE_NAME
from lineagerun.chaos.runtime_targets import SessionProcesses, busiest_worker, signal_pid
from lineagerun.exceptions import ConfigurationError, InvalidArgumentError

SIGNALS = {"kill": signal.SIGKILL, "pause": signal.SIGSTOP, "resume": signal.SIGCONT}


# A killed node's processes are waited for this long before its store
# files and socket are removed.
KILLED_NODE_WAIT_S = 5.0


def node_action(session_dir: str, verb: str, node: str) -> str:
    session = SessionProcesses(session_dir)
    node_id, process = session.node(node)
    signal_pid(process.pid, SIGNALS[verb], group=True)
    if verb == "kill":
        _clean_up_killed_node(session.session_dir, node_id, process.pid)
    return f"{verb} node {node_id[:12]} (process group {process.pid})"


def _clean_up_killed_node(session_dir: Path, node_id: str, pid: int) -> None:
    """What the node would have removed at a clean stop (its shared-memory
    files, its unix socket), as ``Cluster.remove_node`` does for its nodes."""
    import time

    import psutil

    from lineagerun.node import launcher

    deadline_s = time.monotonic() + KILLED_NODE_WAIT_S
    while time.monotonic() < deadline_s:
        try:  # a zombie is dead too (its parent, maybe not us, reaps it)
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        return  # still running: leave its files
    launcher.cleanup_node_store(Path(session_dir), node_id)


def worker_action(session_dir: str, verb: str, node: str, pid: int | None) -> str:
    from lineagerun.chaos.runtime_targets import worker_processes

    node_id, process = SessionProcesses(session_dir).node(node)
    if pid is None:
        pid = busiest_worker(process.pid).pid
    elif pid not in {w.pid for w in worker_processes(process.pid)}:
        raise InvalidArgumentError(f"pid {pid} is not a worker of node {node_id[:12]}")
    signal_pid(pid, SIGNALS[verb], group=False)
    return f"{verb} worker pid {pid} of node {node_id[:12]}"


def actor_action(session_dir: str, verb: str, actor: str) -> str:
    name, pid = SessionProcesses(session_dir).actor_pid(actor)
    signal_pid(pid, SIGNALS[verb], group=False)
    return f"{verb} actor {name} (worker pid {pid})"


def scheduler_action(session_dir: str, verb: str) -> str:
    process = SessionProcesses(session_dir).scheduler()
    signal_pid(process.pid, SIGNALS[verb], group=True)
    return f"{verb} global scheduler (pid {process.pid})"


def restart_scheduler(session_dir: str) -> str:
    """Start the global scheduler again on its recorded address (the nodes
    know it by address); kill -9 first if it runs. Its timeouts are the
    defaults of ``lineagerun.scheduler``."""
    from lineagerun.node import launcher

    session = SessionProcesses(session_dir)
    head = launcher.read_head(session.session_dir)
    address = head.get("scheduler", "")
    if not address:
        raise ConfigurationError(f"{session_dir}/head.json records no scheduler address")
    try:
        launcher.stop_process(session.scheduler(), force=True)
    except ConfigurationError:
        pass  # not running: just start it
    _, address = launcher.start_scheduler(session.session_dir, head["address"],
                                          port=int(address.rsplit(":", 1)[1]))
    return f"global scheduler serving at {address}"


# ------------------------------------------------------------ network


def _links(session_dir: str):
    path = Path(session_dir) / CHAOS_FILE_NAME
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"{session_dir} has no {CHAOS_FILE_NAME}: network faults need a cluster "
                                 f"started with Cluster(chaos=True) (its links go through chaos proxies)") from None
    host, _, port = record["api"].rpartition(":")
    return bound_api(host, int(port)), record


def _node_proxies(session_dir: str, node: str | None, kinds: tuple[str, ...]) -> list:
    api, record = _links(session_dir)
    entries = record["nodes"]
    if node is not None:
        node_id, _ = SessionProcesses(session_dir).node(node)
        ready = json.loads((Path(session_dir) / "nodes" / node_id / "ready.json").read_text())
        entries = [e for e in entries if e["address"] == ready["address"]]
        if not entries:
            raise ConfigurationError(f"node {node_id[:12]} ({ready['address']}) has no chaos proxies")
    proxies = []
    for entry in entries:
        names = [entry["proxies"].get(kind) for kind in kinds]
        if "cs" in kinds:  # the control store: the coordinator link and each replica link
            names += list(entry.get("store", {}).values())
        for name in names:
            if name:
                proxy = api.get_proxy(name)
                if proxy is None:
                    raise ConfigurationError(f"proxy {name} is gone (did the cluster's process exit?)")
                proxies.append(proxy)
    return proxies


def add_toxic(session_dir: str, node: str | None, kinds: tuple[str, ...], toxic_type: str, stream: str,
              attributes: dict[str, int], name: str) -> str:
    proxies = _node_proxies(session_dir, node, kinds)
    for proxy in proxies:
        proxy.add_toxic(name=name, type=toxic_type, stream=stream, toxicity=1.0, attributes=attributes)
    return f"toxic {name} ({toxic_type} {attributes}, {stream}) on {', '.join(p.name for p in proxies)}"


def _node_index(session_dir: str, node: str) -> int:
    """The chaos index (``node-<i>-*``, ``pair-<i>-<j>``) of a running node."""
    _, record = _links(session_dir)
    node_id, _ = SessionProcesses(session_dir).node(node)
    ready = json.loads((Path(session_dir) / "nodes" / node_id / "ready.json").read_text())
    for entry in record["nodes"]:
        if entry["address"] == ready["address"]:
            return int(entry["index"])
    raise ConfigurationError(f"node {node_id[:12]} ({ready['address']}) has no chaos proxies")


def cut_pair(session_dir: str, first: str, second: str) -> str:
    """Cut only the links between two nodes (both directions)."""
    a, b = _node_index(session_dir, first), _node_index(session_dir, second)
    if a == b:
        raise InvalidArgumentError("a pair needs two different nodes")
    proxies = [p for p in _pair_proxies(session_dir, a) if p.name in (f"pair-{a}-{b}", f"pair-{b}-{a}")]
    if len(proxies) != 2:
        raise ConfigurationError(f"no pair proxies between nodes {a} and {b} in {CHAOS_FILE_NAME}")
    for proxy in proxies:
        proxy.disable()
    return f"cut: {', '.join(p.name for p in proxies)} disabled"


def partition(session_dir: str, node: str, kinds: tuple[str, ...]) -> str:
    proxies = _node_proxies(session_dir, node, kinds)
    if set(kinds) == {"in", "cs", "gs"}:  # isolate: the links to and from the other nodes too
        proxies += _pair_proxies(session_dir, _node_index(session_dir, node))
    for proxy in proxies:
        proxy.disable()
    return f"partitioned: {', '.join(p.name for p in proxies)} disabled"


def heal(session_dir: str) -> str:
    """Every proxy of the cluster enabled, every toxic removed."""
    proxies = _node_proxies(session_dir, None, ("in", "cs", "gs")) + _pair_proxies(session_dir)
    for proxy in proxies:
        for toxic in list(proxy.toxics()):
            proxy.destroy_toxic(toxic)
        proxy.enable()
    return f"healed {len(proxies)} links"


def _pair_proxies(session_dir: str, node_index: int | None = None) -> list:
    """The node-to-node proxies (``pair-<i>-<j>``), all or those of one node."""
    api, record = _links(session_dir)
    proxies = []
    for pair, name in record.get("pairs", {}).items():
        i, j = (int(k) for k in pair.split("-"))
        if node_index is None or node_index in (i, j):
            proxy = api.get_proxy(name)
            if proxy is not None:
                proxies.append(proxy)
    return proxies
