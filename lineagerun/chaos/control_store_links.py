"""Chaos proxies on every link of a control store (``ControlStoreCluster(
links=ControlStoreLinks())``): clients -> replica, replica -> replica,
coordinator -> replica and replica -> coordinator, each its own proxy, so a
nemesis can slow or cut one link alone (RELIABILITY C4, C7).

How the links are made (docs/chaos.md, "Control-store links"):

* Replica ``s<S>r<I>`` binds a port chosen here (kept across restarts) and
  advertises the listen address of its ``clients->replica:S:I`` proxy
  (``--advertise-host/--advertise-port``). The coordinator hands that
  address out in every chain configuration, so every client dials the proxy
  without knowing it.
* Peers that must be faulted separately dial through their own proxies: the
  coordinator and every other replica of the shard get a ``--dial-map``
  file (``lineagerun.control.dial_map``) mapping the advertised address to
  ``coordinator->replica:S:I`` or ``replica:S:J->replica:S:I``.
* A replica reaches the coordinator through ``replica:S:I->coordinator``
  (its ``--coordinator`` address).

Link names (``link_names()``; the nemesis target is ``link=NAME``)::

    clients->replica:0:2          every client's calls into replica s0r2
    replica:0:1->replica:0:2      s0r1's forward stream to s0r2 (and its acks back)
    coordinator->replica:0:2      configuration pushes to s0r2
    replica:0:2->coordinator      s0r2's joins and heartbeats (its lease)
    replica:0:2                   every link above that touches s0r2

A TCP proxy carries both directions of a connection, so cutting
``replica:0:1->replica:0:2`` stops s0r1's stream and the acks of s0r2 on it.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lineagerun.chaos.ports import chosen_port
from lineagerun.chaos.proxy_api import bound_api
from lineagerun.control.dial_map import write_dial_map
from lineagerun.exceptions import ConfigurationError, InvalidArgumentError

DIAL_MAP_FILE_NAME = "dial-map.json"
# In the store's directory: the proxy API and the link -> proxy names, for
# ``lineagerun chaos nemesis link ... --dir DIR`` from another process.
LINKS_FILE_NAME = "chaos-links.json"
# Replicas one chaos store may have (each costs 2 + 2 x (replicas - 1) proxies).
REPLICAS_MAX = 64

_REPLICA = r"replica:(\d+):(\d+)"
_LINK_PATTERNS = (
    (re.compile(rf"^clients->{_REPLICA}$"), "clients"),
    (re.compile(rf"^coordinator->{_REPLICA}$"), "from-coordinator"),
    (re.compile(rf"^{_REPLICA}->coordinator$"), "to-coordinator"),
    (re.compile(rf"^{_REPLICA}->{_REPLICA}$"), "pair"),
    (re.compile(rf"^{_REPLICA}$"), "replica"),
)


def replica_link(shard: int, index: int) -> str:
    return f"replica:{shard}:{index}"


@dataclass
class ReplicaLinks:
    shard: int
    index: int
    port: int                                   # the replica binds 127.0.0.1:port
    proxies: dict[str, object] = field(default_factory=dict)    # link name -> toxiproxy Proxy

    @property
    def advertised(self) -> str:
        return self.proxies[f"clients->{replica_link(self.shard, self.index)}"].listen


class ControlStoreLinks:
    """The proxies of one control store, driven through the Toxiproxy API of
    a chaos proxy server started here (or ``api``, shared with the runtime's
    ``RuntimeLinks``)."""

    def __init__(self, proxy_server_factory: Callable | None = None, *, api=None, server=None):
        from lineagerun.chaos.proxy import start_proxy_server

        self._own_server = api is None
        if api is None:
            server = (proxy_server_factory or start_proxy_server)()
            api = bound_api(server.host, server.port)
        self._server = server
        self.api = api
        self._lock = threading.Lock()
        self.replicas: dict[tuple[int, int], ReplicaLinks] = {}
        self._directory: Path | None = None
        # Proxy names are global to a proxy server: two stores on one server
        # (tests) must not collide.
        self._prefix = f"cs{os.getpid()}-{id(self) % 100_000}"

    @property
    def server(self):
        """The proxy server (toxiproxy-python speaks to one per process:
        other proxies of this process must live on it too)."""
        return self._server

    @classmethod
    def sharing(cls, runtime_links) -> "ControlStoreLinks":
        """Links on the proxy server of a runtime cluster's ``RuntimeLinks``
        (stopped with it, not here)."""
        return cls(api=runtime_links.api, server=runtime_links._server)

    # ------------------------------------------------------- launcher hooks

    def coordinator_argv(self, cluster) -> list[str]:
        self._directory = cluster.dir
        return ["--dial-map", str(cluster.dir / "coordinator" / DIAL_MAP_FILE_NAME)]

    def replica_launch(self, cluster, shard: int, index: int) -> dict:
        """What replica (shard, index) starts with: its port, the address it
        advertises, the coordinator address it dials, its dial map. Proxies
        are made on the first call and kept for restarts."""
        with self._lock:
            self._directory = cluster.dir
            links = self.replicas.get((shard, index))
            if links is None:
                links = self._create_replica(cluster, shard, index)
            self._write_dial_maps(cluster)
            self._record()
        host, _, port = links.advertised.rpartition(":")
        to_coordinator = links.proxies[f"{replica_link(shard, index)}->coordinator"].listen
        return {"port": links.port, "coordinator": to_coordinator,
                "extra": ["--advertise-host", host, "--advertise-port", port,
                          "--dial-map", str(cluster.replica_dir(shard, index) / DIAL_MAP_FILE_NAME)]}

    def _create_replica(self, cluster, shard: int, index: int) -> ReplicaLinks:
        if len(self.replicas) >= REPLICAS_MAX:
            raise ConfigurationError(f"a chaos control store has at most {REPLICAS_MAX} replicas")
        name = replica_link(shard, index)
        links = self.replicas[(shard, index)] = ReplicaLinks(shard, index, chosen_port())
        upstream = f"127.0.0.1:{links.port}"
        self._proxy(links, f"clients->{name}", upstream)
        self._proxy(links, f"coordinator->{name}", upstream)
        # A restarted coordinator keeps its port: this upstream stays valid.
        self._proxy(links, f"{name}->coordinator", cluster.address)
        for (s, i), other in list(self.replicas.items()):
            if s == shard and i != index:
                self._proxy(links, f"{replica_link(s, i)}->{name}", upstream)
                self._proxy(other, f"{name}->{replica_link(s, i)}", f"127.0.0.1:{other.port}")
        return links

    def _proxy(self, owner: ReplicaLinks, link: str, upstream: str) -> None:
        proxy_name = f"{self._prefix}-{re.sub(r'[^a-z0-9]+', '-', link)}"
        owner.proxies[link] = self.api.create(upstream=upstream, name=proxy_name, listen="127.0.0.1:0")

    def _write_dial_maps(self, cluster) -> None:
        coordinator_map = {}
        for (shard, index), links in self.replicas.items():
            name = replica_link(shard, index)
            coordinator_map[links.advertised] = links.proxies[f"coordinator->{name}"].listen
            peers = {}
            for (s, i), other in self.replicas.items():
                link = f"{name}->{replica_link(s, i)}"
                if link in other.proxies:
                    peers[other.advertised] = other.proxies[link].listen
            directory = cluster.replica_dir(shard, index)
            directory.mkdir(parents=True, exist_ok=True)
            write_dial_map(directory / DIAL_MAP_FILE_NAME, peers)
        (cluster.dir / "coordinator").mkdir(parents=True, exist_ok=True)
        write_dial_map(cluster.dir / "coordinator" / DIAL_MAP_FILE_NAME, coordinator_map)

    def _record(self) -> None:
        import json

        if self._directory is None or self._server is None:
            return
        record = {"api": f"{self._server.host}:{self._server.port}",
                  "links": {link: proxy.name for links in self.replicas.values()
                            for link, proxy in links.proxies.items()}}
        path = self._directory / LINKS_FILE_NAME
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        os.replace(tmp, path)

    # ----------------------------------------------------------- faults

    def link_names(self) -> list[str]:
        with self._lock:
            return sorted(link for links in self.replicas.values() for link in links.proxies)

    def proxies(self, link: str) -> list[object]:
        """The proxies of one link name (see the module doc), or of every
        link touching a replica (``replica:S:I``)."""
        return select_proxies(link, {name: proxy for links in list(self.replicas.values())
                                     for name, proxy in links.proxies.items()})

    def all_proxies(self) -> list[object]:
        with self._lock:
            return [proxy for links in self.replicas.values() for proxy in links.proxies.values()]

    def heal_all(self) -> None:
        for proxy in self.all_proxies():
            for name in list(proxy.toxics()):
                proxy.destroy_toxic(name)
            proxy.enable()

    def stop(self) -> None:
        if self._own_server and self._server is not None:
            self._server.stop()


def select_proxies(link: str, by_name: dict) -> list:
    """``by_name`` (link name -> proxy) narrowed to ``link``; a typed error
    naming the valid forms when it matches nothing."""
    kind = next((kind for pattern, kind in _LINK_PATTERNS if pattern.match(link)), None)
    if kind is None:
        raise InvalidArgumentError(
            f"{link!r} is not a control-store link; use clients->replica:S:I, replica:S:I->replica:S:J, "
            f"coordinator->replica:S:I, replica:S:I->coordinator or replica:S:I (all of its links)")
    if kind == "replica":
        ends = (f"->{link}", f"{link}->")
        chosen = [proxy for name, proxy in by_name.items() if name.endswith(ends[0]) or name.startswith(ends[1])]
    else:
        chosen = [by_name[link]] if link in by_name else []
    if not chosen:
        raise InvalidArgumentError(f"no control-store link {link!r} in this cluster; links: "
                                   f"{', '.join(sorted(by_name)) or 'none (not a chaos cluster?)'}")
    return chosen


LINK_TARGET_PREFIX = "link:"


class StoreLinkTarget:
    """A nemesis ``NetworkTarget``: one control-store link name (or every
    link of a replica), as ``link:replica:0:1->replica:0:2`` in scenarios."""

    def __init__(self, links: ControlStoreLinks | None, target: str):
        if links is None:
            raise ConfigurationError(f"{target!r} needs a control store whose links go through chaos proxies "
                                     f"(ControlStoreCluster(links=ControlStoreLinks()), Cluster(chaos=True), or a "
                                     f"scenario with a link: fault)")
        self.name = target[len(LINK_TARGET_PREFIX):] if target.startswith(LINK_TARGET_PREFIX) else target
        self._proxies = links.proxies(self.name)

    def add_toxic(self, name: str, type: str, stream: str, toxicity: float, attributes: dict[str, int]) -> None:
        for proxy in self._proxies:
            proxy.add_toxic(name=name, type=type, stream=stream, toxicity=toxicity, attributes=attributes)

    def remove_toxic(self, name: str) -> None:
        for proxy in self._proxies:
            if name in proxy.toxics():
                proxy.destroy_toxic(name)

    def partition(self) -> None:
        for proxy in self._proxies:
            proxy.disable()

    def heal(self) -> None:
        for proxy in self._proxies:
            proxy.enable()


# ------------------------------------------- a store driven from elsewhere


def recorded_link_proxies(directory: str | os.PathLike, link: str) -> list:
    """The proxies of ``link`` of a store whose launcher (another process)
    recorded them in ``DIRECTORY/chaos-links.json``."""
    import json

    path = Path(directory) / LINKS_FILE_NAME
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"{directory} has no {LINKS_FILE_NAME}: its store's links are not proxied (start "
                                 f"it with ControlStoreLinks, Cluster(chaos=True) or a scenario with a link: "
                                 f"fault; for a runtime session pass SESSION/control)") from None
    host, _, port = record["api"].rpartition(":")
    api = bound_api(host, int(port))
    names = select_proxies(link, record["links"])
    proxies = [api.get_proxy(name) for name in names]
    if any(proxy is None for proxy in proxies):
        raise ConfigurationError(f"the proxies of {link} are gone (did the process owning the store exit?)")
    return proxies


def link_action(directory: str | os.PathLike, link: str, action: str, toxic_type: str = "",
                attributes: dict[str, int] | None = None, stream: str = "downstream") -> str:
    """``cut`` / ``heal`` (enable, every toxic removed) / ``toxic`` on one
    recorded link; returns what was done."""
    proxies = recorded_link_proxies(directory, link)
    if action == "cut":
        for proxy in proxies:
            proxy.disable()
        return f"cut {link} ({len(proxies)} proxies disabled)"
    if action == "heal":
        for proxy in proxies:
            for name in list(proxy.toxics()):
                proxy.destroy_toxic(name)
            proxy.enable()
        return f"healed {link} ({len(proxies)} proxies)"
    if action == "toxic":
        if not toxic_type:
            raise InvalidArgumentError("a toxic needs its type (--type latency, bandwidth, ...)")
        name = f"{toxic_type}_{stream}"
        for proxy in proxies:
            proxy.add_toxic(name=name, type=toxic_type, stream=stream, toxicity=1.0, attributes=attributes or {})
        return f"toxic {name} ({toxic_type} {attributes or {}}) on {link}"
    raise InvalidArgumentError(f"unknown link action {action!r}; use cut, heal or toxic")
