"""``Cluster``: a multi-node lineagerun cluster on one machine, shaped like
Ray's ``ray.cluster_utils.Cluster``.

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    node = cluster.add_node(num_cpus=2, resources={"special": 1})
    cluster.wait_for_nodes()
    lineagerun.init(address=cluster.address)
    ...
    cluster.remove_node(node)          # kill -9 of its whole process group
    cluster.shutdown()

The head runs the control store (coordinator and replicas), the global
scheduler and the first node manager; every ``add_node`` starts one more
node manager with its own object store and worker pool. Everything lives in
one session directory (see ``lineagerun.node.launcher``) and is stopped by
process group at ``shutdown()`` (and at interpreter exit).
"""

from __future__ import annotations

import atexit
import os
import shutil
import time
from dataclasses import dataclass, field

from lineagerun.exceptions import ConfigurationError, InvalidArgumentError
from lineagerun.node import launcher
from lineagerun.testing import node_start

# Waiting for nodes to be seen alive (or dead) by the global scheduler.
WAIT_FOR_NODES_TIMEOUT_S = 30.0
# Control store of a test cluster: one shard, one replica (the chain's
# fault tolerance is tested elsewhere; every process costs start-up time).
CONTROL_STORE_REPLICAS_DEFAULT = 1
_NODE_ARGS = {"num_cpus", "num_gpus", "resources", "object_store_memory"}


@dataclass(eq=False)
class ClusterNode:
    """A node manager of a ``Cluster`` (Ray: ``ray._private.node.Node``)."""

    node_id: str                      # hex, as ``nodes()`` and NodeAffinitySchedulingStrategy take it
    address: str                      # host:port of its node manager
    process: launcher.LaunchedProcess
    ready: dict
    args: dict = field(default_factory=dict)
    is_head: bool = False

    @property
    def unique_id(self) -> str:
        return self.node_id

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.alive()


