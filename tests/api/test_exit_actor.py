"""``lineagerun.actor.exit_actor()``, as Ray's: an actor ends itself for good."""

from __future__ import annotations

import os
import time

import psutil
import pytest

import lineagerun
from lineagerun import exceptions
from lineagerun.actor import exit_actor

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("cluster")]


@lineagerun.remote(max_restarts=2)
class Quitter:
    def __init__(self, marker=None):
        if marker:
            import atexit

            atexit.register(lambda: open(marker, "w").write("atexit ran"))

    def pid(self):
        return os.getpid()

    def ping(self):
        return "pong"

    def quit(self):
        exit_actor()
        return "not reached"

    def quit_after(self, seconds):
        time.sleep(seconds)
        exit_actor()


@lineagerun.remote
class AsyncQuitter:
    async def ping(self):
        return "pong"

    async def quit(self):
        exit_actor()


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def test_the_caller_sees_the_actor_die_and_it_is_not_restarted(tmp_path):
    marker = tmp_path / "atexit.txt"
    actor = Quitter.remote(str(marker))
    pid = lineagerun.get(actor.pid.remote(), timeout=30)
    with pytest.raises(exceptions.ActorDiedError, match="exit_actor"):
        lineagerun.get(actor.quit.remote(), timeout=30)
    with pytest.raises(exceptions.ActorDiedError):
        lineagerun.get(actor.ping.remote(), timeout=30)  # max_restarts=2, but it chose to exit
    assert marker.read_text() == "atexit ran"
    assert _gone(pid)


def test_calls_queued_behind_the_exit_fail():
    actor = Quitter.remote()
    quitting = actor.quit_after.remote(0.5)
    queued = [actor.ping.remote() for _ in range(3)]
    for ref in [quitting] + queued:
        with pytest.raises(exceptions.ActorDiedError):
            lineagerun.get(ref, timeout=30)


def test_an_async_actor_exits_too():
    actor = AsyncQuitter.remote()
    assert lineagerun.get(actor.ping.remote(), timeout=30) == "pong"
    with pytest.raises(exceptions.ActorDiedError, match="exit_actor"):
        lineagerun.get(actor.quit.remote(), timeout=30)
    with pytest.raises(exceptions.ActorDiedError):
        lineagerun.get(actor.ping.remote(), timeout=30)


@lineagerun.remote
def plain_task_calls_exit_actor():
    exit_actor()


def test_outside_an_actor_it_is_a_type_error():
    with pytest.raises(TypeError, match="outside an actor"):
        exit_actor()
    with pytest.raises(TypeError, match="outside an actor"):
        lineagerun.get(plain_task_calls_exit_actor.remote(), timeout=30)


def test_ray_spelling_works():
    assert lineagerun.actor.exit_actor is exit_actor
    assert lineagerun.actor.ActorHandle is lineagerun.ActorHandle


@lineagerun.remote(max_concurrency=2)
class ThreadedQuitter:
    def nap(self, seconds):
        time.sleep(seconds)
        return seconds

    def quit_after(self, seconds):
        time.sleep(seconds)
        exit_actor()

    def touch(self, path):
        open(path, "w").close()
        return path


def test_calls_queued_in_a_threaded_actor_never_run(tmp_path):
    actor = ThreadedQuitter.remote()
    quitting = actor.quit_after.remote(0.3)
    napping = actor.nap.remote(1.0)  # both pool threads busy: the touches queue behind them
    touches = [actor.touch.remote(str(tmp_path / f"touched-{i}")) for i in range(4)]
    for ref in [quitting] + touches:
        with pytest.raises(exceptions.ActorDiedError):
            lineagerun.get(ref, timeout=30)
    with pytest.raises(exceptions.ActorDiedError):
        lineagerun.get(napping, timeout=30)
    assert list(tmp_path.iterdir()) == []
