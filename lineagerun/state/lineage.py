"""The lineage graph of an object, a task or an actor, read from the control
store's records, and the batched record reader (``Catalog``) that the list,
get and summary calls share.

The graph is walked level by level: one batched read of the task specs of a
level gives the next level (the producers of their arguments); attempts,
objects and names of every task are then read in a few large batches, so the
number of round trips grows with the depth of the graph, never with its
width.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from lineagerun.core import keys
from lineagerun.core.ids import ActorID, FunctionID, ObjectID, TaskID
from lineagerun.exceptions import NotFoundError
from lineagerun.rpc import lineage_pb2
from lineagerun.state.ids import (
    hex_or_empty, is_driver_task_raw, is_put_raw, object_key_raw, output_id_raw, parse_lineage_id,
    task_key_raw,
)
from lineagerun.state.source import Source

# Attempts of a task are one prefix scan (``attempt/<job><task>``). On a
# remote store that is a round trip per task and shard, so once a job has
# this many tasks to read, its whole attempt table is scanned (paged) once
# instead, keeping only the wanted tasks' records ...
JOB_ATTEMPT_SCAN_TASKS_MIN = 256
# ... reading at most this many records per wanted task before falling
# back to per-task scans for the tasks not reached yet (a big job, few
# wanted tasks).
JOB_ATTEMPT_SCAN_RECORDS_PER_TASK_MAX = 50
# Keys per batched read (the client splits them per shard in pages).
BATCH_KEYS_MAX = 20_000
# A lineage walk stops after this many tasks and says the graph is truncated.
LINEAGE_TASKS_MAX = 200_000
# A walk of a remote store reads one batch per level of the graph; past this
# many levels (a long chain: one round trip per task) it reads the whole
# task table of the jobs involved a page at a time instead, up to
# JOB_SPECS_PREFETCH_MAX specs (raw bytes, ~200 B each) held in memory.
DEEP_WALK_LEVELS = 32
JOB_SPECS_PREFETCH_MAX = 300_000
# Outputs shown per task (num_returns can be large).
OUTPUTS_PER_TASK_MAX = 64
# Events scanned for OBJECT_RECONSTRUCTED (rebuilt objects); the event table
# can be long.
RECOVERY_EVENTS_SCANNED_MAX = 50_000

STATE_NAMES = {v: k for k, v in lineage_pb2.TaskState.items()}
REASON_NAMES = {v: k for k, v in lineage_pb2.AttemptReason.items()}
ACTOR_STATE_NAMES = {v: k for k, v in lineage_pb2.ActorState.items()}
EVENT_KIND_NAMES = {v: k for k, v in lineage_pb2.EventKind.items()}
# A task whose spec is written but that has no attempt yet.
NO_ATTEMPT_STATE = "PENDING"


def _batches(items: list, size: int = BATCH_KEYS_MAX) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def task_kind(spec: lineage_pb2.TaskSpec) -> str:
    if spec.is_actor_creation:
        return "actor_creation"
    return "actor_task" if spec.is_actor_task else "task"


def arg_object_ids(spec: lineage_pb2.TaskSpec) -> list[bytes]:
    """Object ids a task depends on: by-reference args and ids nested in
    inline values, positional then keyword, without repeats."""
    seen: dict[bytes, None] = {}
    for arg in list(spec.args) + [kw.arg for kw in spec.kwargs]:
        if arg.WhichOneof("kind") == "object_id":
            seen.setdefault(bytes(arg.object_id), None)
        for nested in arg.nested_object_ids:
            seen.setdefault(bytes(nested), None)
    return [oid for oid in seen if len(oid) == ObjectID.SIZE]


def attempt_dict(attempt: lineage_pb2.TaskAttempt) -> dict:
    ended = attempt.end_ms and attempt.start_ms and attempt.end_ms >= attempt.start_ms
    return {
        "attempt_number": attempt.attempt_number,
        "reason": REASON_NAMES.get(attempt.reason, str(attempt.reason)),
        "state": STATE_NAMES.get(attempt.state, str(attempt.state)),
        "node_id": hex_or_empty(attempt.node_id),
        "worker_id": hex_or_empty(attempt.worker_id),
        "start_ms": attempt.start_ms,
        "end_ms": attempt.end_ms,
        "duration_ms": attempt.end_ms - attempt.start_ms if ended else None,
        "error": f"{attempt.error.kind}: {attempt.error.message}" if attempt.error.kind else "",
    }


def object_status(record: lineage_pb2.ObjectRecord | None, producer_attempts: list[lineage_pb2.TaskAttempt],
                  rebuilt: set[bytes], object_id: bytes) -> str:
    """present / rebuilt (present again after a replay or a reconstruction
    event) / lost (no copy, no inline value) / pending (not made yet) /
    missing (no record though its task finished)."""
    if record is None:
        finished = producer_attempts and producer_attempts[-1].state == lineage_pb2.FINISHED
        return "missing" if finished else "pending"
    if not record.locations and not record.has_inline_value:
        return "lost"
    replayed = any(a.reason == lineage_pb2.REPLAY and a.state == lineage_pb2.FINISHED for a in producer_attempts)
    return "rebuilt" if replayed or object_id in rebuilt else "present"


class Catalog:
    """Batched, cached reads of records by id."""

    def __init__(self, source: Source):
        self.source = source
        self._function_names: dict[bytes, str] = {}
        self._actor_classes: dict[bytes, str] = {}
        self._prefetched_specs: dict[bytes, bytes] = {}
        self._prefetched_jobs: set[bytes] = set()

    def prefetch_job_specs(self, jobs: Iterable[bytes]) -> bool:
        """Read the task tables of ``jobs`` (paged scans) so that later
        ``specs`` calls need no round trip; False when over the bound."""
        if getattr(self.source, "local", False):
            return True  # local reads cost less than a scan
        start = len(keys.TASK_PREFIX)
        for job in jobs:
            if job in self._prefetched_jobs:
                continue
            self._prefetched_jobs.add(job)
            for key, raw in self.source.scan(keys.TASK_PREFIX + job):
                if len(self._prefetched_specs) >= JOB_SPECS_PREFETCH_MAX:
                    return False
                self._prefetched_specs[key[start + 4:]] = raw
        return True

    def get_records(self, keys_: list[bytes], message_cls) -> list:
        out = []
        for batch in _batches(keys_):
            for raw in self.source.get_many(batch):
                out.append(None if raw is None else message_cls.FromString(raw))
        return out

    def specs(self, task_ids: list[bytes]) -> dict[bytes, lineage_pb2.TaskSpec | None]:
        out: dict[bytes, lineage_pb2.TaskSpec | None] = {}
        remote = []
        for task_id in task_ids:
            raw = self._prefetched_specs.get(task_id)
            if raw is not None:
                out[task_id] = lineage_pb2.TaskSpec.FromString(raw)
            elif task_id[-4:] in self._prefetched_jobs:
                out[task_id] = None  # the job's whole table was read
            else:
                remote.append(task_id)
        records = self.get_records([task_key_raw(t) for t in remote], lineage_pb2.TaskSpec)
        out.update(zip(remote, records))
        return out

    def objects(self, object_ids: list[bytes]) -> dict[bytes, lineage_pb2.ObjectRecord | None]:
        records = self.get_records([object_key_raw(o) for o in object_ids], lineage_pb2.ObjectRecord)
        return dict(zip(object_ids, records))

    def attempts(self, task_ids: list[bytes]) -> dict[bytes, list[lineage_pb2.TaskAttempt]]:
        """Every attempt of each task, in attempt order, by range scans: a
        prefix scan per task, or (many tasks of one job on a remote store)
        one paged scan of the job's attempts. Exact even where an attempt
        number is missing (attempt records are written best effort)."""
        found: dict[bytes, list[lineage_pb2.TaskAttempt]] = {t: [] for t in task_ids}
        by_job: dict[bytes, list[bytes]] = {}
        for task_id in found:
            by_job.setdefault(task_id[-4:], []).append(task_id)
        local = getattr(self.source, "local", False)
        for job, wanted in by_job.items():
            if not local and len(wanted) >= JOB_ATTEMPT_SCAN_TASKS_MIN:
                wanted = self._scan_job_attempts(job, wanted, found)
            for task_id in wanted:
                found[task_id] = self.attempts_of(task_id)
        return found

    def _scan_job_attempts(self, job: bytes, wanted: list[bytes],
                           found: dict[bytes, list[lineage_pb2.TaskAttempt]]) -> list[bytes]:
        """Fill ``found`` from one scan of ``attempt/<job>``; returns the
        tasks the bounded scan did not reach (to be read one by one)."""
        wanted_set = set(wanted)
        body_start = len(keys.ATTEMPT_PREFIX) + 4
        body_end = body_start + TaskID.SIZE
        budget = len(wanted) * JOB_ATTEMPT_SCAN_RECORDS_PER_TASK_MAX
        parse = lineage_pb2.TaskAttempt.FromString
        for scanned, (key, raw) in enumerate(self.source.scan(keys.ATTEMPT_PREFIX + job)):
            task_id = key[body_start:body_end]
            if scanned >= budget:
                # Keys come in order: tasks before this one are complete.
                return [t for t in wanted if t >= task_id]
            if task_id in wanted_set:
                found[task_id].append(parse(raw))
        return []

    def attempts_of(self, task_id: bytes) -> list[lineage_pb2.TaskAttempt]:
        """Every attempt of one task: a prefix scan of ``attempt/<job><task>``."""
        return [lineage_pb2.TaskAttempt.FromString(raw)
                for _, raw in self.source.scan(keys.ATTEMPT_PREFIX + task_id[-4:] + task_id)]

    def function_names(self, function_ids: Iterable[bytes]) -> dict[bytes, str]:
        wanted = [f for f in dict.fromkeys(function_ids) if f and f not in self._function_names]
        valid = [f for f in wanted if len(f) == FunctionID.SIZE]
        for function_id, record in zip(valid, self.get_records(
                [keys.function_key(FunctionID(f)) for f in valid], lineage_pb2.FunctionRecord)):
            self._function_names[function_id] = record.name if record is not None and record.name else \
                f"fn:{function_id.hex()[:12]}"
        for function_id in wanted:
            self._function_names.setdefault(function_id, f"fn:{function_id.hex()[:12]}")
        return self._function_names

    def actor_classes(self, actor_ids: Iterable[bytes]) -> dict[bytes, str]:
        """actor id -> class name (from the function of its creation task)."""
        wanted = [a for a in dict.fromkeys(actor_ids) if a not in self._actor_classes and len(a) == ActorID.SIZE]
        creation_ids = [TaskID.for_actor_creation(ActorID(a)).binary() for a in wanted]
        specs = self.specs(creation_ids)
        names = self.function_names(s.function_id for s in specs.values() if s is not None)
        for actor_id, creation_id in zip(wanted, creation_ids):
            spec = specs[creation_id]
            self._actor_classes[actor_id] = names.get(spec.function_id, "?") if spec is not None else \
                f"Actor:{actor_id.hex()[:12]}"
        return self._actor_classes

    def display_names(self, specs: Iterable[lineage_pb2.TaskSpec]) -> dict[bytes, str]:
        """task id -> what to call it: ``Class.__init__`` for an actor's
        creation, else the task's name option, ``Class.method`` or its
        function's name."""
        specs = list(specs)
        functions = self.function_names(s.function_id for s in specs if not s.is_actor_task)
        classes = self.actor_classes(bytes(s.actor_id) for s in specs if s.is_actor_task)
        out = {}
        for spec in specs:
            if spec.is_actor_creation:  # its name option names the actor, not the task
                name = f"{functions.get(spec.function_id, '?')}.__init__"
            elif spec.options.name:
                name = spec.options.name
            elif spec.is_actor_task:
                name = f"{classes.get(spec.actor_id, '?')}.{spec.method_name}"
            else:
                name = functions.get(spec.function_id, "?")
            out[bytes(spec.task_id)] = name
        return out

    def rebuilt_objects(self) -> tuple[set[bytes], bool]:
        """(ids of objects with an OBJECT_RECONSTRUCTED event, whether the
        bounded event scan was cut)."""
        rebuilt = set()
        for count, (_, raw) in enumerate(self.source.scan(keys.EVENT_PREFIX)):
            if count >= RECOVERY_EVENTS_SCANNED_MAX:
                return rebuilt, True
            event = lineage_pb2.EventRecord.FromString(raw)
            if event.kind == lineage_pb2.OBJECT_RECONSTRUCTED:
                rebuilt.add(bytes(event.object_id))
        return rebuilt, False


