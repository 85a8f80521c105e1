"""``lineagerun.util.ActorPool``, as Ray's ``ray.util.ActorPool``: a fixed
set of actors that values are fed to, each busy with one call at a time.

``fn(actor, value)`` must start one call and return its ``ObjectRef``; the
actor is busy until that ref is ready. Values submitted while every actor
is busy wait here and go to the next actor that becomes free. Results come
back in submission order (``get_next``/``map``) or as they finish
(``get_next_unordered``/``map_unordered``); after unordered ones,
``get_next`` returns the earliest submission not returned yet. An actor
whose call failed because it is dead (``ActorError``) leaves the pool.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterable, Iterator

from lineagerun.api.object_ref import ObjectRef
from lineagerun.exceptions import ActorError, GetTimeoutError, InvalidArgumentError


class ActorPool:
    def __init__(self, actors: Iterable):
        self._idle = list(actors)
        self._waiting: deque = deque()  # (fn, value) submitted while no actor was free
        self._busy: dict = {}  # ref -> (submission index, actor)
        self._by_index: dict[int, Any] = {}  # submission index -> ref, not returned yet
        self._next_index = 0
        self._next_ordered = 0  # get_next returns this index next

    # ---------------------------------------------------------- feeding

    def submit(self, fn: Callable, value: Any) -> None:
        """Run ``fn(actor, value)`` on a free actor now, or once one is free."""
        if not self._idle:
            self._waiting.append((fn, value))
            return
        actor = self._idle.pop()
        try:
            ref = fn(actor, value)
        except BaseException:
            self._idle.append(actor)
            raise
        if not isinstance(ref, ObjectRef):
            self._idle.append(actor)
            raise InvalidArgumentError(f"the pool's fn must return the ObjectRef of one call, got {ref!r}")
        self._busy[ref] = (self._next_index, actor)
        self._by_index[self._next_index] = ref
        self._next_index += 1

    def map(self, fn: Callable, values: Iterable) -> Iterator[Any]:
        """Results of ``fn`` over ``values``, in their order. Results not
        yet fetched from earlier submissions are dropped first."""
        return self._map(fn, values, self.get_next)

    def map_unordered(self, fn: Callable, values: Iterable) -> Iterator[Any]:
        """As ``map``, but each result as soon as it is ready."""
        return self._map(fn, values, self.get_next_unordered)

    def _map(self, fn: Callable, values: Iterable, next_result: Callable[[], Any]) -> Iterator[Any]:
        self._drop_pending_results()
        for value in values:
            self.submit(fn, value)
        return self._results(next_result)

    def _results(self, next_result: Callable[[], Any]) -> Iterator[Any]:
        while self.has_next():
            yield next_result()

    def _drop_pending_results(self) -> None:
        """Earlier submissions are given up: waiting values dropped, running
        calls' results ignored (their actors free)."""
        self._waiting.clear()
        for ref in list(self._busy):
            self._release(ref)

    # ---------------------------------------------------------- results

    def has_next(self) -> bool:
        """Whether a submitted call's result has not been returned yet."""
        return bool(self._busy) or bool(self._waiting)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order. With ``timeout``: raises
        ``GetTimeoutError`` if it is not ready by then, and with
        ``ignore_if_timedout=True`` also gives that call up (its actor is
        free again) so the following result comes next."""
        if not self.has_next():
            raise StopIteration("no more results to get")
        if self._next_ordered not in self._by_index:
            raise InvalidArgumentError("values wait but no call runs: the pool has no actors (push() one)")
        ref = self._by_index[self._next_ordered]
        if timeout is not None and not self._ready([ref], timeout):
            if not ignore_if_timedout:
                raise GetTimeoutError(f"the pool's next result was not ready within {timeout} s")
            self._release(ref)
            raise GetTimeoutError(f"the pool's next result was not ready within {timeout} s; its call is ignored")
        return self._result(ref)

    def get_next_unordered(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The first result to be ready, whichever call it is (timeouts as ``get_next``)."""
        if not self.has_next():
            raise StopIteration("no more results to get")
        if not self._busy:
            raise InvalidArgumentError("values wait but no call runs: the pool has no actors (push() one)")
        ready = self._ready(list(self._busy), timeout)
        if not ready:
            if ignore_if_timedout:
                self._release(min(self._busy, key=lambda r: self._busy[r][0]))
            raise GetTimeoutError(f"no result of the pool was ready within {timeout} s")
        return self._result(ready[0])

    def _ready(self, refs: list, timeout: float | None) -> list:
        from lineagerun.api.objects import wait

        ready, _ = wait(refs, num_returns=1, timeout=timeout)
        return ready

    def _result(self, ref) -> Any:
        """``ref``'s value (ready); its actor goes back to work unless the
        call failed because the actor is dead (as Ray: it leaves the pool)."""
        from lineagerun.api.objects import get

        try:
            value = get(ref)
        except ActorError:
            self._release(ref, alive=False)
            raise
        self._release(ref)
        return value

    def _release(self, ref, alive: bool = True) -> None:
        """``ref``'s call is done with (returned or ignored): its actor takes
        the next waiting value, or becomes free."""
        index, actor = self._busy.pop(ref)
        del self._by_index[index]
        while self._next_ordered < self._next_index and self._next_ordered not in self._by_index:
            self._next_ordered += 1  # the earliest result not returned yet comes next
        if not alive:
            return
        self._idle.append(actor)
        if self._waiting:
            self.submit(*self._waiting.popleft())

    # ----------------------------------------------------------- actors

    def has_free(self) -> bool:
        """Whether an actor is idle and no value waits for one."""
        return bool(self._idle) and not self._waiting

    def pop_idle(self):
        """Take an idle actor out of the pool (None if none is free)."""
        return self._idle.pop() if self.has_free() else None

    def push(self, actor) -> None:
        """Add ``actor`` to the pool (it takes a waiting value at once)."""
        if actor in self._idle or any(actor == busy for _, busy in self._busy.values()):
            raise InvalidArgumentError("this actor already belongs to the pool")
        self._idle.append(actor)
        if self._waiting:
            self.submit(*self._waiting.popleft())
