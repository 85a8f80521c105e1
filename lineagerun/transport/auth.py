"""Cluster token: created at cluster start, stored 0600, carried by every RPC.

Server interceptors refuse a call whose ``lr-token`` metadata is missing or
wrong *before* the handler runs, so nothing an unauthenticated peer sent is
ever deserialised by application code.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

import grpc

from lineagerun.exceptions import ConfigurationError

TOKEN_METADATA_KEY = "lr-token"
TOKEN_FILE_NAME = "token"
_TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_hex(_TOKEN_BYTES)


def write_token_file(path: str | os.PathLike, token: str) -> Path:
    """Write ``token`` to ``path`` with mode 0600 (created that way, never
    world-readable even briefly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, token.encode())
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    return path


def read_token_file(path: str | os.PathLike) -> str:
    path = Path(path)
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigurationError(
            f"cluster token file {path} does not exist; start the cluster first or pass the right session directory"
        ) from None
    if not token:
        raise ConfigurationError(f"cluster token file {path} is empty")
    return token


def _token_ok(metadata, expected: str) -> bool:
    for key, value in metadata or ():
        if key == TOKEN_METADATA_KEY:
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            return hmac.compare_digest(value, expected)
    return False


def _unauthenticated_handler(handler):
    """A handler of the same kind as ``handler`` that only refuses."""

    def refuse(request_or_iterator, context):
        context.set_trailing_metadata((("lr-error-code", "UNAUTHENTICATED"),
                                       ("lr-error-message", "missing or wrong cluster token")))
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong cluster token")

    # Request deserialisers are dropped: the payload is never parsed.
    if handler is None:
        return grpc.unary_unary_rpc_method_handler(refuse)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


class TokenServerInterceptor(grpc.ServerInterceptor):
    """For ``grpc.server`` (threaded)."""

    def __init__(self, token: str):
        self._token = token

    def intercept_service(self, continuation, handler_call_details):
        if _token_ok(handler_call_details.invocation_metadata, self._token):
            return continuation(handler_call_details)
        return _unauthenticated_handler(continuation(handler_call_details))


class AioTokenServerInterceptor(grpc.aio.ServerInterceptor):
    """For ``grpc.aio.server``."""

    def __init__(self, token: str):
        self._token = token

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if _token_ok(handler_call_details.invocation_metadata, self._token):
            return handler
        return _aio_unauthenticated_handler(handler)


def _aio_unauthenticated_handler(handler):
    async def refuse(request_or_iterator, context):
        context.set_trailing_metadata((("lr-error-code", "UNAUTHENTICATED"),
                                       ("lr-error-message", "missing or wrong cluster token")))
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong cluster token")

    async def refuse_stream(request_or_iterator, context):
        await refuse(request_or_iterator, context)
        yield  # pragma: no cover - abort raises

    if handler is None:
        return grpc.unary_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        make = grpc.stream_stream_rpc_method_handler if handler.request_streaming else grpc.unary_stream_rpc_method_handler
        return make(refuse_stream)
    make = grpc.stream_unary_rpc_method_handler if handler.request_streaming else grpc.unary_unary_rpc_method_handler
    return make(refuse)


def call_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return ((TOKEN_METADATA_KEY, token),)
