"""Creating gRPC servers and channels the one lineagerun way: token on every
call, loopback unless told otherwise, bounded message sizes."""

from __future__ import annotations

import ipaddress

import grpc

from lineagerun.exceptions import ConfigurationError
from lineagerun.transport.auth import (
    TOKEN_METADATA_KEY,
    AioTokenServerInterceptor,
    TokenServerInterceptor,
)
from lineagerun.transport.tls import process_tls

# Objects larger than this move in chunks (object transfer) rather than in one
# message; 64 MiB keeps a single message well under gRPC's hard 2 GiB limit
# and bounds per-call memory.
MESSAGE_SIZE_MAX_BYTES = 64 * 1024 * 1024

_OPTIONS = [
    ("grpc.max_send_message_length", MESSAGE_SIZE_MAX_BYTES),
    ("grpc.max_receive_message_length", MESSAGE_SIZE_MAX_BYTES),
    ("grpc.so_reuseport", 0),
]
_CLIENT_OPTIONS = _OPTIONS + [
    # Reconnect quickly after a peer restarts (defaults back off up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 50),
    # Also gRPC's minimum connect timeout: lower values fail connection
    # attempts on a loaded machine ("timed out before SETTINGS frame").
    ("grpc.min_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.enable_retries", 0),
    # A channel of its own connections: with gRPC's process-wide subchannel
    # pool a new channel to an address that refused a moment ago (a peer or
    # proxy coming back after a cut) shares the old channel's backoff and
    # fails at once with its stale "Connection refused" (the flaky driver
    # reconnects of tests/chaos/test_driver_reconnect.py).
    ("grpc.use_local_subchannel_pool", 1),
]

DEFAULT_HOST = "127.0.0.1"


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token (RELIABILITY S1)."""
    if not is_loopback(host) and not token:
        raise ConfigurationError(
            f"refusing to listen on {host} without a cluster token; bind to 127.0.0.1 or pass a token"
        )


def make_server(token: str | None, *, max_workers: int = 16):
    """A threaded gRPC server that requires ``token`` on every call."""
    from concurrent.futures import ThreadPoolExecutor

    interceptors = [TokenServerInterceptor(token)] if token else []
    return grpc.server(ThreadPoolExecutor(max_workers=max_workers), interceptors=interceptors, options=_OPTIONS)


def make_aio_server(token: str | None):
    """An asyncio gRPC server that requires ``token`` on every call."""
    interceptors = [AioTokenServerInterceptor(token)] if token else []
    return grpc.aio.server(interceptors=interceptors, options=_OPTIONS)


def bind(server, host: str, port: int, token: str | None, tls: tuple[bytes, bytes] | None = None) -> int:
    """Bind ``server`` and return the real port (``port=0`` picks one).
    ``tls``: (key, certificate) to serve TLS with; None: the process's TLS
    setting (``transport.tls``), if it has a certificate."""
    check_bind(host, token)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if tls is None:
        default = process_tls()
        tls = default.server_pair() if default is not None and default.can_serve else None
    if tls is not None:
        key, cert = tls
        creds = grpc.ssl_server_credentials([(key, cert)])
        bound = server.add_secure_port(address, creds)
    else:
        bound = server.add_insecure_port(address)
    if not bound:
        raise ConfigurationError(f"could not listen on {address}")
    return bound


class _TokenAuth(grpc.AuthMetadataPlugin):
    def __init__(self, token: str):
        self._token = token

    def __call__(self, context, callback):
        callback(((TOKEN_METADATA_KEY, self._token),), None)


class _ClientTokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, token: str):
        self._md = (TOKEN_METADATA_KEY, token)

    def _details(self, d):
        md = list(d.metadata or []) + [self._md]
        return d._replace(metadata=md) if hasattr(d, "_replace") else _Details(d, md)

    def intercept_unary_unary(self, continuation, d, request):
        return continuation(self._details(d), request)

    def intercept_unary_stream(self, continuation, d, request):
        return continuation(self._details(d), request)

    def intercept_stream_unary(self, continuation, d, request_iterator):
        return continuation(self._details(d), request_iterator)

    def intercept_stream_stream(self, continuation, d, request_iterator):
        return continuation(self._details(d), request_iterator)


class _Details(grpc.ClientCallDetails):
    def __init__(self, d, metadata):
        self.method = d.method
        self.timeout = d.timeout
        self.metadata = metadata
        self.credentials = d.credentials
        self.wait_for_ready = getattr(d, "wait_for_ready", None)
        self.compression = getattr(d, "compression", None)


def _root_cert(address: str, root_cert: bytes | None) -> bytes | None:
    """The CA to check ``address`` against: the caller's, else the process's
    TLS setting; unix sockets stay plain (only this machine's user opens them)."""
    if root_cert is not None or address.startswith("unix:"):
        return root_cert
    default = process_tls()
    return default.ca_pem if default is not None else None


def make_channel(address: str, token: str | None, *, root_cert: bytes | None = None):
    """A threaded-client channel that sends ``token`` on every call; TLS
    with ``root_cert`` (or the process's TLS setting) as CA."""
    root_cert = _root_cert(address, root_cert)
    if root_cert is not None:
        creds = grpc.ssl_channel_credentials(root_certificates=root_cert)
        channel = grpc.secure_channel(address, creds, options=_CLIENT_OPTIONS)
    else:
        channel = grpc.insecure_channel(address, options=_CLIENT_OPTIONS)
    if token:
        channel = grpc.intercept_channel(channel, _ClientTokenInterceptor(token))
    return channel


class _AioTokenBase:
    def __init__(self, token: str):
        self._md = (TOKEN_METADATA_KEY, token)

    def _details(self, d):
        return d._replace(metadata=grpc.aio.Metadata(*(list(d.metadata or ()) + [self._md])))


# grpc.aio files an interceptor under the first call kind it implements only,
# so one object per kind is needed for streaming calls to carry the token too.
class _AioTokenUnaryUnary(_AioTokenBase, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, d, request):
        return await continuation(self._details(d), request)


class _AioTokenUnaryStream(_AioTokenBase, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, d, request):
        return await continuation(self._details(d), request)


class _AioTokenStreamUnary(_AioTokenBase, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, d, request_iterator):
        return await continuation(self._details(d), request_iterator)


class _AioTokenStreamStream(_AioTokenBase, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, d, request_iterator):
        return await continuation(self._details(d), request_iterator)


def make_aio_channel(address: str, token: str | None, *, root_cert: bytes | None = None):
    """An asyncio channel that sends ``token`` on every call (TLS as ``make_channel``)."""
    root_cert = _root_cert(address, root_cert)
    interceptors = ([_AioTokenUnaryUnary(token), _AioTokenUnaryStream(token),
                     _AioTokenStreamUnary(token), _AioTokenStreamStream(token)] if token else None)
    if root_cert is not None:
        creds = grpc.ssl_channel_credentials(root_certificates=root_cert)
        return grpc.aio.secure_channel(address, creds, options=_CLIENT_OPTIONS, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=_CLIENT_OPTIONS, interceptors=interceptors)
