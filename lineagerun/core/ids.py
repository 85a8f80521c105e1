"""Deterministic ids, laid out as Ray's (``src/ray/common/id.h``).

::

    JobID     4 bytes                      caller's bytes (or from_int)
    ActorID  16 = 12 unique + JobID        hash(job, parent task, submission index)
    TaskID   24 =  8 unique + ActorID      hash(job, parent task, submission index)
    ObjectID 28 = TaskID + 4-byte index    returns: 1..n; puts: high bit set
    NodeID, WorkerID  28 bytes             caller's random bytes
    FunctionID 28 bytes                    hash of the pickled function body

Every derived id is a pure function of its inputs (blake2b with a fixed
personalisation string and a domain tag per kind of id), so replaying the
lineage of a task (same parent task, same submission index) recreates the
very ids the first run produced: its object ids, the ids of the tasks it
submits, the ids of the actors it creates. Ray mixes the current time into
actor ids (ray#10481) to avoid reusing an id; lineagerun does not, because a
replayed actor creation must find its own record again. Ids stay unique
because the job id (random, from the caller) is part of every hash.

Differences from Ray, on purpose:

- integers inside ids (JobID.from_int, the object index) are big-endian, so
  that ids sort in the order of their numbers in control-store keys;
- put objects are told apart from return values by the index's high bit
  (``PUT_INDEX_FLAG``), not by counting past ``num_returns``, so an id alone
  says whether it is a put and needs no task spec to interpret.

Nil ids are all ``0xff`` bytes, as in Ray. ``ActorID.nil_from_job`` (unique
part nil, job part set) is the actor part of normal-task and driver ids.

The core is pure: nothing here reads a clock or a random source; NodeID,
WorkerID and JobID take their random bytes from the caller
(``NodeID(os.urandom(NodeID.SIZE))`` in a service).
"""

from __future__ import annotations

import hashlib
from typing import ClassVar, TypeVar

from lineagerun.exceptions import InvalidArgumentError

# blake2b's personalisation is at most 16 bytes; changing it changes every
# derived id (and breaks replay of lineage written before the change).
_PERSON = b"lineagerun.id.v1"
_NIL_BYTE = 0xFF

# Ray's kMaxObjectIndex is 2**31 - 1 as well: the index space is split in
# two halves, returns below the flag and puts above it.
PUT_INDEX_FLAG = 0x8000_0000
OBJECT_INDEX_MAX = PUT_INDEX_FLAG - 1
SUBMISSION_INDEX_MAX = 2**64 - 1
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")

_ID = TypeVar("_ID", bound="BaseID")


def _derive(tag: bytes, parts: list[bytes], size: int) -> bytes:
    h = hashlib.blake2b(digest_size=size, person=_PERSON)
    h.update(tag)
    for part in parts:
        # Length-prefixing each part keeps (a, bc) and (ab, c) apart.
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


def _check_submission_index(value: int) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SUBMISSION_INDEX_MAX:
        raise InvalidArgumentError(
            f"parent_submission_index must be an int in [0, 2**64), got {value!r}"
        )
    return value.to_bytes(8, "big")


def _check_type(name: str, value: object, cls: type) -> None:
    if not isinstance(value, cls):
        raise InvalidArgumentError(f"{name} must be a {cls.__name__}, got {type(value).__name__} {value!r}")


