"""The nemesis: performs scheduled fault actions against targets.

Targets sit behind two small interfaces, so the runtime cluster (nodes,
workers, actors) plugs in later with its own ``TargetResolver``:

* ``ProcessTarget``: ``kill()`` (SIGKILL), ``pause()`` / ``resume()``
  (SIGSTOP / SIGCONT), ``restart()`` (from its own directory);
* ``NetworkTarget``: ``add_toxic(...)``, ``remove_toxic(name)``,
  ``partition()`` / ``heal()``, through the chaos proxy (toxiproxy-python).

For the control store (``ControlStoreTargets``) the process targets are the
replicas, named by their chain position when the fault fires (``head``,
``middle``, ``tail``), ``all-replicas`` of a shard and the ``coordinator``.
Network faults act on the *clients'* links only (``ClientLinks``): the
workload's clients reach the coordinator, and every replica, through chaos
proxies. Replica-to-replica and replica-to-coordinator links are not proxied:
the replicas advertise their own addresses to the coordinator and the
launcher has no way to make them advertise a proxy's instead.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Callable, Protocol

from lineagerun import processes
from lineagerun.chaos.proxy_api import bound_api
from lineagerun.core.chaos_schedule import INJECT, TOXIC_ACTIONS, ScheduledAction
from lineagerun.exceptions import ConfigurationError, InvalidArgumentError

log = logging.getLogger(__name__)

# Proxies ClientLinks creates: one per coordinator/replica address seen;
# restarts give replicas new ports, so this bounds a long run's growth.
CLIENT_LINKS_MAX = 256


class ProcessTarget(Protocol):
    name: str

    def kill(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def restart(self) -> None: ...


class NetworkTarget(Protocol):
    name: str

    def add_toxic(self, name: str, type: str, stream: str, toxicity: float, attributes: dict[str, int]) -> None: ...

    def remove_toxic(self, name: str) -> None: ...

    def partition(self) -> None: ...

    def heal(self) -> None: ...


class TargetResolver(Protocol):
    """Turns a scenario's target name into concrete targets at the moment a
    fault fires (``head`` is whichever replica heads the chain then)."""

    def process_targets(self, target: str, shard: int) -> list[ProcessTarget]: ...

    def network_targets(self, target: str, shard: int) -> list[NetworkTarget]: ...


# -------------------------------------------------------- control store


class ReplicaTarget:
    def __init__(self, cluster, shard: int, index: int):
        self.cluster = cluster
        self.shard = shard
        self.index = index
        self.name = cluster.replica_id(shard, index)

    def kill(self) -> None:
        self.cluster.kill_replica(self.shard, self.index)

    def pause(self) -> None:
        self.cluster.pause_replica(self.shard, self.index)

    def resume(self) -> None:
        self.cluster.resume_replica(self.shard, self.index)

    def restart(self) -> None:
        self.cluster.restart_replica(self.shard, self.index)


class CoordinatorTarget:
    name = "coordinator"

    def __init__(self, cluster):
        self.cluster = cluster

    def kill(self) -> None:
        self.cluster.kill_coordinator()

    def _signal(self, sig: int) -> None:
        process = self.cluster.coordinator
        if process is None or not process.pid or not processes.signal_if_ours(process, sig):
            raise ConfigurationError("the coordinator is not running")
        process.paused = sig == signal.SIGSTOP

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def restart(self) -> None:
        self.cluster.restart_coordinator()


class GroupTarget:
    """Several process targets faulted together (C8: a whole shard)."""

    def __init__(self, name: str, members: list[ProcessTarget]):
        self.name = name
        self.members = members

    def kill(self) -> None:
        for member in self.members:
            member.kill()

    def pause(self) -> None:
        for member in self.members:
            member.pause()

    def resume(self) -> None:
        for member in self.members:
            member.resume()

    def restart(self) -> None:
        # Restarted together: none of them alone holds a committed suffix
        # the others lack, and the shard waits for its last member anyway.
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_collecting(member.restart, errors), daemon=True)
                   for member in self.members]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]


def _collecting(function: Callable[[], None], errors: list[BaseException]) -> Callable[[], None]:
    def run() -> None:
        try:
            function()
        except BaseException as err:  # surfaced by the caller
            errors.append(err)
    return run


class ClientLinks:
    """Chaos proxies between the workload's clients and the control store.

    ``coordinator_address`` is what clients should dial instead of the
    coordinator; ``wrap_client(client)`` makes a ``ControlStoreClient`` dial
    every replica through a proxy too (created on first use). Toxics and
    partitions apply to every link, including links created later.
    """

    def __init__(self, cluster, proxy_server_factory: Callable | None = None):
        from lineagerun.chaos.proxy import start_proxy_server

        self.cluster = cluster
        self._server = (proxy_server_factory or start_proxy_server)()
        self._api = bound_api(self._server.host, self._server.port)
        self._lock = threading.Lock()
        self._proxies: dict[str, object] = {}          # upstream address -> toxiproxy Proxy
        self._toxics: dict[str, tuple[str, str, float, dict[str, int]]] = {}
        self._partitioned = False
        self._coordinator = self._link(cluster.address, "client-coordinator")
        self.name = "clients"

    @property
    def coordinator_address(self) -> str:
        return self._coordinator.listen

    def _link(self, upstream: str, name: str | None = None):
        with self._lock:
            proxy = self._proxies.get(upstream)
            if proxy is not None:
                return proxy
            if len(self._proxies) >= CLIENT_LINKS_MAX:
                raise ConfigurationError(f"more than {CLIENT_LINKS_MAX} client links; the run restarted replicas "
                                         f"too often for one scenario")
            proxy = self._api.create(upstream=upstream, name=name or f"client-{upstream}", listen="127.0.0.1:0")
            for toxic_name, (type_, stream, toxicity, attributes) in self._toxics.items():
                proxy.add_toxic(name=toxic_name, type=type_, stream=stream, toxicity=toxicity, attributes=attributes)
            if self._partitioned:
                proxy.disable()
            self._proxies[upstream] = proxy
            return proxy

    def listen_for(self, upstream: str) -> str:
        return self._link(upstream).listen

    def wrap_client(self, client):
        """Route ``client``'s replica channels through proxies (its public
        ``address_map``; a new client can pass ``address_map=self.listen_for``
        instead)."""
        client.address_map = self.listen_for
        return client

    def links(self, only_coordinator: bool = False) -> list[object]:
        with self._lock:
            return [self._coordinator] if only_coordinator else list(self._proxies.values())

    def add_toxic(self, name: str, type: str, stream: str, toxicity: float, attributes: dict[str, int],
                  only_coordinator: bool = False) -> None:
        if not only_coordinator:
            with self._lock:
                self._toxics[name] = (type, stream, toxicity, attributes)
        for proxy in self.links(only_coordinator):
            proxy.add_toxic(name=name, type=type, stream=stream, toxicity=toxicity, attributes=attributes)

    def remove_toxic(self, name: str, only_coordinator: bool = False) -> None:
        with self._lock:
            self._toxics.pop(name, None)
        for proxy in self.links(only_coordinator):
            if name in proxy.toxics():
                proxy.destroy_toxic(name)

    def set_partitioned(self, partitioned: bool, only_coordinator: bool = False) -> None:
        if not only_coordinator:
            with self._lock:
                self._partitioned = partitioned
        for proxy in self.links(only_coordinator):
            proxy.disable() if partitioned else proxy.enable()

    def stop(self) -> None:
        self._server.stop()


class LinkTarget:
    """A ``NetworkTarget`` over ``ClientLinks``: all client links, or only
    the client-coordinator one."""

    def __init__(self, links: ClientLinks, only_coordinator: bool):
        self.links = links
        self.only_coordinator = only_coordinator
        self.name = "client-coordinator" if only_coordinator else "clients"

    def add_toxic(self, name, type, stream, toxicity, attributes) -> None:
        self.links.add_toxic(name, type, stream, toxicity, attributes, self.only_coordinator)

    def remove_toxic(self, name: str) -> None:
        self.links.remove_toxic(name, self.only_coordinator)

    def partition(self) -> None:
        self.links.set_partitioned(True, self.only_coordinator)

    def heal(self) -> None:
        self.links.set_partitioned(False, self.only_coordinator)


class ControlStoreTargets:
    """``TargetResolver`` for a ``ControlStoreCluster``."""

    def __init__(self, cluster, links: ClientLinks | None = None):
        self.cluster = cluster
        self.links = links

    def process_targets(self, target: str, shard: int) -> list[ProcessTarget]:
        if target == "coordinator":
            return [CoordinatorTarget(self.cluster)]
        if not 0 <= shard < self.cluster.shards:
            raise InvalidArgumentError(f"shard {shard} does not exist (the cluster has {self.cluster.shards})")
        if target == "all-replicas":
            members = [ReplicaTarget(self.cluster, s, i) for (s, i) in sorted(self.cluster.replica_processes)
                       if s == shard]
            return [GroupTarget(f"all replicas of shard {shard}", members)]
        chain = self.cluster.chain(shard)
        position = {"head": 0, "middle": len(chain) // 2, "tail": len(chain) - 1}.get(target)
        if position is None:
            raise InvalidArgumentError(f"unknown control-store target {target!r}")
        return [ReplicaTarget(self.cluster, *self.cluster.index_of(chain[position]))]

    def network_targets(self, target: str, shard: int) -> list[NetworkTarget]:
        if target.startswith("link:"):  # one replica or coordinator link (control_store_links)
            from lineagerun.chaos.control_store_links import StoreLinkTarget

            return [StoreLinkTarget(getattr(self.cluster, "links", None), target)]
        if self.links is None:
            raise ConfigurationError("network faults need the clients routed through chaos proxies (ClientLinks)")
        if target not in ("clients", "client-coordinator"):
            raise InvalidArgumentError(f"unknown control-store network target {target!r}")
        return [LinkTarget(self.links, only_coordinator=target == "client-coordinator")]


# ---------------------------------------------------------------- nemesis


class Nemesis:
    """Performs ``ScheduledAction``s. The targets an inject resolved are
    remembered by fault id, so its undo acts on the same processes (the head
    when a kill fired, not whoever heads the chain a second later)."""

    def __init__(self, resolver: TargetResolver):
        self.resolver = resolver
        self._lock = threading.Lock()
        self._resolved: dict[str, tuple[ScheduledAction, list]] = {}

    def perform(self, action: ScheduledAction) -> str:
        """Do ``action``; returns what was done (names the concrete target).
        Raises what the target raised."""
        if action.phase == INJECT:
            targets = self._resolve(action)
            # A killed worker or actor process is replaced by the runtime
            # itself: nothing to undo (its target says so).
            self_healing = action.action == "kill" and all(getattr(t, "self_healing", False) for t in targets)
            if action.action != "restart" and not self_healing:
                with self._lock:
                    self._resolved[action.fault_id] = (action, targets)
            names = ", ".join(t.name for t in targets)
            for target in targets:
                self._inject(action, target)
            return f"{action.describe()} [{names}]"
        with self._lock:
            _, targets = self._resolved.pop(action.fault_id, (None, []))
        for target in targets:
            self._undo(action, target)
        return f"{action.describe()} [{', '.join(t.name for t in targets)}]"

    def outstanding(self) -> list[ScheduledAction]:
        """Injects not undone yet (a kill with no duration stays until the
        run heals); ``perform(undo_of(action))`` undoes one."""
        with self._lock:
            return [action for action, _ in self._resolved.values()]

    def _resolve(self, action: ScheduledAction) -> list:
        if action.action in ("kill", "pause", "restart"):
            return self.resolver.process_targets(action.target, action.shard)
        return self.resolver.network_targets(action.target, action.shard)

    @staticmethod
    def _inject(action: ScheduledAction, target) -> None:
        if action.action == "kill":
            target.kill()
        elif action.action == "pause":
            target.pause()
        elif action.action == "restart":
            target.kill()
            target.restart()
        elif action.action == "partition":
            target.partition()
        elif action.action in TOXIC_ACTIONS:
            target.add_toxic(_toxic_name(action), action.action, action.stream, action.toxicity,
                             dict(action.attributes))
        else:
            raise InvalidArgumentError(f"unknown nemesis action {action.action!r}")

    @staticmethod
    def _undo(action: ScheduledAction, target) -> None:
        if action.action == "kill":
            target.restart()
        elif action.action == "pause":
            target.resume()
        elif action.action == "partition":
            target.heal()
        elif action.action in TOXIC_ACTIONS:
            target.remove_toxic(_toxic_name(action))


def _toxic_name(action: ScheduledAction) -> str:
    return f"{action.fault_id}-{action.action}-{action.stream}"


# ------------------------------------------- a store started elsewhere


class RecordedProcessTarget:
    """A control-store process started by another launcher (``lineagerun
    control-store start``), found through ``DIR/cluster.json``. Signals go to
    the recorded pid's process group, and only while that pid still is the
    recorded process (same start time): a reused pid is left alone.
    ``restart()`` starts it again with its recorded command line and updates
    the record, so ``control-store stop`` still finds it."""

    def __init__(self, directory: str | os.PathLike, name: str):
        self.directory = directory
        self.name = name

    def _entry(self) -> tuple[dict, dict]:
        from lineagerun.control.cluster import load_record

        record = load_record(self.directory)
        entries = ([record["coordinator"]] if record.get("coordinator") else []) + record.get("replica_processes", [])
        for entry in entries:
            if entry["name"] == self.name:
                return record, entry
        names = ", ".join(e["name"] for e in entries)
        raise InvalidArgumentError(f"no process {self.name!r} recorded in {self.directory}; recorded: {names}")

    def _process(self):
        from lineagerun.control.cluster import recorded_processes

        record, _ = self._entry()
        return next(p for p in recorded_processes(record) if p.name == self.name)

    def _signal(self, sig: int) -> None:
        process = self._process()
        if not processes.signal_if_ours(process, sig):  # a reused pid is not ours
            raise ConfigurationError(f"{self.name} (pid {process.pid}) is not running")

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def restart(self, timeout_s: float = 60.0) -> str:
        """Start it again (killing it first if it runs); returns its address."""
        import json
        import time

        from lineagerun.control.cluster import CLUSTER_FILE_NAME, READY_FILE_NAME

        process = self._process()
        processes.stop_service(process, force=True)
        record, entry = self._entry()
        argv = list(entry["argv"])
        if entry["role"] == "coordinator" and entry.get("address") and "--port" in argv:
            # Replicas know the coordinator by its first address: keep the port.
            argv[argv.index("--port") + 1] = entry["address"].rsplit(":", 1)[1]
        directory = process.directory
        (directory / READY_FILE_NAME).unlink(missing_ok=True)
        deadline_s = time.monotonic() + timeout_s
        while True:
            started = processes.ServiceProcess(self.name, entry["role"], 0, None, process.log_path)
            started.popen = processes.spawn(argv, process.log_path)
            started.pid = started.popen.pid
            try:
                address = processes.wait_ready(started, processes.ready_text(directory / READY_FILE_NAME),
                                               what="serving", deadline_s=deadline_s)
                break
            except ConfigurationError:
                processes.stop_service(started, force=True)
                if time.monotonic() > deadline_s or "could not listen" not in process.log_tail():
                    raise ConfigurationError(f"{self.name} did not start again; last lines of "
                                             f"{process.log_path}:\n{process.log_tail()}") from None
            time.sleep(0.2)  # a killed coordinator's port can stay busy for a moment
        entry.update(pid=started.pid, create_time=processes.process_create_time(started.pid), address=address)
        path = os.path.join(self.directory, CLUSTER_FILE_NAME)
        tmp = path + ".tmp"
        with open(tmp, "w") as out:
            json.dump(record, out, indent=2)
        os.replace(tmp, path)
        return address