# ---------------------------------------------------------------------- graph


@dataclass
class ObjectInfo:
    object_id: str
    status: str
    producing_task_id: str
    size_bytes: int = 0
    is_put: bool = False
    locations: list[str] = field(default_factory=list)


@dataclass
class TaskNode:
    task_id: str
    name: str
    kind: str
    state: str
    depth: int
    attempts: list[dict] = field(default_factory=list)
    node_id: str = ""
    duration_ms: int | None = None
    args: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    actor_id: str = ""
    sequence_number: int | None = None
    checkpoint: bool = False            # the actor's last checkpoint was taken after this call
    replayed_on_restart: bool = False   # an actor call after the checkpoint: replayed if the actor restarts
    missing: bool = False               # no TaskSpec recorded
    expanded: bool = True               # its arguments' producers are in the graph (False at the depth limit)


@dataclass
class Edge:
    producer: str      # task id
    consumer: str      # task id
    object_id: str     # "" for an actor's stateful edge (call -> next call)
    kind: str = "data"  # "data" or "stateful"


@dataclass
class ActorInfo:
    actor_id: str
    class_name: str
    state: str
    node_id: str
    num_restarts: int
    next_sequence_number: int
    checkpoint_sequence_number: int
    creation_task_id: str
    has_checkpoint: bool = False
    calls: list[str] = field(default_factory=list)


