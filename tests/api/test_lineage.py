"""Every task and actor call is recorded in the control store before it runs."""

from __future__ import annotations

import pytest

import lineagerun
from lineagerun.api import session
from lineagerun.control.client import ControlStoreClient
from lineagerun.core.ids import ActorID, FunctionID
from lineagerun.core.keys import actor_calls_prefix, function_key, task_key
from lineagerun.rpc import lineage_pb2

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("cluster")]


@pytest.fixture(scope="module")
def control_store(cluster):
    state = session.driver_state()
    client = ControlStoreClient(state.cluster.control_store.address, state.cluster.token)
    yield client
    client.close()


@lineagerun.remote
def scale(value, factor=2):
    return value * factor


@lineagerun.remote
class Account:
    def __init__(self):
        self.balance = 0

    def deposit(self, amount):
        self.balance += amount
        return self.balance


def _spec(control_store, ref) -> lineage_pb2.TaskSpec:
    data = control_store.get(task_key(ref.task_id()))
    assert data is not None, f"no task record for {ref.task_id()}"
    return lineage_pb2.TaskSpec.FromString(data)


def test_task_spec_is_recorded_with_arguments_and_parent(control_store):
    arg = lineagerun.put(21)
    ref = scale.remote(arg, factor=3)
    assert lineagerun.get(ref) == 63
    spec = _spec(control_store, ref)
    assert spec.task_id == ref.task_id().binary()
    assert spec.args[0].object_id == arg.binary()
    assert spec.kwargs[0].name == "factor" and spec.kwargs[0].arg.value
    assert spec.parent_task_id == lineagerun.api.context.core_worker().driver_task_id.binary()
    assert spec.num_returns == 1 and spec.submission_index >= 1
    function = lineage_pb2.FunctionRecord.FromString(control_store.get(function_key(FunctionID(spec.function_id))))
    assert function.name == "scale"


def test_every_task_of_a_batch_is_recorded(control_store):
    refs = [scale.remote(i) for i in range(50)]
    lineagerun.get(refs)
    indexes = [_spec(control_store, ref).submission_index for ref in refs]
    assert indexes == sorted(indexes) and len(set(indexes)) == 50


def test_actor_calls_are_recorded_in_sequence(control_store):
    account = Account.remote()
    refs = [account.deposit.remote(i) for i in range(10)]
    assert lineagerun.get(refs)[-1] == 45
    actor_id: ActorID = account._actor_id
    records = [lineage_pb2.ActorCallRecord.FromString(value)
               for _key, value in control_store.scan_prefix(actor_calls_prefix(actor_id))]
    assert [r.task_id for r in records] == [ref.task_id().binary() for ref in refs]
    assert [r.sequence_number for r in records] == sorted(r.sequence_number for r in records)
    assert all(r.method_name == "deposit" for r in records)
    assert _spec(control_store, refs[0]).is_actor_task
