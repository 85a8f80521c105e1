"""Bookkeeping of object pulls from other nodes, as a pure state machine.

No I/O, no clock, no threads: :class:`PullManager` takes events through its
one mutator ``handle(event) -> list[effect]``. The shell
(``lineagerun.objects.transfer.puller``) runs the gRPC streams, writes the
bytes into the local store and feeds what happened back in as events; the
bytes themselves never pass through the core.

Model, per object:

1. ``PullRequested`` registers a requester. A pull of an object already being
   pulled joins it (one transfer serves every requester) and adds the
   addresses it names to the sources still to try.
2. At most ``transfers_max`` transfers run at once; further objects wait in a
   FIFO of at most ``waiting_pulls_max`` (beyond that a pull fails at once
   with ``UnavailableError``: the caller retries later rather than the node
   queueing without limit).
3. A transfer is one stream from one source (``StartTransfer`` with an
   ``attempt`` number unique within the manager; events of any other
   attempt are ignored). Its first
   message gives the size (``TransferHeader``); the core then asks for room
   in the local store (``ReserveObject``) once per pull. ``ChunkArrived``
   says bytes landed in the reserved file, in order.
4. A failed source (``TransferFailed``: unreachable, NOT_FOUND, stalled, or
   a protocol violation the core detects) is replaced by the next untried
   address, resuming at the offset reached so far, so a source that dies
   at 90% costs only the last 10% from the next one. Each address is tried
   at most once per pull. Only when every address has failed does the pull
   fail (``FailPull``; the reservation is given back with
   ``AbortReservation``).
5. ``TransferDone`` with every byte in asks the shell to ``SealObject``; the
   shell answers ``ObjectSealed`` and every requester gets ``CompletePull``,
   exactly once. ``ObjectAlreadyLocal`` (someone stored the object here
   meanwhile) completes the pull too; ``LocalStoreFailed`` (no room, store
   closed) fails it, since no other source can fix a local problem.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from lineagerun.exceptions import LineagerunError, NotFoundError, UnavailableError

# Streams that run at once. Each holds a gRPC stream, an open file and up to
# a flow-control window of bytes; 4 keeps a 1 Gb/s link busy with room for one
# slow source without letting a burst of arguments open hundreds of streams.
TRANSFERS_MAX = 4
# Distinct objects waiting for a transfer slot. A node resolving the arguments
# of its whole queue stays well below this; more means something is wrong.
WAITING_PULLS_MAX = 10_000


# ------------------------------------------------------------------ events


@dataclass(frozen=True)
class PullRequested:
    object_id: bytes
    addresses: tuple[str, ...]
    requester_id: int


@dataclass(frozen=True)
class TransferHeader:
    """The first message of a stream: the whole object's size and metadata."""

    object_id: bytes
    attempt: int
    size_bytes: int
    is_error: bool = False
    nested_object_ids: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class ChunkArrived:
    """``size_bytes`` bytes at ``offset`` are now in the reserved file."""

    object_id: bytes
    attempt: int
    offset: int
    size_bytes: int


@dataclass(frozen=True)
class TransferDone:
    """The source ended its stream normally."""

    object_id: bytes
    attempt: int


@dataclass(frozen=True)
class TransferFailed:
    object_id: bytes
    attempt: int
    address: str
    error: LineagerunError


@dataclass(frozen=True)
class ObjectAlreadyLocal:
    """``ReserveObject`` found the object already in the local store."""

    object_id: bytes


@dataclass(frozen=True)
class LocalStoreFailed:
    """Reserving, writing or sealing in the local store failed."""

    object_id: bytes
    error: BaseException


@dataclass(frozen=True)
class ObjectSealed:
    object_id: bytes


Event = (PullRequested | TransferHeader | ChunkArrived | TransferDone | TransferFailed | ObjectAlreadyLocal
         | LocalStoreFailed | ObjectSealed)

# ----------------------------------------------------------------- effects


@dataclass(frozen=True)
class StartTransfer:
    object_id: bytes
    address: str
    offset: int
    attempt: int


