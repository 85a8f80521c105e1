"""A Jepsen-style history of control-store operations, and its checker.

Clients record every operation as *invoked*, then *ok*, *fail* (the store
said no) or *unknown* (no answer: it may or may not have happened). Every
written value is unique, so a value seen in the store names the write that
put it there. After the run, the checker reads the final state (and, when
given, the change stream and each replica's data directory) and reports:

- lost: acknowledged writes whose effect is not in the final state;
- duplicated: writes applied more than once (one value at two log seqs);
- stale reads: a read returned a value older than one already visible before
  the read was invoked (a read that went back in time);
- phantom values: values in the store that no client ever tried to write;
- replica divergence: user keys differing between replicas after healing;
- the longest client-observed stall.

The workload model the checker understands (``HistoryWorkload`` runs it):
each writer ``w`` writes, in order, unique keys ``<prefix>/log/<w>/<i>`` and
sets its register ``<prefix>/reg/<w>`` to ``i`` after each acknowledged log
write; readers read registers. A register value only grows, so a read that
returns less than a value known to be there when it started went back in
time; a register below its writer's last acknowledged ``i`` lost a write
(or had an old write re-applied).
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

# Where a replica keeps user data in its RocksDB.
from lineagerun.core.chain.replica_storage import DATA_PREFIX as DATA_KEY_PREFIX

# Every op is recorded; a history is bounded by the workload's duration.
# This cap only guards against a runaway workload filling memory.
HISTORY_OPS_MAX = 5_000_000


@dataclass
class Operation:
    process: str
    kind: str                  # "write" | "read"
    key: bytes
    value: bytes | None        # written value, or value read
    invoke_s: float
    complete_s: float | None = None
    status: str = "invoked"    # invoked | ok | fail | unknown
    error: str = ""


class History:
    """Thread-safe list of operations, appended to as clients run."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self.ops: list[Operation] = []

    def invoke(self, process: str, kind: str, key: bytes, value: bytes | None = None) -> Operation:
        op = Operation(process, kind, key, value, self._clock())
        with self._lock:
            if len(self.ops) >= HISTORY_OPS_MAX:
                raise RuntimeError(f"history holds {HISTORY_OPS_MAX} ops; shorten the workload")
            self.ops.append(op)
        return op

    def ok(self, op: Operation, value: bytes | None = None) -> None:
        op.complete_s = self._clock()
        op.status = "ok"
        if op.kind == "read":
            op.value = value

    def fail(self, op: Operation, error: BaseException | str) -> None:
        op.complete_s = self._clock()
        op.status = "fail"
        op.error = str(error)[:200]

    def unknown(self, op: Operation, error: BaseException | str) -> None:
        op.complete_s = self._clock()
        op.status = "unknown"
        op.error = str(error)[:200]

    def snapshot(self) -> list[Operation]:
        with self._lock:
            return list(self.ops)


@dataclass
class CheckReport:
    writes_invoked: int = 0
    writes_ok: int = 0
    writes_fail: int = 0
    writes_unknown: int = 0
    reads_ok: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    stale_reads: list[str] = field(default_factory=list)
    phantoms: list[str] = field(default_factory=list)
    stream_missing: list[str] = field(default_factory=list)
    # Acknowledged writes the change stream delivered only through a resync
    # (the documented gap: the subscriber got the key's later state instead).
    stream_resynced: int = 0
    replica_divergence: list[str] = field(default_factory=list)
    longest_stall_s: float = 0.0
    longest_ack_gap_s: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0

    @property
    def valid(self) -> bool:
        return not (self.lost or self.duplicated or self.stale_reads or self.phantoms or self.replica_divergence
                    or self.stream_missing)

    def summary(self) -> str:
        return (f"writes ok={self.writes_ok} fail={self.writes_fail} unknown={self.writes_unknown} "
                f"reads ok={self.reads_ok}; lost={len(self.lost)} duplicated={len(self.duplicated)} "
                f"stale_reads={len(self.stale_reads)} phantoms={len(self.phantoms)} "
                f"stream_missing={len(self.stream_missing)} divergent={len(self.replica_divergence)}; "
                f"longest stall {self.longest_stall_s * 1000:.0f} ms, longest gap between acks "
                f"{self.longest_ack_gap_s * 1000:.0f} ms, p50 {self.latency_p50_ms:.1f} ms, "
                f"p99 {self.latency_p99_ms:.1f} ms")

    def to_json(self) -> str:
        data = asdict(self)
        data["valid"] = self.valid
        for name in ("lost", "duplicated", "stale_reads", "phantoms", "stream_missing", "replica_divergence"):
            data[f"{name}_count"] = len(data[name])
            data[name] = data[name][:20]
        return json.dumps(data, indent=2)


