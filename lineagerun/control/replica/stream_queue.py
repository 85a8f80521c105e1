"""The queue behind a replica's server stream (``Subscribe``, ``Answers``):
what the core publishes is queued, the stream's handler yields it, and an
error queued instead ends the stream with that error's typed code."""

from __future__ import annotations

import asyncio

from lineagerun.transport.errors import abort_aio


async def stream_from(queue: asyncio.Queue, context):
    """Yield what is queued until an exception is: abort with it."""
    while True:
        item = await queue.get()
        if isinstance(item, Exception):
            await abort_aio(context, item)
        yield item


def end_with(queue: asyncio.Queue, error: Exception) -> None:
    """Queue ``error`` for the stream, dropping the oldest items if full
    (the stream ends at the error anyway)."""
    while True:
        try:
            queue.put_nowait(error)
            return
        except asyncio.QueueFull:
            queue.get_nowait()