class BaseID:
    """Fixed-size binary id. Immutable, hashable, ordered within one type."""

    SIZE: ClassVar[int] = 0
    __slots__ = ("_binary",)

    def __init__(self, binary: bytes):
        if isinstance(binary, (bytearray, memoryview)):
            binary = bytes(binary)
        if not isinstance(binary, bytes):
            raise InvalidArgumentError(
                f"{type(self).__name__} takes {self.SIZE} bytes, got {type(binary).__name__}; "
                f"use {type(self).__name__}.from_hex() for a hex string"
            )
        if len(binary) != self.SIZE:
            raise InvalidArgumentError(
                f"{type(self).__name__} takes exactly {self.SIZE} bytes, got {len(binary)}"
            )
        object.__setattr__(self, "_binary", binary)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    @classmethod
    def from_binary(cls: type[_ID], binary: bytes) -> _ID:
        return cls(binary)

    @classmethod
    def from_hex(cls: type[_ID], text: str) -> _ID:
        if not isinstance(text, str):
            raise InvalidArgumentError(
                f"{cls.__name__}.from_hex takes a str of {2 * cls.SIZE} hex digits, got {type(text).__name__}"
            )
        if len(text) != 2 * cls.SIZE:
            raise InvalidArgumentError(
                f"{cls.__name__}.from_hex takes {2 * cls.SIZE} hex digits, got {len(text)}: {text[:80]!r}"
            )
        if not all(c in _HEX_DIGITS for c in text):  # bytes.fromhex would skip spaces
            raise InvalidArgumentError(
                f"{cls.__name__}.from_hex: {text[:80]!r} is not hexadecimal (digits 0-9, a-f)"
            )
        return cls(bytes.fromhex(text))

    @classmethod
    def nil(cls: type[_ID]) -> _ID:
        return cls(bytes([_NIL_BYTE]) * cls.SIZE)

    def is_nil(self) -> bool:
        return self._binary == bytes([_NIL_BYTE]) * self.SIZE

    def binary(self) -> bytes:
        return self._binary

    def hex(self) -> str:
        return self._binary.hex()

    def __bytes__(self) -> bytes:
        return self._binary

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._binary == other._binary  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._binary))

    def __lt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._binary < other._binary  # type: ignore[attr-defined]

    def __le__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._binary <= other._binary  # type: ignore[attr-defined]

    def __gt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._binary > other._binary  # type: ignore[attr-defined]

    def __ge__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._binary >= other._binary  # type: ignore[attr-defined]

    def __reduce__(self):
        return (type(self), (self._binary,))

    def _short(self) -> str:
        # 8 hex digits tell ids apart in logs; the full id is .hex().
        text = self.hex()
        return text if len(text) <= 8 else text[:8] + "\u2026"

    def __repr__(self) -> str:
        if self.is_nil():
            return f"{type(self).__name__}.nil()"
        return f"{type(self).__name__}({self._short()})"

    __str__ = hex


class JobID(BaseID):
    SIZE = 4
    __slots__ = ()

    @classmethod
    def from_int(cls, value: int) -> "JobID":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32 - 1:
            raise InvalidArgumentError(f"JobID.from_int takes an int in [0, 2**32 - 1), got {value!r}")
        return cls(value.to_bytes(4, "big"))

    def to_int(self) -> int:
        return int.from_bytes(self._binary, "big")


class ActorID(BaseID):
    SIZE = 16
    UNIQUE_SIZE = 12
    __slots__ = ()

    @classmethod
    def of(cls, job_id: JobID, parent_task_id: "TaskID", parent_submission_index: int) -> "ActorID":
        """The id of the actor created by ``parent_task_id``'s
        ``parent_submission_index``-th submission (Ray: ``ActorID::Of``)."""
        _check_type("job_id", job_id, JobID)
        _check_type("parent_task_id", parent_task_id, TaskID)
        index = _check_submission_index(parent_submission_index)
        unique = _derive(b"actor", [job_id.binary(), parent_task_id.binary(), index], cls.UNIQUE_SIZE)
        return cls(unique + job_id.binary())

    @classmethod
    def nil_from_job(cls, job_id: JobID) -> "ActorID":
        _check_type("job_id", job_id, JobID)
        return cls(bytes([_NIL_BYTE]) * cls.UNIQUE_SIZE + job_id.binary())

    def job_id(self) -> JobID:
        return JobID(self._binary[self.UNIQUE_SIZE:])

    def is_nil_actor(self) -> bool:
        """True for the nil actor of some job (normal tasks and drivers)."""
        return self._binary[: self.UNIQUE_SIZE] == bytes([_NIL_BYTE]) * self.UNIQUE_SIZE


