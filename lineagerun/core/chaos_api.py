"""The pure half of the chaos proxy: the Toxiproxy v2 HTTP API's objects, their
validation and defaults, its error bodies and routes, and the arithmetic of
each toxic. No sockets, clocks or randomness here: the asyncio shell in
``lineagerun.chaos.proxy`` passes in draws and times.

Semantics follow Shopify/toxiproxy (api.go, toxic_collection.go, toxics/*.go);
where we are stricter than the original (negative attributes, toxicity outside
[0, 1], non-loopback listen addresses) the error says so, and docs/chaos.md
lists the differences.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping
from urllib.parse import unquote

from lineagerun.exceptions import InvalidArgumentError, LineagerunError

# Reported by GET /version: semver major 2 says "Toxiproxy API v2".
API_VERSION = "2.0.0+lineagerun"

STREAMS = ("upstream", "downstream")  # upstream: client -> server

# Toxic type -> its integer attributes, all defaulting to 0 as in the original.
TOXIC_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "slicer": ("average_size", "size_variation", "delay"),
    "limit_data": ("bytes",),
}

DEFAULT_LISTEN = "127.0.0.1:0"
# Names travel in URL paths; a bound keeps error messages and maps small.
NAME_CHARS_MAX = 256
# Bandwidth sends at most 100 ms worth of data per piece, as the original does,
# so a slow rate never holds a large chunk back for seconds and then bursts.
BANDWIDTH_PIECE_MS = 100


# ------------------------------------------------------------------ errors


class ChaosApiError(LineagerunError):
    """An API request failed; ``status`` is its HTTP status code."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.status)


class ChaosBadRequestError(ChaosApiError, InvalidArgumentError):
    status = 400


class ChaosForbiddenError(ChaosApiError):
    status = 403


class ChaosNotFoundError(ChaosApiError):
    status = 404


class ChaosMethodNotAllowedError(ChaosApiError):
    status = 405


class ChaosConflictError(ChaosApiError):
    status = 409


class ChaosListenError(ChaosApiError):
    """The proxy's listener could not be bound (500, as in the original)."""

    status = 500


def error_body(message: str, status: int) -> dict[str, Any]:
    return {"error": message, "status": status}


def proxy_not_found(name: str) -> ChaosNotFoundError:
    return ChaosNotFoundError(f"proxy not found: {name!r}")


def toxic_not_found(name: str) -> ChaosNotFoundError:
    return ChaosNotFoundError(f"toxic not found: {name!r}")


# ----------------------------------------------------------------- objects


@dataclass(frozen=True)
class ProxySpec:
    name: str
    listen: str
    upstream: str
    enabled: bool = True


@dataclass(frozen=True)
class ToxicSpec:
    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: Mapping[str, int] = field(default_factory=dict)

    def attr(self, key: str) -> int:
        return int(self.attributes.get(key, 0))

    def to_json(self) -> dict[str, Any]:
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
        }


def proxy_json(spec: ProxySpec, toxics: list[ToxicSpec]) -> dict[str, Any]:
    return {
        "name": spec.name,
        "listen": spec.listen,
        "upstream": spec.upstream,
        "enabled": spec.enabled,
        "toxics": [t.to_json() for t in ordered_toxics(toxics)],
    }


def ordered_toxics(toxics: list[ToxicSpec]) -> list[ToxicSpec]:
    """Upstream toxics first, then downstream, each in the order added (the
    original's GetToxicArray walks its per-direction chains that way)."""
    return [t for t in toxics if t.stream == "upstream"] + [t for t in toxics if t.stream == "downstream"]


# --------------------------------------------------------------- decoding


def decode_json(body: bytes) -> Any:
    if not body.strip():
        raise ChaosBadRequestError("bad request body: empty body; send a JSON document")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise ChaosBadRequestError(f"bad request body: {err}") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ChaosBadRequestError(f"bad request body: {what} must be a JSON object, got {type(value).__name__}")
    return value


