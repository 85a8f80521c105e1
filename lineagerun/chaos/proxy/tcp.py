"""TCP forwarding for the chaos proxy, on asyncio.

Per proxy a listener (``ProxyRuntime``); per accepted connection a ``Link``
to the upstream with two ``Pipe``s: ``upstream`` (client -> server) and
``downstream`` (server -> client). Each pipe has a reader task that stamps
chunks with their arrival time into a bounded inbox, and a processor task
that passes them through the pipe's toxic stages and writes them out. As in
the original, when a pipe ends it closes its destination socket entirely,
which ends the other pipe too (there is no half-close through the proxy).

Everything here runs on the event loop thread of the chaos proxy server; no
locks are needed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import socket
import struct
from dataclasses import replace

from lineagerun.core import chaos_api
from lineagerun.core.chaos_api import ProxySpec, ToxicSpec
from lineagerun.chaos.proxy.toxics import Chunk, PipeEnded, Stage, make_stage

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 32 * 1024
# Chunks read but not yet through the toxics, per pipe. With 32 KiB reads this
# holds at most 2 MiB per direction; beyond it the reader stops reading and
# TCP flow control pushes back on the sender, as it would on a slow link.
PIPE_INBOX_CHUNKS_MAX = 64
UPSTREAM_CONNECT_TIMEOUT_S = 10.0
# Connections per proxy; more are refused (closed at once) so a runaway
# client cannot exhaust the proxy's file descriptors.
LINKS_PER_PROXY_MAX = 1024

_EOF = object()


def _set_linger_zero(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Pipe:
    """One direction of one connection, through a chain of toxic stages."""

    def __init__(self, link: "Link", stream: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 stages: list[Stage]):
        self.link = link
        self.stream = stream
        self.stages = stages
        self._reader = reader
        self._writer = writer
        self._inbox: collections.deque = collections.deque()
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._end_requested: str | None = None

    # ------------------------------------------------------ chain changes

    def add_stage(self, spec: ToxicSpec) -> None:
        self.stages.append(make_stage(spec, self.link.rng))
        self._wakeup.set()

    def replace_stage(self, spec: ToxicSpec) -> None:
        for index, old in enumerate(self.stages):
            if old.name == spec.name:
                new = make_stage(spec, self.link.rng)
                new.inherit(old)
                old.interrupt()
                self.stages[index] = new
        self._wakeup.set()

    def remove_stage(self, name: str) -> None:
        for old in [s for s in self.stages if s.name == name]:
            self.stages.remove(old)
            old.interrupt()
            if old.closes_on_removal():
                self._end_requested = "close"
        self._wakeup.set()

    # ------------------------------------------------------------ running

    async def run(self) -> None:
        reader_task = asyncio.create_task(self._read())
        try:
            await self._process()
        except PipeEnded as ended:
            if ended.kind == "reset":
                self.link.reset()
            else:
                self._close_destination()
        except (ConnectionError, OSError):
            self._close_destination()
        except Exception:  # a bug in a toxic: drop this connection, keep the proxy
            log.exception("proxy %s: %s pipe failed", self.link.runtime.name, self.stream)
            self.link.close()
        finally:
            reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader_task

    def _close_destination(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while len(self._inbox) >= PIPE_INBOX_CHUNKS_MAX:
                self._space.clear()
                await self._space.wait()
            try:
                data = await self._reader.read(READ_CHUNK_BYTES)
            except (ConnectionError, OSError):
                data = b""
            self._inbox.append(Chunk(data, loop.time()) if data else _EOF)
            self._wakeup.set()
            if not data:
                return

    async def _process(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._check_ends(loop.time())
            if not self._inbox:
                await self._wait_for_input(loop)
                continue
            item = self._inbox.popleft()
            self._space.set()
            if item is _EOF:
                for stage in list(self.stages):
                    await stage.on_eof()
                raise PipeEnded("close")
            await self._through(list(self.stages), 0, item)

    def _check_ends(self, now_s: float) -> None:
        if self._end_requested is not None:
            raise PipeEnded(self._end_requested)
        for stage in self.stages:
            deadline = stage.deadline_s()
            if deadline is not None and deadline <= now_s:
                raise PipeEnded(stage.end_kind)

    async def _wait_for_input(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wakeup.clear()
        deadlines = [d for d in (s.deadline_s() for s in self.stages) if d is not None]
        if not deadlines:
            await self._wakeup.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), max(0.0, min(deadlines) - loop.time()))

    async def _through(self, stages: list[Stage], index: int, chunk: Chunk) -> None:
        if index == len(stages):
            self._writer.write(chunk.data)
            await self._writer.drain()
            return

        async def emit(next_chunk: Chunk) -> None:
            await self._through(stages, index + 1, next_chunk)

        await stages[index].on_chunk(chunk, emit)


class Link:
    """One client connection and its upstream connection."""

    def __init__(self, runtime: "ProxyRuntime", client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter], toxics: list[ToxicSpec]):
        self.runtime = runtime
        self.rng = runtime.rng
        self.client_writer = client[1]
        self.upstream_writer = upstream[1]
        self.pipes = {
            "upstream": Pipe(self, "upstream", client[0], upstream[1],
                             [make_stage(t, self.rng) for t in toxics if t.stream == "upstream"]),
            "downstream": Pipe(self, "downstream", upstream[0], client[1],
                               [make_stage(t, self.rng) for t in toxics if t.stream == "downstream"]),
        }
        self._tasks: list[asyncio.Task] = []

    async def run(self) -> None:
        self._tasks = [asyncio.create_task(p.run()) for p in self.pipes.values()]
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self.close()

    def close(self) -> None:
        for writer in (self.client_writer, self.upstream_writer):
            with contextlib.suppress(Exception):
                writer.close()
        for task in self._tasks:
            task.cancel()

    def reset(self) -> None:
        """Close both sockets with SO_LINGER 0: the kernel sends RST."""
        for writer in (self.client_writer, self.upstream_writer):
            _set_linger_zero(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()


class ProxyRuntime:
    """One proxy: its spec, its toxics, its listener and its links."""

    def __init__(self, spec: ProxySpec, *, rng: random.Random, allow_remote: bool):
        self.spec = spec
        self.rng = rng
        self.allow_remote = allow_remote
        self.toxics: list[ToxicSpec] = []
        self._server: asyncio.base_events.Server | None = None
        self._links: set[Link] = set()
        self._generation = 0  # bumped on stop, so a connect in flight knows it is stale

    @property
    def name(self) -> str:
        return self.spec.name

    def to_json(self) -> dict:
        return chaos_api.proxy_json(self.spec, self.toxics)

    # ---------------------------------------------------------- listener

    async def start(self) -> None:
        """Bind the listener and mark the proxy enabled; raises
        ChaosListenError (500) and leaves it disabled on failure."""
        if self._server is not None:
            self.spec = replace(self.spec, enabled=True)
            return
        host, port = chaos_api.listen_bind_address(self.spec.listen, allow_remote=self.allow_remote)
        try:
            server = await asyncio.start_server(self._on_client, host, port, reuse_address=True,
                                                limit=2 * READ_CHUNK_BYTES)
        except OSError as err:
            self.spec = replace(self.spec, enabled=False)
            raise chaos_api.ChaosListenError(f"listen tcp {self.spec.listen}: {err.strerror or err}") from None
        self._server = server
        bound = server.sockets[0].getsockname()
        listen = chaos_api.join_host_port(bound[0], bound[1])
        self.spec = replace(self.spec, listen=listen, enabled=True)

    async def stop(self) -> None:
        """Close the listener and every connection; the proxy is disabled."""
        self._generation += 1
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for link in list(self._links):
            link.close()
        self._links.clear()
        self.spec = replace(self.spec, enabled=False)

    async def update(self, wanted: ProxySpec) -> None:
        """Changing listen or upstream restarts the proxy (dropping its
        connections); ``enabled`` starts or stops it."""
        if wanted.listen != self.spec.listen or wanted.upstream != self.spec.upstream:
            await self.stop()
            self.spec = replace(self.spec, listen=wanted.listen, upstream=wanted.upstream)
        if wanted.enabled and self._server is None:
            await self.start()
        elif not wanted.enabled:
            await self.stop()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        generation = self._generation
        if len(self._links) >= LINKS_PER_PROXY_MAX:
            log.warning("proxy %s: %d connections open, refusing another", self.name, len(self._links))
            writer.close()
            return
        host, port = chaos_api.split_host_port(self.spec.upstream, "upstream")
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(host, port, limit=2 * READ_CHUNK_BYTES),
                                              UPSTREAM_CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as err:
            log.info("proxy %s: upstream %s unreachable (%s); closing client", self.name, self.spec.upstream, err)
            writer.close()
            return
        if generation != self._generation:  # stopped while we were connecting
            writer.close()
            upstream[1].close()
            return
        link = Link(self, (reader, writer), upstream, self.toxics)
        self._links.add(link)
        try:
            await link.run()
        except Exception:  # a bug in one link must not take the listener down
            log.exception("proxy %s: link failed", self.name)
            link.close()
        finally:
            self._links.discard(link)

    # ------------------------------------------------------------ toxics

    def toxic(self, name: str) -> ToxicSpec:
        for toxic in self.toxics:
            if toxic.name == name:
                return toxic
        raise chaos_api.toxic_not_found(name)

    def add_toxic(self, spec: ToxicSpec) -> None:
        self.toxics.append(spec)
        for link in self._links:
            link.pipes[spec.stream].add_stage(spec)

    def update_toxic(self, spec: ToxicSpec) -> None:
        self.toxics = [spec if t.name == spec.name else t for t in self.toxics]
        for link in self._links:
            link.pipes[spec.stream].replace_stage(spec)

    def remove_toxic(self, name: str) -> None:
        spec = self.toxic(name)
        self.toxics.remove(spec)
        for link in self._links:
            link.pipes[spec.stream].remove_stage(name)

    def remove_all_toxics(self) -> None:
        for toxic in list(self.toxics):
            self.remove_toxic(toxic.name)

    @property
    def connection_count(self) -> int:
        return len(self._links)