class TaskID(BaseID):
    SIZE = 24
    UNIQUE_SIZE = 8
    __slots__ = ()

    @classmethod
    def for_normal_task(cls, job_id: JobID, parent_task_id: "TaskID", parent_submission_index: int) -> "TaskID":
        _check_type("job_id", job_id, JobID)
        _check_type("parent_task_id", parent_task_id, TaskID)
        index = _check_submission_index(parent_submission_index)
        unique = _derive(b"task", [job_id.binary(), parent_task_id.binary(), index], cls.UNIQUE_SIZE)
        return cls(unique + ActorID.nil_from_job(job_id).binary())

    @classmethod
    def for_actor_task(
        cls, job_id: JobID, parent_task_id: "TaskID", parent_submission_index: int, actor_id: ActorID
    ) -> "TaskID":
        _check_type("job_id", job_id, JobID)
        _check_type("parent_task_id", parent_task_id, TaskID)
        _check_type("actor_id", actor_id, ActorID)
        index = _check_submission_index(parent_submission_index)
        unique = _derive(
            b"actor-task", [job_id.binary(), parent_task_id.binary(), index, actor_id.binary()], cls.UNIQUE_SIZE
        )
        return cls(unique + actor_id.binary())

    @classmethod
    def for_actor_creation(cls, actor_id: ActorID) -> "TaskID":
        _check_type("actor_id", actor_id, ActorID)
        return cls(bytes([_NIL_BYTE]) * cls.UNIQUE_SIZE + actor_id.binary())

    @classmethod
    def for_driver(cls, job_id: JobID) -> "TaskID":
        _check_type("job_id", job_id, JobID)
        return cls(bytes([_NIL_BYTE]) * cls.UNIQUE_SIZE + ActorID.nil_from_job(job_id).binary())

    def actor_id(self) -> ActorID:
        return ActorID(self._binary[self.UNIQUE_SIZE:])

    def job_id(self) -> JobID:
        return self.actor_id().job_id()

    def _unique_is_nil(self) -> bool:
        return self._binary[: self.UNIQUE_SIZE] == bytes([_NIL_BYTE]) * self.UNIQUE_SIZE

    def is_for_actor_creation(self) -> bool:
        return self._unique_is_nil() and not self.actor_id().is_nil_actor()

    def is_for_driver(self) -> bool:
        return self._unique_is_nil() and self.actor_id().is_nil_actor() and not self.is_nil()

    def _short(self) -> str:
        if self._unique_is_nil():  # creation and driver tasks differ only in the actor part
            kind = "creation" if self.is_for_actor_creation() else "driver"
            return f"{kind}:{self.actor_id()._short() if kind == 'creation' else self.job_id().hex()}"
        return super()._short()


class ObjectID(BaseID):
    SIZE = 28
    INDEX_SIZE = 4
    __slots__ = ()

    @classmethod
    def from_index(cls, task_id: TaskID, return_index: int) -> "ObjectID":
        """The ``return_index``-th return value (1-based) of ``task_id``."""
        _check_type("task_id", task_id, TaskID)
        if isinstance(return_index, bool) or not isinstance(return_index, int) or not (
            1 <= return_index <= OBJECT_INDEX_MAX
        ):
            raise InvalidArgumentError(f"return_index must be an int in [1, {OBJECT_INDEX_MAX}], got {return_index!r}")
        return cls(task_id.binary() + return_index.to_bytes(cls.INDEX_SIZE, "big"))

    @classmethod
    def for_put(cls, task_id: TaskID, put_index: int) -> "ObjectID":
        """The ``put_index``-th (1-based) ``put`` made while ``task_id`` ran."""
        _check_type("task_id", task_id, TaskID)
        if isinstance(put_index, bool) or not isinstance(put_index, int) or not 1 <= put_index <= OBJECT_INDEX_MAX:
            raise InvalidArgumentError(f"put_index must be an int in [1, {OBJECT_INDEX_MAX}], got {put_index!r}")
        return cls(task_id.binary() + (PUT_INDEX_FLAG | put_index).to_bytes(cls.INDEX_SIZE, "big"))

    def task_id(self) -> TaskID:
        return TaskID(self._binary[: TaskID.SIZE])

    def _raw_index(self) -> int:
        return int.from_bytes(self._binary[TaskID.SIZE:], "big")

    def is_put(self) -> bool:
        return not self.is_nil() and bool(self._raw_index() & PUT_INDEX_FLAG)

    def index(self) -> int:
        """The return index (for a return value) or the put index (for a put)."""
        return self._raw_index() & ~PUT_INDEX_FLAG

    def _short(self) -> str:
        return f"{self.task_id()._short()}:{'put' if self.is_put() else ''}{self.index()}"


class UniqueID(BaseID):
    """28 bytes that the caller made random (Ray: ``UniqueID``)."""

    SIZE = 28
    __slots__ = ()


class NodeID(UniqueID):
    __slots__ = ()


class WorkerID(UniqueID):
    __slots__ = ()

    @classmethod
    def for_driver(cls, job_id: JobID) -> "WorkerID":
        """The driver's worker id, derived from its job (Ray:
        ``ComputeDriverIdFromJob``): job bytes, then nil bytes."""
        _check_type("job_id", job_id, JobID)
        return cls(job_id.binary() + bytes([_NIL_BYTE]) * (cls.SIZE - JobID.SIZE))


class FunctionID(BaseID):
    """Content hash of a pickled function or class: one export per body."""

    SIZE = 28
    __slots__ = ()

    @classmethod
    def for_body(cls, body: bytes) -> "FunctionID":
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(f"FunctionID.for_body takes bytes, got {type(body).__name__}")
        return cls(_derive(b"function", [bytes(body)], cls.SIZE))