@dataclass
class LineageGraph:
    root_id: str
    root_kind: str                 # "object", "task" or "actor"
    depth: int | None
    roots: list[str]               # task ids at depth 0
    tasks: dict[str, TaskNode]
    objects: dict[str, ObjectInfo]
    edges: list[Edge]
    actor: ActorInfo | None = None
    truncated: bool = False
    notes: list[str] = field(default_factory=list)

    def children(self) -> dict[str, list[tuple[str, str]]]:
        """consumer task -> [(producer task, object id)] in argument order."""
        out: dict[str, list[tuple[str, str]]] = {t: [] for t in self.tasks}
        for edge in self.edges:
            if edge.kind == "data":
                out[edge.consumer].append((edge.producer, edge.object_id))
        return out

    def to_dict(self) -> dict:
        # vars() rather than asdict(): asdict deep-copies, which costs
        # seconds on graphs of 10,000s of tasks; nothing here is mutated.
        return {
            "root_id": self.root_id, "root_kind": self.root_kind, "depth": self.depth, "roots": self.roots,
            "truncated": self.truncated, "notes": self.notes,
            "actor": dict(vars(self.actor)) if self.actor is not None else None,
            "tasks": [vars(t) for t in self.tasks.values()],
            "objects": [vars(o) for o in self.objects.values()],
            "edges": [vars(e) for e in self.edges],
        }


