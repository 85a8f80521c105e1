"""Tasks forwarded to a peer whose session ended while the peer lives.

A ``SubmitTasks`` still queued on a peer session when it ends, or written but
dropped in flight (a partition drops what the link holds), never reaches the
peer. The forwarding node then waits for results that never come (its
lookups find no object record) until the peer is declared dead, which never
happens when the link heals first: the 90 s stall of ``chaos/rt-network.toml``
after a 2 s isolation. So when a session ends, the plain tasks still forwarded
on it are submitted again on a new session, retried with backoff until that
succeeds, their results come, or the peer dies (``ClusterLink._node_died``
then retries them elsewhere). The peer skips a task it already holds, sending
its results on the new session, and answers one it has finished
(``ClusterLink._accept``), so a resubmission runs a task again only when its
results are gone there.
"""

from __future__ import annotations

import asyncio
import logging

from lineagerun.rpc import lineage_pb2, node_pb2

log = logging.getLogger(__name__)

# First wait before submitting again (the link may still be down), doubled
# up to the max until a new session is registered.
RESUBMIT_DELAY_FIRST_S = 0.2
RESUBMIT_DELAY_MAX_S = 2.0


def resubmittable(spec) -> bool:
    """Plain tasks only: an actor's creation or calls submitted twice are not
    idempotent on the peer (actor_routing.py has its own recovery)."""
    return not spec.is_actor_task and not spec.is_actor_creation


def attempt_reason(run) -> int:
    return run.attempt_reason or (lineage_pb2.FIRST_RUN if run.attempt == 0 else lineage_pb2.RETRY)


class PeerResubmitter:
    """One background retry per peer address whose session ended with
    orphaned forwarded tasks (``link.forwarded`` entries with ``orphaned``)."""

    def __init__(self, link):
        self._link = link
        self._addresses: set[str] = set()
        self.stopping = False
        self.resubmitted = 0

    def session_ended(self, address: str) -> None:
        if self.stopping or address in self._addresses or not self._orphans_of(address):
            return
        self._addresses.add(address)
        self._link._spawn(self._resubmit(address))

    async def _resubmit(self, address: str) -> None:
        delay_s = RESUBMIT_DELAY_FIRST_S
        try:
            while not self.stopping:
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RESUBMIT_DELAY_MAX_S)
                if not self._orphans_of(address):
                    return  # results came (lookups), or the peer died (_node_died)
                peer = self._link.peers.get(address)
                try:
                    await peer.ready()
                except (ConnectionError, asyncio.TimeoutError, TimeoutError):
                    continue
                if self._submit(peer, self._orphans_of(address)):  # read again: the await let results in
                    return
        finally:
            self._addresses.discard(address)

    def _submit(self, peer, orphans: list) -> bool:
        """False if the new session ended already (try again)."""
        runs = [forwarded.run for forwarded in orphans]
        for run in runs:
            self._link._send_function_and_args(peer, run)
        if runs and not peer.send(node_pb2.ClientMessage(submit_tasks=node_pb2.SubmitTasks(
                specs=[run.spec for run in runs], attempt_numbers=[run.attempt for run in runs],
                attempt_reasons=[attempt_reason(run) for run in runs]))):
            return False
        for forwarded in orphans:
            forwarded.orphaned = False
        self.resubmitted += len(runs)
        if runs:
            log.info("submitted %d task(s) again to %s after its session ended", len(runs), peer.address)
        return True

    def _orphans_of(self, address: str) -> list:
        return [forwarded for forwarded in self._link.forwarded.values()
                if forwarded.address == address and forwarded.orphaned and resubmittable(forwarded.run.spec)]
