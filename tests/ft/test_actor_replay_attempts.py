"""The attempt number a replayed actor call is recorded as: one past the
call's last recorded attempt (unit test of the shell's helper, no cluster)."""

from __future__ import annotations

from lineagerun.core.ids import ActorID, JobID, TaskID
from lineagerun.core.keys import attempt_key
from lineagerun.node.actor_replay_attempts import REPLAY_ATTEMPTS_PROBED_MAX, next_attempt_numbers
from lineagerun.rpc import lineage_pb2

JOB = JobID.from_int(1)
ACTOR = ActorID.of(JOB, TaskID.for_driver(JOB), 0)


class _Store:
    def __init__(self, present: dict[TaskID, list[int]]):
        self.values = {attempt_key(t, n): b"x" for t, numbers in present.items() for n in numbers}
        self.reads = 0

    def get_many(self, keys):
        self.reads += 1
        return [self.values.get(k) for k in keys]


def _call(index: int) -> tuple[TaskID, lineage_pb2.ActorCallRecord]:
    task_id = TaskID.for_actor_task(JOB, TaskID.for_driver(JOB), index, ACTOR)
    return task_id, lineage_pb2.ActorCallRecord(actor_id=ACTOR.binary(), sequence_number=index,
                                                task_id=task_id.binary())


def test_a_call_replayed_again_gets_the_next_number_and_one_read_serves_a_page():
    (first, r1), (second, r2), (lost, r3) = _call(0), _call(1), _call(2)
    # first: ran, then replayed once; second: first ran in incarnation 1; lost: its record died with the node.
    store = _Store({first: [0, 1], second: [0]})
    numbers = next_attempt_numbers(store, [r1, r2, r3], incarnation=2)
    assert numbers == {first.binary(): 2, second.binary(): 1, lost.binary(): 1}
    assert store.reads == 1


def test_past_the_probe_the_restart_count_stands_in():
    task_id, record = _call(0)
    store = _Store({task_id: list(range(REPLAY_ATTEMPTS_PROBED_MAX))})
    incarnation = REPLAY_ATTEMPTS_PROBED_MAX + 5
    assert next_attempt_numbers(store, [record], incarnation) == {task_id.binary(): incarnation}
    assert next_attempt_numbers(_Store({}), [], 3) == {}
