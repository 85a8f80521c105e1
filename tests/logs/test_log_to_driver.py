"""A driver program's own stdout, with the echo on (default) and off."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parents[2]
DRIVER = textwrap.dedent("""
    import sys
    import lineagerun
    from lineagerun.api import session

    session.SESSION_ROOT = sys.argv[1]
    lineagerun.init(num_cpus=1, log_to_driver=sys.argv[2] == "on")

    @lineagerun.remote
    def shout():
        print("shouted in the worker")
        return 1

    assert lineagerun.get(shout.remote()) == 1
    print("driver done", flush=True)
    # no sleep, no shutdown(): the exit's shutdown must still echo the line
""")


@pytest.mark.parametrize("echo", ["on", "off"])
def test_driver_stdout_with_and_without_log_to_driver(tmp_path, echo):
    root = tmp_path / "sessions"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(root), echo], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=REPO, start_new_session=True)
    try:
        out, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(10)
    try:
        assert driver.returncode == 0, err.decode()
        text = out.decode()
        assert "driver done" in text
        echoed = [line for line in text.splitlines() if line.endswith("shouted in the worker")]
        if echo == "on":
            assert len(echoed) == 1 and echoed[0].startswith("(shout pid="), text
        else:
            assert echoed == [], text
        [session_dir] = list(root.iterdir())
        assert any("shouted in the worker" in p.read_text() for p in (session_dir / "logs").glob("worker-*.out"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
