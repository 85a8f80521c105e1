"""A driver over TCP whose session stream breaks may come back (resume).

A driver connected over TCP (a remote driver, or one behind a chaos proxy)
can lose its stream to a reset or a cut link while the node manager and the
driver both live. Ray's drivers retry their connections for a while before
they fail; lineagerun's driver reconnects with bounded retries
(``lineagerun.worker.session_resume``). For that to resume the work rather
than start over, the node keeps the broken session (its tasks, actors, the
objects it holds) *parked* for ``DRIVER_RESUME_GRACE_S`` instead of treating
the driver as gone:

- a new stream whose first message is a ``Register`` of kind DRIVER with the
  same worker id and job id takes the session over (the same ``Session``
  object, so everything the manager keeps about it stays valid); the node
  answers ``Registered`` and from then on writes to the new stream. A stream
  still open on the node's side (a black-holed link it has not noticed) is
  superseded the same way;
- after the grace period nobody came back: the driver is gone as usual
  (``manager.session_closed``: its actors killed, its queued tasks cancelled).

The driver resends what it cannot know arrived: its recent submissions and
puts and its unanswered requests. Requests are answered again (the driver
ignores a second answer); submissions and puts already received are dropped
here by id (``SEEN_IDS_MAX`` ids per driver session). Unix-socket sessions
(local drivers, workers) are not parked: a broken unix socket means a dead
process.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from lineagerun.rpc import node_pb2

log = logging.getLogger(__name__)

# How long a broken driver session waits for its driver to come back. Above
# the driver's reconnect bound (session_resume.RECONNECT_TIMEOUT_S = 30 s):
# the driver gives up first, so it never resumes a session already cleaned up.
DRIVER_RESUME_GRACE_S = 45.0
# Task and object ids remembered per driver session to drop resent
# submissions and puts; above the driver's replay bound (REPLAY_IDS_MAX).
SEEN_IDS_MAX = 50_000


class SeenIds:
    """A bounded set, oldest forgotten first."""

    def __init__(self, capacity: int = SEEN_IDS_MAX):
        self._ids: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._capacity = capacity

    def first_time(self, item: bytes) -> bool:
        if item in self._ids:
            return False
        self._ids[item] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return True


def over_tcp(context) -> bool:
    try:
        return not context.peer().startswith("unix:")
    except Exception:  # noqa: BLE001 - a context without a peer: treat as local
        return False


class DriverSessions:
    """The TCP driver sessions of one node manager, by worker id."""

    def __init__(self, manager, grace_s: float = DRIVER_RESUME_GRACE_S):
        self.manager = manager
        self.grace_s = grace_s
        self._by_worker: dict[bytes, object] = {}
        self._seen: dict[object, SeenIds] = {}
        self._expiry: dict[object, asyncio.TimerHandle] = {}

    def track(self, session, worker_id: bytes) -> None:
        """A driver registered over TCP: it may resume later."""
        self._by_worker[worker_id] = session
        self._seen[session] = SeenIds()
        session.resume_worker_id = worker_id

    def resume(self, first: node_pb2.ClientMessage):
        """The tracked session a new stream takes over, or None (not a
        driver's Register, or nothing to resume)."""
        if first.WhichOneof("kind") != "register":
            return None
        register = first.register
        if register.kind != node_pb2.Register.DRIVER or not register.job_id:
            return None
        session = self._by_worker.get(register.worker_id)
        if session is None or session.job_id != register.job_id:
            return None
        timer = self._expiry.pop(session, None)
        if timer is not None:
            timer.cancel()
        session.generation += 1
        previous, session.out = session.out, asyncio.Queue()
        previous.put_nowait(None)  # a writer still on the old stream stops
        session.closed = False
        session.stream_broken = False
        session.pid = register.pid
        manager = self.manager
        from lineagerun.node.server import INLINE_THRESHOLD_BYTES

        session.send(node_pb2.NodeMessage(registered=node_pb2.Registered(
            node_id=manager.node_id.binary(), job_id=session.job_id, session_dir=manager.session_dir,
            store_session_id=manager.store.session_id, inline_object_max_bytes=INLINE_THRESHOLD_BYTES,
            control_store_address=manager.control_store_address)))
        log.info("driver %s resumed its session (stream %d)", register.worker_id.hex()[:12], session.generation)
        return session

    def park(self, session) -> bool:
        """The stream of a tracked session broke: keep it for the grace
        period. False if the session is not a tracked driver's."""
        if self._seen.get(session) is None:
            return False
        generation = session.generation
        log.warning("driver session %d broke; keeping it %.0f s for the driver to reconnect", session.serial,
                    self.grace_s)
        self._expiry[session] = asyncio.get_running_loop().call_later(self.grace_s, self._expire, session,
                                                                      generation)
        return True

    def _expire(self, session, generation: int) -> None:
        self._expiry.pop(session, None)
        if session.generation != generation:
            return  # resumed meanwhile
        log.warning("driver session %d: no reconnect within %.0f s; the driver is gone", session.serial,
                    self.grace_s)
        self.forget(session)
        self.manager.session_closed(session)

    def forget(self, session) -> None:
        self._seen.pop(session, None)
        timer = self._expiry.pop(session, None)
        if timer is not None:
            timer.cancel()
        worker_id = session.resume_worker_id
        if self._by_worker.get(worker_id) is session:
            del self._by_worker[worker_id]

    def first_time(self, session, message: node_pb2.ClientMessage) -> node_pb2.ClientMessage | None:
        """``message`` without what this driver session already sent (a
        resent submission, put, kill or cancel); None if nothing is left."""
        seen = self._seen.get(session)
        if seen is None:
            return message
        kind = message.WhichOneof("kind")
        if kind == "submit_tasks":
            fresh = [spec for spec in message.submit_tasks.specs if seen.first_time(spec.task_id)]
            if len(fresh) == len(message.submit_tasks.specs):
                return message
            if not fresh:
                return None
            del message.submit_tasks.specs[:]
            message.submit_tasks.specs.extend(fresh)
            return message
        if kind == "put_object":
            return message if seen.first_time(message.put_object.object_id) else None
        if kind in ("kill_actor", "cancel_task"):
            request_id = getattr(message, kind).request_id
            if request_id and not seen.first_time(b"%s:%d" % (kind.encode(), request_id)):
                return None
        return message
