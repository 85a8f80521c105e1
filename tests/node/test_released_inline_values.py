"""Inline values of released objects are kept for the most recent ones only
(the node's object table stays bounded over a long job); a dropped one is
reported lost, so a borrowed ref asking for it again gets it rebuilt."""

from __future__ import annotations

import pytest

from lineagerun.node import object_table
from lineagerun.node.object_table import NodeObjectStore, ObjectTable
from lineagerun.objects import new_session_id
from lineagerun.rpc import node_pb2


def oid(i: int) -> bytes:
    return i.to_bytes(4, "big") * 7


def inline(size: int = 10) -> node_pb2.ObjectPayload:
    return node_pb2.ObjectPayload(inline=b"v" * size, size_bytes=size)


@pytest.fixture
def table(monkeypatch):
    monkeypatch.setattr(object_table, "RELEASED_INLINE_KEPT_MAX", 3)
    monkeypatch.setattr(object_table, "RELEASED_INLINE_KEPT_BYTES", 1000)
    store = NodeObjectStore(new_session_id(), 1 << 20)
    yield ObjectTable(store, lambda _oid: None)
    store.close()


def ready(objects, n: int) -> list[int]:
    return [i for i in range(n) if objects.is_ready(oid(i))]


def test_only_the_most_recent_released_inline_values_are_kept(table):
    objects = table
    for i in range(5):
        objects.add_payload(oid(i), inline())
    objects.release_primary([oid(i) for i in range(5)])
    assert ready(objects, 5) == [2, 3, 4]
    assert not objects.is_known(oid(0))
    assert objects.take_dropped(oid(0)) and not objects.take_dropped(oid(0))  # its rebuild takes over once
    assert not objects.take_dropped(oid(2))


def test_values_still_owned_are_never_dropped(table):
    objects = table
    for i in range(10):
        objects.add_payload(oid(i), inline())
    objects.release_primary([oid(0)])
    assert ready(objects, 10) == list(range(10))


def test_the_byte_bound_drops_values_before_the_count_bound(table):
    objects = table
    objects.add_payload(oid(0), inline(600))
    objects.add_payload(oid(1), inline(600))
    objects.release_primary([oid(0), oid(1)])
    assert ready(objects, 2) == [1] and objects.take_dropped(oid(0))


def test_a_value_released_before_it_arrived_counts_as_released(table):
    objects = table
    objects.release_primary([oid(i) for i in range(5)])  # the owner dropped refs of running tasks
    for i in range(5):
        objects.add_payload(oid(i), inline())
    assert ready(objects, 5) == [2, 3, 4]


def test_an_argument_pinned_by_a_queued_task_is_kept_until_the_task_ends(table):
    objects = table
    objects.add_payload(oid(0), inline())
    objects.pin([oid(0)], "task:a")
    objects.pin([oid(0)], "task:b")
    objects.release_primary([oid(0)])
    for i in range(1, 6):
        objects.add_payload(oid(i), inline())
        objects.release_primary([oid(i)])
    assert objects.is_ready(oid(0))  # the younger ones went first
    objects.release_holder("task:a")
    objects.add_payload(oid(6), inline())
    objects.release_primary([oid(6)])
    assert objects.is_ready(oid(0))  # task b still holds it
    objects.release_holder("task:b")
    for i in range(7, 11):  # it went back to the young end: dropped in its turn
        objects.add_payload(oid(i), inline())
        objects.release_primary([oid(i)])
    assert not objects.is_ready(oid(0)) and objects.take_dropped(oid(0))


def test_a_rebuilt_value_is_no_longer_counted_as_dropped(table):
    objects = table
    for i in range(4):
        objects.add_payload(oid(i), inline())
    objects.release_primary([oid(i) for i in range(4)])
    objects.add_payload(oid(0), inline())  # its rebuild (from its record, or a replay)
    assert objects.is_ready(oid(0)) and not objects.take_dropped(oid(0))


def test_a_value_named_by_a_get_still_waiting_for_another_is_kept_until_the_answer(table):
    objects = table
    objects.add_payload(oid(0), inline())
    objects.release_primary([oid(0)])  # only a borrowed ref names it now
    answers = []
    assert not objects.get([oid(0), oid(99)], -1, answers.append)  # waits for oid(99)
    for i in range(1, 6):
        objects.add_payload(oid(i), inline())
        objects.release_primary([oid(i)])
    assert objects.is_ready(oid(0))
    objects.add_payload(oid(99), inline())
    assert [r.payload.inline for r in answers[0]] == [b"v" * 10, b"v" * 10]
    for i in range(6, 12):  # answered: it is no longer kept for the get
        objects.add_payload(oid(i), inline())
        objects.release_primary([oid(i)])
    assert not objects.is_ready(oid(0))


def test_a_value_counted_by_a_pending_wait_is_kept_until_the_answer(table):
    objects = table
    objects.add_payload(oid(0), inline())
    objects.release_primary([oid(0)])
    answers = []
    assert not objects.wait([oid(0), oid(99)], 2, -1, answers.append)
    for i in range(1, 6):
        objects.add_payload(oid(i), inline())
        objects.release_primary([oid(i)])
    objects.add_payload(oid(99), inline())
    assert answers == [[oid(0), oid(99)]]


def test_a_value_arriving_while_a_get_waits_for_another_is_kept_too(table):
    objects = table
    answers = []
    assert not objects.get([oid(0), oid(99)], -1, answers.append)
    objects.add_payload(oid(0), inline())  # arrives, then its owner releases it
    objects.release_primary([oid(0)])
    for i in range(1, 6):
        objects.add_payload(oid(i), inline())
        objects.release_primary([oid(i)])
    objects.add_payload(oid(99), inline())
    assert [r.payload.inline for r in answers[0]] == [b"v" * 10, b"v" * 10]


def test_the_waiters_of_a_closed_session_are_dropped_with_their_pins(table):
    objects = table
    objects.add_payload(oid(0), inline())
    objects.release_primary([oid(0)])
    answers = []
    assert not objects.get([oid(0), oid(99)], -1, answers.append, owner="session:7")
    assert not objects.wait([oid(0), oid(98)], 2, -1, answers.append, owner="session:7")
    objects.drop_waiters("session:7")
    assert not objects.has_waiters(oid(99)) and not objects.has_waiters(oid(98))
    for i in range(1, 6):  # nothing keeps it any more
        objects.add_payload(oid(i), inline())
        objects.release_primary([oid(i)])
    assert not objects.is_ready(oid(0))
    objects.add_payload(oid(99), inline())
    objects.add_payload(oid(98), inline())
    assert answers == []  # nobody to answer