class _Walk:
    """State of one lineage walk (bytes ids inside, hex in the result)."""

    def __init__(self, catalog: Catalog, depth: int | None):
        self.catalog = catalog
        self.depth = depth
        self.level_of: dict[bytes, int] = {}
        self.specs: dict[bytes, lineage_pb2.TaskSpec | None] = {}
        self.args_of: dict[bytes, list[bytes]] = {}
        self.expanded: set[bytes] = set()
        self.truncated = False

    def run(self, roots: list[bytes]) -> None:
        frontier = list(dict.fromkeys(roots))
        for task_id in frontier:
            self.level_of[task_id] = 0
        level = 0
        prefetching = True
        while frontier:
            if prefetching and level >= DEEP_WALK_LEVELS:
                prefetching = self.catalog.prefetch_job_specs({t[-4:] for t in frontier})
            self.specs.update(self.catalog.specs(frontier))
            if self.depth is not None and level >= self.depth:
                break
            following: list[bytes] = []
            for task_id in frontier:
                spec = self.specs[task_id]
                self.expanded.add(task_id)
                args = arg_object_ids(spec) if spec is not None else []
                self.args_of[task_id] = args
                for object_id in args:
                    producer = object_id[:TaskID.SIZE]
                    if is_put_raw(object_id) or is_driver_task_raw(producer):
                        continue  # puts are leaves: replaying a task does not remake them
                    if producer not in self.level_of:
                        if len(self.level_of) >= LINEAGE_TASKS_MAX:
                            self.truncated = True
                            continue
                        self.level_of[producer] = level + 1
                        following.append(producer)
            frontier = following
            level += 1
        for task_id, spec in self.specs.items():
            if task_id not in self.expanded:
                self.args_of[task_id] = arg_object_ids(spec) if spec is not None else []
                if self.args_of[task_id]:
                    self.truncated = True


