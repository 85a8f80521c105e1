"""The runner's launcher of runtime clusters (``cluster.kind = "runtime"``):
a ``lineagerun.testing.Cluster`` in the run's directory, with chaos proxies
when the scenario has network faults, and this process connected to it as
the driver (through the head node's proxy when there is one)."""

from __future__ import annotations

from pathlib import Path

from lineagerun.exceptions import ConfigurationError

# How long healing may take: replacement nodes start (a Python start-up
# each) and the scheduler must see them.
RUNTIME_HEAL_TIMEOUT_S = 90.0


def launch_runtime(scenario, directory: Path, needs_links: bool):
    import lineagerun
    from lineagerun.chaos.runner import _ClusterHandle
    from lineagerun.chaos.runtime_links import connect_driver
    from lineagerun.chaos.runtime_targets import RuntimeTargets
    from lineagerun.testing import Cluster

    spec = scenario.cluster
    options = dict(spec.options)
    node_args = {"num_cpus": spec.cpus}
    if options.get("resources"):
        node_args["resources"] = dict(options["resources"])
    if options.get("object_store_memory"):
        node_args["object_store_memory"] = int(options["object_store_memory"])
    cluster_args = {"control_store_replicas": spec.replicas, "session_root": str(directory)}
    if "heartbeat_interval_ms" in options:
        cluster_args["heartbeat_interval_ms"] = int(options["heartbeat_interval_ms"])
    if "failure_timeout_ms" in options:
        cluster_args["node_timeout_ms"] = int(options["failure_timeout_ms"])
    if lineagerun.is_initialized():
        raise ConfigurationError("this process is already a lineagerun driver; a runtime scenario connects its "
                                 "own (call lineagerun.shutdown() first)")
    store_links = any(target.startswith("link:") for fault in scenario.faults for target in fault.targets)
    cluster = Cluster(initialize_head=False, shutdown_at_exit=True, chaos=needs_links,
                      chaos_control_store=True if store_links else None, **cluster_args)
    stopped = []

    def stop() -> None:
        if stopped:
            return
        stopped.append(True)
        try:
            lineagerun.shutdown()
        finally:
            cluster.shutdown()

    try:
        cluster.add_node(wait=False, **node_args)
        for _ in range(spec.nodes - 1):
            cluster.add_node(wait=False, **node_args)
        cluster.wait_for_nodes()
        connect_driver(cluster, namespace=f"chaos-{scenario.name}")
    except BaseException:
        stop()
        raise

    def heal() -> None:
        heal_runtime(cluster, node_args, spec.nodes)

    description = {**spec.to_dict(), "dir": str(cluster.session_dir),
                   "network_faults_on": "node links (chaos proxies)" if needs_links else None}
    return _ClusterHandle(cluster=cluster, resolver=RuntimeTargets(cluster), make_client=lambda: None,
                          make_direct_client=lambda: None, heal=heal, stop=stop, description=description)


def heal_runtime(cluster, node_args: dict, nodes_wanted: int) -> None:
    """Links whole, dead nodes replaced, the scheduler running, every node
    seen alive."""
    from lineagerun.chaos.runtime_targets import SchedulerTarget

    if cluster.links is not None:
        cluster.links.heal_all()
    if cluster.control_store.links is not None:
        cluster.control_store.links.heal_all()
    # A node starting scans the control store: its chains must be whole first.
    cluster.control_store.wait_for_chains(timeout_s=RUNTIME_HEAL_TIMEOUT_S)
    SchedulerTarget(cluster).restart()
    for node in list(cluster.list_all_nodes()):
        if not node.alive() and not node.is_head:
            cluster.remove_node(node, allow_graceful=False)
    for _ in range(nodes_wanted - len(cluster.list_all_nodes())):
        cluster.add_node(wait=False, **node_args)
    cluster.wait_for_nodes(timeout=RUNTIME_HEAL_TIMEOUT_S)
