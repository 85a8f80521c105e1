"""Built-in workloads of runtime chaos scenarios (``cluster.kind = "runtime"``).

Each runs *rounds* of a job on the cluster until the faulted pass ends (or
``rounds`` is reached) and checks every round against a known answer
computed in this process with plain numpy / integer arithmetic (so no
fault-free pass is needed):

* ``map-reduce``: numpy chunks made by tasks, squared and summed by map
  tasks, reduced by one task (objects flow between nodes);
* ``task-chain``: a chain of ``length`` dependent tasks;
* ``parameter-server``: one actor holding a weight vector; each round worker
  tasks compute gradients and the actor applies them (the actor's state is
  the running sum: a call lost or applied twice shows);
* ``rl-loop``: a learner actor; each round rollouts (tasks) read the current
  policy, the learner updates from them;
* ``module:function`` (a user's own): ``function(**params)`` is called once
  fault-free (``prepare``) for the expected value, then once per round.

Counters (tasks re-executed, objects rebuilt, actor calls replayed, recovery
times) come from the control store: ``lineagerun.state.recovery_summary``
over the faulted pass.
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any, Callable, Mapping

import numpy as np

from lineagerun.core.chaos_schedule import OpTiming
from lineagerun.exceptions import InvalidArgumentError

# A round that does not finish in this long is reported as hung (R7: no
# hang without a timeout); generous for a loaded 2-core machine.
ROUND_TIMEOUT_S = 90.0
ROUNDS_MAX = 100_000
PROBLEMS_KEPT_MAX = 20
ERROR_TEXT_MAX = 300
PRIME = 1_000_003


def _int(params: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgumentError(f"workload.{name}: {value!r} must be an integer from {low} to {high}")
    return value


def _check(params: Mapping[str, Any], allowed: tuple[str, ...], kind: str) -> None:
    extra = sorted(set(params) - set(allowed) - {"rounds", "allow_failed_rounds"})
    if extra:
        raise InvalidArgumentError(f"workload {kind}: unknown field(s) {', '.join(extra)}; allowed: "
                                   f"{', '.join(allowed + ('rounds', 'allow_failed_rounds'))}")


def _spread(params: Mapping[str, Any]) -> dict[str, Any]:
    """``spread = true`` (the default): tasks go round the nodes, so a node
    fault always meets work (and objects) on that node."""
    spread = params.get("spread", True)
    if not isinstance(spread, bool):
        raise InvalidArgumentError(f"workload.spread: {spread!r} is not true or false")
    return {"scheduling_strategy": "SPREAD"} if spread else {}


_REMOTES: dict[tuple, Any] = {}


def _remote(function=None, **options):
    """One remote function (or actor class) per (target, options): made once."""
    import lineagerun

    key = (function, tuple(sorted(options.items())))
    if key not in _REMOTES:
        _REMOTES[key] = lineagerun.remote(**options)(function) if options else lineagerun.remote(function)
    return _REMOTES[key]


# -------------------------------------------------------------- tasks
# Module-level so workers import them by reference.


def make_chunk(seed: int, index: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, index]).integers(0, 1000, size, dtype=np.int64)


def square_sum(chunk: np.ndarray) -> int:
    return int(np.dot(chunk, chunk))


def total(*parts: int) -> int:
    return int(sum(parts))


def chain_step(value: int, index: int) -> int:
    return (value * 31 + index) % PRIME


def gradient(seed: int, round_index: int, worker: int, dim: int) -> np.ndarray:
    return np.random.default_rng([seed, round_index, worker]).integers(-5, 6, dim, dtype=np.int64)


def rollout(policy: np.ndarray, seed: int, iteration: int, index: int) -> int:
    actions = np.random.default_rng([seed, iteration, index]).integers(0, len(policy), 8)
    return int(policy[actions].sum() % PRIME)


class ParameterServer:
    def __init__(self, dim: int):
        self.weights = np.zeros(dim, dtype=np.int64)

    def apply(self, grad: np.ndarray) -> int:
        self.weights = self.weights + grad
        return int(self.weights.sum())

    def get(self) -> np.ndarray:
        return self.weights


class Learner:
    def __init__(self, dim: int):
        self.policy = np.arange(dim, dtype=np.int64)

    def update(self, *returns: int) -> int:
        self.policy = (self.policy * 7 + sum(returns)) % PRIME
        return int(self.policy.sum())

    def get(self) -> np.ndarray:
        return self.policy


def rl_update_local(policy: np.ndarray, returns: list[int]) -> np.ndarray:
    return (policy * 7 + sum(returns)) % PRIME


# --------------------------------------------------------- round base


class RoundWorkload:
    """Runs ``run_round(i)`` on a driver thread until stopped; each round's
    value must equal ``expected(i)``."""

    kind = "rounds"

    def __init__(self, params: Mapping[str, Any]):
        self.rounds_max = _int(params, "rounds", ROUNDS_MAX, 1, ROUNDS_MAX)
        # R7: under network faults a round may fail with a clear error
        # instead of finishing; only a wrong value or a hang breaks the result.
        self.allow_failed_rounds = bool(params.get("allow_failed_rounds", False))
        self.seed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.ops: list[OpTiming] = []
        self.rounds_ok = 0
        self.rounds_wrong = 0
        self.rounds_failed = 0
        self.problems: list[str] = []
        self.crashed: list[BaseException] = []
        self.since_ms = 0
        self.last_result: Any = None

    # hooks
    def setup(self) -> None:
        """Create actors etc. (on the driver, before the first round)."""

    def run_round(self, index: int) -> Any:
        raise NotImplementedError

    def expected(self, index: int) -> Any:
        raise NotImplementedError

    def prepare(self, env) -> None:
        """Before the faulted pass (no faults yet)."""
        self.seed = env.seed
        self.setup()

    def start(self, env) -> None:
        self.seed = env.seed
        self.since_ms = int(time.time() * 1000)
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"workload-{self.kind}")
        self._thread.start()

    def _loop(self) -> None:
        try:
            for index in range(self.rounds_max):
                if self._stop.is_set():
                    return
                self._one_round(index)
        except BaseException as err:  # a crashed driver thread fails the run
            self.crashed.append(err)

    def _one_round(self, index: int) -> None:
        from lineagerun.exceptions import LineagerunError

        invoke_s = time.monotonic()
        try:
            value = self.run_round(index)
        except LineagerunError as err:
            with self._lock:
                self.rounds_failed += 1
                self.ops.append(OpTiming(invoke_s, time.monotonic(), False))
                self._problem(f"round {index} failed: {type(err).__name__}: {_error_text(err)}")
            return
        good = _equal(value, self.expected(index))
        with self._lock:
            self.ops.append(OpTiming(invoke_s, time.monotonic(), good))
            self.last_result = _summary(value)
            if good:
                self.rounds_ok += 1
            else:
                self.rounds_wrong += 1
                self._problem(f"round {index}: result {_summary(value)} != expected "
                              f"{_summary(self.expected(index))}")

    def _problem(self, text: str) -> None:
        if len(self.problems) < PROBLEMS_KEPT_MAX:
            self.problems.append(text)

    def progress(self) -> dict[str, int]:
        with self._lock:
            return {"attempted": len(self.ops), "ok": self.rounds_ok,
                    "unknown": self.rounds_failed + self.rounds_wrong}

    def stop(self) -> None:
        self._stop.set()

    def finish(self, env):
        from lineagerun.chaos.runner import WorkloadResult

        hung = False
        if self._thread is not None:
            self._thread.join(timeout=ROUND_TIMEOUT_S)
            hung = self._thread.is_alive()
        counters = recovery_counters(env.cluster, self.since_ms)
        if isinstance(counters.get("tasks_reexecuted"), int) and counters.get("actor_calls_replayed"):
            # A replayed actor call is a new attempt of its task too: count it once, as a replay.
            counters["tasks_reexecuted"] = max(0, counters["tasks_reexecuted"] - counters["actor_calls_replayed"])
        with self._lock:
            ops = list(self.ops)
            problems = list(self.problems)
            if hung:
                problems.append(f"a round did not finish within {ROUND_TIMEOUT_S:.0f} s after the faults ended "
                                f"(a hang)")
            problems += [f"workload thread crashed: {e!r}" for e in self.crashed]
            stall_ms = max(((op.complete_s - op.invoke_s) * 1000.0 for op in ops if op.complete_s), default=0.0)
            measured = {
                "operations_attempted": len(ops) + int(hung), "operations_ok": self.rounds_ok,
                "operations_failed": self.rounds_failed, "operations_unknown": int(hung),
                "lost": self.rounds_wrong + int(hung), "duplicated": None,
                "max_stall_ms": stall_ms,
                "result_matches": self.rounds_wrong == 0 and not hung and not self.crashed and self.rounds_ok > 0
                and (self.allow_failed_rounds or self.rounds_failed == 0),
                "client_errors": len(self.crashed) + int(hung),
                **{k: counters.get(k) for k in ("tasks_reexecuted", "objects_rebuilt", "actor_calls_replayed")},
            }
            result = {"rounds_ok": self.rounds_ok, "rounds_wrong": self.rounds_wrong,
                      "rounds_failed": self.rounds_failed, "last": self.last_result}
        out = WorkloadResult(measured, ops, problems, result=result)
        out.runtime_counters = counters  # the runner adds them to the report
        return out


def _error_text(err: BaseException) -> str:
    """The first line and the innermost traceback line: enough to tell a
    clear error (retries exhausted) from a bug."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    if len(lines) <= 2:
        return " / ".join(lines)[:ERROR_TEXT_MAX]
    return f"{lines[0][:ERROR_TEXT_MAX]} ... {lines[-1].strip()[:ERROR_TEXT_MAX]}"


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and \
            bool(np.array_equal(a, b))
    return a == b