def _string(obj: Mapping[str, Any], key: str, default: str = "") -> str:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ChaosBadRequestError(f"bad request body: field {key!r} must be a string, got {value!r}")
    return value


def _bool(obj: Mapping[str, Any], key: str, default: bool) -> bool:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ChaosBadRequestError(f"bad request body: field {key!r} must be true or false, got {value!r}")
    return value


def _check_name(name: str, what: str, where: str = "") -> str:
    if not name:
        raise ChaosBadRequestError(f"missing required field: {what}{where}")
    if "/" in name or len(name) > NAME_CHARS_MAX or not name.isprintable():
        raise ChaosBadRequestError(
            f"bad request body: {what} {name!r} must be printable, without '/', at most {NAME_CHARS_MAX} characters")
    return name


# -------------------------------------------------------------- addresses


def split_host_port(address: str, what: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); raises a 400 that names
    the field."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ChaosBadRequestError(f"bad request body: {what} {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379)")
    port = int(port_text)
    if port > 65535:
        raise ChaosBadRequestError(f"bad request body: {what} {address!r} has a port above 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_bind_address(listen: str, *, allow_remote: bool) -> tuple[str, int]:
    """Where to bind a proxy's listener. Because the API has no
    authentication, a proxy listens on loopback unless the server was started
    with ``allow_remote``."""
    host, port = split_host_port(listen, "listen")
    if host == "localhost":
        host = "127.0.0.1"  # one address, so port 0 gives one port
    if not allow_remote and not is_loopback_host(host):
        raise ChaosBadRequestError(
            f"bad request body: listen {listen!r} is not a loopback address; this chaos proxy serves an "
            "unauthenticated API, so proxies listen on 127.0.0.1 unless it was started with --allow-remote")
    if host and not is_loopback_host(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ChaosBadRequestError(f"bad request body: listen host {host!r} must be an IP address") from None
    return host or "0.0.0.0", port


def check_upstream(upstream: str) -> str:
    host, port = split_host_port(upstream, "upstream")
    if not host or port == 0:
        raise ChaosBadRequestError(f"bad request body: upstream {upstream!r} needs a host and a non-zero port")
    return upstream


# ---------------------------------------------------------------- proxies


def parse_new_proxy(value: Any, *, allow_remote: bool, where: str = "") -> ProxySpec:
    obj = _object(value, "a proxy")
    name = _check_name(_string(obj, "name"), "name", where)
    upstream = _string(obj, "upstream")
    if not upstream:
        raise ChaosBadRequestError(f"missing required field: upstream{where}")
    listen = _string(obj, "listen") or DEFAULT_LISTEN
    spec = ProxySpec(name=name, listen=listen, upstream=check_upstream(upstream),
                     enabled=_bool(obj, "enabled", True))
    listen_bind_address(listen, allow_remote=allow_remote)
    return spec


def parse_proxy_update(current: ProxySpec, value: Any, *, allow_remote: bool) -> ProxySpec:
    """Fields left out keep their value; ``name`` cannot change."""
    obj = _object(value, "a proxy")
    listen = _string(obj, "listen", current.listen) or current.listen
    upstream = _string(obj, "upstream", current.upstream) or current.upstream
    updated = replace(current, listen=listen, upstream=check_upstream(upstream),
                      enabled=_bool(obj, "enabled", current.enabled))
    listen_bind_address(listen, allow_remote=allow_remote)
    return updated


def parse_populate(value: Any, *, allow_remote: bool) -> list[ProxySpec]:
    """Validates the whole array before anything is created."""
    if not isinstance(value, list):
        raise ChaosBadRequestError("bad request body: /populate takes a JSON array of proxies")
    specs: list[ProxySpec] = []
    seen: set[str] = set()
    for index, item in enumerate(value, start=1):
        spec = parse_new_proxy(item, allow_remote=allow_remote, where=f" at proxy {index}")
        if spec.name in seen:
            raise ChaosBadRequestError(f"bad request body: duplicate proxy name {spec.name!r} at proxy {index}")
        seen.add(spec.name)
        specs.append(spec)
    return specs


def populate_keeps(existing: ProxySpec, wanted: ProxySpec) -> bool:
    """An existing proxy of the same name survives /populate only when its
    listen and upstream are unchanged (a requested port 0 always differs)."""
    return existing.listen == wanted.listen and existing.upstream == wanted.upstream


# ----------------------------------------------------------------- toxics


def _toxicity(obj: Mapping[str, Any], default: float) -> float:
    value = obj.get("toxicity", default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ChaosBadRequestError(f"bad request body: toxicity must be a number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ChaosBadRequestError(f"bad request body: toxicity {value!r} must be between 0.0 and 1.0")
    return float(value)


def _attributes(toxic_type: str, value: Any, base: Mapping[str, int]) -> dict[str, int]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ChaosBadRequestError(f"bad request body: attributes must be a JSON object, got {value!r}")
    attrs = {key: int(base.get(key, 0)) for key in TOXIC_ATTRIBUTES[toxic_type]}
    for key in TOXIC_ATTRIBUTES[toxic_type]:
        if key not in value:
            continue
        raw = value[key]
        integral = isinstance(raw, int) or (isinstance(raw, float) and raw.is_integer())
        if isinstance(raw, bool) or not integral:
            raise ChaosBadRequestError(
                f"bad request body: {toxic_type} attribute {key!r} must be an integer, got {raw!r}")
        if raw < 0:
            raise ChaosBadRequestError(f"bad request body: {toxic_type} attribute {key!r} must be >= 0, got {raw!r}")
        attrs[key] = int(raw)
    if toxic_type == "slicer" and attrs["average_size"] < 1:
        raise ChaosBadRequestError("bad request body: slicer attribute 'average_size' must be >= 1 (bytes)")
    return attrs


def parse_new_toxic(value: Any, existing_names: set[str] | frozenset[str]) -> ToxicSpec:
    """Defaults: stream downstream, toxicity 1.0, name ``<type>_<stream>``.
    Checks run in the original's order: body, stream, type, name clash (409),
    attributes."""
    obj = _object(value, "a toxic")
    stream = _string(obj, "stream", "downstream")
    if stream not in STREAMS:
        raise ChaosBadRequestError(
            f"stream was invalid, can be either upstream or downstream (got {stream!r})")
    toxic_type = _string(obj, "type")
    name = _string(obj, "name") or f"{toxic_type}_{stream}"
    if toxic_type not in TOXIC_ATTRIBUTES:
        raise ChaosBadRequestError(
            f"invalid toxic type: {toxic_type!r}; known types: {', '.join(sorted(TOXIC_ATTRIBUTES))}")
    _check_name(name, "toxic name")
    if name in existing_names:
        raise ChaosConflictError(f"toxic already exists: {name!r}")
    toxicity = _toxicity(obj, 1.0)
    return ToxicSpec(name=name, type=toxic_type, stream=stream, toxicity=toxicity,
                     attributes=_attributes(toxic_type, obj.get("attributes"), {}))


def parse_toxic_update(current: ToxicSpec, value: Any) -> ToxicSpec:
    """Only attributes (merged over the current ones) and toxicity change."""
    obj = _object(value, "a toxic")
    return replace(current, toxicity=_toxicity(obj, current.toxicity),
                   attributes=_attributes(current.type, obj.get("attributes"), current.attributes))


# ----------------------------------------------------------------- routes


@dataclass(frozen=True)
class Route:
    handler: str
    proxy: str = ""
    toxic: str = ""


_ROUTES: dict[tuple[str, ...], dict[str, str]] = {
    ("reset",): {"POST": "reset"},
    ("version",): {"GET": "version"},
    ("populate",): {"POST": "populate"},
    ("proxies",): {"GET": "proxy_index", "POST": "proxy_create"},
    ("proxies", "*"): {"GET": "proxy_show", "POST": "proxy_update", "PATCH": "proxy_update",
                       "DELETE": "proxy_delete"},
    ("proxies", "*", "toxics"): {"GET": "toxic_index", "POST": "toxic_create"},
    ("proxies", "*", "toxics", "*"): {"GET": "toxic_show", "POST": "toxic_update", "PATCH": "toxic_update",
                                      "DELETE": "toxic_delete"},
}


def match_route(method: str, target: str) -> Route:
    """Request target -> Route; 404 for an unknown path, 405 for a known path
    with the wrong method (as gorilla/mux answers)."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
    shape = tuple("*" if i % 2 == 1 and parts[0] == "proxies" else p for i, p in enumerate(parts))
    methods = _ROUTES.get(shape)
    if methods is None or any(p == "" for p in parts):
        raise ChaosNotFoundError(f"404 page not found: {path}")
    handler = methods.get(method)
    if handler is None:
        raise ChaosMethodNotAllowedError(f"method {method} not allowed on {path}; allowed: {', '.join(methods)}")
    return Route(handler=handler, proxy=parts[1] if len(parts) > 1 else "", toxic=parts[3] if len(parts) > 3 else "")


def is_browser(user_agent: str) -> bool:
    """The original answers 403 to user agents starting with ``Mozilla/`` so a
    web page cannot drive the API through a visitor's browser."""
    return user_agent.startswith("Mozilla/")


# ------------------------------------------------------------ toxic maths


def toxic_applies(toxicity: float, draw: float) -> bool:
    """``draw`` uniform in [0, 1): toxicity 0 never applies, 1 always does."""
    return draw < toxicity


def latency_delay_ms(latency_ms: int, jitter_ms: int, draw: float) -> float:
    """latency +/- jitter, ``draw`` uniform in [0, 1); never negative."""
    return max(0.0, latency_ms + jitter_ms * (2.0 * draw - 1.0))


def bandwidth_pieces(size_bytes: int, rate_kbps: int) -> list[tuple[int, float]]:
    """Split ``size_bytes`` into (piece_bytes, send_time_s) at ``rate_kbps``
    (KB/s, K = 1000 as in the original); rate 0 means unthrottled."""
    if rate_kbps <= 0:
        return [(size_bytes, 0.0)]
    piece_max = rate_kbps * BANDWIDTH_PIECE_MS  # bytes per BANDWIDTH_PIECE_MS
    pieces = []
    remaining = size_bytes
    while remaining > 0:
        piece = min(piece_max, remaining)
        pieces.append((piece, piece / (rate_kbps * 1000.0)))
        remaining -= piece
    return pieces


def slicer_cuts(size_bytes: int, average_size: int, size_variation: int,
                randint: Callable[[int, int], int]) -> list[tuple[int, int]]:
    """Cut [0, size) into (start, end) pieces of about ``average_size`` +/-
    ``size_variation`` bytes by halving around a jittered middle, like the
    original; ``randint(a, b)`` is inclusive (``random.Random.randint``)."""
    pieces: list[tuple[int, int]] = []
    stack = [(0, size_bytes)]
    while stack:
        start, end = stack.pop()
        if end - start - average_size <= size_variation or end - start <= 1:
            if end > start:
                pieces.append((start, end))
            continue
        offset = randint(-size_variation, size_variation) if size_variation > 0 else 0
        mid = min(max(start + (end - start) // 2 + offset, start + 1), end - 1)
        stack.append((mid, end))  # popped after the left half: pieces stay in order
        stack.append((start, mid))
    return pieces


def limit_data_take(limit_bytes: int, sent_bytes: int, size_bytes: int) -> tuple[int, bool]:
    """How many of ``size_bytes`` may pass, and whether the link then closes."""
    take = max(0, min(size_bytes, limit_bytes - sent_bytes))
    return take, sent_bytes + take >= limit_bytes
