"""Nemesis actions on a ``lineagerun.testing.Cluster`` from Python::

    cluster = Cluster(initialize_head=True, chaos=True)
    node = cluster.add_node(num_cpus=1)
    nemesis = ClusterNemesis(cluster)
    nemesis.kill_node(node)                 # kill -9 of its process group
    nemesis.kill_worker(node)               # its busiest worker
    nemesis.kill_actor("my-actor")          # the process hosting the actor
    nemesis.latency(node, 200)              # on its links (chaos=True)
    nemesis.partition(node); nemesis.heal()   # isolated past the node timeout: declared dead
    nemesis.cut_driver()                    # only the driver's link into its node
    nemesis.cut_pair(node_a, node_b)        # only the links between two nodes
    nemesis.split([node_a])                 # node_a's group against the rest

Every method returns what it did (naming the process or links).
"""

from __future__ import annotations

import itertools

from lineagerun.chaos.runtime_targets import (NodeTarget, PidTarget, RuntimeLinkTarget, RuntimeTargets,
                                              SchedulerTarget, busiest_worker)


class ClusterNemesis:
    def __init__(self, cluster):
        self.cluster = cluster
        self.targets = RuntimeTargets(cluster)
        self._names = itertools.count()

    # ---------------------------------------------------- processes

    def kill_node(self, node) -> str:
        NodeTarget(self.cluster, node).kill()
        return f"killed node {node.node_id[:8]}"

    def pause_node(self, node) -> str:
        NodeTarget(self.cluster, node).pause()
        return f"paused node {node.node_id[:8]}"

    def resume_node(self, node) -> str:
        NodeTarget(self.cluster, node).resume()
        return f"resumed node {node.node_id[:8]}"

    def replace_node(self, node):
        """A new node with the dead one's resources; returns it."""
        target = NodeTarget(self.cluster, node)
        target.restart()
        return target.replacement

    def kill_worker(self, node, pid: int | None = None) -> str:
        pid = pid or busiest_worker(node.pid).pid
        PidTarget("worker", pid).kill()
        return f"killed worker pid {pid} of node {node.node_id[:8]}"

    def _actor(self, actor: str) -> PidTarget:
        return self.targets._actor_target(actor)

    def kill_actor(self, actor: str = "") -> str:
        target = self._actor(actor)
        target.kill()
        return f"killed {target.name}"

    def pause_actor(self, actor: str = "") -> PidTarget:
        """Returns the target: ``.resume()`` it."""
        target = self._actor(actor)
        target.pause()
        return target

    def kill_scheduler(self) -> str:
        SchedulerTarget(self.cluster).kill()
        return "killed the global scheduler"

    def restart_scheduler(self) -> str:
        SchedulerTarget(self.cluster).restart()
        return f"global scheduler serving at {self.cluster.scheduler_address}"

    def kill_replica(self, position: str = "tail") -> str:
        (target,) = self.targets.process_targets(f"control-store-replica:{position}", 0)
        target.kill()
        return f"killed control-store replica {target.name}"

    # ------------------------------------------------------ network

    def _links(self, node=None, what: str = "node") -> RuntimeLinkTarget:
        if node is not None:
            index = self.cluster.list_all_nodes().index(node)
            (target,) = self.targets.network_targets(f"node:{index}", 0)
            return target
        (target,) = self.targets.network_targets(what, 0)
        return target

    def toxic(self, toxic_type: str, attributes: dict[str, int], node=None, *, what: str = "node",
              stream: str = "downstream", toxicity: float = 1.0) -> str:
        """A toxic on a node's links (or ``what``: driver, control-store, split)."""
        target = self._links(node, what)
        name = f"{toxic_type}-{next(self._names)}"
        target.add_toxic(name, toxic_type, stream, toxicity, attributes)
        return name

    def latency(self, node, latency_ms: int, jitter_ms: int = 0) -> str:
        return self.toxic("latency", {"latency": latency_ms, "jitter": jitter_ms}, node)

    def bandwidth(self, node, rate_kb_s: int) -> str:
        return self.toxic("bandwidth", {"rate": rate_kb_s}, node)

    def reset(self, node, timeout_ms: int = 0) -> str:
        return self.toxic("reset_peer", {"timeout": timeout_ms}, node)

    def timeout(self, node, timeout_ms: int = 0) -> str:
        """Black hole: data is dropped; with ``timeout_ms`` > 0 the
        connection closes after that long."""
        return self.toxic("timeout", {"timeout": timeout_ms}, node)

    def partition(self, node) -> str:
        target = self._links(node)
        target.partition()
        return f"isolated: {target.name}"

    def cut_driver(self) -> str:
        """Only the driver's link into its node (``node-<i>-in``); the node
        keeps its heartbeats, so it is not declared dead."""
        target = self._links(None, "driver")
        target.partition()
        return f"cut: {target.name}"

    def cut_pair(self, first, second) -> str:
        """Only the links between two nodes, both directions."""
        nodes = self.cluster.list_all_nodes()
        target = self._links(None, f"pair:{nodes.index(first)}-{nodes.index(second)}")
        target.partition()
        return f"cut: {target.name}"

    def split(self, group: list | None = None) -> str:
        """``group`` (default: the later half of the nodes) cut from the
        rest; the side without the head node loses the control store, the
        scheduler and the driver too."""
        nodes = self.cluster.list_all_nodes()
        what = "split" if group is None else "split:" + ",".join(str(nodes.index(n)) for n in group)
        target = self._links(None, what)
        target.partition()
        return target.name

    def heal(self) -> str:
        self.cluster.links.heal_all()
        return "every link enabled, every toxic removed"
