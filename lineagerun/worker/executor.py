"""Running tasks and actor methods inside a worker process.

Normal tasks and sequential actors run one at a time on the worker's main
thread, in the order the node manager sends them. An actor created with
``max_concurrency > 1`` runs its calls on a thread pool of that size; an
actor with ``async def`` methods runs them on one event loop (at most
``max_concurrency`` at once). Every call answers one ``TaskFinished``.

A normal task may arrive while another runs (the node's second slot,
core/local_scheduler.py): it waits here and starts when the current one
ends. Before the running task blocks in ``get``/``wait`` the worker hands
every task it has not started back to the node (``TaskHandedBack``), and
hands back at once any that arrives while it waits, so a parent never waits
for a child queued behind it. A task cancelled before it started answers
cancelled without running.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import inspect
import os
import queue
import signal
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cloudpickle

from lineagerun import exceptions
from lineagerun.core.ids import ActorID, JobID, TaskID
from lineagerun.core.resources import RESOURCE_UNIT_SCALING
from lineagerun.rpc import lineage_pb2, node_pb2
from lineagerun.worker import log_capture, payloads
from lineagerun.worker.core_worker import CoreWorker, current_task

# Ray's default concurrency of an async actor that names none.
ASYNC_ACTOR_CONCURRENCY_DEFAULT = 1000
# Actor checkpoints (lineagerun.node.actor_recovery_driver): the node manager
# asks for the state with a call of CHECKPOINT_METHOD and stores the value in
# the control store, so it always comes back inline, whatever its size (the
# control store takes values up to 16 MiB; a larger checkpoint fails there).
CHECKPOINT_METHOD = "__lineagerun_checkpoint__"
RESTORE_METHOD = "__lineagerun_restore__"
CHECKPOINT_INLINE_MAX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class RunningTask:
    task_id: TaskID
    job_id: JobID
    actor_id: ActorID | None
    name: str
    is_replay: bool = False  # an actor restart re-running a recorded call (or the constructor)
    resources: tuple = ()  # (name, amount) it holds: a task's demand, an actor's lifetime resources


class Executor:
    def __init__(self, core: CoreWorker):
        self.core = core
        self._functions: dict[bytes, Any] = {}
        self._names: dict[bytes, str] = {}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._instance: Any = None
        self._actor_id: ActorID | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._running_lock = threading.Lock()
        self._running_threads: dict[bytes, int] = {}  # task id -> thread ident
        self._running_coroutines: dict[bytes, asyncio.Task] = {}
        self._cancelled: set[bytes] = set()
        self._main_ident: int | None = None
        self._cancel_main: bytes | None = None
        # The second slot: normal tasks sent but not started (under _running_lock).
        self._not_started: list[node_pb2.ExecuteTask] = []
        self._main_busy = False  # the main thread runs a task
        self._waiting = 0  # get/wait calls in progress while it does
        self._exiting = False  # a method called exit_actor(): nothing more runs here
        self._calls: dict[bytes, int] = {}  # function id -> calls run, for max_calls
        self._actor_resources: tuple = ()
        core.blocking = self._handing_back

    # ------------------------------------------------------------ intake

    def on_node_message(self, message: node_pb2.NodeMessage) -> None:
        """Called on the session's reader thread: hand off, never block."""
        kind = message.WhichOneof("kind")
        if kind == "execute_task":
            self._dispatch(message.execute_task)
        elif kind == "cancel_running":
            self._cancel(message.cancel_running.task_id)
        elif kind == "exit":
            self._queue.put(None)

    def on_closed(self) -> None:
        self._queue.put(None)

    def _dispatch(self, execute: node_pb2.ExecuteTask) -> None:
        spec = execute.spec
        if spec.is_actor_task and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._run_async(execute), self._loop)
        elif spec.is_actor_task and self._pool is not None:
            self._pool.submit(self._run, execute)
        elif _may_hand_back(spec):
            with self._running_lock:
                if not (self._main_busy and self._waiting):
                    self._not_started.append(execute)
                    self._queue.put(execute)
                    return
            self._hand_back([execute])  # the running task waits: it must not wait behind this one
        else:
            self._queue.put(execute)

    def run_forever(self) -> None:
        self._main_ident = threading.get_ident()
        signal.signal(signal.SIGUSR1, self._on_cancel_signal)
        while True:
            execute = self._queue.get()
            if execute is None:
                return
            with self._running_lock:
                if _may_hand_back(execute.spec):
                    if not any(e is execute for e in self._not_started):
                        continue  # handed back or cancelled before it started
                    self._not_started = [e for e in self._not_started if e is not execute]
                self._main_busy = True
                cancelled = _may_hand_back(execute.spec) and execute.spec.task_id in self._cancelled
            try:
                if cancelled:
                    error = exceptions.TaskCancelledError(f"task {execute.spec.task_id.hex()} was cancelled")
                    self.core.send(node_pb2.ClientMessage(task_finished=self._failed(execute, error)))
                else:
                    self._run(execute)
            finally:
                with self._running_lock:
                    self._main_busy = False

    @contextlib.contextmanager
    def _handing_back(self):
        """Around a get/wait of a running task (CoreWorker.blocking)."""
        with self._running_lock:
            self._waiting += 1
            if self._main_busy:
                handed, self._not_started = self._not_started, []
            else:
                handed = []
        self._hand_back(handed)
        try:
            yield
        finally:
            with self._running_lock:
                self._waiting -= 1

    def _hand_back(self, executes: list[node_pb2.ExecuteTask]) -> None:
        for execute in executes:
            self.core.send(node_pb2.ClientMessage(task_handed_back=node_pb2.TaskHandedBack(
                task_id=execute.spec.task_id, attempt_number=execute.attempt_number)))

    # --------------------------------------------------------- execution

    def _function(self, execute: node_pb2.ExecuteTask) -> Any:
        spec = execute.spec
        if execute.HasField("function") and execute.function.function_id not in self._functions:
            record = execute.function
            self._functions[record.function_id] = cloudpickle.loads(record.body)
            self._names[record.function_id] = record.name
        if spec.function_id not in self._functions:
            self._load_function(spec.function_id)
        try:
            return self._functions[spec.function_id]
        except KeyError:
            raise exceptions.ConfigurationError(
                f"worker {self.core.worker_id.hex()[:8]} was asked to run function {spec.function_id.hex()[:8]} "
                "without its body") from None

    def _load_function(self, function_id: bytes) -> None:
        """A body the node manager did not send: this process exported it
        itself, or it is in the control store."""
        exported = self.core.exported_bodies.get(function_id)
        if exported is not None:
            body, name = exported
        else:
            record = self.core.fetch_function(function_id)
            if record is None:
                return
            body, name = record.body, record.name
        self._functions[function_id] = cloudpickle.loads(body)
        self._names[function_id] = name

    def _task_name(self, spec: lineage_pb2.TaskSpec) -> str:
        if spec.is_actor_task:
            return f"{type(self._instance).__name__}.{spec.method_name}"
        return spec.options.name or self._names.get(spec.function_id, spec.function_id.hex()[:8])

    def _arguments(self, execute: node_pb2.ExecuteTask) -> tuple[list, dict]:
        spec = execute.spec
        args = [self._argument(spec.args[i], execute.args[i] if i < len(execute.args) else None)
                for i in range(len(spec.args))]
        kwargs = {}
        for i, keyword in enumerate(spec.kwargs):
            kwargs[keyword.name] = self._argument(keyword.arg, execute.kwargs[i] if i < len(execute.kwargs) else None)
        return args, kwargs

    def _argument(self, arg: lineage_pb2.TaskArg, resolved: node_pb2.ResolvedArg | None) -> Any:
        if resolved is not None and resolved.payload.WhichOneof("kind"):
            value = payloads.from_payload(resolved.payload, arg.object_id.hex())
            if resolved.payload.is_error:
                raise _ArgumentError(value)
            return value
        if arg.WhichOneof("kind") == "value":
            return payloads.from_payload(node_pb2.ObjectPayload(inline=arg.value))
        from lineagerun.api.object_ref import ObjectRef

        return self.core.get_one(ObjectRef(arg.object_id))

    def _call(self, execute: node_pb2.ExecuteTask, args: list, kwargs: dict) -> Any:
        spec = execute.spec
        if spec.is_actor_task:
            return getattr(self._instance, spec.method_name)(*args, **kwargs)
        function = self._function(execute)
        if spec.is_actor_creation:
            self._become_actor(spec, function, args, kwargs)
            if execute.HasField("restore_checkpoint"):
                # A restart: the state after the last checkpoint, before the replay of later calls.
                state = payloads.from_payload(execute.restore_checkpoint)
                getattr(self._instance, RESTORE_METHOD)(state)
            return None
        return function(*args, **kwargs)

    def _become_actor(self, spec: lineage_pb2.TaskSpec, cls: type, args: list, kwargs: dict) -> None:
        self._instance = cls(*args, **kwargs)
        self._actor_id = ActorID(spec.actor_id) if spec.actor_id else TaskID(spec.task_id).actor_id()
        self._actor_resources = _held_resources(spec)
        is_async = any(inspect.iscoroutinefunction(member) for _, member in inspect.getmembers(cls))
        if is_async:
            concurrency = spec.max_concurrency or ASYNC_ACTOR_CONCURRENCY_DEFAULT
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="lineagerun-actor-loop", daemon=True).start()
            self._semaphore = asyncio.Semaphore(concurrency)
        elif spec.max_concurrency > 1:
            self._pool = ThreadPoolExecutor(spec.max_concurrency, thread_name_prefix="lineagerun-actor")

    def _running(self, execute: node_pb2.ExecuteTask) -> RunningTask:
        spec = execute.spec
        actor_id = self._actor_id
        if spec.is_actor_creation or spec.is_actor_task:
            actor_id = TaskID(spec.task_id).actor_id()
        resources = self._actor_resources if spec.is_actor_task else _held_resources(spec)
        return RunningTask(TaskID(spec.task_id), JobID(spec.job_id), actor_id, "", execute.is_replay, resources)

    def _run(self, execute: node_pb2.ExecuteTask) -> None:
        spec = execute.spec
        if self._exiting:
            return  # exit_actor() was called: the node fails it with the actor's death
        token = current_task.set(self._running(execute))
        started_s = time.monotonic()
        with self._running_lock:
            self._running_threads[spec.task_id] = threading.get_ident()
        try:
            try:
                if execute.HasField("function"):
                    self._function(execute)  # cache the body even if an argument fails
                log_capture.mark_running(spec, self._task_name(spec))
                args, kwargs = self._arguments(execute)
                result = self._call(execute, args, kwargs)
            finally:
                with self._running_lock:
                    self._running_threads.pop(spec.task_id, None)
            finished = self._finished(execute, result)
        except (exceptions.ActorExitRequested, exceptions.AsyncioActorExit) as exc:
            actor_id = current_task.get().actor_id
            if actor_id is None:  # raised by hand in a plain task: an ordinary error
                finished = self._failed(execute, exc)
            else:
                if self._begin_exit():
                    self._exit_actor(actor_id)
                return
        except BaseException as exc:  # noqa: BLE001 - user code may raise anything
            finished = self._failed(execute, exc)
        finally:
            current_task.reset(token)
        finished.duration_ms = int((time.monotonic() - started_s) * 1000)
        if self._reached_max_calls(spec):
            # The node retires this worker: a task queued behind this one
            # must not start here (it goes back to the node's queue).
            with self._running_lock:
                handed, self._not_started = self._not_started, []
            self._hand_back(handed)
            finished.retire_worker = True
        self.core.send(node_pb2.ClientMessage(task_finished=finished))

    def _reached_max_calls(self, spec: lineage_pb2.TaskSpec) -> bool:
        """Whether this call was the last of the function's ``max_calls`` here."""
        limit = spec.options.max_calls
        if not limit or spec.is_actor_task or spec.is_actor_creation:
            return False
        count = self._calls[spec.function_id] = self._calls.get(spec.function_id, 0) + 1
        return count >= limit

    async def _run_async(self, execute: node_pb2.ExecuteTask) -> None:
        spec = execute.spec
        current_task.set(self._running(execute))
        started_s = time.monotonic()
        async with self._semaphore:
            if self._exiting:
                return  # waited for the semaphore: the node fails it with the actor's death
            try:
                args, kwargs = await asyncio.get_running_loop().run_in_executor(None, self._arguments, execute)
                method = getattr(self._instance, spec.method_name)
                if inspect.iscoroutinefunction(method):
                    task = asyncio.ensure_future(method(*args, **kwargs))
                    with self._running_lock:
                        self._running_coroutines[spec.task_id] = task
                    try:
                        result = await task
                    finally:
                        with self._running_lock:
                            self._running_coroutines.pop(spec.task_id, None)
                else:
                    result = method(*args, **kwargs)
                finished = await asyncio.get_running_loop().run_in_executor(None, self._finished, execute, result)
            except (exceptions.ActorExitRequested, exceptions.AsyncioActorExit):
                if self._begin_exit():  # the handlers off the loop: one may need it to finish its work
                    await asyncio.get_running_loop().run_in_executor(None, self._exit_actor, self._actor_id)
                return
            except BaseException as exc:  # noqa: BLE001
                if isinstance(exc, asyncio.CancelledError):
                    exc = exceptions.TaskCancelledError(f"task {spec.task_id.hex()} was cancelled")
                finished = self._failed(execute, exc)
        finished.duration_ms = int((time.monotonic() - started_s) * 1000)
        self.core.send(node_pb2.ClientMessage(task_finished=finished))

    def _begin_exit(self) -> bool:
        """A method called exit_actor(): from now on nothing more starts
        here. False if another call got there first."""
        with self._running_lock:
            first, self._exiting = not self._exiting, True
        return first

    def _exit_actor(self, actor_id: ActorID) -> None:
        """After ``_begin_exit``: this process's atexit handlers run, then
        the node is asked to end the actor for good. It fails the exiting
        call and every queued one with ActorDiedError and stops this process."""
        atexit._run_exitfuncs()
        self.core.send(node_pb2.ClientMessage(kill_actor=node_pb2.KillActor(
            actor_id=actor_id.binary(), no_restart=True, exiting=True)))

    # ------------------------------------------------------------ results

    def _finished(self, execute: node_pb2.ExecuteTask, result: Any) -> node_pb2.TaskFinished:
        spec = execute.spec
        count = spec.num_returns
        if spec.is_actor_creation:
            values = [None] * count
        elif count == 1:
            values = [result]
        elif count == 0:
            values = []
        else:
            values = list(result) if isinstance(result, (list, tuple)) else None
            if values is None or len(values) != count:
                raise exceptions.InvalidArgumentError(
                    f"task {self._task_name(spec)} has num_returns={count} but returned "
                    f"{type(result).__name__}{'' if values is None else f' of length {len(values)}'}: "
                    f"return a tuple or list of {count} values")
        finished = node_pb2.TaskFinished(task_id=spec.task_id, attempt_number=execute.attempt_number)
        task_id = TaskID(spec.task_id)
        from lineagerun.core.ids import ObjectID

        inline_max_bytes = self.core.inline_max_bytes
        if spec.is_actor_task and spec.method_name == CHECKPOINT_METHOD:
            inline_max_bytes = CHECKPOINT_INLINE_MAX_BYTES
        for index, value in enumerate(values, start=1):
            object_id = ObjectID.from_index(task_id, index).binary()
            serialized = payloads.serialize_value(value)
            payload = payloads.to_payload(serialized, object_id, self.core.store_session_id, inline_max_bytes)
            finished.returns.add(object_id=object_id, payload=payload)
        return finished

    def _failed(self, execute: node_pb2.ExecuteTask, exc: BaseException) -> node_pb2.TaskFinished:
        spec = execute.spec
        application_error = True
        if isinstance(exc, _ArgumentError):
            error, application_error = exc.error, False
        elif isinstance(exc, exceptions.TaskCancelledError) or spec.task_id in self._cancelled:
            error, application_error = exceptions.TaskCancelledError(
                f"task {self._task_name(spec)} ({spec.task_id.hex()}) was cancelled"), False
        else:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            error = exceptions.TaskError(self._task_name(spec), text, exc, os.getpid(), self.core.node_id_hex)
        kind = type(exc.error if isinstance(exc, _ArgumentError) else exc)
        finished = node_pb2.TaskFinished(task_id=spec.task_id, attempt_number=execute.attempt_number,
                                         application_error=application_error,
                                         error_kind=f"{kind.__module__}.{kind.__qualname__}")
        payload = payloads.error_payload(error)
        task_id = TaskID(spec.task_id)
        from lineagerun.core.ids import ObjectID

        for index in range(1, max(spec.num_returns, 0) + 1):
            finished.returns.add(object_id=ObjectID.from_index(task_id, index).binary(), payload=payload)
        return finished

    # -------------------------------------------------------- cancellation

    def _cancel(self, task_id: bytes) -> None:
        """Raise TaskCancelledError in the thread running the task (Ray does
        the same with a KeyboardInterrupt); a blocked C call sees it only
        when it returns to Python. Force kills are the node manager's."""
        with self._running_lock:
            self._cancelled.add(task_id)
            ident = self._running_threads.get(task_id)
            coroutine = self._running_coroutines.get(task_id)
        if coroutine is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(coroutine.cancel)
        elif ident is not None and ident == self._main_ident:
            # A signal interrupts a blocking call (sleep, wait) of the main
            # thread; its handler raises there.
            self._cancel_main = task_id
            signal.pthread_kill(ident, signal.SIGUSR1)
        elif ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                                       ctypes.py_object(exceptions.TaskCancelledError))


    def _on_cancel_signal(self, signum, frame) -> None:
        task_id, self._cancel_main = self._cancel_main, None
        with self._running_lock:
            running = task_id is not None and task_id in self._running_threads
        if running:
            raise exceptions.TaskCancelledError(f"task {task_id.hex()} was cancelled")


def _held_resources(spec: lineage_pb2.TaskSpec) -> tuple:
    """What the task holds while it runs (an actor creation: what the actor
    holds for life), as (name, amount) pairs."""
    return tuple((name, units / RESOURCE_UNIT_SCALING) for name, units in sorted(spec.resources.items()) if units)


def _may_hand_back(spec: lineage_pb2.TaskSpec) -> bool:
    """Normal tasks only: actor calls and creations never wait in a second slot."""
    return not spec.is_actor_task and not spec.is_actor_creation


class _ArgumentError(Exception):
    """An argument of the task is an error value: the task fails with it."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error
