"""The chaos proxy's HTTP API (Toxiproxy v2), on asyncio.

``ChaosProxyApp`` owns the proxies and serves the API from the event loop it
runs on; ``ChaosProxyServer`` runs one in a background thread (tests, chaos
clusters); ``serve`` runs one in the foreground until told to stop (CLI).

The HTTP/1.1 server is deliberately small: requests with Content-Length or
chunked bodies, keep-alive, every size bounded. Validation, defaults, error
bodies and routes come from ``lineagerun.core.chaos_api``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
from typing import Any

from lineagerun.core import chaos_api
from lineagerun.core.chaos_api import ChaosApiError, Route
from lineagerun.chaos.proxy.tcp import ProxyRuntime
from lineagerun.exceptions import ConfigurationError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8474
# The request line and headers of one request; Toxiproxy clients send < 1 KiB.
HTTP_HEAD_BYTES_MAX = 64 * 1024
HTTP_HEADERS_MAX = 100
# A /populate of a few thousand proxies fits; anything bigger is a mistake.
HTTP_BODY_BYTES_MAX = 4 * 1024 * 1024
# An idle keep-alive connection is closed after this (the original: 60 s).
HTTP_IDLE_TIMEOUT_S = 60.0
HTTP_CONNECTIONS_MAX = 256
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0

_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
            413: "Payload Too Large", 500: "Internal Server Error", 505: "HTTP Version Not Supported"}


class _HttpError(Exception):
    """The request cannot be parsed: answer ``status`` and close."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _Request:
    def __init__(self, method: str, target: str, version: str, headers: dict[str, str], body: bytes):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request | None:
    """One request, or None on a clean EOF between requests."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HTTP_IDLE_TIMEOUT_S)
    except asyncio.IncompleteReadError as err:
        if not err.partial.strip():
            return None
        raise _HttpError(400, "incomplete request head") from None
    except asyncio.LimitOverrunError:
        raise _HttpError(400, f"request head over {HTTP_HEAD_BYTES_MAX} bytes") from None
    except TimeoutError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise _HttpError(400, f"malformed request line {lines[0][:100]!r}") from None
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _HttpError(505, f"unsupported protocol {version[:20]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _HttpError(400, f"malformed header line {line[:100]!r}")
        headers[name.lower()] = value.strip()
        if len(headers) > HTTP_HEADERS_MAX:
            raise _HttpError(400, f"more than {HTTP_HEADERS_MAX} headers")
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = await _read_body(reader, headers)
    return _Request(method, target, version, headers, body)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    try:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return await _read_chunked(reader)
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit():
            raise _HttpError(400, f"bad Content-Length {length_text[:30]!r}")
        length = int(length_text)
        if length > HTTP_BODY_BYTES_MAX:
            raise _HttpError(413, f"body of {length} bytes is over the limit of {HTTP_BODY_BYTES_MAX}")
        return await reader.readexactly(length)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise _HttpError(400, "truncated or malformed body") from None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = (await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise _HttpError(400, "malformed chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        total += size
        if total > HTTP_BODY_BYTES_MAX:
            raise _HttpError(413, f"body over the limit of {HTTP_BODY_BYTES_MAX} bytes")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _response_bytes(status: int, payload: Any, keep_alive: bool) -> bytes:
    body = b"" if status == 204 else (json.dumps(payload) + "\n").encode()
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: keep-alive" if keep_alive else "Connection: close"]
    if status == 204:
        head = [line for line in head if not line.startswith(("Content-Type", "Content-Length"))]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class ChaosProxyApp:
    """The proxies and the API over them; lives on one event loop."""

    def __init__(self, *, rng: random.Random | None = None, allow_remote: bool = False):
        self.rng = rng if rng is not None else random.Random()
        self.allow_remote = allow_remote
        self.proxies: dict[str, ProxyRuntime] = {}
        # Handlers await (binding listeners); one request at a time keeps two
        # concurrent creates of one name from both binding.
        self._api_lock = asyncio.Lock()
        self._http_server: asyncio.base_events.Server | None = None
        self._http_writers: set[asyncio.StreamWriter] = set()
        self.host = DEFAULT_HOST
        self.port = 0

    async def start(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
        if not self.allow_remote and not chaos_api.is_loopback_host(host):
            raise ConfigurationError(
                f"refusing to serve the chaos proxy API on {host!r}: it has no authentication; "
                "use 127.0.0.1, or pass allow_remote=True (--allow-remote) on a trusted network")
        self._http_server = await asyncio.start_server(self._serve_connection, host, port,
                                                       limit=HTTP_HEAD_BYTES_MAX, reuse_address=True)
        self.host, self.port = host, self._http_server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._http_server is not None:
            self._http_server.close()
        for writer in list(self._http_writers):
            writer.close()
        for proxy in list(self.proxies.values()):
            await proxy.stop()
        self.proxies.clear()

    # --------------------------------------------------------------- HTTP

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._http_writers) >= HTTP_CONNECTIONS_MAX:
            writer.close()
            return
        self._http_writers.add(writer)
        try:
            while True:
                try:
                    request = await _read_request(reader, writer)
                except _HttpError as err:
                    writer.write(_response_bytes(err.status, chaos_api.error_body(err.message, err.status), False))
                    break
                if request is None:
                    break
                status, payload = await self.handle(request.method, request.target,
                                                    request.headers.get("user-agent", ""), request.body)
                writer.write(_response_bytes(status, payload, request.keep_alive))
                await writer.drain()
                if not request.keep_alive:
                    break
        except (ConnectionError, OSError):
            pass
        except Exception:
            log.exception("chaos proxy API: connection handler failed")
        finally:
            self._http_writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def handle(self, method: str, target: str, user_agent: str, body: bytes) -> tuple[int, Any]:
        """One API request -> (status, JSON payload)."""
        try:
            if chaos_api.is_browser(user_agent):
                raise chaos_api.ChaosForbiddenError("User agent not allowed")
            route = chaos_api.match_route(method, target)
            async with self._api_lock:
                return await getattr(self, "_" + route.handler)(route, body)
        except ChaosApiError as err:
            return err.status, err.body()
        except Exception as err:  # a bug: answer 500 rather than drop the connection
            log.exception("chaos proxy API: %s %s failed", method, target)
            return 500, chaos_api.error_body(f"internal error: {type(err).__name__}: {err}", 500)

    # ------------------------------------------------------------ handlers

    def _proxy(self, name: str) -> ProxyRuntime:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise chaos_api.proxy_not_found(name)
        return proxy

    async def _reset(self, route: Route, body: bytes) -> tuple[int, Any]:
        for proxy in list(self.proxies.values()):
            proxy.remove_all_toxics()
            if not proxy.spec.enabled:
                await proxy.start()
        return 204, None

    async def _version(self, route: Route, body: bytes) -> tuple[int, Any]:
        return 200, {"version": chaos_api.API_VERSION}

    async def _proxy_index(self, route: Route, body: bytes) -> tuple[int, Any]:
        return 200, {name: proxy.to_json() for name, proxy in self.proxies.items()}

    async def _proxy_create(self, route: Route, body: bytes) -> tuple[int, Any]:
        spec = chaos_api.parse_new_proxy(chaos_api.decode_json(body), allow_remote=self.allow_remote)
        if spec.name in self.proxies:
            raise chaos_api.ChaosConflictError(f"proxy already exists: {spec.name!r}")
        proxy = await self._new_proxy(spec)
        return 201, proxy.to_json()

    async def _new_proxy(self, spec: chaos_api.ProxySpec) -> ProxyRuntime:
        proxy = ProxyRuntime(chaos_api.ProxySpec(spec.name, spec.listen, spec.upstream, False),
                             rng=self.rng, allow_remote=self.allow_remote)
        if spec.enabled:
            await proxy.start()
        self.proxies[spec.name] = proxy
        return proxy

    async def _populate(self, route: Route, body: bytes) -> tuple[int, Any]:
        specs = chaos_api.parse_populate(chaos_api.decode_json(body), allow_remote=self.allow_remote)
        done: list[ProxyRuntime] = []
        try:
            for spec in specs:
                existing = self.proxies.get(spec.name)
                if existing is not None and chaos_api.populate_keeps(existing.spec, spec):
                    done.append(existing)
                    continue
                if existing is not None:
                    await existing.stop()
                    del self.proxies[spec.name]
                done.append(await self._new_proxy(spec))
        except ChaosApiError as err:
            return err.status, {**err.body(), "proxies": [p.to_json() for p in done]}
        return 201, {"proxies": [p.to_json() for p in done]}

    async def _proxy_show(self, route: Route, body: bytes) -> tuple[int, Any]:
        return 200, self._proxy(route.proxy).to_json()

    async def _proxy_update(self, route: Route, body: bytes) -> tuple[int, Any]:
        proxy = self._proxy(route.proxy)
        wanted = chaos_api.parse_proxy_update(proxy.spec, chaos_api.decode_json(body),
                                              allow_remote=self.allow_remote)
        await proxy.update(wanted)
        return 200, proxy.to_json()

    async def _proxy_delete(self, route: Route, body: bytes) -> tuple[int, Any]:
        proxy = self._proxy(route.proxy)
        await proxy.stop()
        del self.proxies[route.proxy]
        return 204, None

    async def _toxic_index(self, route: Route, body: bytes) -> tuple[int, Any]:
        return 200, [t.to_json() for t in chaos_api.ordered_toxics(self._proxy(route.proxy).toxics)]

    async def _toxic_create(self, route: Route, body: bytes) -> tuple[int, Any]:
        proxy = self._proxy(route.proxy)
        spec = chaos_api.parse_new_toxic(chaos_api.decode_json(body), {t.name for t in proxy.toxics})
        proxy.add_toxic(spec)
        return 200, spec.to_json()

    async def _toxic_show(self, route: Route, body: bytes) -> tuple[int, Any]:
        return 200, self._proxy(route.proxy).toxic(route.toxic).to_json()

    async def _toxic_update(self, route: Route, body: bytes) -> tuple[int, Any]:
        proxy = self._proxy(route.proxy)
        spec = chaos_api.parse_toxic_update(proxy.toxic(route.toxic), chaos_api.decode_json(body))
        proxy.update_toxic(spec)
        return 200, spec.to_json()

    async def _toxic_delete(self, route: Route, body: bytes) -> tuple[int, Any]:
        self._proxy(route.proxy).remove_toxic(route.toxic)
        return 204, None


async def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, stop: asyncio.Event,
                allow_remote: bool = False, rng: random.Random | None = None,
                on_ready=None) -> None:
    """Serve until ``stop`` is set; ``on_ready(port)`` is called once bound."""
    app = ChaosProxyApp(rng=rng, allow_remote=allow_remote)
    await app.start(host, port)
    try:
        if on_ready is not None:
            on_ready(app.port)
        await stop.wait()
    finally:
        await app.close()


class ChaosProxyServer:
    """The chaos proxy in a background thread of this process.

    ``ChaosProxyServer().start()`` returns the API's bound port (default 0: a
    free one); ``stop()`` closes the API, every proxy and every connection.
    Pass ``rng=random.Random(seed)`` to pin toxicity and jitter draws.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0, *, rng: random.Random | None = None,
                 allow_remote: bool = False):
        if not allow_remote and not chaos_api.is_loopback_host(host):
            raise ConfigurationError(
                f"refusing to serve the chaos proxy API on {host!r} (no authentication); pass allow_remote=True")
        self.host = host
        self.port = port
        self.external = False
        self._rng = rng
        self._allow_remote = allow_remote
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def address(self) -> str:
        return chaos_api.join_host_port(self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> int:
        if self._thread is not None:
            raise ConfigurationError("this ChaosProxyServer was already started; make a new one")
        self._thread = threading.Thread(target=self._thread_main, name=f"chaos-proxy-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise ConfigurationError(f"chaos proxy did not start within {START_TIMEOUT_S} s")
        if self._error is not None:
            self._thread.join(STOP_TIMEOUT_S)
            raise ConfigurationError(f"chaos proxy could not start on {self.address}: {self._error}") from self._error
        return self.port

    def stop(self) -> None:
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None or loop is None or stop_event is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(stop_event.set)
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            log.warning("chaos proxy thread did not stop within %s s", STOP_TIMEOUT_S)

    def __enter__(self) -> "ChaosProxyServer":
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # surfaced to start() or logged
            if not self._ready.is_set():
                self._error = err
                self._ready.set()
            else:
                log.exception("chaos proxy thread failed")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()

        def ready(port: int) -> None:
            self.port = port
            self._ready.set()

        await serve(self.host, self.port, stop=self._stop_event, allow_remote=self._allow_remote,
                    rng=self._rng, on_ready=ready)


__all__ = ["ChaosProxyApp", "ChaosProxyServer", "serve", "DEFAULT_HOST", "DEFAULT_PORT"]
