"""``lineagerun.util.queue.Queue``, as Ray's ``ray.util.queue.Queue``: a
first-in first-out queue held by an async actor, shared by passing the
``Queue`` object to tasks and actors (it pickles as its actor's handle).

Blocking ``put``/``get`` wait inside the actor (on its event loop), so
many producers and consumers wait at once without holding a thread each.
``Empty`` and ``Full`` are the standard library's ``queue.Empty`` and
``queue.Full`` underneath, so either spelling catches them.

As every actor, the queue lives in one process: its items are lost if that
process dies (the actor is not restarted unless ``actor_options`` says
``max_restarts``, and a restarted queue starts empty: its calls are not
replayed, since a queue's state is what its consumers took).
"""

from __future__ import annotations

import asyncio
import queue as std_queue
from collections.abc import Iterable
from typing import Any

from lineagerun.exceptions import InvalidArgumentError


class Empty(std_queue.Empty):
    """``get`` found nothing (``block=False``), or nothing came in time."""


class Full(std_queue.Full):
    """``put`` found no room (``block=False``), or none was made in time."""


class _QueueActor:
    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.items: asyncio.Queue = asyncio.Queue(maxsize)

    async def qsize(self) -> int:
        return self.items.qsize()

    async def put(self, item: Any, timeout: float | None) -> None:
        try:
            await asyncio.wait_for(self.items.put(item), timeout)
        except asyncio.TimeoutError:
            raise Full(f"no room in the queue within {timeout} s") from None

    async def get(self, timeout: float | None) -> Any:
        try:
            return await asyncio.wait_for(self.items.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty(f"nothing in the queue within {timeout} s") from None

    async def put_nowait(self, item: Any) -> None:
        try:
            self.items.put_nowait(item)
        except asyncio.QueueFull:
            raise Full(f"the queue is full ({self.maxsize} items)") from None

    async def put_nowait_batch(self, items: list) -> None:
        if self.maxsize > 0 and len(items) + self.items.qsize() > self.maxsize:
            raise Full(f"{len(items)} items do not fit: the queue holds {self.items.qsize()} of {self.maxsize}")
        for item in items:
            self.items.put_nowait(item)

    async def get_nowait(self) -> Any:
        try:
            return self.items.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty("the queue is empty") from None

    async def get_nowait_batch(self, count: int) -> list:
        if count > self.items.qsize():
            raise Empty(f"{count} items asked for, the queue holds {self.items.qsize()}")
        return [self.items.get_nowait() for _ in range(count)]


class Queue:
    """A queue of at most ``maxsize`` items (0: unbounded), held by an actor
    created with ``actor_options`` (e.g. ``{"name": ..., "max_restarts": ...}``)."""

    def __init__(self, maxsize: int = 0, actor_options: dict | None = None):
        from lineagerun import remote

        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise InvalidArgumentError(f"maxsize must be an int >= 0 (0: unbounded), got {maxsize!r}")
        self.maxsize = maxsize
        self.actor = remote(_QueueActor).options(**(actor_options or {})).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        return self._get(self.actor.qsize.remote())

    qsize = size

    def empty(self) -> bool:
        return self.size() == 0

    def full(self) -> bool:
        return self.maxsize > 0 and self.size() >= self.maxsize

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``; with ``block``, wait for room (at most ``timeout``
        seconds, then ``Full``); without, ``Full`` at once if there is none."""
        if not block:
            return self._get(self.actor.put_nowait.remote(item))
        return self._get(self.actor.put.remote(item, _checked_timeout(timeout)))

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item; with ``block``, wait for one
        (at most ``timeout`` seconds, then ``Empty``)."""
        if not block:
            return self._get(self.actor.get_nowait.remote())
        return self._get(self.actor.get.remote(_checked_timeout(timeout)))

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        ref = self.actor.put.remote(item, _checked_timeout(timeout)) if block else self.actor.put_nowait.remote(item)
        await ref

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        ref = self.actor.get.remote(_checked_timeout(timeout)) if block else self.actor.get_nowait.remote()
        return await ref

    def put_nowait(self, item: Any) -> None:
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def put_nowait_batch(self, items: Iterable) -> None:
        """Add all of ``items`` at once, or none (``Full``) if they do not fit."""
        if not isinstance(items, Iterable) or isinstance(items, (str, bytes)):
            raise InvalidArgumentError(f"put_nowait_batch takes an iterable of items, got {type(items).__name__}")
        self._get(self.actor.put_nowait_batch.remote(list(items)))

    def get_nowait_batch(self, num_items: int) -> list:
        """Remove and return ``num_items`` items at once, or none (``Empty``)."""
        if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 0:
            raise InvalidArgumentError(f"num_items must be an int >= 0, got {num_items!r}")
        return self._get(self.actor.get_nowait_batch.remote(num_items))

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """Stop the queue's actor (its items are gone). ``force`` and
        ``grace_period_s`` are accepted for Ray compatibility: the actor is
        stopped at once either way."""
        if self.actor is not None:
            from lineagerun import kill

            kill(self.actor)
            self.actor = None

    @staticmethod
    def _get(ref) -> Any:
        from lineagerun import get

        return get(ref)


def _checked_timeout(timeout: float | None) -> float | None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
        raise InvalidArgumentError(f"timeout must be None or a number >= 0, got {timeout!r}")
    return timeout


__all__ = ["Empty", "Full", "Queue"]
