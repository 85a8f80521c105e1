"""Toxics as they act on one pipe (one connection, one direction).

A pipe passes each chunk through its stages in order; a stage may delay it,
cut it, drop it, or end the pipe (``PipeEnded``: a close or a TCP reset).
Whether a toxic applies to a pipe is decided once, when the stage is made,
from its toxicity and the injected ``random.Random``; a toxic that does not
apply is a ``NoopStage`` with the same name. The arithmetic lives in
``lineagerun.core.chaos_api``.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Awaitable, Callable

from lineagerun.core import chaos_api
from lineagerun.core.chaos_api import ToxicSpec


@dataclass(frozen=True)
class Chunk:
    data: bytes
    arrival_s: float  # loop.time() when the proxy read it


Emit = Callable[[Chunk], Awaitable[None]]


class PipeEnded(Exception):
    """A stage ends its pipe: ``kind`` is "close" (FIN) or "reset" (RST)."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


def _now() -> float:
    return asyncio.get_running_loop().time()


class Stage:
    """A toxic that does nothing: chunks and EOF pass straight on."""

    end_kind = "close"  # what reaching deadline_s() does to the pipe

    def __init__(self, spec: ToxicSpec, rng: random.Random):
        self.spec = spec
        self.rng = rng
        self.started_s = _now()
        self._interrupted = asyncio.Event()

    @property
    def name(self) -> str:
        return self.spec.name

    async def on_chunk(self, chunk: Chunk, emit: Emit) -> None:
        await emit(chunk)

    async def on_eof(self) -> None:
        return None

    def deadline_s(self) -> float | None:
        return None

    def closes_on_removal(self) -> bool:
        return False

    def inherit(self, previous: "Stage") -> None:
        """Carry per-connection state over an update of the toxic."""

    def interrupt(self) -> None:
        """The toxic was removed or replaced: stop waiting, let data through."""
        self._interrupted.set()

    async def sleep_until(self, when_s: float) -> None:
        remaining = when_s - _now()
        if remaining <= 0 or self._interrupted.is_set():
            return
        try:
            await asyncio.wait_for(self._interrupted.wait(), remaining)
        except TimeoutError:
            pass


class NoopStage(Stage):
    pass


class LatencyStage(Stage):
    async def on_chunk(self, chunk: Chunk, emit: Emit) -> None:
        jitter_ms = self.spec.attr("jitter")
        draw = self.rng.random() if jitter_ms > 0 else 0.5  # no draw without jitter: runs stay reproducible
        delay_ms = chaos_api.latency_delay_ms(self.spec.attr("latency"), jitter_ms, draw)
        # From the chunk's arrival, not from now: chunks queued behind a
        # delayed one are not delayed twice.
        await self.sleep_until(chunk.arrival_s + delay_ms / 1000.0)
        await emit(chunk)


class BandwidthStage(Stage):
    def __init__(self, spec: ToxicSpec, rng: random.Random):
        super().__init__(spec, rng)
        self._next_send_s = 0.0

    async def on_chunk(self, chunk: Chunk, emit: Emit) -> None:
        offset = 0
        for piece_bytes, send_s in chaos_api.bandwidth_pieces(len(chunk.data), self.spec.attr("rate")):
            if send_s > 0 and not self._interrupted.is_set():
                self._next_send_s = max(self._next_send_s, _now()) + send_s
                await self.sleep_until(self._next_send_s)
            await emit(Chunk(chunk.data[offset:offset + piece_bytes], chunk.arrival_s))
            offset += piece_bytes


class SlowCloseStage(Stage):
    async def on_eof(self) -> None:
        await self.sleep_until(_now() + self.spec.attr("delay") / 1000.0)


class TimeoutStage(Stage):
    """Drops everything; closes the pipe after ``timeout`` ms (never if 0).
    Removing it closes the pipe too, as the original's Cleanup does."""

    async def on_chunk(self, chunk: Chunk, emit: Emit) -> None:
        return None

    def deadline_s(self) -> float | None:
        timeout_ms = self.spec.attr("timeout")
        return self.started_s + timeout_ms / 1000.0 if timeout_ms > 0 else None

    def closes_on_removal(self) -> bool:
        return True


class ResetPeerStage(Stage):
    """Drops data; ``timeout`` ms after the first data (or EOF) arrives,
    resets the connection (SO_LINGER 0, so the peers see RST)."""

    end_kind = "reset"

    def __init__(self, spec: ToxicSpec, rng: random.Random):
        super().__init__(spec, rng)
        self._reset_at_s: float | None = None

    def _arm(self) -> float:
        if self._reset_at_s is None:
            self._reset_at_s = _now() + self.spec.attr("timeout") / 1000.0
        return self._reset_at_s

    async def on_chunk(self, chunk: Chunk, emit: Emit) -> None:
        self._arm()

    async def on_eof(self) -> None:
        await self.sleep_until(self._arm())
        raise PipeEnded("reset")

    def deadline_s(self) -> float | None:
        return self._reset_at_s


class SlicerStage(Stage):
    async def on_chunk(self, chunk: Chunk, emit: Emit) -> None:
        cuts = chaos_api.slicer_cuts(len(chunk.data), self.spec.attr("average_size"),
                                     self.spec.attr("size_variation"), self.rng.randint)
        delay_s = self.spec.attr("delay") / 1_000_000.0
        for index, (start, end) in enumerate(cuts):
            await emit(Chunk(chunk.data[start:end], chunk.arrival_s))
            if delay_s > 0 and index + 1 < len(cuts):
                await self.sleep_until(_now() + delay_s)


class LimitDataStage(Stage):
    def __init__(self, spec: ToxicSpec, rng: random.Random):
        super().__init__(spec, rng)
        self.sent_bytes = 0

    def inherit(self, previous: Stage) -> None:
        if isinstance(previous, LimitDataStage):
            self.sent_bytes = previous.sent_bytes

    async def on_chunk(self, chunk: Chunk, emit: Emit) -> None:
        take, done = chaos_api.limit_data_take(self.spec.attr("bytes"), self.sent_bytes, len(chunk.data))
        if take > 0:
            self.sent_bytes += take
            await emit(Chunk(chunk.data[:take], chunk.arrival_s))
        if done:
            raise PipeEnded("close")


_STAGE_BY_TYPE: dict[str, type[Stage]] = {
    "latency": LatencyStage,
    "bandwidth": BandwidthStage,
    "slow_close": SlowCloseStage,
    "timeout": TimeoutStage,
    "reset_peer": ResetPeerStage,
    "slicer": SlicerStage,
    "limit_data": LimitDataStage,
}
assert set(_STAGE_BY_TYPE) == set(chaos_api.TOXIC_ATTRIBUTES)


def make_stage(spec: ToxicSpec, rng: random.Random) -> Stage:
    """The stage for one pipe; the toxicity draw happens here, once."""
    if not chaos_api.toxic_applies(spec.toxicity, rng.random()):
        return NoopStage(spec, rng)
    return _STAGE_BY_TYPE[spec.type](spec, rng)