@dataclass(frozen=True)
class CancelTransfer:
    """Stop the stream of this attempt (the core gave up on it)."""

    object_id: bytes
    attempt: int


@dataclass(frozen=True)
class ReserveObject:
    """Create the object's unsealed file of ``size_bytes`` in the local store;
    answer ``ObjectAlreadyLocal`` or ``LocalStoreFailed`` if that fails."""

    object_id: bytes
    size_bytes: int


@dataclass(frozen=True)
class SealObject:
    """Every byte is in: seal, then answer ``ObjectSealed`` (or ``LocalStoreFailed``)."""

    object_id: bytes


@dataclass(frozen=True)
class AbortReservation:
    object_id: bytes


@dataclass(frozen=True)
class CompletePull:
    object_id: bytes
    requester_ids: tuple[int, ...]
    size_bytes: int
    is_error: bool
    nested_object_ids: tuple[bytes, ...]
    address: str | None  # the source that finished it; None if it was already local


@dataclass(frozen=True)
class FailPull:
    object_id: bytes
    requester_ids: tuple[int, ...]
    error: BaseException


Effect = (StartTransfer | CancelTransfer | ReserveObject | SealObject | AbortReservation | CompletePull
          | FailPull)


# ------------------------------------------------------------------- state


class PullPhase(enum.Enum):
    WAITING = "waiting"  # for a transfer slot
    TRANSFERRING = "transferring"
    SEALING = "sealing"


@dataclass
class _Pull:
    object_id: bytes
    requester_ids: list[int]
    addresses: list[str]  # in the order to try them; tried ones stay
    next_address_index: int = 0
    phase: PullPhase = PullPhase.WAITING
    attempt: int = 0
    address: str | None = None
    received_bytes: int = 0
    size_bytes: int | None = None
    is_error: bool = False
    nested_object_ids: tuple[bytes, ...] = ()
    reserved: bool = False
    failures: list[tuple[str, LineagerunError]] = field(default_factory=list)