def _outputs(task_id: bytes, spec: lineage_pb2.TaskSpec | None) -> list[bytes]:
    count = min(spec.num_returns, OUTPUTS_PER_TASK_MAX) if spec is not None else 0
    return [output_id_raw(task_id, k) for k in range(1, count + 1)]


def _task_node(task_id: bytes, walk: _Walk, names: dict, attempts: list, outputs: list[bytes]) -> TaskNode:
    spec = walk.specs.get(task_id)
    latest = attempts[-1] if attempts else None
    node = TaskNode(
        task_id=task_id.hex(), name=names.get(task_id, "?") if spec is not None else "(no record)",
        kind=task_kind(spec) if spec is not None else "unknown",
        state=STATE_NAMES.get(latest.state, "?") if latest is not None else NO_ATTEMPT_STATE,
        depth=walk.level_of[task_id], attempts=[attempt_dict(a) for a in attempts],
        args=[o.hex() for o in walk.args_of.get(task_id, [])], outputs=[o.hex() for o in outputs],
        missing=spec is None, expanded=task_id in walk.expanded)
    if latest is not None:
        node.node_id = hex_or_empty(latest.node_id)
        node.duration_ms = attempt_dict(latest)["duration_ms"]
    if spec is not None and spec.is_actor_task:
        node.actor_id = spec.actor_id.hex()
        node.sequence_number = spec.sequence_number
    return node


def _assemble(walk: _Walk, root_id: str, root_kind: str, extra_objects: list[bytes]) -> LineageGraph:
    catalog = walk.catalog
    task_ids = list(walk.level_of)
    present_specs = [s for s in walk.specs.values() if s is not None]
    names = catalog.display_names(present_specs)
    attempts = catalog.attempts(task_ids)
    outputs = {t: _outputs(t, walk.specs.get(t)) for t in task_ids}
    object_ids = list(dict.fromkeys(
        extra_objects + [o for t in task_ids for o in outputs[t]] + [o for t in task_ids for o in walk.args_of[t]]))
    records = catalog.objects(object_ids)
    rebuilt, cut = catalog.rebuilt_objects()
    producer_attempts = {}
    missing_producers = [o[:TaskID.SIZE] for o in object_ids if o[:TaskID.SIZE] not in attempts]
    if missing_producers:
        producer_attempts = catalog.attempts(list(dict.fromkeys(missing_producers)))
    producer_attempts.update(attempts)
    objects = {}
    for object_id in object_ids:
        record = records[object_id]
        objects[object_id.hex()] = ObjectInfo(
            object_id=object_id.hex(),
            status=object_status(record, producer_attempts.get(object_id[:TaskID.SIZE], []), rebuilt, object_id),
            producing_task_id=object_id[:TaskID.SIZE].hex(),
            size_bytes=record.size_bytes if record is not None else 0,
            is_put=is_put_raw(object_id),
            locations=[bytes(n).hex() for n in record.locations] if record is not None else [])
    tasks = {t.hex(): _task_node(t, walk, names, attempts[t], outputs[t]) for t in task_ids}
    edges = [Edge(o[:TaskID.SIZE].hex(), t.hex(), o.hex())
             for t in task_ids for o in walk.args_of[t] if o[:TaskID.SIZE] in walk.level_of]
    graph = LineageGraph(root_id, root_kind, walk.depth, [t.hex() for t in task_ids if walk.level_of[t] == 0],
                         tasks, objects, edges, truncated=walk.truncated)
    if cut:
        graph.notes.append(f"only the first {RECOVERY_EVENTS_SCANNED_MAX} events were read to tell rebuilt objects")
    if walk.truncated:
        graph.notes.append("the graph is cut at the depth limit (or at "
                           f"{LINEAGE_TASKS_MAX} tasks); ask for a larger --depth to see more")
    return graph


