"""lineagerun's chaos proxy: a TCP proxy serving the Toxiproxy v2 HTTP API.

``toxiproxy-python`` (and any other Toxiproxy client) drives it; a real
``toxiproxy-server`` can replace it. ``start_proxy_server()`` picks one:

* ``LINEAGERUN_TOXIPROXY=external:HOST:PORT`` - use the Toxiproxy server
  already listening there (nothing is started or stopped);
* unset, empty or ``builtin`` - start the built-in proxy in a background
  thread of this process.

See docs/chaos.md.
"""

from __future__ import annotations

import json
import os
import random
import urllib.request
from typing import Mapping, Protocol

from lineagerun.chaos.proxy.server import DEFAULT_HOST, DEFAULT_PORT, ChaosProxyApp, ChaosProxyServer, serve
from lineagerun.core.chaos_api import join_host_port, split_host_port
from lineagerun.core.chaos_api import ChaosBadRequestError
from lineagerun.exceptions import ConfigurationError

ENV_VAR = "LINEAGERUN_TOXIPROXY"
EXTERNAL_PROBE_TIMEOUT_S = 5.0


class ProxyServerHandle(Protocol):
    host: str
    port: int
    external: bool

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


class ExternalProxyServer:
    """A Toxiproxy server this process did not start and will not stop."""

    external = True

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port

    @property
    def address(self) -> str:
        return join_host_port(self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def version(self) -> str:
        request = urllib.request.Request(self.url + "/version", headers={"User-Agent": "lineagerun"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP proxy
        with opener.open(request, timeout=EXTERNAL_PROBE_TIMEOUT_S) as response:
            return json.loads(response.read()).get("version", "")

    def stop(self) -> None:
        """Nothing to stop: the server belongs to someone else."""


def parse_proxy_setting(value: str) -> tuple[str, int] | None:
    """``external:HOST:PORT`` -> (host, port); empty or ``builtin`` -> None."""
    value = value.strip()
    if value in ("", "builtin"):
        return None
    kind, sep, address = value.partition(":")
    if kind != "external" or not sep:
        raise ConfigurationError(
            f"{ENV_VAR}={value!r} is not understood; use external:HOST:PORT (a running toxiproxy-server) "
            "or leave it unset for the built-in chaos proxy")
    try:
        host, port = split_host_port(address, ENV_VAR)
    except ChaosBadRequestError:
        raise ConfigurationError(f"{ENV_VAR}={value!r}: expected external:HOST:PORT, e.g. external:127.0.0.1:8474") \
            from None
    if not host or port == 0:
        raise ConfigurationError(f"{ENV_VAR}={value!r}: expected external:HOST:PORT with a non-zero port")
    return host, port


def start_proxy_server(host: str = DEFAULT_HOST, port: int = 0, *, rng: random.Random | None = None,
                       env: Mapping[str, str] | None = None, probe: bool = True) -> ProxyServerHandle:
    """The chaos proxy to use: an external Toxiproxy named by
    ``LINEAGERUN_TOXIPROXY=external:HOST:PORT`` (probed with GET /version
    unless ``probe=False``), or a built-in one started here. Call ``stop()``
    on the result when done (a no-op for an external server)."""
    setting = parse_proxy_setting((env if env is not None else os.environ).get(ENV_VAR, ""))
    if setting is not None:
        external = ExternalProxyServer(*setting)
        if probe:
            try:
                external.version()
            except (OSError, ValueError) as err:
                raise ConfigurationError(
                    f"{ENV_VAR} names a Toxiproxy server at {external.address}, but GET /version failed: {err}; "
                    "start toxiproxy-server there or unset the variable") from None
        return external
    server = ChaosProxyServer(host, port, rng=rng)
    server.start()
    return server


__all__ = ["ChaosProxyApp", "ChaosProxyServer", "ExternalProxyServer", "ProxyServerHandle", "serve",
           "start_proxy_server", "parse_proxy_setting", "ENV_VAR", "DEFAULT_HOST", "DEFAULT_PORT"]
