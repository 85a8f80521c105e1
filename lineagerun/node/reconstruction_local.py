"""Reconstruction on a node that is not part of a multi-node cluster (the
embedded ``lineagerun.init()`` session, or any node manager before it
joins): what ``ReconstructionDriver`` needs of a link, with this node as
the whole cluster (docs/fault-tolerance.md, "Objects on a single node").

There are no peers: no copy elsewhere to look up or pull, no node to die
but this one. Objects are lost here when the store evicts a released
primary copy that a borrowed ref still names, or when an object's
shared-memory file is removed from outside; a get, a wait or a task
argument that names one starts its replay from the lineage in the control
store, exactly as on a multi-node cluster.
"""

from __future__ import annotations

import asyncio

from lineagerun.node.reconstruction_driver import ReconstructionDriver


class _NoFetcher:
    """Nothing to fetch from: every copy is in this node's object table,
    which wakes waiters itself when a replay's result arrives."""

    def want(self, object_id: bytes, produced_here: bool = False) -> None:
        pass

    def lookup(self, object_id: bytes) -> None:
        pass


class LocalRecoveryLink:
    def __init__(self, manager):
        self.manager = manager
        self.nodes: dict = {}       # no peers: only this node is alive
        self.forwarded: dict = {}   # no task runs elsewhere
        self.fetcher = _NoFetcher()
        self._tasks: set[asyncio.Task] = set()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _still_wanted(self, object_id: bytes) -> bool:
        # Tasks need not be asked: their local arguments are pinned until they
        # end, and one lost before the dispatch is found then
        # (NodeManager._argument_lost_meanwhile calls check_wanted).
        manager = self.manager
        return manager.objects.waited_for(object_id) or manager.reconstruction.recovering(object_id)


def local_reconstruction(manager):
    """The reconstruction driver of a node manager without a cluster link."""
    return ReconstructionDriver(manager, LocalRecoveryLink(manager))