def has_checkpoint(record: lineage_pb2.ActorRecord) -> bool:
    """Whether the actor has a committed checkpoint (sequence numbers start
    at 0, so the number alone cannot say)."""
    return bool(record.checkpoint_sequence_number or record.checkpoint_object_id or record.checkpoint_key)


def _actor_roots(catalog: Catalog, actor_id: ActorID) -> tuple[ActorInfo, list[bytes], lineage_pb2.ActorRecord]:
    (record,) = catalog.get_records([keys.actor_key(actor_id)], lineage_pb2.ActorRecord)
    if record is None:
        raise NotFoundError(f"no actor {actor_id.hex()} in the control store; see `lineagerun list actors`")
    creation = record.creation_task_id or TaskID.for_actor_creation(actor_id).binary()
    calls = [lineage_pb2.ActorCallRecord.FromString(raw)
             for _, raw in catalog.source.scan(keys.actor_calls_prefix(actor_id))]
    info = ActorInfo(
        actor_id=actor_id.hex(), class_name=catalog.actor_classes([actor_id.binary()])[actor_id.binary()],
        state=ACTOR_STATE_NAMES.get(record.state, "?"), node_id=hex_or_empty(record.node_id),
        num_restarts=record.num_restarts, next_sequence_number=record.next_sequence_number,
        checkpoint_sequence_number=record.checkpoint_sequence_number, creation_task_id=bytes(creation).hex(),
        has_checkpoint=has_checkpoint(record), calls=[bytes(c.task_id).hex() for c in calls])
    return info, [bytes(creation)] + [bytes(c.task_id) for c in calls], record


@contextlib.contextmanager
def gc_paused():
    """The cyclic collector paused: a walk allocates 100,000s of small
    objects and no cycles, and generation-2 collections triggered by them
    would double its time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_lineage(source: Source, the_id, depth: int | None = None) -> LineageGraph:
    """The lineage of an object, task or actor id (hex or typed)."""
    with gc_paused():
        return _build_lineage(source, the_id, depth)


def _build_lineage(source: Source, the_id, depth: int | None) -> LineageGraph:
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        from lineagerun.exceptions import InvalidArgumentError

        raise InvalidArgumentError(f"depth must be None (no limit) or an int >= 0, got {depth!r}")
    parsed = parse_lineage_id(the_id)
    catalog = Catalog(source)
    walk = _Walk(catalog, depth)
    if isinstance(parsed, ObjectID):
        (record,) = catalog.objects([parsed.binary()]).values()
        producer = parsed.task_id()
        known = record is not None or catalog.specs([producer.binary()])[producer.binary()] is not None
        if not known:
            raise NotFoundError(f"no object {parsed.hex()} (nor its producing task) in the control store; "
                                f"see `lineagerun list objects`")
        roots = [] if parsed.is_put() or producer.is_for_driver() else [producer.binary()]
        walk.run(roots)
        return _assemble(walk, parsed.hex(), "object", [parsed.binary()])
    if isinstance(parsed, TaskID):
        if catalog.specs([parsed.binary()])[parsed.binary()] is None:
            raise NotFoundError(f"no task {parsed.hex()} in the control store; see `lineagerun list tasks`")
        walk.run([parsed.binary()])
        return _assemble(walk, parsed.hex(), "task", [])
    info, roots, record = _actor_roots(catalog, parsed)
    walk.run(roots)
    graph = _assemble(walk, parsed.hex(), "actor", [])
    graph.actor = info
    _mark_actor_chain(graph, info)
    return graph


def _mark_actor_chain(graph: LineageGraph, info: ActorInfo) -> None:
    """Stateful edges creation -> call 1 -> call 2 ..., the checkpointed
    call, and the calls a restart would replay."""
    chain = [info.creation_task_id] + info.calls
    for previous, following in zip(chain, chain[1:]):
        graph.edges.append(Edge(previous, following, "", "stateful"))
    for task_id in info.calls:
        node = graph.tasks.get(task_id)
        if node is None or node.sequence_number is None:
            continue
        node.checkpoint = info.has_checkpoint and node.sequence_number == info.checkpoint_sequence_number
        node.replayed_on_restart = not info.has_checkpoint or node.sequence_number > info.checkpoint_sequence_number
