"""One embedded cluster per test module, and a control-store client on it."""

from __future__ import annotations

import shutil

import pytest

import lineagerun
from lineagerun.api import session
from lineagerun.control.client import ControlStoreClient


def _shutdown_and_remove_session() -> None:
    state = session.driver_state()
    lineagerun.shutdown()
    if state is not None and state.cluster is not None:
        shutil.rmtree(state.session_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    _shutdown_and_remove_session()
    state = lineagerun.init(num_cpus=2)
    yield state
    _shutdown_and_remove_session()


@pytest.fixture(scope="module")
def control_store(cluster):
    state = session.driver_state()
    client = ControlStoreClient(state.cluster.control_store.address, state.cluster.token)
    yield client
    client.close()
