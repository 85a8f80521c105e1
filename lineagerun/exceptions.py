"""The one exception hierarchy of lineagerun.

Names mirror Ray's (``ray.exceptions``) so that code written against Ray keeps
working after ``import lineagerun as ray``. Errors that cross the wire travel as
a typed code (``lineagerun.rpc.common_pb2.ErrorCode``) and come out on the
caller's side as the same class (see ``lineagerun.transport.errors``).
"""

from __future__ import annotations


class LineagerunError(Exception):
    """Base of every error raised by lineagerun (Ray: ``RayError``)."""


RayError = LineagerunError


# --------------------------------------------------------------- bad input


class InvalidArgumentError(LineagerunError, ValueError):
    """A caller passed something lineagerun cannot accept; the message says
    what and how to fix it. Nothing stored was changed."""


class ConfigurationError(LineagerunError):
    """A cluster or process was started with settings that cannot work."""


# -------------------------------------------------------------- transport


class RpcError(LineagerunError):
    """An RPC failed; ``code`` is the wire error code's name."""

    code = "INTERNAL"

    def __init__(self, message: str = "", *, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class AuthenticationError(RpcError):
    """The peer refused the call: missing or wrong cluster token."""

    code = "UNAUTHENTICATED"


class BadRequestError(RpcError, InvalidArgumentError):
    """The peer judged the request malformed or invalid."""

    code = "BAD_REQUEST"


class NotFoundError(RpcError, KeyError):
    code = "NOT_FOUND"

    def __str__(self) -> str:  # KeyError would repr() the message
        return Exception.__str__(self)


class RpcTimeoutError(RpcError, TimeoutError):
    code = "TIMEOUT"


class UnavailableError(RpcError):
    """The service cannot serve now (e.g. chain reconfiguring); retriable."""

    code = "UNAVAILABLE"


class NodeConnectionLostError(UnavailableError):
    """A driver lost its session with its node manager and could not reconnect within the bound
    (lineagerun.worker.session_resume.RECONNECT_TIMEOUT_S, 30 s)."""


# ----------------------------------------------------------- control store


class ControlStoreError(RpcError):
    """Base of control-store errors."""


class ControlStoreUnavailableError(ControlStoreError, UnavailableError):
    """The control store could not be reached within the client's deadline."""

    code = "UNAVAILABLE"


class ValueTooLargeError(ControlStoreError, InvalidArgumentError):
    """A key or value is over the configured size limit."""

    code = "VALUE_TOO_LARGE"


class WrongShardError(ControlStoreError):
    """A request reached a replica of another shard (stale routing)."""

    code = "WRONG_SHARD"


class NotHeadError(ControlStoreError):
    """A write reached a replica that is not its shard's head (retriable)."""

    code = "NOT_HEAD"


class NotTailError(ControlStoreError):
    """A read reached a replica that is not its shard's tail (retriable)."""

    code = "NOT_TAIL"


class StaleEpochError(ControlStoreError):
    """A message carried an older configuration epoch than the receiver's."""

    code = "STALE_EPOCH"


class ShardMismatchError(ControlStoreError, ConfigurationError):
    """A replica was started on a directory written by another shard or
    cluster; refusing it keeps that directory's data intact."""

    code = "SHARD_MISMATCH"


# ----------------------------------------------------------------- runtime


class TaskError(LineagerunError):
    """A task raised; ``get`` re-raises it as this (Ray: ``RayTaskError``).

    ``as_instanceof_cause`` builds a subclass that is also an instance of the
    user's exception class, so ``except ValueError`` still catches it.
    """

    def __init__(self, function_name: str, traceback_str: str, cause: BaseException | None = None,
                 pid: int | None = None, node_id: str | None = None):
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        self.node_id = node_id
        super().__init__(self._message())

    def _message(self) -> str:
        where = f" (pid={self.pid}, node={self.node_id})" if self.pid else ""
        return f"task {self.function_name}{where} raised:\n{self.traceback_str}"

    def __reduce__(self):
        return (_rebuild_task_error, (self.function_name, self.traceback_str, self.cause, self.pid, self.node_id))

    def as_instanceof_cause(self) -> "TaskError":
        cause_cls = type(self.cause) if self.cause is not None else None
        if cause_cls is None or issubclass(cause_cls, TaskError) or not issubclass(cause_cls, Exception):
            return self
        try:
            dual = type(f"TaskError({cause_cls.__name__})", (TaskError, cause_cls), {
                "__init__": lambda s, *a, **k: None,
                "__str__": lambda s: TaskError._message(s),
                "__reduce__": TaskError.__reduce__,
            })
            err = dual()
            err.function_name, err.traceback_str, err.cause = self.function_name, self.traceback_str, self.cause
            err.pid, err.node_id = self.pid, self.node_id
            err.args = (self._message(),)
            return err
        except TypeError:  # e.g. a cause class with an incompatible layout
            return self


def _rebuild_task_error(function_name, traceback_str, cause, pid, node_id):
    return TaskError(function_name, traceback_str, cause, pid, node_id).as_instanceof_cause()


RayTaskError = TaskError


class WorkerCrashedError(LineagerunError):
    """The worker running a task died and retries were exhausted."""


class ActorError(LineagerunError):
    """Base of actor failures (Ray: ``RayActorError``)."""


RayActorError = ActorError


class ActorDiedError(ActorError):
    """The actor is dead and will not be restarted."""


class ActorUnavailableError(ActorError):
    """The actor is temporarily unreachable (e.g. restarting)."""


class ActorExitRequested(SystemExit):
    """Raised by ``lineagerun.actor.exit_actor()`` inside an actor's method
    to end the actor for good. A ``SystemExit``, so ``except Exception`` in
    user code does not stop it. Not an error its callers see: they get
    ``ActorDiedError``."""


class AsyncioActorExit(LineagerunError):
    """What ``exit_actor()`` raises inside an async actor's coroutine (as
    Ray): asyncio lets a ``SystemExit`` out of the event loop itself, so
    there the signal is an ordinary exception."""


class ObjectLostError(LineagerunError):
    """Every copy of an object is gone and it could not be rebuilt."""

    def __init__(self, object_id: str = "", reason: str = ""):
        self.object_id = object_id
        self.reason = reason
        super().__init__(f"object {object_id} is lost: {reason}" if object_id else reason)


class ObjectReconstructionFailedError(ObjectLostError):
    """The object's lineage could not be replayed; the message says why."""


class OwnerDiedError(ObjectLostError):
    pass


class GetTimeoutError(LineagerunError, TimeoutError):
    """``get`` or ``wait`` ran out of time."""


class TaskCancelledError(LineagerunError):
    """The task was cancelled before it finished."""


class SerializationError(LineagerunError, TypeError):
    """A value could not be serialised (or deserialised); the message names
    the value and what to do."""


class NodeDiedError(LineagerunError):
    pass


class OutOfMemoryError(LineagerunError, MemoryError):
    """The object store is full of pinned objects."""


class ObjectStoreFullError(OutOfMemoryError):
    """The object store has no room: everything in it is pinned."""


class ObjectTooLargeError(ObjectStoreFullError, InvalidArgumentError):
    """An object is larger than the whole object store capacity; retrying cannot help."""


class InfeasibleTaskError(LineagerunError):
    """No node of the cluster can ever satisfy the task's resource demand."""


# Code name -> class, for errors that cross the wire. One entry per code in
# protos/lineagerun/rpc/common.proto.
ERROR_CLASSES_BY_CODE: dict[str, type[RpcError]] = {
    "UNAUTHENTICATED": AuthenticationError,
    "BAD_REQUEST": BadRequestError,
    "NOT_FOUND": NotFoundError,
    "VALUE_TOO_LARGE": ValueTooLargeError,
    "WRONG_SHARD": WrongShardError,
    "NOT_HEAD": NotHeadError,
    "NOT_TAIL": NotTailError,
    "STALE_EPOCH": StaleEpochError,
    "UNAVAILABLE": UnavailableError,
    "SHARD_MISMATCH": ShardMismatchError,
    "INTERNAL": RpcError,
    "TIMEOUT": RpcTimeoutError,
}
