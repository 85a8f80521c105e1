"""Typed errors across the wire.

A server aborts with a gRPC status plus trailing metadata ``lr-error-code``
(a name from ``common.proto``'s ``ErrorCode``) and ``lr-error-message``; the
client turns a ``grpc.RpcError`` back into the matching class of
``lineagerun.exceptions``.
"""

from __future__ import annotations

import grpc

from lineagerun.exceptions import (
    ERROR_CLASSES_BY_CODE,
    AuthenticationError,
    RpcError,
    RpcTimeoutError,
    UnavailableError,
)

CODE_KEY = "lr-error-code"
MESSAGE_KEY = "lr-error-message"

_STATUS_BY_CODE = {
    "UNAUTHENTICATED": grpc.StatusCode.UNAUTHENTICATED,
    "BAD_REQUEST": grpc.StatusCode.INVALID_ARGUMENT,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "VALUE_TOO_LARGE": grpc.StatusCode.INVALID_ARGUMENT,
    "WRONG_SHARD": grpc.StatusCode.FAILED_PRECONDITION,
    "NOT_HEAD": grpc.StatusCode.FAILED_PRECONDITION,
    "NOT_TAIL": grpc.StatusCode.FAILED_PRECONDITION,
    "STALE_EPOCH": grpc.StatusCode.FAILED_PRECONDITION,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "SHARD_MISMATCH": grpc.StatusCode.FAILED_PRECONDITION,
    "INTERNAL": grpc.StatusCode.INTERNAL,
    "TIMEOUT": grpc.StatusCode.DEADLINE_EXCEEDED,
}


def code_of(exc: BaseException) -> str:
    return getattr(exc, "code", "INTERNAL") if isinstance(exc, RpcError) else "INTERNAL"


def abort_args(exc: BaseException) -> tuple[grpc.StatusCode, str, tuple]:
    code = code_of(exc)
    message = str(exc) or type(exc).__name__
    trailing = ((CODE_KEY, code), (MESSAGE_KEY, message[:4000]))
    return _STATUS_BY_CODE.get(code, grpc.StatusCode.INTERNAL), message, trailing


def abort(context, exc: BaseException):
    """Abort a threaded-server RPC with ``exc``'s typed code (raises)."""
    status, message, trailing = abort_args(exc)
    context.set_trailing_metadata(trailing)
    context.abort(status, message)


async def abort_aio(context, exc: BaseException):
    """Abort an asyncio-server RPC with ``exc``'s typed code (raises)."""
    status, message, trailing = abort_args(exc)
    context.set_trailing_metadata(trailing)
    await context.abort(status, message)


def _tls_problem(details: str) -> str:
    """What a failed TLS handshake means, from gRPC's status details."""
    if "handshake failed" not in details.lower():
        return ""
    if "CERTIFICATE_VERIFY_FAILED" in details:
        return ("TLS refused: the server's certificate is not signed by the CA this process trusts "
                "(--tls-ca / LINEAGERUN_TLS_CA, or the cluster's tls.json); give it the cluster's CA")
    if "WRONG_VERSION_NUMBER" in details:
        return ("TLS refused: the server does not speak TLS (a plaintext cluster?); connect without TLS "
                "or start the cluster with --tls-cert/--tls-key")
    if "peer name" in details.lower() or "not in peer certificate" in details.lower():
        return "TLS refused: the server's certificate does not name the address dialled (subjectAltName)"
    return "TLS handshake failed"


def from_rpc_error(err: grpc.RpcError, *, what: str = "") -> RpcError:
    """The lineagerun exception for a failed call."""
    code = None
    message = ""
    try:
        for key, value in err.trailing_metadata() or ():
            if key == CODE_KEY:
                code = value
            elif key == MESSAGE_KEY:
                message = value
    except Exception:  # some failures (e.g. channel closed) carry no metadata
        pass
    prefix = f"{what}: " if what else ""
    if code and code in ERROR_CLASSES_BY_CODE:
        return ERROR_CLASSES_BY_CODE[code](prefix + (message or err.details() or code))
    status = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    if status == grpc.StatusCode.DEADLINE_EXCEEDED:
        return RpcTimeoutError(f"{prefix}deadline exceeded ({details})")
    if status == grpc.StatusCode.UNAVAILABLE:
        tls_problem = _tls_problem(details or "")
        if tls_problem:  # not transient: retrying cannot help
            return AuthenticationError(f"{prefix}{tls_problem} ({details})")
        if "Socket closed" in (details or ""):
            details += ("; if the cluster uses TLS, this process has no TLS setting: give it the cluster's CA "
                        "(--tls-ca or LINEAGERUN_TLS_CA)")
        return UnavailableError(f"{prefix}peer unavailable ({details})")
    if status == grpc.StatusCode.UNAUTHENTICATED:
        return ERROR_CLASSES_BY_CODE["UNAUTHENTICATED"](f"{prefix}{details}")
    return RpcError(f"{prefix}{status}: {details}", code="INTERNAL")
