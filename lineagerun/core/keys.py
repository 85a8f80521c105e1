"""The control-store key layout: one prefix per table, builders and a parser.

Values are the protobuf records of ``protos/lineagerun/rpc/lineage.proto``.
Integers inside keys are fixed-width big-endian, so byte order is numeric
order and a prefix scan returns records in the order a reader wants::

    fn/<function_id:28>                          FunctionRecord
    task/<job:4><task_id:24>                     TaskSpec
    attempt/<job:4><task_id:24><attempt:u32>     TaskAttempt, by attempt number
    obj/<job:4><object_id:28>                    ObjectRecord
    actor/<job:4><actor_id:16>                   ActorRecord
    call/<job:4><actor_id:16><seq:u64>           ActorCallRecord, by sequence number
    node/<node_id:28>                            NodeRecord
    event/<time_ms:u64><event_id:1..64>          EventRecord, by time
    name/<namespace>\\x00<name>                  ActorID bytes of a named actor

Why the job id leads the lineage tables: every lineage key of a job shares
the prefix ``<table>/<job>``, so retention can drop a finished job's lineage
with one prefix scan per table, and a per-job listing is one scan. (The job
id is also inside the ids themselves; the 4 repeated bytes buy the scans.)

The control store routes keys to shards by ``crc32(key)``, and a scan over
all shards returns keys in order *within* each shard only; since the keys
sort in the wanted order, a reader sorts (or merges) what the scan returns
by key bytes and has sequence, attempt or time order back.

Retention and compaction (proposal; the control store deletes nothing by
itself, a retention job running in the runtime applies it):

1. Actor calls before the actor's last committed checkpoint are needed
   by nobody: recovery replays only calls after it. Once the ActorRecord
   names a checkpoint at sequence c, delete ``call/<job><actor>`` keys with
   seq <= c - ``actor_calls_kept_before_checkpoint`` (default 0; keep some
   for debugging), in one write batch per page of the scan.
2. Task attempts: keep the last ``task_attempts_kept_max`` (default 16) of a
   task; older ones only explain history. max_retries=-1 tasks would grow
   without this bound.
3. Lineage of a job (task/, attempt/, obj/, actor/, call/ under the job
   prefix) is kept while the job runs, since any object may have to be rebuilt,
   and for ``lineage_retention_after_job_end_ms`` (default 1 h) after it ends,
   so it stays queryable after the driver exits (scenario R6); then the
   prefixes are deleted. Detached actors outlive their job: their actor/ and
   call/ keys and the lineage of their creation task are kept until the actor
   is dead for good, and the job's other keys go.
4. Within a running job, a task's lineage could be dropped once no object it
   made (or any descendant made) can be needed, i.e. when the owner's
   reference counts reach zero; that needs distributed reference counting
   and is left for later. Until then a long-running job's lineage grows with
   its tasks: RocksDB keeps it on disk, not in memory.
5. Events are ordered by time, so a time-based retention
   (``events_kept_ms``, default 7 days, or ``events_kept_max``) is a scan
   from ``event/`` up to ``event_key_from(now_ms - events_kept_ms)``.
6. Functions (fn/) are content-addressed and shared by jobs; they are deleted
   when no retained task spec refers to them (a mark-and-sweep over task/
   during the job-retention pass).
7. Nodes: dead nodes' records are kept ``dead_nodes_kept_max`` (default
   1,000, oldest first) for the timeline.

RocksDB reclaims deleted ranges at compaction; deleting whole prefixes keeps
tombstones contiguous, which RocksDB compacts cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

from lineagerun.core.ids import ActorID, FunctionID, JobID, NodeID, ObjectID, TaskID
from lineagerun.exceptions import InvalidArgumentError

FUNCTION_PREFIX = b"fn/"
TASK_PREFIX = b"task/"
ATTEMPT_PREFIX = b"attempt/"
OBJECT_PREFIX = b"obj/"
ACTOR_PREFIX = b"actor/"
CALL_PREFIX = b"call/"
NODE_PREFIX = b"node/"
EVENT_PREFIX = b"event/"
NAME_PREFIX = b"name/"

ALL_PREFIXES = (
    FUNCTION_PREFIX, TASK_PREFIX, ATTEMPT_PREFIX, OBJECT_PREFIX, ACTOR_PREFIX,
    CALL_PREFIX, NODE_PREFIX, EVENT_PREFIX, NAME_PREFIX,
)
# Tables whose keys start with the job id (see the module docstring).
JOB_SCOPED_PREFIXES = (TASK_PREFIX, ATTEMPT_PREFIX, OBJECT_PREFIX, ACTOR_PREFIX, CALL_PREFIX)

ATTEMPT_NUMBER_MAX = 2**32 - 1
CALL_SEQUENCE_MAX = 2**64 - 1
TIME_MS_MAX = 2**64 - 1
# Event ids are the writer's (e.g. its worker id plus a counter); a bound
# keeps event keys small.
EVENT_ID_SIZE_MAX = 64
_NAME_SEPARATOR = b"\x00"


def _uint(name: str, value: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise InvalidArgumentError(f"{name} must be an int in [0, {maximum}], got {value!r}")


def _typed(name: str, value: object, cls: type) -> None:
    if not isinstance(value, cls):
        raise InvalidArgumentError(f"{name} must be a {cls.__name__}, got {type(value).__name__}")


# ------------------------------------------------------------------ builders


def function_key(function_id: FunctionID) -> bytes:
    _typed("function_id", function_id, FunctionID)
    return FUNCTION_PREFIX + function_id.binary()


def job_prefix(table_prefix: bytes, job_id: JobID) -> bytes:
    """All keys of one job in a job-scoped table (for retention and listing)."""
    if table_prefix not in JOB_SCOPED_PREFIXES:
        raise InvalidArgumentError(f"{table_prefix!r} is not a job-scoped table; use one of {JOB_SCOPED_PREFIXES}")
    _typed("job_id", job_id, JobID)
    return table_prefix + job_id.binary()


def task_key(task_id: TaskID) -> bytes:
    _typed("task_id", task_id, TaskID)
    return TASK_PREFIX + task_id.job_id().binary() + task_id.binary()


def attempts_prefix(task_id: TaskID) -> bytes:
    _typed("task_id", task_id, TaskID)
    return ATTEMPT_PREFIX + task_id.job_id().binary() + task_id.binary()


def attempt_key(task_id: TaskID, attempt_number: int) -> bytes:
    _uint("attempt_number", attempt_number, ATTEMPT_NUMBER_MAX)
    return attempts_prefix(task_id) + attempt_number.to_bytes(4, "big")


def object_key(object_id: ObjectID) -> bytes:
    _typed("object_id", object_id, ObjectID)
    return OBJECT_PREFIX + object_id.task_id().job_id().binary() + object_id.binary()


def actor_key(actor_id: ActorID) -> bytes:
    _typed("actor_id", actor_id, ActorID)
    return ACTOR_PREFIX + actor_id.job_id().binary() + actor_id.binary()


def actor_calls_prefix(actor_id: ActorID) -> bytes:
    _typed("actor_id", actor_id, ActorID)
    return CALL_PREFIX + actor_id.job_id().binary() + actor_id.binary()


def actor_call_key(actor_id: ActorID, sequence_number: int) -> bytes:
    _uint("sequence_number", sequence_number, CALL_SEQUENCE_MAX)
    return actor_calls_prefix(actor_id) + sequence_number.to_bytes(8, "big")


def node_key(node_id: NodeID) -> bytes:
    _typed("node_id", node_id, NodeID)
    return NODE_PREFIX + node_id.binary()


def event_key_from(time_ms: int) -> bytes:
    """The smallest event key at ``time_ms``: a scan bound."""
    _uint("time_ms", time_ms, TIME_MS_MAX)
    return EVENT_PREFIX + time_ms.to_bytes(8, "big")


def event_key(time_ms: int, event_id: bytes) -> bytes:
    if not isinstance(event_id, bytes) or not 1 <= len(event_id) <= EVENT_ID_SIZE_MAX:
        raise InvalidArgumentError(f"event_id must be 1..{EVENT_ID_SIZE_MAX} bytes, got {event_id!r:.80}")
    return event_key_from(time_ms) + event_id


def _name_part(what: str, value: str, allow_empty: bool) -> bytes:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a str, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidArgumentError(f"{what} {value!r} cannot contain NUL characters")
    if not value and not allow_empty:
        raise InvalidArgumentError(f"{what} cannot be empty")
    return value.encode("utf-8")


def name_key(namespace: str, name: str) -> bytes:
    """Key of a named actor; the empty namespace is allowed (the default)."""
    return NAME_PREFIX + _name_part("namespace", namespace, True) + _NAME_SEPARATOR + _name_part("name", name, False)


def namespace_prefix(namespace: str) -> bytes:
    return NAME_PREFIX + _name_part("namespace", namespace, True) + _NAME_SEPARATOR


# ------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class FunctionKey:
    function_id: FunctionID


@dataclass(frozen=True)
class TaskKey:
    task_id: TaskID


@dataclass(frozen=True)
class AttemptKey:
    task_id: TaskID
    attempt_number: int


@dataclass(frozen=True)
class ObjectKey:
    object_id: ObjectID


@dataclass(frozen=True)
class ActorKey:
    actor_id: ActorID


@dataclass(frozen=True)
class ActorCallKey:
    actor_id: ActorID
    sequence_number: int


@dataclass(frozen=True)
class NodeKey:
    node_id: NodeID


@dataclass(frozen=True)
class EventKey:
    time_ms: int
    event_id: bytes


@dataclass(frozen=True)
class NameKey:
    namespace: str
    name: str


ParsedKey = FunctionKey | TaskKey | AttemptKey | ObjectKey | ActorKey | ActorCallKey | NodeKey | EventKey | NameKey


def _bad(key: bytes, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"not a lineagerun control-store key ({why}): {key[:120]!r}")


def _job_scoped(key: bytes, prefix: bytes, cls: type, suffix_size: int):
    body = key[len(prefix):]
    if len(body) != 4 + cls.SIZE + suffix_size:
        raise _bad(key, f"{prefix.decode()} keys are {4 + cls.SIZE + suffix_size} bytes after the prefix")
    the_id = cls(body[4 : 4 + cls.SIZE])
    job = the_id.job_id() if hasattr(the_id, "job_id") else the_id.task_id().job_id()
    if job.binary() != body[:4]:
        raise _bad(key, "the job part does not match the id")
    return the_id, body[4 + cls.SIZE :]


def _parse_name(key: bytes) -> NameKey:
    body = key[len(NAME_PREFIX):]
    namespace, sep, name = body.partition(_NAME_SEPARATOR)
    if not sep or not name:
        raise _bad(key, "name keys are <namespace>\\x00<name>")
    try:
        return NameKey(namespace.decode("utf-8"), name.decode("utf-8"))
    except UnicodeDecodeError:
        raise _bad(key, "namespace and name must be UTF-8") from None


def parse_key(key: bytes) -> ParsedKey:
    """The table and ids a key names; ``InvalidArgumentError`` if malformed."""
    if not isinstance(key, bytes):
        raise InvalidArgumentError(f"keys are bytes, got {type(key).__name__}")
    if key.startswith(FUNCTION_PREFIX):
        body = key[len(FUNCTION_PREFIX):]
        if len(body) != FunctionID.SIZE:
            raise _bad(key, f"fn/ keys hold a {FunctionID.SIZE}-byte function id")
        return FunctionKey(FunctionID(body))
    if key.startswith(TASK_PREFIX):
        return TaskKey(_job_scoped(key, TASK_PREFIX, TaskID, 0)[0])
    if key.startswith(ATTEMPT_PREFIX):
        task_id, rest = _job_scoped(key, ATTEMPT_PREFIX, TaskID, 4)
        return AttemptKey(task_id, int.from_bytes(rest, "big"))
    if key.startswith(OBJECT_PREFIX):
        return ObjectKey(_job_scoped(key, OBJECT_PREFIX, ObjectID, 0)[0])
    if key.startswith(ACTOR_PREFIX):
        return ActorKey(_job_scoped(key, ACTOR_PREFIX, ActorID, 0)[0])
    if key.startswith(CALL_PREFIX):
        actor_id, rest = _job_scoped(key, CALL_PREFIX, ActorID, 8)
        return ActorCallKey(actor_id, int.from_bytes(rest, "big"))
    if key.startswith(NODE_PREFIX):
        body = key[len(NODE_PREFIX):]
        if len(body) != NodeID.SIZE:
            raise _bad(key, f"node/ keys hold a {NodeID.SIZE}-byte node id")
        return NodeKey(NodeID(body))
    if key.startswith(EVENT_PREFIX):
        body = key[len(EVENT_PREFIX):]
        if not 8 < len(body) <= 8 + EVENT_ID_SIZE_MAX:
            raise _bad(key, f"event/ keys hold an 8-byte time and a 1..{EVENT_ID_SIZE_MAX}-byte event id")
        return EventKey(int.from_bytes(body[:8], "big"), body[8:])
    if key.startswith(NAME_PREFIX):
        return _parse_name(key)
    raise _bad(key, f"unknown table; known prefixes are {[p.decode() for p in ALL_PREFIXES]}")
