"""Chaos proxies on the links of a runtime cluster (``Cluster(chaos=True)``).

Each node manager gets three proxies, created before it starts:

* ``node-<i>-in``: everything *into* node i (the driver, other node managers
  pulling objects or forwarding tasks, the global scheduler). The node binds
  ``127.0.0.1:P`` and advertises ``127.0.0.<k>:P`` (``--advertise-host``):
  the whole 127/8 is loopback, so the proxy listens on that second loopback
  address with the same port and forwards to the real one. The advertised
  address is what lands in the node's ready.json, its ``node/`` record in the
  control store and the global scheduler's view, so every peer dials the proxy
  without knowing it.
* ``node-<i>-cs``: node i -> the control store's coordinator (``--control-store``).
* ``node-<i>-replica-<S>-<I>`` (link ``node:<i>->replica:S:I``): node i -> the
  control store's replica s<S>r<I> (its heartbeat records, lineage writes,
  reads, subscriptions). The node's control-store client finds replicas in
  the chain configuration and dials each through the map file named by
  ``LINEAGERUN_STORE_DIAL_MAP`` (``lineagerun.node.store_dial``). For the
  replicas' addresses to stay valid, the cluster gives its control store a
  launch hook (``StoreLaunchHook``) that keeps each replica's port across
  restarts and creates these proxies before a new replica starts. The
  ``cs`` kind of a node covers them: cutting a node's control-store links
  (isolation, ``control-store``, a split) cuts the coordinator and every
  replica, so an isolated node is declared dead.
* ``node-<i>-gs``: node i -> the global scheduler (``--global-scheduler``).
* ``pair-<i>-<j>``: node i -> node j (peer sessions, object pulls), one per
  ordered pair. Node i dials node j's advertised ``127.77.s.(j+1):P`` at
  ``127.(100+i).s.(j+1):P`` instead (``LINEAGERUN_PEER_DIAL_REWRITE``, see
  ``lineagerun.node.peer_dial``), where this proxy listens. Cutting
  ``pair-<a>-<b>`` and ``pair-<b>-<a>`` cuts exactly A <-> B; ``node-<i>-in``
  then carries only the driver's and the global scheduler's links into i.

Not proxied here: replica -> replica and replica <-> coordinator links
(``Cluster(chaos_control_store=True)``: ``control_store_links``; the node's
replica proxies then chain onto the ``clients->replica:S:I`` ones), and a
worker's own reads of function records (``core_worker.fetch_function``).
Workers reach their node over a unix socket: not a network link.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lineagerun.chaos.ports import chosen_port
from lineagerun.chaos.proxy_api import bound_api
from lineagerun.control.dial_map import write_dial_map
from lineagerun.exceptions import ConfigurationError
from lineagerun.node.peer_dial import DIAL_REWRITE_ENV
from lineagerun.node.store_dial import STORE_DIAL_MAP_ENV

# Second loopback addresses the nodes advertise: 127.<base>.<s>.<k>.
ADVERTISE_SUBNET_BASE = 77
# Pair proxies of node i listen on 127.<base + i>.<s>.<k>: the second octet
# bounds the nodes of one chaos cluster (replacements count too).
PAIR_SUBNET_BASE = 100
NODES_MAX = 255 - PAIR_SUBNET_BASE
LINK_KINDS = ("in", "cs", "gs")
# In a chaos cluster's session directory: the proxy API and each node's proxies.
CHAOS_FILE_NAME = "chaos.json"
# Each node's replica dial map (lineagerun.node.store_dial), in the session directory.
STORE_DIAL_DIR_NAME = "chaos-store-dial"


@dataclass
class NodeLinks:
    index: int
    advertise_host: str
    port: int
    proxies: dict[str, object] = field(default_factory=dict)   # kind -> toxiproxy Proxy
    # Link name (node:<i>->replica:S:I) -> toxiproxy Proxy; part of kind "cs".
    store: dict[str, object] = field(default_factory=dict)
    store_dial_map: Path | None = None

    @property
    def advertised_address(self) -> str:
        return f"{self.advertise_host}:{self.port}"


def _free_port_pair(advertise_host: str) -> int:
    return chosen_port("127.0.0.1", advertise_host)


class RuntimeLinks:
    """The proxies of one runtime cluster, driven through the Toxiproxy API
    (``toxiproxy-python``) of a chaos proxy server started here (or the one
    ``LINEAGERUN_TOXIPROXY`` names)."""

    def __init__(self, proxy_server_factory: Callable | None = None):
        from lineagerun.chaos.proxy import start_proxy_server

        self._server = (proxy_server_factory or start_proxy_server)()
        self.api = bound_api(self._server.host, self._server.port)
        self._lock = threading.Lock()
        self.nodes: list[NodeLinks] = []
        self.pairs: dict[tuple[int, int], object] = {}   # (from index, to index) -> toxiproxy Proxy
        # (shard, replica index) -> the address the replica advertises.
        self.replicas: dict[tuple[int, int], str] = {}
        self._session_dir: Path | None = None
        # Distinct third octet per process: two chaos clusters of two test
        # processes do not share advertised addresses.
        self._subnet_octet = os.getpid() % 250
        self._subnet = f"127.{ADVERTISE_SUBNET_BASE}.{self._subnet_octet}"

    # ------------------------------------------------------------ setup

    def prepare_node(self, control_address: str, scheduler_address: str,
                     session_dir: str | os.PathLike | None = None) -> tuple[str, str, dict]:
        """Proxies for the next node; returns (control-store address,
        scheduler address, extra ``launcher.start_node`` arguments). With
        ``session_dir``, the links are recorded in ``chaos.json`` there
        (for ``lineagerun chaos nemesis`` from another process)."""
        with self._lock:
            index = len(self.nodes)
            if index >= NODES_MAX:
                raise ConfigurationError(f"a chaos cluster has at most {NODES_MAX} nodes")
            host = f"{self._subnet}.{index + 1}"
            port = _free_port_pair(host)
            links = NodeLinks(index, host, port)
            prefix = f"node-{index}"
            links.proxies["in"] = self.api.create(upstream=f"127.0.0.1:{port}", name=f"{prefix}-in",
                                                  listen=links.advertised_address)
            links.proxies["cs"] = self.api.create(upstream=control_address, name=f"{prefix}-cs",
                                                  listen="127.0.0.1:0")
            if scheduler_address:
                links.proxies["gs"] = self.api.create(upstream=scheduler_address, name=f"{prefix}-gs",
                                                      listen="127.0.0.1:0")
            for other in self.nodes:
                self._create_pair(other, links)
                self._create_pair(links, other)
            self.nodes.append(links)
            env = {DIAL_REWRITE_ENV: f"{self._subnet}.=127.{PAIR_SUBNET_BASE + index}.{self._subnet_octet}."}
            if session_dir is not None:
                self._session_dir = Path(session_dir)
                links.store_dial_map = self._session_dir / STORE_DIAL_DIR_NAME / f"node-{index}.json"
                for (shard, replica), advertised in self.replicas.items():
                    self._create_store_link(links, shard, replica, advertised)
                self._write_store_dial_map(links)
                env[STORE_DIAL_MAP_ENV] = str(links.store_dial_map)
                self._record(self._session_dir)
        scheduler = links.proxies["gs"].listen if scheduler_address else scheduler_address
        return links.proxies["cs"].listen, scheduler, {
            "host": "127.0.0.1", "port": port, "extra": ["--advertise-host", host], "env_extra": env}

    def replica_advertised(self, shard: int, index: int, advertised: str) -> None:
        """Replica s<shard>r<index> advertises ``advertised`` (called before it
        starts, so every node's map names it before a chain does): each node
        gets its proxy to it."""
        with self._lock:
            if self.replicas.get((shard, index)) == advertised:
                return
            self.replicas[(shard, index)] = advertised
            for links in self.nodes:
                if links.store_dial_map is None:
                    continue
                old = links.store.pop(store_link(links.index, shard, index), None)
                if old is not None:
                    old.destroy()
                self._create_store_link(links, shard, index, advertised)
                self._write_store_dial_map(links)
            if self._session_dir is not None:
                self._record(self._session_dir)

    def _create_store_link(self, links: NodeLinks, shard: int, index: int, advertised: str) -> None:
        links.store[store_link(links.index, shard, index)] = self.api.create(
            upstream=advertised, name=f"node-{links.index}-replica-{shard}-{index}", listen="127.0.0.1:0")

    def _write_store_dial_map(self, links: NodeLinks) -> None:
        mapping = {self.replicas[(s, i)]: proxy.listen for (s, i), proxy in
                   ((_replica_of(link), proxy) for link, proxy in links.store.items())}
        links.store_dial_map.parent.mkdir(parents=True, exist_ok=True)
        write_dial_map(links.store_dial_map, mapping)

    def _create_pair(self, source: NodeLinks, target: NodeLinks) -> None:
        """The proxy node ``source`` dials node ``target`` through."""
        listen = f"127.{PAIR_SUBNET_BASE + source.index}.{self._subnet_octet}.{target.index + 1}:{target.port}"
        self.pairs[(source.index, target.index)] = self.api.create(
            upstream=f"127.0.0.1:{target.port}", name=f"pair-{source.index}-{target.index}", listen=listen)

    def pair_proxies(self, group_a: list[NodeLinks], group_b: list[NodeLinks]) -> list[object]:
        """The pair proxies between two groups of nodes, both directions."""
        a, b = {n.index for n in group_a}, {n.index for n in group_b}
        with self._lock:
            return [proxy for (i, j), proxy in self.pairs.items() if (i in a and j in b) or (i in b and j in a)]

    def isolation_proxies(self, node: NodeLinks) -> list[object]:
        """Every link of one node: into it, to the control store and the
        scheduler, and to and from every other node."""
        with self._lock:
            pairs = [proxy for (i, j), proxy in self.pairs.items() if node.index in (i, j)]
        return self.proxies([node]) + pairs

    def _record(self, session_dir: Path) -> None:
        from lineagerun.node.launcher import write_json_atomic

        write_json_atomic(session_dir / CHAOS_FILE_NAME, {
            "api": f"{self._server.host}:{self._server.port}",
            "nodes": [{"index": n.index, "address": n.advertised_address,
                       "proxies": {kind: proxy.name for kind, proxy in n.proxies.items()},
                       "store": {link: proxy.name for link, proxy in n.store.items()}} for n in self.nodes],
            "pairs": {f"{i}-{j}": proxy.name for (i, j), proxy in self.pairs.items()}})

    def for_address(self, advertised_address: str) -> NodeLinks:
        with self._lock:
            for links in self.nodes:
                if links.advertised_address == advertised_address:
                    return links
        raise ConfigurationError(f"no chaos links for node address {advertised_address}")

    def stop(self) -> None:
        self._server.stop()

    # ----------------------------------------------------------- faults

    def proxies(self, nodes: list[NodeLinks], kinds: tuple[str, ...] = LINK_KINDS) -> list[object]:
        """The proxies of ``kinds`` of each node; ``cs`` (the control store)
        is the coordinator link and every replica link."""
        with self._lock:
            chosen = [links.proxies[k] for links in nodes for k in kinds if k in links.proxies]
            if "cs" in kinds:
                chosen += [proxy for links in nodes for proxy in links.store.values()]
        return chosen

    def add_toxic(self, proxies: list[object], name: str, type: str, stream: str, toxicity: float,
                  attributes: dict[str, int]) -> None:
        for proxy in proxies:
            proxy.add_toxic(name=name, type=type, stream=stream, toxicity=toxicity, attributes=attributes)

    def remove_toxic(self, proxies: list[object], name: str) -> None:
        for proxy in proxies:
            if name in proxy.toxics():
                proxy.destroy_toxic(name)

    def set_enabled(self, proxies: list[object], enabled: bool) -> None:
        for proxy in proxies:
            proxy.enable() if enabled else proxy.disable()

    def heal_all(self) -> None:
        """Every proxy enabled, every toxic removed."""
        with self._lock:
            pairs = list(self.pairs.values())
        for proxy in self.proxies(list(self.nodes)) + pairs:
            for name in list(proxy.toxics()):
                proxy.destroy_toxic(name)
            proxy.enable()


def store_link(node_index: int, shard: int, index: int) -> str:
    return f"node:{node_index}->replica:{shard}:{index}"


def _replica_of(link: str) -> tuple[int, int]:
    _, shard, index = link.rsplit(":", 2)
    return int(shard), int(index)


class StoreLaunchHook:
    """The ``links=`` hook a chaos runtime cluster gives its
    ``ControlStoreCluster``: each replica binds a port chosen here, kept
    across restarts (so its advertised address, and the nodes' proxies to it,
    stay valid), and every node gets its proxy to a replica before the
    replica starts (``RuntimeLinks.replica_advertised``). With
    ``store_links`` (``chaos_control_store=True``) the store's own links are
    proxied too: this delegates to it, and the nodes' proxies lead to the
    replica's ``clients->replica:S:I`` proxy."""

    def __init__(self, runtime_links: RuntimeLinks, store_links=None):
        self.runtime_links = runtime_links
        self.store_links = store_links
        self._ports: dict[tuple[int, int], int] = {}

    def coordinator_argv(self, cluster) -> list[str]:
        return self.store_links.coordinator_argv(cluster) if self.store_links is not None else []

    def replica_launch(self, cluster, shard: int, index: int) -> dict:
        if self.store_links is not None:
            launch = self.store_links.replica_launch(cluster, shard, index)
            advertised = self.store_links.replicas[(shard, index)].advertised
        else:
            port = self._ports.get((shard, index))
            if port is None:
                port = self._ports[(shard, index)] = _free_port_pair(cluster.host)
            launch = {"port": port, "coordinator": cluster.address, "extra": []}
            advertised = f"{cluster.host}:{port}"
        self.runtime_links.replica_advertised(shard, index, advertised)
        return launch

    # The store's own links (``link:...`` targets), when they are proxied.

    def _store(self):
        if self.store_links is None:
            raise ConfigurationError("the control store's own links (link:...) are not proxied in this cluster; "
                                     "start it with Cluster(chaos_control_store=True)")
        return self.store_links

    def proxies(self, link: str) -> list[object]:
        return self._store().proxies(link)

    def link_names(self) -> list[str]:
        return self.store_links.link_names() if self.store_links is not None else []

    def all_proxies(self) -> list[object]:
        return self.store_links.all_proxies() if self.store_links is not None else []

    def heal_all(self) -> None:
        if self.store_links is not None:
            self.store_links.heal_all()

    def stop(self) -> None:
        if self.store_links is not None:
            self.store_links.stop()


def connect_driver(cluster, node=None, namespace: str | None = None):
    """``lineagerun.init`` for a driver whose link to ``node`` (default: the
    head node) goes through that node's chaos proxy (TCP to its advertised
    address) instead of the node's unix socket. ``lineagerun.shutdown()``
    disconnects it as usual."""
    from lineagerun.api import context, session

    node = node or cluster.head_node
    if node is None:
        raise ConfigurationError("the cluster has no node to connect to")
    with session._lock:
        if session._state is not None:
            raise ConfigurationError("lineagerun.init() was already called; call lineagerun.shutdown() first")
        core_worker = session._connect(node.address, cluster.token, namespace or "")
        session._state = session.DriverState(core_worker, None, node.address, str(cluster.session_dir),
                                             namespace or "")
        context.set_driver(core_worker, str(cluster.session_dir))
    return session._state