class PullManager:
    """Which objects are being pulled, from where, for whom."""

    def __init__(self, *, transfers_max: int = TRANSFERS_MAX, waiting_pulls_max: int = WAITING_PULLS_MAX):
        if transfers_max < 1 or waiting_pulls_max < 0:
            raise ValueError(f"transfers_max must be >= 1 and waiting_pulls_max >= 0; "
                             f"got {transfers_max}, {waiting_pulls_max}")
        self.transfers_max = transfers_max
        self.waiting_pulls_max = waiting_pulls_max
        self._pulls: dict[bytes, _Pull] = {}
        self._waiting: deque[bytes] = deque()
        self._active_count = 0  # pulls TRANSFERRING or SEALING
        # Attempt numbers are unique across pulls, so an event of a stream from
        # an earlier pull of the same object is never taken for a current one.
        self._last_attempt = 0

    # ----------------------------------------------------------- queries

    def is_current(self, object_id: bytes, attempt: int) -> bool:
        """True if ``attempt`` is the transfer the core still wants for the object."""
        pull = self._pulls.get(object_id)
        return pull is not None and pull.phase is PullPhase.TRANSFERRING and pull.attempt == attempt

    def phase_of(self, object_id: bytes) -> PullPhase | None:
        pull = self._pulls.get(object_id)
        return pull.phase if pull else None

    def received_bytes(self, object_id: bytes) -> int:
        pull = self._pulls.get(object_id)
        return pull.received_bytes if pull else 0

    def active_count(self) -> int:
        return self._active_count

    def waiting_count(self) -> int:
        return len(self._waiting)

    def pulling(self) -> list[bytes]:
        return list(self._pulls)

    # ----------------------------------------------------------- mutator

    def handle(self, event: Event) -> list[Effect]:
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise TypeError(f"PullManager cannot handle {event!r}")
        return handler(self, event)

    def _on_pull_requested(self, event: PullRequested) -> list[Effect]:
        pull = self._pulls.get(event.object_id)
        if pull is not None:
            pull.requester_ids.append(event.requester_id)
            for address in event.addresses:
                if address not in pull.addresses:
                    pull.addresses.append(address)
            return []
        if not event.addresses:
            return [FailPull(event.object_id, (event.requester_id,),
                             NotFoundError(f"object {event.object_id.hex()} has no known location to pull from"))]
        pull = _Pull(event.object_id, [event.requester_id], list(dict.fromkeys(event.addresses)))
        if self._active_count < self.transfers_max:
            self._pulls[event.object_id] = pull
            self._active_count += 1
            return [self._start_next_source(pull)]
        if len(self._waiting) >= self.waiting_pulls_max:
            return [FailPull(event.object_id, (event.requester_id,), UnavailableError(
                f"{len(self._waiting)} objects are already waiting for a transfer slot "
                f"(waiting_pulls_max={self.waiting_pulls_max}); retry the pull later"))]
        self._pulls[event.object_id] = pull
        self._waiting.append(event.object_id)
        return []

    def _on_header(self, event: TransferHeader) -> list[Effect]:
        pull = self._current(event.object_id, event.attempt)
        if pull is None:
            return []
        if pull.size_bytes is None:
            pull.size_bytes = event.size_bytes
            pull.is_error = event.is_error
            pull.nested_object_ids = tuple(event.nested_object_ids)
        elif pull.size_bytes != event.size_bytes:
            return [CancelTransfer(pull.object_id, pull.attempt)] + self._source_failed(pull, UnavailableError(
                f"source says object {pull.object_id.hex()} has {event.size_bytes} bytes; an earlier "
                f"source said {pull.size_bytes} (the same id must have the same value)"))
        if not pull.reserved:
            pull.reserved = True
            return [ReserveObject(pull.object_id, pull.size_bytes)]
        return []

    def _on_chunk(self, event: ChunkArrived) -> list[Effect]:
        pull = self._current(event.object_id, event.attempt)
        if pull is None:
            return []
        end = event.offset + event.size_bytes
        if pull.size_bytes is None or event.offset != pull.received_bytes or end > pull.size_bytes:
            return [CancelTransfer(pull.object_id, pull.attempt)] + self._source_failed(pull, UnavailableError(
                f"source sent bytes {event.offset}..{end} of object {pull.object_id.hex()}; expected the "
                f"next bytes from {pull.received_bytes} of {pull.size_bytes}, after the header"))
        pull.received_bytes = end
        return []

    def _on_done(self, event: TransferDone) -> list[Effect]:
        pull = self._current(event.object_id, event.attempt)
        if pull is None:
            return []
        if pull.size_bytes is None or pull.received_bytes != pull.size_bytes:
            return self._source_failed(pull, UnavailableError(
                f"source ended the stream of object {pull.object_id.hex()} at byte {pull.received_bytes} "
                f"of {pull.size_bytes}"))
        pull.phase = PullPhase.SEALING
        return [SealObject(pull.object_id)]

    def _on_failed(self, event: TransferFailed) -> list[Effect]:
        pull = self._current(event.object_id, event.attempt)
        if pull is None:
            return []
        return self._source_failed(pull, event.error)

    def _on_already_local(self, event: ObjectAlreadyLocal) -> list[Effect]:
        pull = self._pulls.get(event.object_id)
        if pull is None or pull.phase is PullPhase.WAITING:
            return []
        pull.reserved = False  # the store kept its own object; nothing of ours to abort
        effects: list[Effect] = []
        if pull.phase is PullPhase.TRANSFERRING:
            effects.append(CancelTransfer(pull.object_id, pull.attempt))
        return effects + self._complete(pull, address=None)

    def _on_local_failed(self, event: LocalStoreFailed) -> list[Effect]:
        pull = self._pulls.get(event.object_id)
        if pull is None or pull.phase is PullPhase.WAITING:
            return []
        effects: list[Effect] = []
        if pull.phase is PullPhase.TRANSFERRING:
            effects.append(CancelTransfer(pull.object_id, pull.attempt))
        return effects + self._fail(pull, event.error)

    def _on_sealed(self, event: ObjectSealed) -> list[Effect]:
        pull = self._pulls.get(event.object_id)
        if pull is None or pull.phase is not PullPhase.SEALING:
            return []
        pull.reserved = False
        return self._complete(pull, address=pull.address)

    # ----------------------------------------------------------- helpers

    def _current(self, object_id: bytes, attempt: int) -> _Pull | None:
        return self._pulls[object_id] if self.is_current(object_id, attempt) else None

    def _start_next_source(self, pull: _Pull) -> StartTransfer:
        pull.address = pull.addresses[pull.next_address_index]
        pull.next_address_index += 1
        self._last_attempt += 1
        pull.attempt = self._last_attempt
        pull.phase = PullPhase.TRANSFERRING
        return StartTransfer(pull.object_id, pull.address, pull.received_bytes, pull.attempt)

    def _source_failed(self, pull: _Pull, error: LineagerunError) -> list[Effect]:
        pull.failures.append((pull.address or "", error))
        if pull.next_address_index < len(pull.addresses):
            return [self._start_next_source(pull)]
        return self._fail(pull, _combined_error(pull.object_id, pull.failures))

    def _complete(self, pull: _Pull, address: str | None) -> list[Effect]:
        self._remove(pull)
        return [CompletePull(pull.object_id, tuple(pull.requester_ids), pull.size_bytes or 0, pull.is_error,
                             pull.nested_object_ids, address)] + self._start_waiting()

    def _fail(self, pull: _Pull, error: BaseException) -> list[Effect]:
        self._remove(pull)
        effects: list[Effect] = [AbortReservation(pull.object_id)] if pull.reserved else []
        return effects + [FailPull(pull.object_id, tuple(pull.requester_ids), error)] + self._start_waiting()

    def _remove(self, pull: _Pull) -> None:
        del self._pulls[pull.object_id]
        self._active_count -= 1

    def _start_waiting(self) -> list[Effect]:
        effects: list[Effect] = []
        while self._waiting and self._active_count < self.transfers_max:
            pull = self._pulls[self._waiting.popleft()]
            self._active_count += 1
            effects.append(self._start_next_source(pull))
        return effects

    def check_invariants(self) -> None:
        active = [p for p in self._pulls.values() if p.phase is not PullPhase.WAITING]
        assert len(active) == self._active_count <= self.transfers_max, (len(active), self._active_count)
        assert len(self._waiting) <= self.waiting_pulls_max
        assert sorted(self._waiting) == sorted(p.object_id for p in self._pulls.values()
                                               if p.phase is PullPhase.WAITING)
        for pull in self._pulls.values():
            assert pull.requester_ids
            assert 0 <= pull.next_address_index <= len(pull.addresses)
            assert pull.size_bytes is None or pull.received_bytes <= pull.size_bytes
            if pull.phase is PullPhase.WAITING:
                assert pull.attempt == 0 and pull.received_bytes == 0 and not pull.reserved
            if pull.phase is PullPhase.SEALING:
                assert pull.received_bytes == pull.size_bytes and pull.reserved


def _combined_error(object_id: bytes, failures: list[tuple[str, LineagerunError]]) -> LineagerunError:
    """One error for a pull whose every source failed: the sources' common
    class if they agree (all NOT_FOUND: the object is gone from every node
    tried), else UnavailableError; the message lists every source."""
    listing = "; ".join(f"{address}: {type(error).__name__}: {error}" for address, error in failures)
    message = (f"could not pull object {object_id.hex()} from any of its {len(failures)} "
               f"source(s): {listing}")
    classes = {type(error) for _, error in failures}
    if len(classes) == 1:
        try:
            return classes.pop()(message)
        except TypeError:  # a class whose constructor wants other arguments
            pass
    if all(isinstance(error, NotFoundError) for _, error in failures):
        return NotFoundError(message)
    return UnavailableError(message)


_HANDLERS = {
    PullRequested: PullManager._on_pull_requested,
    TransferHeader: PullManager._on_header,
    ChunkArrived: PullManager._on_chunk,
    TransferDone: PullManager._on_done,
    TransferFailed: PullManager._on_failed,
    ObjectAlreadyLocal: PullManager._on_already_local,
    LocalStoreFailed: PullManager._on_local_failed,
    ObjectSealed: PullManager._on_sealed,
}
