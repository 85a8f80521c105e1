"""``lineagerun.actor``, as Ray's ``ray.actor``: the actor classes and
``exit_actor()``."""

from __future__ import annotations

import asyncio
from typing import NoReturn

from lineagerun.api.actor import ActorClass, ActorHandle
from lineagerun.exceptions import ActorExitRequested, AsyncioActorExit


def exit_actor() -> NoReturn:
    """End the current actor for good, from inside one of its methods (as
    Ray). The method does not return: its caller, and every call not
    started yet, get ``ActorDiedError``; the actor is not restarted (even
    with ``max_restarts``, even detached); ``atexit`` handlers of the actor's
    process run first. Calls running concurrently (threaded or async
    actors) end with the process. Raises ``TypeError`` outside an actor:
    use ``lineagerun.kill(handle)`` there."""
    from lineagerun.worker.core_worker import current_task

    running = current_task.get()
    if running is None or running.actor_id is None:
        raise TypeError("exit_actor() ends the actor whose method calls it; it was called outside an actor "
                        "(use lineagerun.kill(handle) to stop an actor from elsewhere)")
    message = f"actor {running.actor_id.hex()} called exit_actor()"
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise ActorExitRequested(message) from None
    raise AsyncioActorExit(message)


__all__ = ["ActorClass", "ActorHandle", "exit_actor"]
