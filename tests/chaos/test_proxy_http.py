"""The chaos proxy's HTTP API checked directly (S4): every endpoint's status
codes and JSON bodies, as Shopify/toxiproxy's api.go answers them."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from lineagerun.chaos.proxy import (ChaosProxyApp, ChaosProxyServer, ExternalProxyServer, parse_proxy_setting,
                                    start_proxy_server)
from lineagerun.cli.chaos import chaos
from lineagerun.exceptions import ConfigurationError
from tests.chaos import Api, EchoServer, connect, round_trip_s

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def api():
    server = ChaosProxyServer()
    server.start()
    yield Api(server.port)
    server.stop()


def assert_error(result, status: int, fragment: str = ""):
    got_status, body = result
    assert got_status == status, body
    assert body["status"] == status and fragment in body["error"], body


def test_version(api):
    status, body = api.call("GET", "/version")
    assert status == 200 and body["version"].startswith("2.")


def test_browsers_are_refused_with_403(api):
    assert_error(api.call("GET", "/proxies", headers={"User-Agent": "Mozilla/5.0 (X11; Linux)"}), 403,
                 "User agent not allowed")
    assert api.call("GET", "/proxies", headers={"User-Agent": "curl/8.0"})[0] == 200


def test_create_with_listen_port_zero_returns_the_real_address(api, echo):
    body = api.create("echo", echo.address)
    assert body["name"] == "echo" and body["upstream"] == echo.address and body["enabled"] is True
    assert body["toxics"] == []
    host, port = body["listen"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    with connect(body["listen"]) as sock:
        round_trip_s(sock)
    assert api.call("GET", "/proxies") == (200, {"echo": body})
    assert api.call("GET", "/proxies/echo") == (200, body)


def test_create_errors(api, echo):
    assert_error(api.call("POST", "/proxies", raw=b"{not json"), 400, "bad request body")
    assert_error(api.call("POST", "/proxies", {"upstream": echo.address}), 400, "missing required field: name")
    assert_error(api.call("POST", "/proxies", {"name": "a"}), 400, "missing required field: upstream")
    assert_error(api.call("POST", "/proxies", {"name": "a", "upstream": echo.address, "listen": "0.0.0.0:0"}),
                 400, "loopback")
    api.create("a", echo.address)
    assert_error(api.call("POST", "/proxies", {"name": "a", "upstream": echo.address}), 409, "already exists")


def test_create_on_a_busy_port_is_500_and_creates_nothing(api, echo):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        assert_error(api.call("POST", "/proxies", {"name": "a", "upstream": echo.address, "listen": listen}),
                     500, "listen")
    assert api.call("GET", "/proxies") == (200, {})


def test_create_disabled(api, echo):
    body = api.create("off", echo.address, enabled=False)
    assert body["enabled"] is False and body["listen"] == "127.0.0.1:0"


def test_show_update_delete_missing_proxy_is_404(api):
    assert_error(api.call("GET", "/proxies/nope"), 404, "proxy not found")
    assert_error(api.call("PATCH", "/proxies/nope", {"enabled": False}), 404, "proxy not found")
    assert_error(api.call("DELETE", "/proxies/nope"), 404, "proxy not found")
    assert_error(api.call("GET", "/proxies/nope/toxics"), 404, "proxy not found")
    assert_error(api.call("POST", "/proxies/nope/toxics", {"type": "latency"}), 404, "proxy not found")
    assert_error(api.call("GET", "/proxies/nope/toxics/t"), 404, "proxy not found")


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_update_disables_and_enables_on_the_same_port(api, echo, method):
    listen = api.create("echo", echo.address)["listen"]
    status, body = api.call(method, "/proxies/echo", {"enabled": False})
    assert status == 200 and body["enabled"] is False and body["listen"] == listen
    with pytest.raises(ConnectionRefusedError):
        connect(listen)
    status, body = api.call(method, "/proxies/echo", {"enabled": True})
    assert status == 200 and body["enabled"] is True and body["listen"] == listen
    with connect(listen) as sock:
        round_trip_s(sock)
    assert_error(api.call(method, "/proxies/echo", raw=b"[1"), 400, "bad request body")
    assert_error(api.call(method, "/proxies/echo", {"enabled": 1}), 400, "true or false")


def test_disable_closes_open_connections(api, echo):
    listen = api.create("echo", echo.address)["listen"]
    with connect(listen) as sock:
        round_trip_s(sock)
        assert api.call("PATCH", "/proxies/echo", {"enabled": False})[0] == 200
        try:
            assert sock.recv(10) == b""
        except ConnectionResetError:
            pass


def test_changing_upstream_restarts_and_drops_connections(api, echo):
    other = EchoServer()
    try:
        listen = api.create("echo", echo.address)["listen"]
        with connect(listen) as sock:
            round_trip_s(sock)
            status, body = api.call("PATCH", "/proxies/echo", {"upstream": other.address})
            assert status == 200 and body["upstream"] == other.address and body["listen"] == listen
            try:
                assert sock.recv(10) == b""
            except ConnectionResetError:
                pass
        with connect(listen) as sock:
            round_trip_s(sock)
        assert other.accepted == 1
    finally:
        other.stop()


def test_delete_is_204_and_closes_the_listener(api, echo):
    listen = api.create("echo", echo.address)["listen"]
    assert api.call("DELETE", "/proxies/echo") == (204, None)
    assert api.call("GET", "/proxies") == (200, {})
    with pytest.raises(ConnectionRefusedError):
        connect(listen)


def test_toxic_crud(api, echo):
    api.create("echo", echo.address)
    assert api.call("GET", "/proxies/echo/toxics") == (200, [])
    status, toxic = api.call("POST", "/proxies/echo/toxics", {"type": "latency", "attributes": {"latency": 5}})
    assert status == 200
    assert toxic == {"attributes": {"latency": 5, "jitter": 0}, "name": "latency_downstream", "type": "latency",
                     "stream": "downstream", "toxicity": 1.0}
    status, up = api.call("POST", "/proxies/echo/toxics",
                          {"name": "cut", "type": "limit_data", "stream": "upstream", "toxicity": 0.5,
                           "attributes": {"bytes": 10}})
    assert status == 200 and up["name"] == "cut" and up["stream"] == "upstream"
    assert api.call("GET", "/proxies/echo/toxics") == (200, [up, toxic])
    assert api.call("GET", "/proxies/echo")[1]["toxics"] == [up, toxic]
    assert api.call("GET", "/proxies/echo/toxics/cut") == (200, up)

    status, updated = api.call("PATCH", "/proxies/echo/toxics/latency_downstream",
                               {"attributes": {"jitter": 2}, "toxicity": 0.75, "stream": "upstream"})
    assert status == 200
    assert updated == {**toxic, "attributes": {"latency": 5, "jitter": 2}, "toxicity": 0.75}
    status, updated = api.call("POST", "/proxies/echo/toxics/latency_downstream", {"attributes": {"latency": 9}})
    assert status == 200 and updated["attributes"] == {"latency": 9, "jitter": 2}

    assert api.call("DELETE", "/proxies/echo/toxics/cut") == (204, None)
    assert_error(api.call("DELETE", "/proxies/echo/toxics/cut"), 404, "toxic not found")
    assert_error(api.call("GET", "/proxies/echo/toxics/cut"), 404, "toxic not found")
    assert_error(api.call("PATCH", "/proxies/echo/toxics/cut", {"toxicity": 1}), 404, "toxic not found")


def test_toxic_errors(api, echo):
    api.create("echo", echo.address)
    path = "/proxies/echo/toxics"
    assert_error(api.call("POST", path, raw=b"nope"), 400, "bad request body")
    assert_error(api.call("POST", path, {"type": "latency", "stream": "both"}), 400, "stream was invalid")
    assert_error(api.call("POST", path, {"type": "earthquake"}), 400, "invalid toxic type")
    assert_error(api.call("POST", path, {"type": "latency", "attributes": {"latency": "1s"}}), 400, "integer")
    assert_error(api.call("POST", path, {"type": "latency", "toxicity": 3}), 400, "toxicity")
    assert api.call("POST", path, {"type": "latency"})[0] == 200
    assert_error(api.call("POST", path, {"type": "latency"}), 409, "toxic already exists")
    assert_error(api.call("PATCH", path + "/latency_downstream", {"attributes": {"latency": -5}}), 400, ">= 0")


def test_populate(api, echo):
    status, body = api.call("POST", "/populate", [{"name": "a", "upstream": echo.address},
                                                  {"name": "b", "upstream": echo.address, "enabled": False}])
    assert status == 201
    assert [p["name"] for p in body["proxies"]] == ["a", "b"]
    assert [p["enabled"] for p in body["proxies"]] == [True, False]
    a_listen = body["proxies"][0]["listen"]
    # Unchanged listen and upstream: kept as it is (same port, same object).
    status, body = api.call("POST", "/populate", [{"name": "a", "upstream": echo.address, "listen": a_listen}])
    assert status == 201 and body["proxies"][0]["listen"] == a_listen
    with connect(a_listen) as sock:
        round_trip_s(sock)


def test_populate_validates_before_creating_anything(api, echo):
    assert_error(api.call("POST", "/populate", [{"name": "a", "upstream": echo.address}, {"name": "b"}]),
                 400, "upstream at proxy 2")
    assert_error(api.call("POST", "/populate", {"name": "a"}), 400, "array")
    assert api.call("GET", "/proxies") == (200, {})


def test_reset_enables_everything_and_removes_toxics(api, echo):
    listen = api.create("echo", echo.address)["listen"]
    api.call("POST", "/proxies/echo/toxics", {"type": "timeout"})
    api.call("PATCH", "/proxies/echo", {"enabled": False})
    assert api.call("POST", "/reset") == (204, None)
    status, body = api.call("GET", "/proxies/echo")
    assert body["enabled"] is True and body["toxics"] == [] and body["listen"] == listen
    with connect(listen) as sock:
        round_trip_s(sock)


def test_unknown_paths_and_methods(api):
    assert api.call("GET", "/nothing-here")[0] == 404
    assert_error(api.call("DELETE", "/proxies"), 405, "not allowed")
    assert_error(api.call("PUT", "/proxies/x"), 405, "not allowed")


def test_keep_alive_chunked_and_oversized_bodies(api, echo):
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        for _ in range(3):  # several requests on one connection
            conn.request("GET", "/version")
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read())["version"]
        body = json.dumps({"name": "c", "upstream": echo.address}).encode()
        conn.request("POST", "/proxies", body=iter([body[:10], body[10:]]), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        assert response.status == 201 and json.loads(response.read())["name"] == "c"
    finally:
        conn.close()
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(b"POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 413")
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(b"garbage\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")


def test_api_port_in_use_is_a_clear_error():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        with pytest.raises(ConfigurationError, match="could not start"):
            ChaosProxyServer("127.0.0.1", busy.getsockname()[1]).start()


def test_non_loopback_api_is_refused_without_allow_remote():
    with pytest.raises(ConfigurationError, match="no authentication"):
        ChaosProxyServer("0.0.0.0", 0)
    result = CliRunner().invoke(chaos, ["proxy", "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code != 0 and "--allow-remote" in result.output


def test_cli_serves_until_sigterm():
    process = subprocess.Popen([sys.executable, "-m", "lineagerun.chaos.proxy", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = process.stdout.readline()
        assert "Toxiproxy API on http://127.0.0.1:" in line, line + process.stderr.read()
        port = int(line.rsplit(":", 1)[1])
        assert Api(port).call("GET", "/version")[0] == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        process.stdout.close()
        process.stderr.close()


def test_start_proxy_server_builtin_and_external(echo):
    builtin = start_proxy_server(env={})
    try:
        assert builtin.external is False and Api(builtin.port).call("GET", "/version")[0] == 200
        external = start_proxy_server(env={"LINEAGERUN_TOXIPROXY": f"external:127.0.0.1:{builtin.port}"})
        assert isinstance(external, ExternalProxyServer) and external.port == builtin.port
        assert external.version().startswith("2.")
        external.stop()  # a no-op: the server is not ours
        assert Api(builtin.port).call("GET", "/version")[0] == 200
    finally:
        builtin.stop()


def test_proxy_setting_parsing():
    assert parse_proxy_setting("") is None and parse_proxy_setting("builtin") is None
    assert parse_proxy_setting("external:toxiproxy.local:8474") == ("toxiproxy.local", 8474)
    assert parse_proxy_setting("external:[::1]:8474") == ("::1", 8474)
    for bad in ("external", "external:", "external:host", "docker:1.2.3.4:8474", "external:h:0"):
        with pytest.raises(ConfigurationError, match="LINEAGERUN_TOXIPROXY"):
            parse_proxy_setting(bad)
    with pytest.raises(ConfigurationError, match="GET /version failed"):
        start_proxy_server(env={"LINEAGERUN_TOXIPROXY": "external:127.0.0.1:1"})


def test_changing_listen_moves_the_listener(api, echo):
    old = api.create("echo", echo.address)["listen"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        new = f"127.0.0.1:{probe.getsockname()[1]}"
    status, body = api.call("PATCH", "/proxies/echo", {"listen": new})
    assert status == 200 and body["listen"] == new and body["enabled"] is True
    with pytest.raises(ConnectionRefusedError):
        connect(old)
    with connect(new) as sock:
        round_trip_s(sock)


class ApiModel(RuleBasedStateMachine):
    """Random sequences of API calls against ChaosProxyApp.handle, checked
    against a dictionary model after every step (status codes and state)."""

    names = st.sampled_from(["a", "b", "c"])
    toxic_names = st.sampled_from(["t1", "t2", None])

    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.app = ChaosProxyApp(rng=random.Random(0))
        self.model: dict[str, dict] = {}

    def call(self, method, path, body=None):
        raw = json.dumps(body).encode() if body is not None else b""
        return self.loop.run_until_complete(self.app.handle(method, path, "model", raw))

    @rule(name=names, enabled=st.booleans())
    def create(self, name, enabled):
        status, body = self.call("POST", "/proxies", {"name": name, "upstream": "127.0.0.1:9", "enabled": enabled})
        if name in self.model:
            assert status == 409
        else:
            assert status == 201 and body["enabled"] == enabled
            self.model[name] = {"enabled": enabled, "toxics": {}}

    @rule(name=names)
    def delete(self, name):
        status, _ = self.call("DELETE", f"/proxies/{name}")
        assert status == (204 if self.model.pop(name, None) is not None else 404)

    @rule(name=names, enabled=st.booleans())
    def set_enabled(self, name, enabled):
        status, body = self.call("PATCH", f"/proxies/{name}", {"enabled": enabled})
        if name not in self.model:
            assert status == 404
        else:
            assert status == 200 and body["enabled"] == enabled
            self.model[name]["enabled"] = enabled

    @rule(name=names, toxic=toxic_names, toxic_type=st.sampled_from(["latency", "timeout", "limit_data"]),
          stream=st.sampled_from(["upstream", "downstream"]))
    def add_toxic(self, name, toxic, toxic_type, stream):
        request = {"type": toxic_type, "stream": stream, **({"name": toxic} if toxic else {})}
        status, body = self.call("POST", f"/proxies/{name}/toxics", request)
        toxic_name = toxic or f"{toxic_type}_{stream}"
        if name not in self.model:
            assert status == 404
        elif toxic_name in self.model[name]["toxics"]:
            assert status == 409
        else:
            assert status == 200 and body["name"] == toxic_name
            self.model[name]["toxics"][toxic_name] = stream

    @rule(name=names, toxic=st.sampled_from(["t1", "t2", "latency_downstream", "timeout_upstream"]))
    def remove_toxic(self, name, toxic):
        status, _ = self.call("DELETE", f"/proxies/{name}/toxics/{toxic}")
        if name not in self.model or toxic not in self.model[name]["toxics"]:
            assert status == 404
        else:
            assert status == 204
            del self.model[name]["toxics"][toxic]

    @rule()
    def reset(self):
        assert self.call("POST", "/reset")[0] == 204
        for proxy in self.model.values():
            proxy.update(enabled=True, toxics={})

    @invariant()
    def listing_matches_the_model(self):
        status, body = self.call("GET", "/proxies")
        assert status == 200 and set(body) == set(self.model)
        for name, proxy in self.model.items():
            assert body[name]["enabled"] == proxy["enabled"]
            expected = [t for t, s in proxy["toxics"].items() if s == "upstream"] + \
                       [t for t, s in proxy["toxics"].items() if s == "downstream"]
            assert [t["name"] for t in body[name]["toxics"]] == expected

    def teardown(self):
        self.loop.run_until_complete(self.app.close())
        self.loop.close()


TestApiModel = ApiModel.TestCase
TestApiModel.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)
