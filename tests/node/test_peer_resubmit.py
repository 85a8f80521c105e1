"""PeerResubmitter: tasks forwarded on a peer session that ended while the
peer lives are submitted again on a new session (the rt-network 90 s stall:
a SubmitTasks lost with the session, the owner waiting for results forever)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from lineagerun.node import peer_resubmit
from lineagerun.node.peer_resubmit import PeerResubmitter
from lineagerun.rpc import lineage_pb2

PEER = "127.0.0.2:5000"


@dataclass
class _Run:
    spec: lineage_pb2.TaskSpec
    attempt: int = 0
    attempt_reason: int = 0


@dataclass
class _Forwarded:
    run: _Run
    address: str
    orphaned: bool = True


@dataclass
class _Peer:
    address: str = PEER
    ready_failures: int = 0
    accepts: bool = True
    sent: list = field(default_factory=list)

    async def ready(self) -> None:
        if self.ready_failures:
            self.ready_failures -= 1
            raise ConnectionError("still cut")

    def send(self, message) -> bool:
        if self.accepts:
            self.sent.append(message)
        return self.accepts


class _Peers:
    def __init__(self, peer):
        self.peer = peer

    def get(self, address):
        assert address == PEER
        return self.peer


class _Link:
    def __init__(self, peer: _Peer):
        self.peers = _Peers(peer)
        self.forwarded: dict[bytes, _Forwarded] = {}
        self.args_sent: list = []
        self._tasks: set = set()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_function_and_args(self, peer, run) -> None:
        self.args_sent.append(run.spec.task_id)

    async def settle(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks)


def _forward(link: _Link, task_id: bytes, *, actor_task: bool = False, attempt: int = 0) -> _Forwarded:
    spec = lineage_pb2.TaskSpec(task_id=task_id, is_actor_task=actor_task)
    forwarded = _Forwarded(_Run(spec, attempt=attempt), PEER)
    link.forwarded[task_id] = forwarded
    return forwarded


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setattr(peer_resubmit, "RESUBMIT_DELAY_FIRST_S", 0.001)
    monkeypatch.setattr(peer_resubmit, "RESUBMIT_DELAY_MAX_S", 0.004)


def _run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


@pytest.mark.timeout(30)
def test_orphans_are_submitted_again_once_a_new_session_registers():
    async def scenario():
        peer = _Peer(ready_failures=3)  # the link is still cut for a while
        link = _Link(peer)
        plain = _forward(link, b"t1", attempt=2)
        actor_call = _forward(link, b"t2", actor_task=True)
        not_orphaned = _forward(link, b"t3")
        not_orphaned.orphaned = False
        resubmitter = PeerResubmitter(link)
        resubmitter.session_ended(PEER)
        resubmitter.session_ended(PEER)  # one retry per address
        await link.settle()
        [message] = peer.sent
        submitted = message.submit_tasks
        assert [spec.task_id for spec in submitted.specs] == [b"t1"]
        assert list(submitted.attempt_numbers) == [2]
        assert list(submitted.attempt_reasons) == [lineage_pb2.RETRY]
        assert link.args_sent == [b"t1"]  # functions and arguments go first on the new session
        assert not plain.orphaned and actor_call.orphaned and resubmitter.resubmitted == 1

    _run(scenario)


@pytest.mark.timeout(30)
def test_nothing_is_sent_when_results_came_or_only_actor_work_is_orphaned():
    async def scenario():
        peer = _Peer(ready_failures=1)
        link = _Link(peer)
        _forward(link, b"t1")
        resubmitter = PeerResubmitter(link)
        resubmitter.session_ended(PEER)
        link.forwarded.clear()  # its results arrived through a lookup meanwhile
        await link.settle()
        _forward(link, b"a1", actor_task=True)
        resubmitter.session_ended(PEER)
        await link.settle()
        assert peer.sent == [] and resubmitter.resubmitted == 0

    _run(scenario)


@pytest.mark.timeout(30)
def test_a_session_that_ends_again_is_retried_and_stopping_ends_the_retries():
    async def scenario():
        peer = _Peer(accepts=False)  # registered, then closed before the send
        link = _Link(peer)
        forwarded = _forward(link, b"t1")
        resubmitter = PeerResubmitter(link)
        resubmitter.session_ended(PEER)
        await asyncio.sleep(0.05)
        assert forwarded.orphaned and link._tasks  # still trying
        peer.accepts = True
        await link.settle()
        assert len(peer.sent) == 1 and not forwarded.orphaned
        forwarded.orphaned = True
        resubmitter.stopping = True
        resubmitter.session_ended(PEER)
        await link.settle()
        assert len(peer.sent) == 1

    _run(scenario)
