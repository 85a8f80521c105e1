"""The second task slot on a real one-CPU node: a worker running a task is
sent the next one, which it starts when the first ends; the queued task is
handed back before a parent blocks on its child, is requeued without using
a retry when the worker dies, and is cancelled without killing the worker."""

from __future__ import annotations

import os
import shutil
import time

import pytest

import lineagerun
from lineagerun import exceptions
from lineagerun.api import session
from lineagerun.state import get_task


@pytest.fixture(scope="module")
def one_cpu():
    lineagerun.shutdown()
    state = lineagerun.init(num_cpus=1)
    yield state
    directory = session.driver_state().session_dir
    lineagerun.shutdown()
    shutil.rmtree(directory, ignore_errors=True)


@lineagerun.remote
def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@lineagerun.remote
def nested(depth: int) -> int:
    if depth == 0:
        return 0
    return 1 + lineagerun.get(nested.remote(depth - 1))


@lineagerun.remote(max_retries=0)
def die_after(seconds: float) -> None:
    time.sleep(seconds)
    os._exit(1)


@pytest.mark.timeout(60)
def test_the_next_task_runs_on_the_busy_worker_and_many_tasks_all_finish(one_cpu):
    first, second = pid_after.remote(0.5), pid_after.remote(0)
    assert lineagerun.get(first, timeout=30) == lineagerun.get(second, timeout=30)
    refs = [pid_after.remote(0) for _ in range(300)]
    assert len(lineagerun.get(refs, timeout=40)) == 300


@pytest.mark.timeout(60)
def test_a_parent_never_waits_for_a_child_queued_behind_it(one_cpu):
    # One CPU: each child is queued on its parent's worker until the parent
    # blocks in get, which hands it back (else: a deadlock). 7 tasks block
    # at once at most: within the pool of 8 workers a one-CPU node may start.
    assert lineagerun.get([nested.remote(3), nested.remote(2)], timeout=40) == [3, 2]


@pytest.mark.timeout(90)
def test_a_task_queued_on_a_dying_worker_runs_elsewhere_without_using_a_retry(one_cpu):
    doomed = die_after.remote(0.5)
    queued = pid_after.options(max_retries=0).remote(0)
    with pytest.raises(exceptions.WorkerCrashedError):
        lineagerun.get(doomed, timeout=30)
    assert isinstance(lineagerun.get(queued, timeout=30), int)  # ran, on another worker
    deadline = time.monotonic() + 20
    while True:  # attempt records are written in batches, shortly after
        detail = get_task(queued.task_id().hex())["attempts_detail"]
        if detail and detail[-1]["state"] == "FINISHED" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [(a["attempt_number"], a["reason"], a["state"]) for a in detail] == [(0, "FIRST_RUN", "FINISHED")]


@pytest.mark.timeout(60)
def test_cancelling_a_queued_task_keeps_the_running_one_and_its_worker(one_cpu):
    running = pid_after.options(max_retries=0).remote(1.0)  # a killed worker would fail it
    time.sleep(0.3)  # running has started; the next one goes to its worker's second slot
    queued = pid_after.remote(0)
    time.sleep(0.2)
    lineagerun.cancel(queued, force=True)
    with pytest.raises(exceptions.TaskCancelledError):
        lineagerun.get(queued, timeout=20)
    pid = lineagerun.get(running, timeout=20)
    assert lineagerun.get(pid_after.remote(0), timeout=20) == pid  # the same worker, not killed
