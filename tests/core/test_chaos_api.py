"""The pure half of the chaos proxy: validation, defaults, errors, routes and
toxic arithmetic (lineagerun.core.chaos_api)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineagerun.core import chaos_api as api
from lineagerun.exceptions import InvalidArgumentError


def test_new_proxy_defaults():
    spec = api.parse_new_proxy({"name": "redis", "upstream": "127.0.0.1:6379"}, allow_remote=False)
    assert spec == api.ProxySpec("redis", "127.0.0.1:0", "127.0.0.1:6379", True)
    assert api.proxy_json(spec, []) == {"name": "redis", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:6379",
                                        "enabled": True, "toxics": []}


@pytest.mark.parametrize("body, message", [
    ({"upstream": "127.0.0.1:1"}, "missing required field: name"),
    ({"name": "a"}, "missing required field: upstream"),
    ({"name": "", "upstream": "127.0.0.1:1"}, "missing required field: name"),
    ({"name": 3, "upstream": "127.0.0.1:1"}, "must be a string"),
    ({"name": "a/b", "upstream": "127.0.0.1:1"}, "without '/'"),
    ({"name": "a", "upstream": "nohostport"}, "not HOST:PORT"),
    ({"name": "a", "upstream": "127.0.0.1:0"}, "non-zero port"),
    ({"name": "a", "upstream": "127.0.0.1:99999"}, "above 65535"),
    ({"name": "a", "upstream": "127.0.0.1:1", "enabled": "yes"}, "true or false"),
    ({"name": "a", "upstream": "127.0.0.1:1", "listen": "0.0.0.0:0"}, "not a loopback address"),
    ([], "must be a JSON object"),
])
def test_bad_proxies_are_400_with_a_reason(body, message):
    with pytest.raises(api.ChaosBadRequestError, match=message) as info:
        api.parse_new_proxy(body, allow_remote=False)
    assert info.value.status == 400
    assert isinstance(info.value, InvalidArgumentError)
    assert info.value.body() == {"error": str(info.value), "status": 400}


def test_remote_listen_needs_allow_remote():
    assert api.listen_bind_address("0.0.0.0:80", allow_remote=True) == ("0.0.0.0", 80)
    assert api.listen_bind_address(":80", allow_remote=True) == ("0.0.0.0", 80)
    assert api.listen_bind_address("localhost:0", allow_remote=False) == ("127.0.0.1", 0)
    assert api.listen_bind_address("[::1]:5", allow_remote=False) == ("::1", 5)
    with pytest.raises(api.ChaosBadRequestError):
        api.listen_bind_address(":80", allow_remote=False)


def test_update_keeps_omitted_fields():
    current = api.ProxySpec("a", "127.0.0.1:5000", "127.0.0.1:6000", True)
    assert api.parse_proxy_update(current, {"enabled": False}, allow_remote=False) == \
        api.ProxySpec("a", "127.0.0.1:5000", "127.0.0.1:6000", False)
    assert api.parse_proxy_update(current, {"upstream": "127.0.0.1:7", "name": "ignored"},
                                  allow_remote=False).upstream == "127.0.0.1:7"


def test_populate_validates_everything_first():
    good = {"name": "a", "upstream": "127.0.0.1:1"}
    assert [s.name for s in api.parse_populate([good], allow_remote=False)] == ["a"]
    with pytest.raises(api.ChaosBadRequestError, match="upstream at proxy 2"):
        api.parse_populate([good, {"name": "b"}], allow_remote=False)
    with pytest.raises(api.ChaosBadRequestError, match="duplicate proxy name"):
        api.parse_populate([good, good], allow_remote=False)
    with pytest.raises(api.ChaosBadRequestError, match="array"):
        api.parse_populate(good, allow_remote=False)


def test_populate_keeps_only_unchanged_proxies():
    existing = api.ProxySpec("a", "127.0.0.1:5000", "127.0.0.1:6000")
    assert api.populate_keeps(existing, api.ProxySpec("a", "127.0.0.1:5000", "127.0.0.1:6000"))
    assert not api.populate_keeps(existing, api.ProxySpec("a", "127.0.0.1:0", "127.0.0.1:6000"))
    assert not api.populate_keeps(existing, api.ProxySpec("a", "127.0.0.1:5000", "127.0.0.1:6001"))


def test_toxic_defaults_and_json():
    spec = api.parse_new_toxic({"type": "latency", "attributes": {"latency": 100}}, set())
    assert spec.to_json() == {"attributes": {"latency": 100, "jitter": 0}, "name": "latency_downstream",
                              "type": "latency", "stream": "downstream", "toxicity": 1.0}
    up = api.parse_new_toxic({"type": "bandwidth", "stream": "upstream", "toxicity": 0.5}, set())
    assert (up.name, up.toxicity, dict(up.attributes)) == ("bandwidth_upstream", 0.5, {"rate": 0})


@pytest.mark.parametrize("body, error, message", [
    ({"type": "latency", "stream": "sideways"}, api.ChaosBadRequestError, "stream was invalid"),
    ({"type": "latency", "stream": ""}, api.ChaosBadRequestError, "stream was invalid"),
    ({"type": "nope"}, api.ChaosBadRequestError, "invalid toxic type"),
    ({}, api.ChaosBadRequestError, "invalid toxic type"),
    ({"type": "latency", "name": "taken"}, api.ChaosConflictError, "toxic already exists"),
    ({"type": "latency", "attributes": {"latency": "100"}}, api.ChaosBadRequestError, "must be an integer"),
    ({"type": "latency", "attributes": {"latency": 1.5}}, api.ChaosBadRequestError, "must be an integer"),
    ({"type": "latency", "attributes": {"latency": -1}}, api.ChaosBadRequestError, ">= 0"),
    ({"type": "latency", "attributes": []}, api.ChaosBadRequestError, "attributes must be"),
    ({"type": "latency", "toxicity": 2}, api.ChaosBadRequestError, "between 0.0 and 1.0"),
    ({"type": "latency", "toxicity": "1"}, api.ChaosBadRequestError, "must be a number"),
    ({"type": "slicer", "name": "s"}, api.ChaosBadRequestError, "average_size"),
])
def test_bad_toxics(body, error, message):
    with pytest.raises(error, match=message):
        api.parse_new_toxic(body, {"taken"})


def test_toxic_update_changes_only_attributes_and_toxicity():
    current = api.parse_new_toxic({"type": "latency", "attributes": {"latency": 100, "jitter": 5}}, set())
    updated = api.parse_toxic_update(current, {"attributes": {"latency": 7}, "toxicity": 0.25,
                                               "stream": "upstream", "type": "timeout", "name": "x"})
    assert updated == api.ToxicSpec("latency_downstream", "latency", "downstream", 0.25, {"latency": 7, "jitter": 5})
    assert api.parse_toxic_update(current, {}) == current
    assert api.parse_new_toxic({"type": "latency", "attributes": {"latency": 100.0}}, set()).attr("latency") == 100


def test_toxics_are_listed_upstream_first():
    a = api.ToxicSpec("a", "latency", "downstream")
    b = api.ToxicSpec("b", "latency", "upstream")
    c = api.ToxicSpec("c", "timeout", "downstream")
    assert [t.name for t in api.ordered_toxics([a, b, c])] == ["b", "a", "c"]


@pytest.mark.parametrize("method, target, expected", [
    ("GET", "/proxies", api.Route("proxy_index")),
    ("POST", "/proxies", api.Route("proxy_create")),
    ("POST", "/populate", api.Route("populate")),
    ("POST", "/reset", api.Route("reset")),
    ("GET", "/version", api.Route("version")),
    ("GET", "/proxies/redis", api.Route("proxy_show", "redis")),
    ("PATCH", "/proxies/redis", api.Route("proxy_update", "redis")),
    ("POST", "/proxies/redis", api.Route("proxy_update", "redis")),
    ("DELETE", "/proxies/redis", api.Route("proxy_delete", "redis")),
    ("GET", "/proxies/redis/toxics", api.Route("toxic_index", "redis")),
    ("POST", "/proxies/redis/toxics", api.Route("toxic_create", "redis")),
    ("GET", "/proxies/redis/toxics/lat", api.Route("toxic_show", "redis", "lat")),
    ("PATCH", "/proxies/re%20dis/toxics/lat?x=1", api.Route("toxic_update", "re dis", "lat")),
    ("DELETE", "/proxies/redis/toxics/lat", api.Route("toxic_delete", "redis", "lat")),
])
def test_routes(method, target, expected):
    assert api.match_route(method, target) == expected


def test_unknown_routes_and_methods():
    for target in ("/", "/nope", "/proxies/a/b", "/proxies//toxics", "/proxies/a/toxics/b/c"):
        with pytest.raises(api.ChaosNotFoundError):
            api.match_route("GET", target)
    with pytest.raises(api.ChaosMethodNotAllowedError):
        api.match_route("DELETE", "/proxies")
    assert api.is_browser("Mozilla/5.0 (X11)") and not api.is_browser("python-requests/2.3")


def test_toxicity_draws():
    assert not any(api.toxic_applies(0.0, d) for d in (0.0, 0.5, 0.999999))
    assert all(api.toxic_applies(1.0, d) for d in (0.0, 0.5, 0.999999))
    assert api.toxic_applies(0.5, 0.49) and not api.toxic_applies(0.5, 0.5)


def test_latency_delay():
    assert api.latency_delay_ms(100, 0, 0.7) == 100
    assert api.latency_delay_ms(100, 20, 0.0) == 80
    assert api.latency_delay_ms(100, 20, 0.5) == 100
    assert api.latency_delay_ms(10, 50, 0.0) == 0  # never negative


def test_bandwidth_pieces():
    assert api.bandwidth_pieces(5000, 0) == [(5000, 0.0)]
    pieces = api.bandwidth_pieces(25_000, 100)  # 100 KB/s: pieces of 10 000 bytes (100 ms)
    assert [p for p, _ in pieces] == [10_000, 10_000, 5_000]
    assert sum(t for _, t in pieces) == pytest.approx(0.25)


def test_limit_data_take():
    assert api.limit_data_take(10, 0, 4) == (4, False)
    assert api.limit_data_take(10, 8, 4) == (2, True)
    assert api.limit_data_take(10, 10, 4) == (0, True)
    assert api.limit_data_take(0, 0, 4) == (0, True)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 5000), average=st.integers(1, 300), variation=st.integers(0, 400),
       seed=st.integers(0, 2**32))
def test_slicer_cuts_cover_the_chunk_in_order(size, average, variation, seed):
    cuts = api.slicer_cuts(size, average, variation, random.Random(seed).randint)
    assert all(end > start for start, end in cuts)
    assert sum(end - start for start, end in cuts) == size
    if cuts:
        assert cuts[0][0] == 0 and cuts[-1][1] == size
        for (_, end), (start, _) in zip(cuts, cuts[1:]):
            assert end == start
    if size > average + variation:
        assert len(cuts) > 1