# ------------------------------------------------------------- the checker


def _short(value: bytes | None, size_max: int = 40) -> str:
    """A value for a report line: bulky values are cut."""
    if value is None or len(value) <= size_max:
        return repr(value)
    return repr(value[:size_max]) + f"...({len(value)} bytes)"


def _register_index(value: bytes | None) -> int:
    return -1 if value is None else int(value.split(b":", 1)[0])


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def check(history: Iterable[Operation], final_state: dict[bytes, bytes], *,
          changes: Iterable[tuple[bytes, bytes | None, int]] | None = None,
          replica_states: dict[int, dict[str, dict[bytes, bytes]]] | None = None) -> CheckReport:
    """Check a finished history against the final state (every key under the
    workload's prefix, read after healing). ``changes``: (key, value, seq)
    or (key, value, seq, resync) from a subscription covering the whole run; ``replica_states``: per
    shard, the user keys of each of its replicas, read from their
    directories after stopping."""
    ops = list(history)
    report = CheckReport()
    writes = [op for op in ops if op.kind == "write"]
    _count(report, ops, writes)
    _check_writes(report, writes, final_state)
    _check_reads(report, ops)
    if changes is not None:
        _check_changes(report, writes, list(changes))
    for states in (replica_states or {}).values():
        _check_replicas(report, states)
    _measure_stalls(report, ops)
    return report


def _count(report: CheckReport, ops: list[Operation], writes: list[Operation]) -> None:
    report.writes_invoked = len(writes)
    report.writes_ok = sum(op.status == "ok" for op in writes)
    report.writes_fail = sum(op.status == "fail" for op in writes)
    report.writes_unknown = sum(op.status in ("unknown", "invoked") for op in writes)
    report.reads_ok = sum(op.kind == "read" and op.status == "ok" for op in ops)


def _check_writes(report: CheckReport, writes: list[Operation], final_state: dict[bytes, bytes]) -> None:
    attempted = {(op.key, op.value) for op in writes}
    last_ok_register: dict[bytes, int] = {}
    for op in writes:
        if op.status != "ok":
            continue
        if b"/reg/" in op.key:
            index = _register_index(op.value)
            last_ok_register[op.key] = max(last_ok_register.get(op.key, -1), index)
        elif final_state.get(op.key) != op.value:
            report.lost.append(f"{op.key!r}={_short(op.value)} acknowledged by {op.process} but the store has "
                               f"{_short(final_state.get(op.key))}")
    for key, index in last_ok_register.items():
        found = _register_index(final_state.get(key))
        if found < index:
            report.lost.append(f"register {key!r} is at {found} but {index} was acknowledged "
                               f"(a write lost, or an old write applied again)")
    for key, value in final_state.items():
        if (key, value) not in attempted:
            report.phantoms.append(f"{key!r}={_short(value)} was never written")


