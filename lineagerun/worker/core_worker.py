"""The client side of a node manager session, used by drivers and workers.

One bidirectional ``NodeManager.Session`` stream per process. A sender
generator drains an outbox (consecutive ``SubmitTasks`` are merged into one
message: the batching of docs/runtime.md step 4) and a reader thread
dispatches what the node manager sends: replies complete the future of their
``request_id``; ``ExecuteTask``, ``CancelRunning`` and ``exit`` go to the
worker's executor.

Ids are deterministic (``lineagerun.core.ids``): a task's id is derived from
its parent task and the parent's submission counter, so a retried or replayed
parent submits the same ids again.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import itertools
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable

import grpc

from lineagerun import exceptions
from lineagerun.api.object_ref import ObjectRef
from lineagerun.core.ids import ActorID, FunctionID, JobID, ObjectID, TaskID, WorkerID
from lineagerun.rpc import lineage_pb2, node_pb2, node_pb2_grpc
from lineagerun.transport.channels import make_channel
from lineagerun.transport.errors import from_rpc_error
from lineagerun.worker import payloads
from lineagerun.worker.object_reads import ObjectReads
from lineagerun.worker.outbox import next_stream_message

# Own small puts kept to answer get() without a round trip (entries).
LOCAL_OBJECTS_MAX = 10_000
# Objects released in one ReleaseObjects message at most.
RELEASE_BATCH_MAX = 10_000
# A worker forgets escaped ids of refs it does not own past this many.
ESCAPED_PRUNE_AT = 100_000
# How often an idle sender looks for dropped refs to release.
RELEASE_INTERVAL_S = 0.05
# Waiting for Registered after opening the stream.
REGISTER_TIMEOUT_S = 30.0
# A closing TCP driver waits this long for the node to end the stream
# cleanly (else the node keeps the session for a reconnect).
CLOSE_DRAIN_S = 2.0
# Default inline threshold until Registered says otherwise (100 KiB).
DEFAULT_INLINE_MAX_BYTES = 100 * 1024

# The task this thread / coroutine is running (None in a driver).
current_task: contextvars.ContextVar = contextvars.ContextVar("lineagerun_current_task", default=None)


class SessionClosedError(exceptions.LineagerunError):
    pass


class CoreWorker(ObjectReads):
    """A driver's or worker's session with its node manager."""

    def __init__(self, address: str, token: str | None, *, kind: int, worker_id: WorkerID,
                 job_id: JobID | None = None, namespace: str = "",
                 on_node_message: Callable[[node_pb2.NodeMessage], None] | None = None,
                 on_closed: Callable[[], None] | None = None):
        self.address = address
        # Wraps a get/wait that may block; a worker's executor hands back its
        # not-started tasks there first (executor.py).
        self.blocking: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        self.kind = kind
        self.worker_id = worker_id
        self.namespace = namespace
        self.job_id: JobID | None = job_id
        self.node_id_hex = ""
        self.store_session_id = ""
        self.session_dir = ""
        self.control_store_address = ""
        self.inline_max_bytes = DEFAULT_INLINE_MAX_BYTES
        self.driver_task_id: TaskID | None = None
        self._token = token
        self._on_node_message = on_node_message
        self._on_closed = on_closed
        self._channel = None
        self._outbox: collections.deque = collections.deque()
        self._outbox_cv = threading.Condition()
        self._closing = False
        self._closed = threading.Event()
        self._registered: Future = Future()
        self._futures: dict[int, Future] = {}
        self._futures_lock = threading.Lock()
        self._request_ids = itertools.count(1)
        self._counters_lock = threading.Lock()
        self._submission_counts: dict[bytes, int] = {}
        self._put_counts: dict[bytes, int] = {}
        self._exported: set[bytes] = set()
        self.exported_bodies: dict[bytes, tuple[bytes, str]] = {}
        self._local_objects: dict[bytes, node_pb2.ObjectPayload] = {}
        self._reader: threading.Thread | None = None
        # Completes ObjectRef.future()s (object_reads.py); its thread starts on first use.
        self._completions = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lr-futures")
        self._ref_events = None
        self._ref_counts: dict[bytes, int] = {}
        self._escaped: set[bytes] = set()
        self._keep_escaped = False
        # Owned objects known to be in the node's shared-memory store, and
        # dropped refs not released yet (_queue_releases).
        self._in_store: set[bytes] = set()
        self._release_pending: list[bytes] = []
        self._released_s = 0.0
        # A TCP driver reconnects after its stream breaks (session_resume.py);
        # each stream has a generation, a superseded one stops sending.
        self._resume = None
        self._generation = 0
        self._reconnecting = False
        self._stream = None

    # ------------------------------------------------------------ session

    def connect(self, timeout_s: float = REGISTER_TIMEOUT_S) -> None:
        self._channel = make_channel(self.address, self._token)
        if self.kind == node_pb2.Register.DRIVER and not self.address.startswith("unix:"):
            from lineagerun.worker.session_resume import SessionResume

            self._resume = SessionResume(self)
        try:
            registered = self._open_stream(timeout_s)
            if self._resume is not None:
                self._resume.start_watchdog()
        except TimeoutError:
            self.close()
            raise exceptions.ConfigurationError(
                f"the node manager at {self.address} did not answer Register within {timeout_s:.0f} s") from None
        self.node_id_hex = registered.node_id.hex()
        if registered.job_id:
            self.job_id = JobID(registered.job_id)
        self.store_session_id = registered.store_session_id
        self.session_dir = registered.session_dir
        self.control_store_address = registered.control_store_address
        if registered.inline_object_max_bytes:
            self.inline_max_bytes = registered.inline_object_max_bytes
        if self.job_id is not None:
            self.driver_task_id = TaskID.for_driver(self.job_id)

    def _open_stream(self, timeout_s: float, replay: list | tuple = ()) -> node_pb2.Registered:
        """A new Session stream: Register, then ``replay``, then the outbox."""
        register = node_pb2.Register(worker_id=self.worker_id.binary(), pid=os.getpid(), kind=self.kind,
                                     job_id=self.job_id.binary() if self.job_id else b"",
                                     namespace=self.namespace, accepts_batches=True)
        registered: Future = Future()
        with self._outbox_cv:
            self._generation += 1
            generation = self._generation
            self._registered = registered
            self._outbox_cv.notify_all()  # the previous stream's sender stops
        stub = node_pb2_grpc.NodeManagerStub(self._channel)
        responses = stub.Session(self._requests(generation, [node_pb2.ClientMessage(register=register), *replay]))
        self._stream = responses  # cancelled by the resume watchdog when the link goes silent
        self._reader = threading.Thread(target=self._read, args=(responses, generation, registered),
                                        name="lineagerun-session", daemon=True)
        self._reader.start()
        return registered.result(timeout=timeout_s)

    def _reopen(self, timeout_s: float) -> None:
        """One reconnect attempt (``SessionResume.reconnect``)."""
        old, self._channel = self._channel, make_channel(self.address, self._token)
        if old is not None:
            old.close()
        try:
            registered = self._open_stream(timeout_s, self._resume.replay())
        except TimeoutError:
            raise exceptions.UnavailableError(f"node manager {self.address} did not answer Register within "
                                              f"{timeout_s:.1f} s") from None
        if registered.node_id.hex() != self.node_id_hex:
            raise exceptions.NodeConnectionLostError(
                f"{self.address} is now node {registered.node_id.hex()[:12]}, not {self.node_id_hex[:12]}: "
                f"the driver's node restarted and its work for this driver is gone")

    def _probe(self) -> None:
        """A cheap request whose answer shows the link is alive (not resent)."""
        request_id = next(self._request_ids)
        with self._futures_lock:
            self._futures[request_id] = Future()
        try:
            self._send(node_pb2.ClientMessage(cluster_info=node_pb2.ClusterInfoRequest(request_id=request_id)))
        except exceptions.LineagerunError:
            pass

    def _cancel_stream(self) -> None:
        """End a stream that went silent: its reader then reconnects."""
        stream = self._stream
        if stream is not None:
            stream.cancel()

    def _resume_after(self, broken, generation: int, registered: Future) -> bool:
        """True: the reader of a broken stream ends quietly (superseded, an
        attempt of the reconnect loop, or the session resumed on a new one)."""
        if self._closing:
            return False
        if generation != self._generation:
            return True
        if self._reconnecting and not (registered.done() and registered.exception() is None):
            if not registered.done():  # the attempt fails through its future
                registered.set_exception(exceptions.UnavailableError("the stream ended before Register"))
            return True
        if broken is None or not (registered.done() and registered.exception() is None):
            return False  # the node ended the session, or the first connect failed
        deadline_s = time.monotonic() + 1.0
        while self._reconnecting and time.monotonic() < deadline_s:
            time.sleep(0.01)  # a resumed stream broke while its loop was ending
        self._reconnecting = True
        try:
            if self._resume.reconnect(broken):
                return True
        finally:
            self._reconnecting = False
        if self._resume.lost is not None:
            with self._outbox_cv:
                self._closing = True
                self._outbox_cv.notify_all()
            self._fail_pending(self._resume.lost)
        return False

    def fetch_function(self, function_id: bytes) -> lineage_pb2.FunctionRecord | None:
        """A function's record from the control store (``fn/<id>``)."""
        if not self.control_store_address:
            return None
        from lineagerun.control.client import ControlStoreClient
        from lineagerun.core.keys import function_key
        from lineagerun.node.store_dial import store_dial

        # A worker dials replicas as its node does (inherited from the node's
        # environment): through the node's own proxies in a chaos cluster,
        # so isolating the node cuts this read too.
        client = ControlStoreClient(self.control_store_address, self._token, address_map=store_dial())
        try:
            data = client.get(function_key(FunctionID(function_id)))
        finally:
            client.close()
        return lineage_pb2.FunctionRecord.FromString(data) if data is not None else None

    def close(self) -> None:
        if self._ref_events is not None:
            from lineagerun.api import object_ref

            if object_ref.ref_events is self._ref_events:
                object_ref.ref_events = None
            if object_ref.escaped_ids is self._escaped:
                object_ref.escaped_ids = None
        with self._outbox_cv:
            self._closing = True
            self._outbox_cv.notify_all()
        if self._resume is not None and self._reader is not None and self._reader is not threading.current_thread():
            # The stream ends cleanly (the node does not keep the session for a
            # reconnect) once the node has read the end of the requests.
            self._reader.join(timeout=CLOSE_DRAIN_S)
        if self._channel is not None:
            self._channel.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)
        self._fail_pending(SessionClosedError("the session with the node manager is closed"))
        self._completions.shutdown(wait=False)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def track_refs(self, keep_escaped: bool = False) -> None:
        """Release objects when this process drops its last ref to them (so
        the store may evict them), as Ray's reference counting does for
        owners. ``keep_escaped`` (workers): an object whose ref left the
        process inside something it pickled is never released, because
        another process may borrow it and a worker's put cannot be rebuilt
        without re-running its task (a driver releases those too and relies
        on the arguments' pins and lineage, docs/objects.md)."""
        import queue

        from lineagerun.api import object_ref

        self._ref_events = queue.SimpleQueue()
        object_ref.ref_events = self._ref_events
        if keep_escaped:
            self._keep_escaped = True
            self._escaped = object_ref.escaped_ids = set()

    def _dropped_refs(self, store_only: bool = False) -> list[bytes]:
        """Objects to release now (the caller holds the outbox lock).
        ``store_only``: none unless one of them is in the shared-memory
        store; the others wait for the next release."""
        events = self._ref_events
        if events is None:
            return []
        counts = self._ref_counts
        zero = []
        while not events.empty() and len(zero) < RELEASE_BATCH_MAX:
            made, object_id = events.get_nowait()
            count = counts.get(object_id, 0) + (1 if made else -1)
            if count > 0:
                counts[object_id] = count
            else:
                counts.pop(object_id, None)
                if count == 0:
                    zero.append(object_id)
        escaped = self._escaped
        released = [object_id for object_id in zero if object_id not in counts and object_id not in escaped]
        if self._release_pending:
            released = [object_id for object_id in self._release_pending if object_id not in counts] + released
            self._release_pending = []
        if store_only and not any(object_id in self._in_store for object_id in released) \
                and len(released) < RELEASE_BATCH_MAX:
            self._release_pending = released
            return []
        if self._in_store:
            self._in_store.difference_update(released)
            self._in_store.difference_update(zero)
        if escaped:
            escaped.difference_update(zero)  # kept pinned for good; no live ref can escape again
            if len(escaped) > ESCAPED_PRUNE_AT and events.empty():
                # Every ref made before the check is counted: the others were
                # borrowed (one made and pickled meanwhile is not in the copy).
                escaped.difference_update([object_id for object_id in list(escaped) if object_id not in counts])
        return released

    def _requests(self, generation: int = 0, first: list | tuple = ()):
        yield from first
        resume = self._resume
        while True:
            message = self._next_message(generation)
            if message is None:
                return
            if resume is not None:
                resume.sent(message)
            yield message

    def _next_message(self, generation: int = 0) -> node_pb2.ClientMessage | None:
        """The next message to send (None: the session is closing, or this
        stream was superseded). An idle wait wakes every RELEASE_INTERVAL_S
        to release dropped refs."""
        with self._outbox_cv:
            while True:
                if generation != self._generation:
                    return None
                if self._outbox:
                    now_s = time.monotonic()
                    if self._ref_events is not None and now_s - self._released_s > RELEASE_INTERVAL_S:
                        # Busy: queue the release after what is already queued,
                        # which may still name these objects.
                        self._released_s = now_s
                        released = self._dropped_refs()
                        if released:
                            self._outbox.append(node_pb2.ClientMessage(
                                release_objects=node_pb2.ReleaseObjects(object_ids=released)))
                    return next_stream_message(self._outbox)
                if self._closing:
                    return None
                if not self._outbox_cv.wait(RELEASE_INTERVAL_S):
                    self._released_s = time.monotonic()
                    released = self._dropped_refs()
                    if released:
                        return node_pb2.ClientMessage(release_objects=node_pb2.ReleaseObjects(object_ids=released))

    def _send(self, message: node_pb2.ClientMessage) -> None:
        with self._outbox_cv:
            if self._closing:
                if self._resume is not None and self._resume.lost is not None:
                    raise self._resume.lost
                raise SessionClosedError("the session with the node manager is closed; call lineagerun.init()")
            self._outbox.append(message)
            self._outbox_cv.notify()

    def send(self, message: node_pb2.ClientMessage) -> None:
        self._send(message)

    def _read(self, responses, generation: int = 0, registered: Future | None = None) -> None:
        registered = registered or self._registered
        broken = None
        resume = self._resume
        try:
            for message in responses:
                if resume is not None:
                    resume.last_heard_s = time.monotonic()
                self._dispatch(message)
        except grpc.RpcError as err:
            broken = err
            if not self._closing:
                error = from_rpc_error(err, what=f"session with node manager {self.address}")
                if not registered.done():
                    registered.set_exception(error)
        finally:
            if self._resume is not None and self._resume_after(broken, generation, registered):
                return
            self._closed.set()
            self._fail_pending(SessionClosedError(f"the session with node manager {self.address} ended"))
            if not self._registered.done():
                self._registered.set_exception(SessionClosedError(f"node manager {self.address} closed the session"))
            if self._on_closed is not None and not self._closing:
                self._on_closed()

    def _dispatch(self, message: node_pb2.NodeMessage) -> None:
        kind = message.WhichOneof("kind")
        if kind == "batch":
            for one in message.batch.messages:
                self._dispatch(one)
            return
        if kind == "registered":
            if not self._registered.done():
                self._registered.set_result(message.registered)
        elif kind in ("objects_reply", "wait_reply", "actor_info", "cluster_info"):
            self._complete(getattr(message, kind).request_id, getattr(message, kind))
        elif kind == "request_error":
            error = message.request_error
            cls = getattr(exceptions, error.error_kind, None)
            if not (isinstance(cls, type) and issubclass(cls, BaseException)):
                cls = exceptions.LineagerunError
            try:
                failure = cls(error.message)
            except TypeError:
                failure = exceptions.LineagerunError(f"{error.error_kind}: {error.message}")
            self._complete(error.request_id, failure, failed=True)
        elif self._on_node_message is not None:
            self._on_node_message(message)

    def _complete(self, request_id: int, value: Any, failed: bool = False) -> None:
        with self._futures_lock:
            future = self._futures.pop(request_id, None)
            if self._resume is not None:
                self._resume.requests.pop(request_id, None)
        if future is None:
            return
        if failed:
            future.set_exception(value)
        else:
            future.set_result(value)

    def _fail_pending(self, error: BaseException) -> None:
        with self._futures_lock:
            pending, self._futures = self._futures, {}
            if self._resume is not None:
                self._resume.requests.clear()
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def _request(self, build: Callable[[int], node_pb2.ClientMessage], timeout_s: float | None = None):
        return self._request_future(build).result(timeout=timeout_s)

    def _request_future(self, build: Callable[[int], node_pb2.ClientMessage]) -> Future:
        """Send the request ``build(request_id)``; its answer's future."""
        request_id = next(self._request_ids)
        future: Future = Future()
        with self._futures_lock:
            self._futures[request_id] = future
        if self._closed.is_set():
            self._complete(request_id, SessionClosedError("the session with the node manager ended"), failed=True)
        else:
            message = build(request_id)
            if self._resume is not None:  # resent if the stream breaks before the answer
                with self._futures_lock:
                    self._resume.requests[request_id] = message
            self._send(message)
        return future

    # ----------------------------------------------------------- identity

    def current_task_id(self) -> TaskID:
        task = current_task.get()
        if task is not None:
            return task.task_id
        if self.driver_task_id is None:
            raise exceptions.ConfigurationError("this process runs no task: it is not a driver and no task is running")
        return self.driver_task_id

    def current_job_id(self) -> JobID:
        task = current_task.get()
        if task is not None:
            return task.job_id
        return self.job_id

    def _next_index(self, counts: dict[bytes, int], parent: TaskID) -> int:
        key = parent.binary()
        with self._counters_lock:
            index = counts.get(key, 0) + 1
            counts[key] = index
        return index

    # ------------------------------------------------------------ exports

    def export_function(self, body: bytes, name: str, module: str, is_actor_class: bool) -> bytes:
        function_id = FunctionID.for_body(body).binary()
        with self._counters_lock:
            first = function_id not in self._exported
            self._exported.add(function_id)
            # A node manager may count a function as known to the process
            # that exported it: keep the body for this process's executor.
            self.exported_bodies[function_id] = (body, name)
        if first:
            record = lineage_pb2.FunctionRecord(function_id=function_id, name=name, module=module, body=body,
                                                is_actor_class=is_actor_class,
                                                job_id=self.current_job_id().binary())
            self._send(node_pb2.ClientMessage(export_function=node_pb2.ExportFunction(function=record)))
        return function_id

    # ---------------------------------------------------------- arguments

    def _task_arg(self, value: Any) -> lineage_pb2.TaskArg:
        if type(value) is ObjectRef:
            if self._keep_escaped:
                # A worker keeps it: a task forwarded to another node, or a
                # call queued behind others, is not pinned here all along.
                self._escaped.add(value.binary())
            return lineage_pb2.TaskArg(object_id=value.binary())
        serialized = payloads.serialize_value(value)
        if serialized.total_bytes > self.inline_max_bytes:
            return lineage_pb2.TaskArg(object_id=self._put_serialized(serialized).binary())
        return lineage_pb2.TaskArg(value=serialized.to_bytes(), nested_object_ids=list(serialized.contained_ids))

    # --------------------------------------------------------- submission

    def submit(self, spec: lineage_pb2.TaskSpec, args: Iterable[Any], kwargs: dict[str, Any], *,
               actor_id: ActorID | None = None) -> list[ObjectRef]:
        """Fill in ids, parent, arguments and send ``spec``; returns the refs
        of its return values. ``spec`` says whether it is a normal task, an
        actor creation (``actor_id`` given, created by the caller with
        ``new_actor_id``) or an actor task."""
        spec.args.extend(self._task_arg(value) for value in args)
        for name, value in kwargs.items():
            spec.kwargs.add(name=name, arg=self._task_arg(value))
        parent = self.current_task_id()
        job_id = self.current_job_id()
        if spec.is_actor_creation:
            task_id = TaskID.for_actor_creation(actor_id)
        else:
            index = self._next_index(self._submission_counts, parent)
            spec.submission_index = index
            if spec.is_actor_task:
                task_id = TaskID.for_actor_task(job_id, parent, index, actor_id)
            else:
                task_id = TaskID.for_normal_task(job_id, parent, index)
        spec.task_id = task_id.binary()
        spec.job_id = job_id.binary()
        spec.parent_task_id = parent.binary()
        spec.owner_worker_id = self.worker_id.binary()
        spec.submitted_ms = int(time.time() * 1000)
        self._queue_releases(store_only=True)
        self._send(node_pb2.ClientMessage(submit_tasks=node_pb2.SubmitTasks(specs=[spec])))
        return [ObjectRef._owned(ObjectID.from_index(task_id, i)) for i in range(1, spec.num_returns + 1)]

    def new_actor_id(self) -> tuple[ActorID, int]:
        """The id of an actor created by the current task's next submission."""
        parent = self.current_task_id()
        index = self._next_index(self._submission_counts, parent)
        return ActorID.of(self.current_job_id(), parent, index), index

    # ---------------------------------------------------------- put / get

    def put(self, value: Any) -> ObjectRef:
        if type(value) is ObjectRef:
            raise exceptions.InvalidArgumentError(
                "put() of an ObjectRef is not allowed (as in Ray): pass the ref itself, or put a list "
                "containing it")
        return self._put_serialized(payloads.serialize_value(value))

    def _queue_releases(self, store_only: bool = False) -> None:
        """Release dropped refs now: all of them before a large put needs
        their room; with ``store_only`` (at a submission) only if one names
        an object in the node's shared-memory store, else they wait for the
        sender's next release (up to RELEASE_INTERVAL_S), so a loop that
        makes and drops large objects reuses the store's room instead of
        filling it."""
        events = self._ref_events
        if events is None or (store_only and (not self._in_store or events.empty())):
            return
        with self._outbox_cv:
            released = self._dropped_refs(store_only=store_only)
            if released:
                self._outbox.append(node_pb2.ClientMessage(
                    release_objects=node_pb2.ReleaseObjects(object_ids=released)))
                self._outbox_cv.notify()

    def _put_serialized(self, serialized) -> ObjectRef:
        if serialized.total_bytes > self.inline_max_bytes:
            self._queue_releases()
        object_id = ObjectID.for_put(self.current_task_id(),
                                     self._next_index(self._put_counts, self.current_task_id()))
        payload = payloads.to_payload(serialized, object_id.binary(), self.store_session_id, self.inline_max_bytes)
        if payload.WhichOneof("kind") == "inline":
            self._remember(object_id.binary(), payload)
        elif self._ref_events is not None:
            self._in_store.add(object_id.binary())
        self._send(node_pb2.ClientMessage(put_object=node_pb2.PutObject(object_id=object_id.binary(),
                                                                         payload=payload)))
        return ObjectRef._owned(object_id)

    def _remember(self, object_id: bytes, payload: node_pb2.ObjectPayload) -> None:
        with self._counters_lock:
            if len(self._local_objects) >= LOCAL_OBJECTS_MAX:
                self._local_objects.pop(next(iter(self._local_objects)))
            self._local_objects[object_id] = payload

    # ------------------------------------------------- cancel, actors, info

    def cancel(self, task_id: TaskID, force: bool, recursive: bool) -> None:
        self._send(node_pb2.ClientMessage(cancel_task=node_pb2.CancelTask(
            task_id=task_id.binary(), force=force, recursive=recursive, request_id=next(self._request_ids))))

    def kill_actor(self, actor_id: ActorID, no_restart: bool) -> None:
        self._send(node_pb2.ClientMessage(kill_actor=node_pb2.KillActor(
            actor_id=actor_id.binary(), no_restart=no_restart, request_id=next(self._request_ids))))

    def get_actor_info(self, name: str, namespace: str) -> node_pb2.ActorInfo:
        return self._request(lambda rid: node_pb2.ClientMessage(get_actor=node_pb2.GetActorRequest(
            request_id=rid, name=name, namespace=namespace)))

    def cluster_info(self) -> node_pb2.ClusterInfoReply:
        return self._request(lambda rid: node_pb2.ClientMessage(
            cluster_info=node_pb2.ClusterInfoRequest(request_id=rid)))

    def release(self, object_ids: list[bytes]) -> None:
        if object_ids and not self._closing:
            self._send(node_pb2.ClientMessage(release_objects=node_pb2.ReleaseObjects(object_ids=object_ids)))
