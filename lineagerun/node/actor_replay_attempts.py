"""Attempt records of actor restarts (issue 7: replayed actor calls in
lineage). A restart's constructor and every call it replays are new
``TaskAttempt``s of the same tasks, reason ``REPLAY``, written by
``actor_recovery_driver.py``; this module numbers them and builds them."""

from __future__ import annotations

from lineagerun.core.ids import TaskID
from lineagerun.core.keys import attempt_key
from lineagerun.rpc import lineage_pb2

# Attempt records probed per replayed call to find its next attempt number
# (a call has one attempt per incarnation it ran in at most); past this many
# the restart count stands in.
REPLAY_ATTEMPTS_PROBED_MAX = 16


def next_attempt_numbers(client, records, incarnation: int) -> dict[bytes, int]:
    """task id -> the attempt number a replay of each recorded call is
    written as: one past its last recorded attempt (blocking; off the loop).
    The first run is attempt 0 even when its record was lost with its node."""
    probed = max(1, min(incarnation, REPLAY_ATTEMPTS_PROBED_MAX))
    keys = [attempt_key(TaskID(r.task_id), n) for r in records for n in range(probed)]
    found = client.get_many(keys) if keys else []
    numbers = {}
    for index, record in enumerate(records):
        present = [n for n in range(probed) if found[index * probed + n] is not None]
        number = present[-1] + 1 if present else 1
        if number == probed < incarnation:
            number = incarnation  # more may exist past the probe; none past the restart count
        numbers[record.task_id] = number
    return numbers


def started_attempt(run, number: int, state: int, node_id: bytes) -> tuple[bytes, bytes]:
    """(key, value) of the attempt record of a replay or restart as it starts."""
    attempt = lineage_pb2.TaskAttempt(
        task_id=run.task_id, attempt_number=number, reason=lineage_pb2.REPLAY, node_id=node_id,
        worker_id=run.worker_id.binary() if run.worker_id else b"", state=state, start_ms=run.started_ms)
    return attempt_key(TaskID(run.task_id), number), attempt.SerializeToString()
