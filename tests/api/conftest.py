"""One embedded cluster per test module (init costs about a second)."""

from __future__ import annotations

import shutil

import pytest

import lineagerun
from lineagerun.api import session


def shutdown_and_remove_session() -> None:
    """Tests leave no session directories behind (users keep theirs for the logs)."""
    state = session.driver_state()
    lineagerun.shutdown()
    if state is not None and state.cluster is not None:
        shutil.rmtree(state.session_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    shutdown_and_remove_session()
    state = lineagerun.init(num_cpus=4)
    yield state
    shutdown_and_remove_session()
