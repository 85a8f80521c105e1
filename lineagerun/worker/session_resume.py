"""A TCP driver reconnects to its node manager after its stream breaks.

What a Ray user expects: a driver whose connection to the cluster drops
retries for a while (Ray: ``gcs_rpc_server_reconnect_timeout_s``, 60 s) and
then fails with a clear error; its work resumes if the connection comes back.
Here: when the session stream of a driver connected over TCP fails (a reset,
a cut link, the node unreachable), the driver opens a new stream to the same
address with bounded retries (tenacity, exponential backoff from
``RETRY_WAIT_MIN_S`` to ``RETRY_WAIT_MAX_S``) for at most
``RECONNECT_TIMEOUT_S`` (30 s). On success the node hands it the same
session (``lineagerun.node.driver_resume``: tasks, actors and objects kept),
and the driver resends:

- its ``Register`` (same worker id and job id), first;
- its recent submissions, puts and function exports (``REPLAY_IDS_MAX`` task
  and object ids at most): the node drops the ones it already has, by id, so
  nothing runs twice (kills, cancels and releases sent just before the
  break are not resent and may be lost);
- every request not answered yet (gets, waits, actor lookups), under the
  same request ids: an answer that arrives twice is used once.

A link that fails silently (a black hole) is noticed by a watchdog: with
requests waiting and nothing heard for ``SILENCE_PROBE_S``, a probe; nothing
heard ``PROBE_TIMEOUT_S`` after it, the stream is ended and reconnected as
above. Meanwhile calls queue as usual and gets wait (with their own timeouts).
After the bound, every waiting call fails with ``NodeConnectionLostError``
naming the node and the last error, and so does every later call. Unix-socket
sessions (local drivers, workers) do not reconnect: their node is on the same
machine and a broken socket means it is gone.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

import tenacity

from lineagerun import exceptions
from lineagerun.rpc import node_pb2

log = logging.getLogger(__name__)

# How long a driver tries to reconnect before it fails its calls. Below the
# node's grace for a broken session (driver_resume.DRIVER_RESUME_GRACE_S, 45 s).
RECONNECT_TIMEOUT_S = 30.0
RETRY_WAIT_MIN_S = 0.1
RETRY_WAIT_MAX_S = 2.0
# A TCP driver's get/wait with a timeout gives up this long after it (the
# node enforces the timeout; the driver too, in case the link is down).
CLIENT_TIMEOUT_SLACK_S = 2.0
# One attempt: the stream opens and the node answers Register within this.
ATTEMPT_TIMEOUT_S = 5.0
# A link can fail silently (a black hole: nothing arrives, nothing breaks).
# With requests waiting and nothing heard for SILENCE_PROBE_S, the driver
# sends a probe (cluster_info); nothing heard PROBE_TIMEOUT_S after it, it
# ends the stream and reconnects as for a broken one.
SILENCE_PROBE_S = 5.0
PROBE_TIMEOUT_S = 5.0
WATCHDOG_INTERVAL_S = 1.0
# Task and object ids of recent submissions and puts kept to resend (the
# node remembers more: driver_resume.SEEN_IDS_MAX).
REPLAY_IDS_MAX = 20_000
# Resent after a reconnect: the node drops the ones it has by id
# (submissions by task id, puts by object id, kills and cancels by request
# id: a kill handled twice would kill a restarted actor again); a release
# applied twice changes nothing (a lost one would leave its objects pinned
# for the session).
REPLAYED_KINDS = frozenset({"submit_tasks", "put_object", "export_function", "release_objects", "kill_actor",
                            "cancel_task"})


NodeConnectionLostError = exceptions.NodeConnectionLostError


def _worth_retrying(error: BaseException) -> bool:
    return isinstance(error, exceptions.LineagerunError) and not isinstance(error, NodeConnectionLostError)


def _describe(error: BaseException) -> str:
    code, details = getattr(error, "code", None), getattr(error, "details", None)
    if callable(code) and callable(details):  # a grpc.RpcError
        return f"{code().name}: {details()}"
    return str(error)


def _ids_in(message: node_pb2.ClientMessage) -> int:
    kind = message.WhichOneof("kind")
    if kind == "submit_tasks":
        return len(message.submit_tasks.specs)
    if kind == "release_objects":
        return max(1, len(message.release_objects.object_ids))
    return 1


class SessionResume:
    """The replay buffer and the reconnect loop of one driver's session."""

    def __init__(self, core_worker, timeout_s: float | None = None):
        self.core_worker = core_worker
        self.timeout_s = RECONNECT_TIMEOUT_S if timeout_s is None else timeout_s
        self._lock = threading.Lock()
        self._sent: collections.deque[node_pb2.ClientMessage] = collections.deque()
        self._sent_ids = 0
        self.requests: dict[int, node_pb2.ClientMessage] = {}   # request id -> unanswered request
        self.resumed_count = 0
        self.lost: BaseException | None = None
        self.last_heard_s = time.monotonic()   # the last message from the node
        self.silent_streams_ended = 0

    def start_watchdog(self) -> None:
        self.last_heard_s = time.monotonic()
        threading.Thread(target=self._watch, name="lineagerun-session-watchdog", daemon=True).start()

    def _watch(self) -> None:
        cw = self.core_worker
        probe_sent_s = None
        while not cw._closing and self.lost is None:
            time.sleep(WATCHDOG_INTERVAL_S)
            now_s = time.monotonic()
            if cw._reconnecting or not self.requests or now_s - self.last_heard_s < SILENCE_PROBE_S:
                probe_sent_s = None
                continue
            if probe_sent_s is None or probe_sent_s < self.last_heard_s:
                probe_sent_s = now_s
                cw._probe()
            elif now_s - probe_sent_s > PROBE_TIMEOUT_S:
                log.warning("lineagerun: nothing heard from node manager %s for %.0f s with requests waiting; "
                            "reconnecting", cw.address, now_s - self.last_heard_s)
                self.silent_streams_ended += 1
                probe_sent_s = None
                cw._cancel_stream()

    def sent(self, message: node_pb2.ClientMessage) -> None:
        """A message went to the stream (it may not have arrived)."""
        if message.WhichOneof("kind") == "batch":
            for one in message.batch.messages:
                self.sent(one)
            return
        if message.WhichOneof("kind") not in REPLAYED_KINDS:
            return
        with self._lock:
            self._sent.append(message)
            self._sent_ids += _ids_in(message)
            while self._sent_ids > REPLAY_IDS_MAX and len(self._sent) > 1:
                self._sent_ids -= _ids_in(self._sent.popleft())

    def replay(self) -> list[node_pb2.ClientMessage]:
        with self._lock:
            resent = list(self._sent)
        return resent + [self.requests[rid] for rid in sorted(self.requests)]

    def reconnect(self, cause: BaseException) -> bool:
        """Reopen the stream (in the broken stream's reader thread); True
        if the session resumed, False if the driver is closing or gave up
        (``self.lost`` then says why)."""
        cw = self.core_worker
        log.warning("lineagerun: lost the session with node manager %s (%s); reconnecting for up to %.0f s",
                    cw.address, _describe(cause), self.timeout_s)
        started_s = time.monotonic()
        try:
            for attempt in tenacity.Retrying(
                    stop=tenacity.stop_after_delay(self.timeout_s),
                    wait=tenacity.wait_exponential(multiplier=RETRY_WAIT_MIN_S, min=RETRY_WAIT_MIN_S,
                                                   max=RETRY_WAIT_MAX_S),
                    retry=tenacity.retry_if_exception(_worth_retrying), reraise=True):
                with attempt:
                    if cw._closing:
                        return False
                    remaining_s = self.timeout_s - (time.monotonic() - started_s)
                    cw._reopen(max(0.5, min(ATTEMPT_TIMEOUT_S, remaining_s)))
        except NodeConnectionLostError as err:
            self.lost = err
            return False
        except exceptions.LineagerunError as err:
            if cw._closing:
                return False
            self.lost = NodeConnectionLostError(
                f"lost the session with node manager {cw.address} and could not reconnect within "
                f"{self.timeout_s:.0f} s (last error: {err}); the driver's pending calls fail. Check that the "
                f"node runs and is reachable, then call lineagerun.shutdown() and lineagerun.init() again")
            return False
        self.resumed_count += 1
        log.warning("lineagerun: resumed the session with node manager %s after %.1f s", cw.address,
                    time.monotonic() - started_s)
        return True
