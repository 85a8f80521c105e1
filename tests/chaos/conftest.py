"""Fixtures shared by the chaos proxy tests."""

from __future__ import annotations

import pytest

from tests.chaos import EchoServer


@pytest.fixture
def echo():
    """A TCP echo server, stopped after the test."""
    server = EchoServer()
    yield server
    server.stop()