def _summary(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return f"array(shape={value.shape}, sum={int(value.sum())})"
    text = repr(value)
    return value if len(text) <= 80 else text[:77] + "..."


def recovery_counters(cluster, since_ms: int) -> dict[str, Any]:
    """Tasks re-executed, objects rebuilt, actor calls replayed (and the
    rest of ``recovery_summary``) since ``since_ms``; {} if unreadable."""
    try:
        from lineagerun.state import recovery_summary

        return recovery_summary(since_ms=since_ms, address=cluster.address, token=cluster.token, timeout_s=20.0)
    except Exception as err:  # noqa: BLE001 - counters are reported, not required
        return {"error": f"{type(err).__name__}: {err}"}


# ------------------------------------------------------------ workloads


class MapReduce(RoundWorkload):
    kind = "map-reduce"

    def __init__(self, params: Mapping[str, Any]):
        _check(params, ("chunks", "chunk_size", "spread"), self.kind)
        super().__init__(params)
        self.spread = _spread(params)
        self.chunks = _int(params, "chunks", 8, 1, 1000)
        self.chunk_size = _int(params, "chunk_size", 50_000, 1, 10_000_000)
        self._answers: dict[int, int] = {}

    def run_round(self, index: int) -> int:
        import lineagerun

        make, square, reduce_ = (_remote(f, **self.spread) for f in (make_chunk, square_sum, total))
        chunks = [make.remote(self.seed + index, i, self.chunk_size) for i in range(self.chunks)]
        parts = [square.remote(c) for c in chunks]
        return lineagerun.get(reduce_.remote(*parts), timeout=ROUND_TIMEOUT_S)

    def expected(self, index: int) -> int:
        if index not in self._answers:
            self._answers[index] = sum(square_sum(make_chunk(self.seed + index, i, self.chunk_size))
                                       for i in range(self.chunks))
        return self._answers[index]


class TaskChain(RoundWorkload):
    kind = "task-chain"

    def __init__(self, params: Mapping[str, Any]):
        _check(params, ("length", "spread"), self.kind)
        super().__init__(params)
        self.spread = _spread(params)
        self.length = _int(params, "length", 20, 1, 10_000)

    def run_round(self, index: int) -> int:
        import lineagerun

        step = _remote(chain_step, **self.spread)
        value = self.seed + index
        for i in range(self.length):
            value = step.remote(value, i)
        return lineagerun.get(value, timeout=ROUND_TIMEOUT_S)

    def expected(self, index: int) -> int:
        value = self.seed + index
        for i in range(self.length):
            value = chain_step(value, i)
        return value


class ParameterServerWorkload(RoundWorkload):
    kind = "parameter-server"

    def __init__(self, params: Mapping[str, Any]):
        _check(params, ("workers", "dim", "max_restarts"), self.kind)
        super().__init__(params)
        self.workers = _int(params, "workers", 4, 1, 256)
        self.dim = _int(params, "dim", 16, 1, 1_000_000)
        self.max_restarts = _int(params, "max_restarts", 100, -1, 10_000)
        self.server = None
        self._expected = np.zeros(self.dim, dtype=np.int64)
        self._expected_index = -1

    def setup(self) -> None:
        server_class = _remote(ParameterServer, max_restarts=self.max_restarts)
        self.server = server_class.options(name=f"chaos-ps-{self.seed}").remote(self.dim)

    def run_round(self, index: int) -> np.ndarray:
        import lineagerun

        grad = _remote(gradient)
        grads = [grad.remote(self.seed, index, w, self.dim) for w in range(self.workers)]
        lineagerun.get([self.server.apply.remote(g) for g in grads], timeout=ROUND_TIMEOUT_S)
        return lineagerun.get(self.server.get.remote(), timeout=ROUND_TIMEOUT_S)

    def expected(self, index: int) -> np.ndarray:
        while self._expected_index < index:
            self._expected_index += 1
            for w in range(self.workers):
                self._expected = self._expected + gradient(self.seed, self._expected_index, w, self.dim)
        return self._expected


class RlLoop(RoundWorkload):
    kind = "rl-loop"

    def __init__(self, params: Mapping[str, Any]):
        _check(params, ("rollouts", "dim", "max_restarts"), self.kind)
        super().__init__(params)
        self.rollouts = _int(params, "rollouts", 4, 1, 256)
        self.dim = _int(params, "dim", 32, 1, 1_000_000)
        self.max_restarts = _int(params, "max_restarts", 100, -1, 10_000)
        self.learner = None
        self._policy = np.arange(self.dim, dtype=np.int64)
        self._expected_index = -1

    def setup(self) -> None:
        learner_class = _remote(Learner, max_restarts=self.max_restarts)
        self.learner = learner_class.options(name=f"chaos-learner-{self.seed}").remote(self.dim)

    def run_round(self, index: int) -> np.ndarray:
        import lineagerun

        policy = self.learner.get.remote()
        play = _remote(rollout)
        returns = [play.remote(policy, self.seed, index, i) for i in range(self.rollouts)]
        self.learner.update.remote(*returns)
        return lineagerun.get(self.learner.get.remote(), timeout=ROUND_TIMEOUT_S)

    def expected(self, index: int) -> np.ndarray:
        while self._expected_index < index:
            self._expected_index += 1
            returns = [rollout(self._policy, self.seed, self._expected_index, i) for i in range(self.rollouts)]
            self._policy = rl_update_local(self._policy, returns)
        return self._policy


class UserFunction(RoundWorkload):
    """A user's ``function(**params)``: its fault-free value (``prepare``)
    is what every round must return."""

    kind = "user"

    def __init__(self, function: Callable[..., Any], params: Mapping[str, Any], name: str):
        super().__init__(params)
        self.function = function
        self.kwargs = {k: v for k, v in params.items() if k not in ("rounds", "allow_failed_rounds")}
        self.kind = name
        self._expected: Any = None

    def prepare(self, env) -> None:
        super().prepare(env)
        self._expected = self.function(**self.kwargs)

    def run_round(self, index: int) -> Any:
        return self.function(**self.kwargs)

    def expected(self, index: int) -> Any:
        return self._expected


RUNTIME_WORKLOADS: dict[str, tuple[Callable[[Mapping[str, Any]], RoundWorkload], str]] = {
    "map-reduce": (MapReduce, "numpy chunks -> map (sum of squares) -> reduce; exact integer answer"),
    "task-chain": (TaskChain, "a chain of dependent tasks; exact answer"),
    "parameter-server": (ParameterServerWorkload, "a weights actor updated by gradient tasks; exact weights"),
    "rl-loop": (RlLoop, "rollout tasks and a learner actor's updates; exact policy"),
}


def user_workload(kind: str, params: Mapping[str, Any], where: str):
    """``module:function``: a Workload object if the function is a factory
    returning one (it has ``start``), else a ``UserFunction``."""
    module_name, _, attr = kind.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise InvalidArgumentError(f"{where}: workload.kind: cannot load {kind!r}: {err}; the module must be "
                                   f"importable (on PYTHONPATH) and define {attr}") from None
    if getattr(function, "chaos_workload_factory", False):
        return function(dict(params))
    return UserFunction(function, params, kind)


def register_runtime_workloads() -> None:
    from lineagerun.chaos.runner import register_workload

    for name, (factory, description) in RUNTIME_WORKLOADS.items():
        register_workload(name, factory, cluster_kinds=("runtime",), description=description)
