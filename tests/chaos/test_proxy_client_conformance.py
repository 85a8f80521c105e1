"""The chaos proxy as driven by toxiproxy-python (S4): everything the client
offers works, and server errors come back as the client's exceptions."""

from __future__ import annotations

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists
from toxiproxy.proxy import Proxy

from lineagerun.chaos.proxy import ChaosProxyServer
from tests.chaos import EchoServer, connect, round_trip_s

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def toxiproxy(monkeypatch):
    # requests honours HTTP(S)_PROXY; the API is on loopback and must be reached directly.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = ChaosProxyServer()
    server.start()
    client = Toxiproxy()
    client.update_api_consumer("127.0.0.1", server.port)
    yield client
    server.stop()


def test_running_and_version(toxiproxy):
    assert toxiproxy.running() is True
    assert b'"version"' in toxiproxy.version()


def test_create_list_get_destroy(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo.address, name="echo")
    assert isinstance(proxy, Proxy)
    assert proxy.name == "echo" and proxy.upstream == echo.address and proxy.enabled is True
    assert not proxy.listen.endswith(":0")
    with connect(proxy.listen) as sock:
        round_trip_s(sock, b"hello through the proxy")

    assert set(toxiproxy.proxies()) == {"echo"}
    fetched = toxiproxy.get_proxy("echo")
    assert (fetched.listen, fetched.upstream, fetched.enabled) == (proxy.listen, proxy.upstream, True)
    assert toxiproxy.get_proxy("missing") is None

    assert toxiproxy.destroy(proxy) is True
    assert toxiproxy.proxies() == {}
    with pytest.raises(NotFound):
        proxy.destroy()


def test_create_with_explicit_listen_and_disabled(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo.address, name="off", listen="127.0.0.1:0", enabled=False)
    assert proxy.enabled is False
    assert toxiproxy.get_proxy("off").enabled is False


def test_duplicates_raise_proxy_exists(toxiproxy, echo):
    toxiproxy.create(upstream=echo.address, name="echo")
    with pytest.raises(ProxyExists):  # the client's own check
        toxiproxy.create(upstream=echo.address, name="echo")
    with pytest.raises(ProxyExists):  # the server's 409
        APIConsumer.post("/proxies", json={"name": "echo", "upstream": echo.address})


def test_bad_requests_raise_invalid_toxic(toxiproxy, echo):
    with pytest.raises(InvalidToxic):
        APIConsumer.post("/proxies", json={"name": "no-upstream"})
    proxy = toxiproxy.create(upstream=echo.address, name="echo")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="earthquake")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="latency", stream="sideways")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="latency", attributes={"latency": "slow"})


def test_disable_enable_and_down(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo.address, name="echo")
    proxy.disable()
    assert proxy.enabled is False and toxiproxy.get_proxy("echo").enabled is False
    with pytest.raises(ConnectionRefusedError):
        connect(proxy.listen)
    proxy.enable()
    assert toxiproxy.get_proxy("echo").enabled is True
    with connect(proxy.listen) as sock:
        round_trip_s(sock)

    with proxy.down():
        assert toxiproxy.get_proxy("echo").enabled is False
        with pytest.raises(ConnectionRefusedError):
            connect(proxy.listen)
    assert toxiproxy.get_proxy("echo").enabled is True
    with connect(proxy.listen) as sock:
        round_trip_s(sock)


def test_toxics_in_both_directions(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo.address, name="echo")
    proxy.add_toxic(type="latency", attributes={"latency": 150})
    proxy.add_toxic(type="latency", stream="upstream", name="slow_up", toxicity=1.0,
                    attributes={"latency": 150, "jitter": 0})
    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream", "slow_up"}
    down, up = toxics["latency_downstream"], toxics["slow_up"]
    assert (down.type, down.stream, down.toxicity, down.attributes) == \
        ("latency", "downstream", 1.0, {"latency": 150, "jitter": 0})
    assert (up.stream, up.attributes["latency"]) == ("upstream", 150)
    assert proxy.get_toxic("slow_up").name == "slow_up" and proxy.get_toxic("nope") is None

    with connect(proxy.listen) as sock:
        assert round_trip_s(sock) >= 0.28  # 150 ms each way
    with pytest.raises(ProxyExists):
        proxy.add_toxic(type="latency")

    assert proxy.destroy_toxic("slow_up") is True
    assert set(proxy.toxics()) == {"latency_downstream"}
    with pytest.raises(NotFound):
        proxy.destroy_toxic("slow_up")
    proxy.destroy_toxic("latency_downstream")
    with connect(proxy.listen) as sock:
        assert round_trip_s(sock) < 0.25


def test_every_toxic_type_is_accepted(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo.address, name="echo")
    attributes = {"latency": {"latency": 1, "jitter": 1}, "bandwidth": {"rate": 1000}, "slow_close": {"delay": 1},
                  "timeout": {"timeout": 1000}, "reset_peer": {"timeout": 1000},
                  "slicer": {"average_size": 10, "size_variation": 2, "delay": 10}, "limit_data": {"bytes": 100}}
    for toxic_type, attrs in attributes.items():
        proxy.add_toxic(type=toxic_type, attributes=attrs)
    toxics = proxy.toxics()
    assert {t.type: t.attributes for t in toxics.values()} == attributes


def test_reset(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo.address, name="echo")
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    proxy.disable()
    assert toxiproxy.reset() is True
    assert toxiproxy.get_proxy("echo").enabled is True and proxy.toxics() == {}
    with connect(proxy.listen) as sock:
        round_trip_s(sock)


def test_populate_and_destroy_all(toxiproxy, echo):
    other = EchoServer()
    try:
        created = toxiproxy.populate([{"name": "one", "upstream": echo.address, "listen": "127.0.0.1:0"},
                                      {"name": "two", "upstream": echo.address, "listen": "127.0.0.1:0"}])
        assert sorted(p.name for p in created) == ["one", "two"]
        one = toxiproxy.get_proxy("one")
        # Same upstream and listen: the client keeps it and creates nothing.
        assert toxiproxy.populate([{"name": "one", "upstream": echo.address, "listen": one.listen}]) == []
        # A changed upstream: destroyed and re-created.
        again = toxiproxy.populate([{"name": "one", "upstream": other.address, "listen": one.listen}])
        assert [p.upstream for p in again] == [other.address]
        with connect(one.listen) as sock:
            round_trip_s(sock)
        assert other.accepted == 1

        toxiproxy.destroy_all()
        assert toxiproxy.proxies() == {}
    finally:
        other.stop()
