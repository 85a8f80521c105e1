"""Two chaos proxy servers driven from one process each get their own calls.

toxiproxy-python keeps the API's address process-wide (``APIConsumer``), so
before ``lineagerun.chaos.proxy_api`` the links object created last took
every other one's calls: partitioning one cluster's clients cut the other's.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from toxiproxy import Toxiproxy

from lineagerun.chaos.nemesis import ClientLinks
from lineagerun.chaos.proxy import ChaosProxyServer
from lineagerun.chaos.proxy_api import bound_api
from tests.chaos import connect, round_trip_s

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def two_servers(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    servers = [ChaosProxyServer(), ChaosProxyServer()]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def _enabled(server, name: str) -> bool:
    return bound_api("127.0.0.1", server.port).get_proxy(name).enabled


def test_each_links_object_partitions_only_its_own_proxies(two_servers, echo):
    first, second = (ClientLinks(SimpleNamespace(address=echo.address), proxy_server_factory=lambda s=s: s)
                     for s in two_servers)
    first.set_partitioned(True)
    assert _enabled(two_servers[0], "client-coordinator") is False
    assert _enabled(two_servers[1], "client-coordinator") is True
    with connect(second.coordinator_address) as sock:
        round_trip_s(sock, b"the other cluster's link still carries data")
    first.set_partitioned(False)
    second.add_toxic("slow", "latency", "downstream", 1.0, {"latency": 5})
    assert bound_api("127.0.0.1", two_servers[0].port).get_proxy("client-coordinator").toxics() == {}
    assert set(bound_api("127.0.0.1", two_servers[1].port).get_proxy("client-coordinator").toxics()) == {"slow"}


def test_a_bound_client_ignores_the_process_wide_address(two_servers, echo):
    first = bound_api("127.0.0.1", two_servers[0].port)
    first.create(upstream=echo.address, name="mine")
    unbound = Toxiproxy()
    unbound.update_api_consumer("127.0.0.1", two_servers[1].port)  # another library user in this process
    assert set(first.proxies()) == {"mine"}
    assert first.get_proxy("mine").listen == first.proxies()["mine"].listen
    assert unbound.proxies() == {}
    with pytest.raises(TypeError, match="keeps its server"):
        first.update_api_consumer("127.0.0.1", two_servers[1].port)


def test_a_bound_proxy_destroys_on_its_own_server(two_servers, echo):
    first, second = (bound_api("127.0.0.1", s.port) for s in two_servers)
    mine = first.create(upstream=echo.address, name="same-name")
    theirs = second.create(upstream=echo.address, name="same-name")
    assert first.destroy(mine) is True
    assert first.proxies() == {}
    assert set(second.proxies()) == {"same-name"} and theirs.enabled is True


def test_down_disables_on_its_own_server_for_the_block(two_servers, echo):
    first, second = (bound_api("127.0.0.1", s.port) for s in two_servers)
    mine = first.create(upstream=echo.address, name="link")
    second.create(upstream=echo.address, name="link")
    Toxiproxy().update_api_consumer("127.0.0.1", two_servers[1].port)
    with mine.down():
        assert _enabled(two_servers[0], "link") is False
        assert _enabled(two_servers[1], "link") is True
    assert _enabled(two_servers[0], "link") is True
