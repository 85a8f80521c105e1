"""``get_runtime_context()`` and the cluster views (``nodes()``...)."""

from __future__ import annotations

from lineagerun.api import context
from lineagerun.worker.core_worker import current_task


class RuntimeContext:
    """What the current process is running (Ray: ``RuntimeContext``)."""

    def get_job_id(self) -> str:
        return context.core_worker().current_job_id().hex()

    def get_task_id(self) -> str | None:
        task = current_task.get()
        return task.task_id.hex() if task is not None else None

    def get_actor_id(self) -> str | None:
        task = current_task.get()
        if task is None or task.actor_id is None or task.actor_id.is_nil_actor():
            return None
        return task.actor_id.hex()

    def get_assigned_resources(self) -> dict:
        """The resources the current task holds while it runs (an actor's
        method: what the actor holds for life; Ray's simple actor holds
        none); ``{}`` in a driver."""
        task = current_task.get()
        return dict(task.resources) if task is not None else {}

    def get_node_id(self) -> str:
        return context.core_worker().node_id_hex

    def get_worker_id(self) -> str:
        return context.core_worker().worker_id.hex()

    def get_namespace(self) -> str:
        return context.core_worker().namespace

    @property
    def namespace(self) -> str:
        return self.get_namespace()

    @property
    def gcs_address(self) -> str:
        return context.core_worker().control_store_address

    def get(self) -> dict:
        return {"job_id": self.get_job_id(), "task_id": self.get_task_id(), "actor_id": self.get_actor_id(),
                "node_id": self.get_node_id(), "namespace": self.get_namespace()}


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext()


def nodes() -> list[dict]:
    """One dict per node, with Ray's keys."""
    reply = context.core_worker().cluster_info()
    result = []
    for node in reply.nodes:
        host, _, port = node.address.rpartition(":")
        result.append({
            "NodeID": node.node_id.hex(), "Alive": node.alive, "Resources": dict(node.resources_total),
            "NodeManagerAddress": host, "NodeManagerPort": int(port) if port.isdigit() else 0,
            "NodeName": host, "alive": node.alive,
        })
    return result


def _sum(field: str) -> dict:
    totals: dict[str, float] = {}
    for node in context.core_worker().cluster_info().nodes:
        if not node.alive:
            continue
        for name, amount in getattr(node, field).items():
            totals[name] = totals.get(name, 0) + amount
    return totals


def cluster_resources() -> dict:
    return _sum("resources_total")


def available_resources() -> dict:
    return _sum("resources_available")
