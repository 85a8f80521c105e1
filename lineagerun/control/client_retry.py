"""Which control-store failures a client retries, and the bounded retry loop.

A failure is retried when it can be cured by waiting and/or by asking the
coordinator for the current chain configuration: the replica was not (or no
longer) the head or tail, its epoch differed from ours, it was unreachable,
or it did not answer in time. Every other error (bad input, wrong token, a
directory of another shard) is the caller's to see at once.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

import grpc
import tenacity

from lineagerun.exceptions import (
    ControlStoreUnavailableError,
    NotHeadError,
    NotTailError,
    RpcError,
    RpcTimeoutError,
    StaleEpochError,
    UnavailableError,
    WrongShardError,
)
from lineagerun.transport.errors import CODE_KEY, from_rpc_error

T = TypeVar("T")

# Backoff from 10 ms (docs/control-store.md) doubling up to this cap: the cap
# is well below the default failure timeout (1 s) so that a client notices a
# reconfigured chain within about one cap of the coordinator's decision.
BACKOFF_INITIAL_S = 0.010
BACKOFF_MAX_S = 0.200

# Errors cured by refreshing the configuration and trying again.
_ROUTING_ERRORS = (NotHeadError, NotTailError, StaleEpochError, WrongShardError)

# gRPC statuses (without a typed lineagerun code) that mean "the peer died or
# the connection broke", not "the request was bad".
_TRANSIENT_STATUSES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
})


class TransientError(Exception):
    """A retriable failure of one attempt; ``cause`` is the typed error."""

    def __init__(self, cause: BaseException, *, refresh_config: bool):
        super().__init__(str(cause))
        self.cause = cause
        self.refresh_config = refresh_config


def _has_typed_code(err: grpc.RpcError) -> bool:
    try:
        return any(key == CODE_KEY for key, _ in (err.trailing_metadata() or ()))
    except Exception:  # a call that never reached a server has no metadata
        return False


def classify(err: BaseException, *, what: str) -> BaseException:
    """The exception to raise for a failed attempt: a ``TransientError`` to
    retry, or the typed lineagerun error to hand to the caller."""
    if isinstance(err, grpc.RpcError):
        typed = from_rpc_error(err, what=what)
        if not _has_typed_code(err) and err.code() in _TRANSIENT_STATUSES:
            return TransientError(typed, refresh_config=True)
        err = typed
    if isinstance(err, _ROUTING_ERRORS):
        return TransientError(err, refresh_config=True)
    if isinstance(err, (UnavailableError, RpcTimeoutError)):
        return TransientError(err, refresh_config=True)
    return err


class _DeadlinePassed(RpcTimeoutError):
    pass


def retry_until(deadline_s: float, attempt: Callable[[float], T], *, what: str,
                on_transient: Callable[[TransientError], None]) -> T:
    """Call ``attempt(remaining_s)`` until it succeeds, raises a non-transient
    error, or ``deadline_s`` (a ``time.monotonic()`` instant) passes, in which
    case ``ControlStoreUnavailableError`` names the last failure."""

    last_failure: list[TransientError] = []

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError):
            last_failure[:] = [exc]
            on_transient(exc)

    def stop_at_deadline(state: tenacity.RetryCallState) -> bool:
        return time.monotonic() >= deadline_s

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientError),
        wait=tenacity.wait_random_exponential(multiplier=BACKOFF_INITIAL_S, max=BACKOFF_MAX_S),
        stop=stop_at_deadline,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        for attempt_state in retrying:
            with attempt_state:
                remaining_s = deadline_s - time.monotonic()
                if remaining_s <= 0:
                    raise TransientError(_DeadlinePassed(f"{what}: client deadline passed"),
                                         refresh_config=False)
                result = attempt(remaining_s)
    except TransientError as exc:
        if last_failure and isinstance(exc.cause, _DeadlinePassed):
            exc = last_failure[0]
        raise ControlStoreUnavailableError(
            f"{what}: the control store did not answer within the client deadline; last error: "
            f"{type(exc.cause).__name__}: {exc.cause}. Check `lineagerun control-store status`."
        ) from exc.cause
    return result


def call_once(fn: Callable[[], T], *, what: str) -> T:
    """Run one RPC, turning its failure into a ``TransientError`` or a typed
    lineagerun error."""
    try:
        return fn()
    except (grpc.RpcError, RpcError) as err:
        raise classify(err, what=what) from None
