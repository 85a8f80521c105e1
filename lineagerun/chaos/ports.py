"""Ports chosen ahead of a process's start, for chaos clusters.

A replica behind a proxy must come back on the same port after a restart, so
its port is chosen before it starts rather than by binding port 0. A port
taken from the kernel's ephemeral range (bind to 0, then release) can be
handed to any other process's bind(0) or outgoing connection before ours
binds it (seen in a loaded test run: "Failed to bind to address"); ports are
therefore drawn below that range, where only explicit binds land.
"""

from __future__ import annotations

import random
import socket

from lineagerun.exceptions import ConfigurationError

# Below Linux's default ephemeral range (32768-60999).
CHOSEN_PORT_LOW = 20_000
CHOSEN_PORT_HIGH = 32_000
CHOSEN_PORT_ATTEMPTS_MAX = 200


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
            return True
        except OSError:
            return False


def chosen_port(*hosts: str) -> int:
    """A port free now on every host given (default 127.0.0.1), outside the ephemeral range."""
    hosts = hosts or ("127.0.0.1",)
    pick = random.Random()
    for _ in range(CHOSEN_PORT_ATTEMPTS_MAX):
        port = pick.randrange(CHOSEN_PORT_LOW, CHOSEN_PORT_HIGH)
        if all(port_free(host, port) for host in hosts):
            return port
    raise ConfigurationError(f"no port in {CHOSEN_PORT_LOW}-{CHOSEN_PORT_HIGH} free on {', '.join(hosts)} after "
                             f"{CHOSEN_PORT_ATTEMPTS_MAX} attempts; free some ports or stop other clusters")