def _check_reads(report: CheckReport, ops: list[Operation]) -> None:
    """A read must return at least the largest register value that was
    certainly visible when it was invoked: acknowledged by a write, or
    returned by a read, that completed before."""
    events: list[tuple[float, int, Operation]] = []
    for op in ops:
        if op.status != "ok" or b"/reg/" not in op.key:
            continue
        events.append((op.complete_s, 0, op))   # becomes visible on completion
        if op.kind == "read":
            events.append((op.invoke_s, 1, op))  # checked against what was visible at invocation
    events.sort(key=lambda e: (e[0], e[1]))
    visible: dict[bytes, int] = {}
    for _, kind, op in events:
        index = _register_index(op.value)
        if kind == 1:
            floor = visible.get(op.key, -1)
            if index < floor:
                report.stale_reads.append(f"{op.process} read {op.key!r}={index} but {floor} was visible "
                                          f"before the read began")
        else:
            visible[op.key] = max(visible.get(op.key, -1), index)


def _check_changes(report: CheckReport, writes: list[Operation], changes: list[tuple]) -> None:
    logged = [c for c in changes if not (len(c) > 3 and c[3])]
    seqs_by_value: dict[tuple[bytes, bytes | None], set[int]] = {}
    for key, value, seq, *_ in logged:
        seqs_by_value.setdefault((key, value), set()).add(seq)
    for (key, value), seqs in seqs_by_value.items():
        if len(seqs) > 1:
            report.duplicated.append(f"{key!r}={_short(value)} applied at seqs {sorted(seqs)}")
    missing, resynced = stream_gaps(writes, changes)
    report.stream_resynced = len(resynced)
    for op in missing:
        report.stream_missing.append(f"{op.key!r}={_short(op.value)} acknowledged but never in the change stream")


def stream_gaps(writes: Iterable[Operation], changes: list[tuple]) -> tuple[list[Operation], list[Operation]]:
    """(acknowledged writes the stream never delivered, those it delivered
    only through a resync). ``changes``: (key, value, seq[, resync]). A
    resync delivers a key's current value instead of its history: a log
    write is covered when its value was resynced, a register write when the
    register was resynced at it or beyond (the write was superseded before
    the rescan)."""
    logged: set[tuple[bytes, bytes | None]] = set()
    resynced_values: set[tuple[bytes, bytes | None]] = set()
    resynced_register: dict[bytes, int] = {}
    for key, value, _seq, *rest in changes:
        if rest and rest[0]:
            resynced_values.add((key, value))
            if b"/reg/" in key:
                resynced_register[key] = max(resynced_register.get(key, -1), _register_index(value))
        else:
            logged.add((key, value))
    missing, resynced = [], []
    for op in writes:
        if op.status != "ok" or (op.key, op.value) in logged:
            continue
        if (op.key, op.value) in resynced_values or (
                b"/reg/" in op.key and resynced_register.get(op.key, -1) >= _register_index(op.value)):
            resynced.append(op)
        else:
            missing.append(op)
    return missing, resynced


def _check_replicas(report: CheckReport, replica_states: dict[str, dict[bytes, bytes]]) -> None:
    names = sorted(replica_states)
    reference = replica_states[names[0]]
    for name in names[1:]:
        other = replica_states[name]
        if other == reference:
            continue
        missing = [k for k in reference if k not in other]
        extra = [k for k in other if k not in reference]
        differ = [k for k in reference if k in other and other[k] != reference[k]]
        report.replica_divergence.append(
            f"{name} vs {names[0]}: {len(missing)} missing, {len(extra)} extra, {len(differ)} different "
            f"(e.g. {(missing + extra + differ)[:3]!r})")


def _measure_stalls(report: CheckReport, ops: list[Operation]) -> None:
    done = [op for op in ops if op.complete_s is not None]
    latencies = [op.complete_s - op.invoke_s for op in done]
    report.longest_stall_s = max(latencies, default=0.0)
    ok_latencies = [op.complete_s - op.invoke_s for op in done if op.status == "ok"]
    report.latency_p50_ms = percentile(ok_latencies, 0.50) * 1000
    report.latency_p99_ms = percentile(ok_latencies, 0.99) * 1000
    acks = sorted(op.complete_s for op in done if op.status == "ok" and op.kind == "write")
    report.longest_ack_gap_s = max((b - a for a, b in zip(acks, acks[1:])), default=0.0)


