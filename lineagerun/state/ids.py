"""Id parsing and short display forms for the state commands.

The kind of an id given on the command line is known from its length
(``lineagerun.core.ids``): 28 bytes (56 hex digits) is an object, 24 a task,
16 an actor. Node, worker and function ids are 28 bytes too, so they are only
accepted where the command says which kind it wants.
"""

from __future__ import annotations

from lineagerun.core.ids import ActorID, NodeID, ObjectID, TaskID
from lineagerun.exceptions import InvalidArgumentError

_KINDS_BY_SIZE = {ObjectID.SIZE: ObjectID, TaskID.SIZE: TaskID, ActorID.SIZE: ActorID}
_KIND_NAMES = {"object": ObjectID, "task": TaskID, "actor": ActorID, "node": NodeID}


def _clean(text: object) -> str:
    if isinstance(text, (bytes, bytearray)):
        return bytes(text).hex()
    if not isinstance(text, str):
        raise InvalidArgumentError(f"an id is a hex string, got {type(text).__name__} {text!r:.80}")
    return text.strip().lower()


def parse_lineage_id(text: object) -> ObjectID | TaskID | ActorID:
    """An object, task or actor id, told apart by length."""
    if isinstance(text, (ObjectID, TaskID, ActorID)):
        return text
    clean = _clean(text)
    cls = _KINDS_BY_SIZE.get(len(clean) // 2) if len(clean) % 2 == 0 else None
    if cls is None:
        raise InvalidArgumentError(
            f"{clean[:80]!r} is not an object, task or actor id: expected {2 * ObjectID.SIZE} hex digits (object), "
            f"{2 * TaskID.SIZE} (task) or {2 * ActorID.SIZE} (actor), got {len(clean)}; "
            f"copy ids from `lineagerun list tasks|objects|actors`")
    return cls.from_hex(clean)


def parse_id_of(kind: str, text: object):
    """An id of a named kind ("object", "task", "actor", "node")."""
    cls = _KIND_NAMES.get(kind)
    if cls is None:
        raise InvalidArgumentError(f"unknown id kind {kind!r}; use one of {sorted(_KIND_NAMES)}")
    if isinstance(text, cls):
        return text
    clean = _clean(text)
    if len(clean) != 2 * cls.SIZE:
        raise InvalidArgumentError(
            f"{clean[:80]!r} is not a {kind} id: {kind} ids are {2 * cls.SIZE} hex digits, got {len(clean)}")
    return cls.from_hex(clean)


def hex_or_empty(raw: bytes) -> str:
    return raw.hex() if raw else ""


def short_task(task_id: bytes) -> str:
    """The part of a task id that tells tasks apart: the 8 unique bytes, or
    ``creation:<actor>`` for actor-creation tasks (whose unique part is nil)."""
    tid = TaskID(task_id)
    if tid.is_for_actor_creation():
        return "creation:" + tid.actor_id().hex()[:24]
    if tid.is_for_driver():
        return "driver:" + tid.job_id().hex()
    return task_id[: TaskID.UNIQUE_SIZE].hex()


def short_object(object_id: bytes) -> str:
    oid = ObjectID(object_id)
    index = f"put{oid.index()}" if oid.is_put() else str(oid.index())
    return f"{short_task(oid.task_id().binary())}:{index}"


def short_node(node_id: bytes) -> str:
    return node_id.hex()[:12] if node_id else "-"


# ------------------------------------------------------- keys from raw bytes
# The walkers build tens of thousands of keys; these produce exactly the keys
# of ``lineagerun.core.keys`` (a test checks it) without constructing typed
# ids. Layouts: TaskID = 8 unique + ActorID(12 unique + JobID 4); ObjectID =
# TaskID + 4-byte index.

_NIL8 = b"\xff" * 8
_NIL12 = b"\xff" * 12
_PUT_BIT = 0x80


def task_key_raw(task_id: bytes) -> bytes:
    return b"task/" + task_id[-4:] + task_id


def attempt_key_raw(task_id: bytes, attempt_number: int) -> bytes:
    return b"attempt/" + task_id[-4:] + task_id + attempt_number.to_bytes(4, "big")


def object_key_raw(object_id: bytes) -> bytes:
    return b"obj/" + object_id[20:24] + object_id


def output_id_raw(task_id: bytes, index: int) -> bytes:
    return task_id + index.to_bytes(4, "big")


def is_put_raw(object_id: bytes) -> bool:
    return bool(object_id[24] & _PUT_BIT)


def is_driver_task_raw(task_id: bytes) -> bool:
    return task_id[:8] == _NIL8 and task_id[8:20] == _NIL12