class Cluster:
    def __init__(self, initialize_head: bool = False, connect: bool = False, head_node_args: dict | None = None,
                 shutdown_at_exit: bool = True, *, heartbeat_interval_ms: int = 100, node_timeout_ms: int = 1000,
                 control_store_replicas: int = CONTROL_STORE_REPLICAS_DEFAULT, session_root: str | None = None,
                 chaos: bool = False, tls: bool = False, chaos_control_store: bool | None = None):
        from lineagerun.transport.auth import new_token, write_token_file

        # chaos_control_store (default: as chaos): the control store's own
        # links (replica -> replica, replica <-> coordinator, clients ->
        # replica) each get a proxy too (lineagerun.chaos.control_store_links;
        # link:... targets). False keeps only the nodes' links proxied.
        self.chaos_control_store = chaos if chaos_control_store is None else chaos_control_store
        chaos = chaos or self.chaos_control_store

        # chaos=True: every node's links go through chaos proxies
        # (lineagerun.chaos.runtime_links; ``self.links``).
        self.links = None
        if chaos and tls:
            raise ConfigurationError("Cluster(chaos=True, tls=True) is not supported: chaos proxies give the nodes "
                                     "addresses (127.77.x.y) a throwaway certificate does not name; pick one")
        if chaos:
            from lineagerun.chaos.runtime_links import RuntimeLinks

            self.links = RuntimeLinks()

        self.session_dir = launcher.new_session_dir(session_root or launcher.SESSION_ROOT)
        self.token = new_token()
        self.token_file = write_token_file(self.session_dir / launcher.TOKEN_FILE_NAME, self.token)
        # tls=True: a throwaway self-signed certificate (lineagerun.testing.tls_certs)
        # that every process serves and checks its peers with; recorded in the
        # session (tls.json), so a driver joining with init(address=) uses it.
        self.tls = None
        if tls:
            from lineagerun.testing.tls_certs import make_certificate
            from lineagerun.transport.tls import TlsConfig, write_session_tls

            self.tls = TlsConfig.load(*make_certificate(self.session_dir / "tls", "cluster"))
            write_session_tls(self.session_dir, self.tls)
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.node_timeout_ms = node_timeout_ms
        self.control_store_replicas = control_store_replicas
        self.control_store = None
        self.scheduler_process: launcher.LaunchedProcess | None = None
        self.scheduler_address = ""
        self.head_node: ClusterNode | None = None
        self.worker_nodes: list[ClusterNode] = []
        self.removed_nodes: list[ClusterNode] = []
        self._shut_down = False
        if shutdown_at_exit:
            atexit.register(self.shutdown)
        if initialize_head:
            self.add_node(**(head_node_args or {}))
            if connect:
                self.connect()

    # ------------------------------------------------------------ head

    @property
    def address(self) -> str:
        """The cluster's address (its control store's coordinator), for
        ``lineagerun.init(address=...)`` and ``lineagerun start --address``."""
        if self.control_store is None:
            raise ConfigurationError("the cluster has no head yet: add_node() first")
        return self.control_store.address

    def _start_head_services(self) -> None:
        from lineagerun.control.cluster import ControlStoreCluster

        store_links = None
        if self.links is not None:
            from lineagerun.chaos.runtime_links import StoreLaunchHook

            # Replicas keep their ports across restarts and every node gets
            # its own proxy to each (node:<i>->replica:S:I), so isolating a
            # node cuts its heartbeat records too.
            store_links = StoreLaunchHook(self.links)
            if self.chaos_control_store:
                from lineagerun.chaos.control_store_links import ControlStoreLinks

                store_links.store_links = ControlStoreLinks.sharing(self.links)
        self.control_store = ControlStoreCluster(self.session_dir / "control", shards=1,
                                                 replicas=self.control_store_replicas, token=self.token,
                                                 tls=self.tls, links=store_links)
        self.control_store.start()
        self.scheduler_process, self.scheduler_address = launcher.start_scheduler(
            self.session_dir, self.control_store.address, heartbeat_interval_ms=self.heartbeat_interval_ms,
            node_timeout_ms=self.node_timeout_ms, tls=self.tls)

    def _write_head(self) -> None:
        launcher.write_json_atomic(self.session_dir / launcher.HEAD_FILE_NAME, {
            "address": self.address, "scheduler": self.scheduler_address, "host": "127.0.0.1",
            "head_node_id": self.head_node.node_id if self.head_node else "", "started_by": "Cluster",
            "control_store_dir": str(self.session_dir / "control")})

    # ----------------------------------------------------------- nodes

    def add_node(self, wait: bool = True, **node_args) -> ClusterNode:
        """Start a node manager (the head's services first, if none yet)."""
        unknown = set(node_args) - _NODE_ARGS
        if unknown:
            raise InvalidArgumentError(f"add_node() got unsupported arguments {sorted(unknown)}; "
                                       f"supported: {sorted(_NODE_ARGS)}")
        if self._shut_down:
            raise ConfigurationError("the cluster is shut down")
        args = {"num_cpus": 1, **{k: v for k, v in node_args.items() if v is not None}}
        try:
            if self.control_store is None:
                self._start_head_services()
            control_address, scheduler_address, link_args = self.control_store.address, self.scheduler_address, {}
            if self.links is not None:
                control_address, scheduler_address, link_args = self.links.prepare_node(
                    control_address, scheduler_address, self.session_dir)
            process, ready = node_start.start_node(self.session_dir, control_address, scheduler_address,
                                                 heartbeat_interval_ms=self.heartbeat_interval_ms, **link_args,
                                                 **({"tls": self.tls} if self.tls else {}), **args)
        except BaseException:
            if self.head_node is None:
                self.shutdown()
            raise
        node = ClusterNode(ready["node_id"], ready["address"], process, ready, args, is_head=self.head_node is None)
        if node.is_head:
            self.head_node = node
        else:
            self.worker_nodes.append(node)
        self._write_head()
        if wait:
            self.wait_for_nodes()
        return node

    def list_all_nodes(self) -> list[ClusterNode]:
        return ([self.head_node] if self.head_node else []) + list(self.worker_nodes)

    def remove_node(self, node: ClusterNode, allow_graceful: bool = True) -> None:
        """Stop a node: SIGTERM (graceful) or SIGKILL of its whole process
        group (the node manager and its workers)."""
        if node is self.head_node:
            self.head_node = None
        elif node in self.worker_nodes:
            self.worker_nodes.remove(node)
        else:
            raise InvalidArgumentError(f"node {node.node_id[:16]} is not a live node of this cluster")
        launcher.stop_process(node.process, force=not allow_graceful)
        launcher.cleanup_node_store(self.session_dir, node.node_id)
        self.removed_nodes.append(node)

    def wait_for_nodes(self, timeout: float = WAIT_FOR_NODES_TIMEOUT_S) -> None:
        """Until the global scheduler sees every node added as alive and every
        node removed as dead (or forgotten)."""
        expected = {n.node_id for n in self.list_all_nodes()}
        removed = {n.node_id for n in self.removed_nodes}
        deadline_s = time.monotonic() + timeout
        last = None
        while True:
            try:
                view = launcher.scheduler_view(self.scheduler_address, self.token,
                                               root_cert=self.tls.ca_pem if self.tls else None)
                alive = {n.node_id.hex() for n in view if n.alive}
                if expected <= alive and not (removed & alive):
                    return
                last = f"alive: {sorted(a[:8] for a in alive)}, expected {sorted(e[:8] for e in expected)}"
            except Exception as exc:  # noqa: BLE001 - the scheduler may still be starting
                last = str(exc)
            if time.monotonic() > deadline_s:
                raise TimeoutError(f"nodes not as expected after {timeout} s ({last})")
            time.sleep(0.05)

    def connect(self, namespace: str | None = None):
        import lineagerun

        return lineagerun.init(address=self.address, namespace=namespace)

    # -------------------------------------------------------- shutdown

    def shutdown(self) -> None:
        """Stop every process of the cluster (nodes, scheduler, control
        store) and remove the session's shared-memory files."""
        if self._shut_down:
            return
        self._shut_down = True
        atexit.unregister(self.shutdown)
        for node in self.list_all_nodes():
            launcher.stop_process(node.process)
            launcher.cleanup_node_store(self.session_dir, node.node_id)
        self.head_node, self.worker_nodes = None, []
        if self.scheduler_process is not None:
            launcher.stop_process(self.scheduler_process)
        if self.control_store is not None:
            self.control_store.stop()
        if self.links is not None:
            self.links.stop()
        (self.session_dir / launcher.HEAD_FILE_NAME).unlink(missing_ok=True)
        if os.environ.get("LINEAGERUN_KEEP_SESSION") != "1":
            shutil.rmtree(self.session_dir, ignore_errors=True)

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
