"""Synthetic lineage records, written as the runtime writes them (keys of
``lineagerun.core.keys``, records of ``lineage.proto``), for the state tests
and ``bench/state.py``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from lineagerun.core import keys
from lineagerun.core.ids import ActorID, FunctionID, JobID, NodeID, ObjectID, TaskID, WorkerID
from lineagerun.rpc import lineage_pb2 as pb

# Ops per write batch: under the store's 10,000 ops per request and shard.
WRITE_BATCH_OPS = 5_000
T0_MS = 1_700_000_000_000


def node_id(i: int) -> bytes:
    return NodeID(hashlib.blake2b(f"node{i}".encode(), digest_size=28).digest()).binary()


def worker_id(i: int) -> bytes:
    return WorkerID(hashlib.blake2b(f"worker{i}".encode(), digest_size=28).digest()).binary()


@dataclass
class Attempt:
    reason: int = pb.FIRST_RUN
    state: int = pb.FINISHED
    node: int = 0
    worker: int = 0
    start_ms: int = 0        # relative to T0_MS
    duration_ms: int = 10
    error: str = ""


@dataclass
class Recorder:
    """Accumulates (key, value) puts; ``flush`` writes them to a client or a
    ``MemorySource``."""
    job: int = 1
    ops: list = field(default_factory=list)
    submitted: int = 0

    def __post_init__(self):
        self.job_id = JobID.from_int(self.job)
        self.driver = TaskID.for_driver(self.job_id)

    def put(self, key: bytes, message) -> None:
        self.ops.append((key, message.SerializeToString()))

    def function(self, name: str, is_actor_class: bool = False) -> bytes:
        body = f"body of {name}".encode()
        fid = FunctionID.for_body(body)
        self.put(keys.function_key(fid), pb.FunctionRecord(function_id=fid.binary(), name=name, module="tests",
                                                           body=body, is_actor_class=is_actor_class,
                                                           job_id=self.job_id.binary()))
        return fid.binary()

    def node(self, i: int, alive: bool = True) -> bytes:
        nid = node_id(i)
        self.put(keys.node_key(NodeID(nid)), pb.NodeRecord(
            node_id=nid, address=f"127.0.0.1:{7000 + i}", resources_total={"CPU": 40_000}, alive=alive,
            heartbeat_ms=T0_MS + 1000, incarnation=1, started_ms=T0_MS, died_ms=0 if alive else T0_MS + 500,
            death_reason="" if alive else "missed heartbeats"))
        return nid

    def _task_id(self, actor: ActorID | None) -> TaskID:
        self.submitted += 1
        if actor is None:
            return TaskID.for_normal_task(self.job_id, self.driver, self.submitted)
        return TaskID.for_actor_task(self.job_id, self.driver, self.submitted, actor)

    def task(self, function_id: bytes, args=(), *, nested=(), attempts=(Attempt(),), num_returns: int = 1,
             locations=(0,), actor: ActorID | None = None, method: str = "", seq: int = 0,
             task_id: TaskID | None = None, creation: bool = False, name: str = "") -> TaskID:
        """A task with its spec, attempts and output records. ``args`` are
        object ids (bytes) or inline values (str); ``locations`` are node
        numbers holding the outputs (empty: lost)."""
        tid = task_id or self._task_id(actor)
        spec = pb.TaskSpec(task_id=tid.binary(), job_id=self.job_id.binary(), parent_task_id=self.driver.binary(),
                           submission_index=self.submitted, function_id=function_id, num_returns=num_returns,
                           resources={"CPU": 10_000}, submitted_ms=T0_MS, is_actor_creation=creation)
        spec.options.max_retries = 3
        if name:
            spec.options.name = name
        if actor is not None and not creation:
            spec.actor_id, spec.method_name, spec.sequence_number, spec.is_actor_task = actor.binary(), method, seq, True
        for arg in args:
            spec.args.append(pb.TaskArg(object_id=arg) if isinstance(arg, bytes) else pb.TaskArg(value=arg.encode()))
        if nested:
            spec.args.append(pb.TaskArg(value=b"[refs]", nested_object_ids=list(nested)))
        self.put(keys.task_key(tid), spec)
        for number, attempt in enumerate(attempts):
            self.attempt(tid, number, attempt)
        if attempts and attempts[-1].state == pb.FINISHED:
            for k in range(1, num_returns + 1):
                self.object(ObjectID.from_index(tid, k).binary(), tid, locations)
        return tid

    def attempt(self, tid: TaskID, number: int, attempt: Attempt) -> None:
        record = pb.TaskAttempt(task_id=tid.binary(), attempt_number=number, reason=attempt.reason,
                                node_id=node_id(attempt.node), worker_id=worker_id(attempt.worker),
                                state=attempt.state, start_ms=T0_MS + attempt.start_ms,
                                end_ms=T0_MS + attempt.start_ms + attempt.duration_ms)
        if attempt.error:
            record.error.kind, record.error.message = attempt.error, "died"
        self.put(keys.attempt_key(tid, number), record)

    def object(self, oid: bytes, tid: TaskID, locations=(0,), is_put: bool = False) -> bytes:
        self.put(keys.object_key(ObjectID(oid)), pb.ObjectRecord(
            object_id=oid, producing_task_id=tid.binary(), size_bytes=1024, is_put=is_put,
            locations=[node_id(n) for n in locations]))
        return oid

    def event(self, kind: int, time_ms: int, number: int, **ids) -> None:
        record = pb.EventRecord(kind=kind, time_ms=T0_MS + time_ms, event_id=number.to_bytes(4, "big"),
                                job_id=self.job_id.binary(), **ids)
        self.put(keys.event_key(T0_MS + time_ms, number.to_bytes(4, "big")), record)

    def actor(self, class_fid: bytes, calls: list[tuple[str, list[Attempt]]], *, checkpoint_seq: int = 0,
              state: int = pb.ALIVE, restarts: int = 0, name: str = "") -> tuple[ActorID, TaskID, list[TaskID]]:
        self.submitted += 1
        aid = ActorID.of(self.job_id, self.driver, self.submitted)
        creation = self.task(class_fid, task_id=TaskID.for_actor_creation(aid), creation=True, num_returns=0,
                             actor=aid, attempts=[Attempt()] + [Attempt(pb.REPLAY, node=1)] * restarts)
        call_ids = []
        for seq, (method, attempts) in enumerate(calls, start=1):
            tid = self.task(class_fid, actor=aid, method=method, seq=seq, attempts=attempts)
            call_ids.append(tid)
            self.put(keys.actor_call_key(aid, seq), pb.ActorCallRecord(
                actor_id=aid.binary(), sequence_number=seq, task_id=tid.binary(), method_name=method, finished=True,
                submitted_ms=T0_MS + seq))
        self.put(keys.actor_key(aid), pb.ActorRecord(
            actor_id=aid.binary(), creation_task_id=creation.binary(), state=state, node_id=node_id(1), name=name,
            max_restarts=-1, num_restarts=restarts, next_sequence_number=len(calls) + 1,
            checkpoint_sequence_number=checkpoint_seq, checkpoint_interval=2 if checkpoint_seq else 0))
        return aid, creation, call_ids

    def flush(self, sink) -> int:
        """Write the accumulated puts to ``sink`` (a ControlStoreClient or a
        MemorySource); returns how many."""
        count = len(self.ops)
        if hasattr(sink, "write_batch"):
            for start in range(0, count, WRITE_BATCH_OPS):
                sink.write_batch([("put", k, v) for k, v in self.ops[start:start + WRITE_BATCH_OPS]])
        else:
            for key, value in self.ops:
                sink.put(key, value)
        self.ops = []
        return count


@dataclass
class Scenario:
    """A small workload after a node death, as the runtime would record it.

    - chain: load -> step -> step(retried) -> step -> total (5 tasks)
    - tree: shared ``load2``, 4 ``square`` maps of it, ``reduce`` of the 4
      (a diamond: load2 reached 4 times)
    - replay: node 1 died; ``make``'s output was lost and rebuilt by a
      REPLAY attempt; ``lost``'s output is lost (no copy, not rebuilt yet)
    - actor: Counter with calls incr, incr (checkpoint), add(arg), get (replayed)
    - a put object and a task with a nested ref
    """
    recorder: Recorder
    chain: list = field(default_factory=list)
    tree_maps: list = field(default_factory=list)
    tree_load: TaskID | None = None
    tree_reduce: TaskID | None = None
    rebuilt_task: TaskID | None = None
    lost_task: TaskID | None = None
    consumer_of_rebuilt: TaskID | None = None
    actor: ActorID | None = None
    actor_creation: TaskID | None = None
    actor_calls: list = field(default_factory=list)
    actor_arg_task: TaskID | None = None
    put_object: bytes = b""
    nested_task: TaskID | None = None
    attempts_total: int = 0
    tasks_total: int = 0

    def out(self, tid: TaskID, k: int = 1) -> bytes:
        return ObjectID.from_index(tid, k).binary()


def build_scenario(job: int = 1) -> Scenario:
    r = Recorder(job)
    s = Scenario(r)
    fns = {n: r.function(n) for n in ("load", "step", "total", "load2", "square", "reduce", "make", "use",
                                      "lost", "consume", "nested")}
    counter = r.function("Counter", is_actor_class=True)
    for i in range(3):
        r.node(i, alive=i != 1)
    t = 0
    chain = [r.task(fns["load"], ["path"], attempts=[Attempt(start_ms=t)])]
    chain.append(r.task(fns["step"], [s.out(chain[-1])], attempts=[Attempt(start_ms=20)]))
    chain.append(r.task(fns["step"], [s.out(chain[-1])], attempts=[
        Attempt(pb.FIRST_RUN, pb.FAILED, node=1, worker=1, start_ms=40, error="WorkerCrashedError"),
        Attempt(pb.RETRY, node=2, worker=2, start_ms=60)]))
    chain.append(r.task(fns["step"], [s.out(chain[-1])], attempts=[Attempt(node=2, worker=2, start_ms=80)]))
    chain.append(r.task(fns["total"], [s.out(chain[-1]), "inline"], attempts=[Attempt(node=2, start_ms=100)]))
    s.chain = chain
    s.tree_load = r.task(fns["load2"], [], attempts=[Attempt(start_ms=5)])
    s.tree_maps = [r.task(fns["square"], [s.out(s.tree_load)], attempts=[Attempt(node=i % 3, worker=i, start_ms=30)])
                   for i in range(4)]
    s.tree_reduce = r.task(fns["reduce"], [s.out(m) for m in s.tree_maps], attempts=[Attempt(start_ms=120)])
    s.rebuilt_task = r.task(fns["make"], [], attempts=[
        Attempt(pb.FIRST_RUN, node=1, worker=1, start_ms=10), Attempt(pb.REPLAY, node=2, worker=2, start_ms=300)],
        locations=(2,))
    s.consumer_of_rebuilt = r.task(fns["use"], [s.out(s.rebuilt_task)], attempts=[
        Attempt(node=1, worker=1, start_ms=50), Attempt(pb.REPLAY, node=0, start_ms=320)])
    s.lost_task = r.task(fns["lost"], [], attempts=[Attempt(node=1, worker=1, start_ms=15)], locations=())
    s.put_object = r.object(ObjectID.for_put(r.driver, 1).binary(), r.driver, (0,), is_put=True)
    s.nested_task = r.task(fns["nested"], [s.put_object], nested=[s.out(chain[0])], attempts=[Attempt(start_ms=150)])
    s.actor_arg_task = r.task(fns["consume"], [], attempts=[Attempt(start_ms=160)])
    s.actor, s.actor_creation, s.actor_calls = r.actor(counter, [
        ("incr", [Attempt(start_ms=200)]), ("incr", [Attempt(start_ms=210)]),
        ("add", [Attempt(start_ms=220)]), ("get", [Attempt(start_ms=230), Attempt(pb.REPLAY, node=2, start_ms=400)])],
        checkpoint_seq=2, restarts=1, name="counter")
    # The third call takes an argument made by a normal task.
    add_call = s.actor_calls[2]
    spec_key = keys.task_key(add_call)
    for i, (key, value) in enumerate(r.ops):
        if key == spec_key:
            spec = pb.TaskSpec.FromString(value)
            spec.args.append(pb.TaskArg(object_id=s.out(s.actor_arg_task)))
            r.ops[i] = (key, spec.SerializeToString())
    r.event(pb.TASK_STARTED, 0, 1, task_id=chain[0].binary())
    r.event(pb.WORKER_DIED, 45, 2, node_id=node_id(1), worker_id=worker_id(1))
    r.event(pb.NODE_DIED, 250, 3, node_id=node_id(1), detail="missed heartbeats")
    r.event(pb.OBJECT_LOST, 260, 4, object_id=s.out(s.rebuilt_task))
    r.event(pb.OBJECT_LOST, 261, 5, object_id=s.out(s.lost_task))
    r.event(pb.OBJECT_RECONSTRUCTED, 310, 6, object_id=s.out(s.rebuilt_task), duration_ms=50)
    r.event(pb.ACTOR_RESTARTED, 390, 7, actor_id=s.actor.binary(), node_id=node_id(2))
    specs = [k for k, _ in r.ops if k.startswith(keys.TASK_PREFIX)]
    s.tasks_total = len(specs)
    s.attempts_total = sum(1 for k, _ in r.ops if k.startswith(keys.ATTEMPT_PREFIX))
    return s


def start_cluster(directory, shards: int = 1):
    """A control store of ``shards`` x 1 replica (stop it when done)."""
    from lineagerun.control.cluster import ControlStoreCluster

    return ControlStoreCluster(directory, shards=shards, replicas=1).start()


def assert_stopped(cluster) -> None:
    cluster.stop()
    leftover = [p.name for p in cluster.processes() if p.alive()]
    assert not leftover, f"processes left running: {leftover}"
