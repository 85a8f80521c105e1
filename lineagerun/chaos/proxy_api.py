"""toxiproxy-python, bound to one proxy server per client.

toxiproxy-python keeps the API's address in two class attributes,
``APIConsumer.host`` and ``.port``: ``Toxiproxy.update_api_consumer`` sets
them for the whole process, and ``Toxiproxy`` and every ``Proxy`` it
returns call through them at call time. Two chaos proxy servers driven
from one process (two chaos clusters alive at once in a test, say) would
each get the calls meant for the other one, whichever was named last.

``bound_api(host, port)`` returns a client that points ``APIConsumer`` at
its own server for the length of each call, under one process-wide lock,
and puts the previous address back after; the proxies it returns are bound
the same way. Reading a proxy's fields (``name``, ``listen``, ...) needs
no lock.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

# Held across a whole call: the API's address is process-global state.
_API_LOCK = threading.RLock()


class _Bound:
    """``target`` with every method call made against ``(host, port)``."""

    def __init__(self, target: Any, host: str, port: int):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_address", (host, int(port)))

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def call(*args, **kwargs):
            args = tuple(_unwrap(a) for a in args)
            kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
            with _API_LOCK:
                from toxiproxy.api import APIConsumer

                saved = APIConsumer.host, APIConsumer.port
                APIConsumer.host, APIConsumer.port = self._address
                try:
                    result = value(*args, **kwargs)
                finally:
                    APIConsumer.host, APIConsumer.port = saved
            return self._wrap(result)

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def __repr__(self) -> str:
        host, port = self._address
        return f"<{type(self._target).__name__} at {host}:{port}>"

    def _wrap(self, result: Any) -> Any:
        from toxiproxy.proxy import Proxy

        if isinstance(result, Proxy):
            return _BoundProxy(result, *self._address)
        if isinstance(result, dict) and any(isinstance(v, Proxy) for v in result.values()):
            return {k: self._wrap(v) for k, v in result.items()}
        if isinstance(result, list) and any(isinstance(v, Proxy) for v in result):
            return [self._wrap(v) for v in result]
        return result

    @property
    def unbound(self) -> Any:
        """The toxiproxy-python object itself (its calls go to whatever
        server the process-wide address names at call time)."""
        return self._target


def _unwrap(value: Any) -> Any:
    return value._target if isinstance(value, _Bound) else value


def bound_api(host: str, port: int):
    """A ``toxiproxy.Toxiproxy`` whose calls, and its proxies' calls, go to
    the proxy server at ``host:port`` whatever other clients in this
    process are bound to. ``update_api_consumer`` is not offered: bind a
    new client instead."""
    from toxiproxy import Toxiproxy

    return _BoundToxiproxy(Toxiproxy(), host, port)


class _BoundProxy(_Bound):
    @contextlib.contextmanager
    def down(self):
        """As ``Proxy.down``: disabled inside the block (its own calls are
        made at enter and exit, so they are bound here)."""
        self.disable()
        try:
            yield self
        finally:
            self.enable()


class _BoundToxiproxy(_Bound):
    def update_api_consumer(self, host, port):  # noqa: ARG002 - refused, see bound_api
        raise TypeError("a bound toxiproxy client keeps its server; call bound_api(host, port) for another")
