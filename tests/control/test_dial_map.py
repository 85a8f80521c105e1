"""``lineagerun.control.dial_map``: advertised address -> address to dial."""

from __future__ import annotations

import os

import pytest

from lineagerun.control import dial_map
from lineagerun.exceptions import ConfigurationError


@pytest.fixture(autouse=True)
def _reset():
    yield
    dial_map.configure(None)


def test_without_a_map_or_before_the_file_exists_addresses_are_dialed_as_advertised(tmp_path):
    assert dial_map.dial_address("127.0.0.1:1") == "127.0.0.1:1"
    dial_map.configure(tmp_path / "map.json")
    assert dial_map.dial_address("127.0.0.1:1") == "127.0.0.1:1"


def test_the_map_is_read_again_when_the_launcher_rewrites_it(tmp_path):
    path = tmp_path / "map.json"
    dial_map.write_dial_map(path, {"127.0.0.1:1": "127.0.0.1:2"})
    dial_map.configure(path)
    assert dial_map.dial_address("127.0.0.1:1") == "127.0.0.1:2"
    assert dial_map.dial_address("127.0.0.1:3") == "127.0.0.1:3"
    dial_map.write_dial_map(path, {"127.0.0.1:1": "127.0.0.1:2", "127.0.0.1:3": "127.0.0.1:4"})
    os.utime(path, ns=(1, 10**18))   # a new mtime even on a coarse clock
    assert dial_map.dial_address("127.0.0.1:3") == "127.0.0.1:4"


def test_a_malformed_map_is_a_clear_configuration_error(tmp_path):
    path = tmp_path / "map.json"
    path.write_text("[1, 2]")
    dial_map.configure(path)
    with pytest.raises(ConfigurationError, match="must map address strings"):
        dial_map.dial_address("127.0.0.1:1")
    path.write_text("{not json")
    os.utime(path, ns=(1, 2 * 10**18))
    with pytest.raises(ConfigurationError, match="is not JSON"):
        dial_map.dial_address("127.0.0.1:1")


def test_a_replica_refuses_an_advertised_port_out_of_range(tmp_path):
    import subprocess
    import sys

    token = tmp_path / "token"
    token.write_text("t" * 32)
    token.chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "lineagerun.control.replica", "--dir", str(tmp_path / "r"), "--shard", "0",
         "--replica-id", "s0r0", "--coordinator", "127.0.0.1:1", "--token-file", str(token),
         "--advertise-port", "70000"],
        capture_output=True, text=True, timeout=60, start_new_session=True)
    assert result.returncode == 2, result.stderr
    assert "--advertise-port must be 0..65535" in result.stderr