# ------------------------------------------------------- replica contents


def read_replica_directory(path: str | Path, prefix: bytes = b"") -> dict[bytes, bytes]:
    """User keys under ``prefix`` of a stopped replica's RocksDB directory,
    opened read-only (the replica must not be running). The replica keeps
    user data under ``DATA_KEY_PREFIX`` + key
    (``lineagerun.core.chain.replica_storage``); its own records under
    other prefixes are skipped."""
    from rocksdict import AccessType, Options, Rdict

    db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        start = DATA_KEY_PREFIX + prefix
        out: dict[bytes, bytes] = {}
        for key, value in db.items(from_key=start):
            if not key.startswith(start):
                break
            out[bytes(key[len(DATA_KEY_PREFIX):])] = bytes(value)
        return out
    finally:
        db.close()


# -------------------------------------------------------------- workload


class HistoryWorkload:
    """Runs the checker's workload against a ``ControlStoreClient`` factory:
    ``writers`` threads of unique log writes + register updates, and
    ``readers`` threads reading registers, recording everything."""

    def __init__(self, make_client: Callable[[], object], prefix: str, *, writers: int = 4, readers: int = 1,
                 history: History | None = None, seed: int = 0, batch: int = 1):
        self.make_client = make_client
        self.prefix = prefix
        self.writers = writers
        self.readers = readers
        self.batch = batch
        self.history = history or History()
        self.seed = seed
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self) -> None:
        for w in range(self.writers):
            self._threads.append(threading.Thread(target=self._guard, args=(self._write_loop, w), daemon=True))
        for r in range(self.readers):
            self._threads.append(threading.Thread(target=self._guard, args=(self._read_loop, r), daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)

    def _guard(self, loop, index: int) -> None:
        try:
            loop(index)
        except BaseException as exc:  # a crashed client thread must fail the test, not vanish
            self.errors.append(exc)

    def _key(self, *parts: object) -> bytes:
        return "/".join([self.prefix, *map(str, parts)]).encode()

    def _write(self, client, process: str, key: bytes, value: bytes) -> bool:
        from lineagerun.exceptions import ControlStoreUnavailableError, InvalidArgumentError

        op = self.history.invoke(process, "write", key, value)
        try:
            client.put(key, value)
        except InvalidArgumentError as exc:
            self.history.fail(op, exc)
            raise
        except ControlStoreUnavailableError as exc:
            self.history.unknown(op, exc)
            return False
        self.history.ok(op)
        return True

    def _write_loop(self, w: int) -> None:
        process = f"writer-{w}"
        client = self.make_client()
        try:
            i = 0
            while not self._stop.is_set():
                nonce = random.Random(f"{self.seed}/{w}/{i}").getrandbits(32)
                if self._write(client, process, self._key("log", w, f"{i:08d}"), f"{w}:{i}:{nonce:08x}".encode()):
                    self._write(client, process, self._key("reg", w), f"{i}:{w}".encode())
                i += 1
        finally:
            client.close()

    def _read_loop(self, r: int) -> None:
        from lineagerun.exceptions import ControlStoreUnavailableError

        process = f"reader-{r}"
        rng = random.Random(f"{self.seed}/reader/{r}")
        client = self.make_client()
        try:
            while not self._stop.is_set():
                key = self._key("reg", rng.randrange(self.writers))
                op = self.history.invoke(process, "read", key)
                try:
                    value = client.get(key)
                except ControlStoreUnavailableError as exc:
                    self.history.fail(op, exc)  # a read that did not return changes nothing
                    continue
                self.history.ok(op, value)
                time.sleep(0.002)
        finally:
            client.close()
