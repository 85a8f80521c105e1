"""Helpers shared by the chaos proxy tests: a threaded TCP echo server and
small socket utilities. Every test stops what it starts."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time


class EchoServer:
    """Echoes every byte back on each connection; ``stop()`` closes the
    listener and every connection and joins its threads."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopped = False
        self.accepted = 0
        accept = threading.Thread(target=self._accept_loop, daemon=True)
        accept.start()
        self._threads.append(accept)

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._stopped:
                    conn.close()
                    return
                self.accepted += 1
                self._conns.append(conn)
                thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
                self._threads.append(thread)
            thread.start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            conns = list(self._conns)
        # shutdown() wakes a thread blocked in accept(); close() alone may not.
        for sock in [self._listener, *conns]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self._threads:
            thread.join(5)


def host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host, int(port)


def connect(listen: str, timeout_s: float = 5.0) -> socket.socket:
    sock = socket.create_connection(host_port(listen), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    parts = []
    while size > 0:
        data = sock.recv(size)
        if not data:
            break
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def round_trip_s(sock: socket.socket, payload: bytes = b"ping") -> float:
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - start


class Api:
    """A bare HTTP client of the chaos proxy API: (status, decoded JSON)."""

    def __init__(self, port: int):
        self.port = port

    def call(self, method: str, path: str, body=None, *, raw: bytes | None = None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
            conn.request(method, path, body=payload, headers={"User-Agent": "lineagerun-tests", **(headers or {})})
            response = conn.getresponse()
            data = response.read()
            return response.status, (json.loads(data) if data else None)
        finally:
            conn.close()

    def create(self, name: str, upstream: str, **extra):
        status, body = self.call("POST", "/proxies", {"name": name, "upstream": upstream, **extra})
        assert status == 201, body
        return body
