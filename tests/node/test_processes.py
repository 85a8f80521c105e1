"""lineagerun.processes: start a service in its own process group, wait until
it is ready (or fail with the tail of its log), stop it by process group."""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
import time

import psutil
import pytest

from lineagerun import processes
from lineagerun.exceptions import ConfigurationError


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


SERVICE_WITH_CHILD = """
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(f"127.0.0.1:1234 {child.pid}\\n")
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    print("serving", flush=True)
    time.sleep(60)
"""


@pytest.mark.timeout(60)
def test_start_wait_ready_and_stop_the_whole_group(tmp_path):
    ready = tmp_path / "ready"
    process = processes.start_service(python(SERVICE_WITH_CHILD) + [str(ready)], tmp_path / "svc.log",
                                      name="svc", role="test")
    try:
        assert os.getpgid(process.pid) == process.pid  # its own process group
        address, child_pid = processes.wait_ready(process, processes.ready_text(ready), 30).split()
        assert address == "127.0.0.1:1234"
        assert process.alive()
    finally:
        killed = processes.stop_services([process], grace_s=5)
    assert killed == []  # SIGTERM was enough
    assert not process.alive() and gone(int(child_pid))  # the child went with the group
    assert "launching:" in process.log_tail() and "serving" in process.log_tail()


@pytest.mark.timeout(60)
def test_exit_before_ready_quotes_exit_code_and_stderr(tmp_path):
    process = processes.start_service(
        python("import sys; print('bad flag --frobnicate', file=sys.stderr); sys.exit(2)"),
        tmp_path / "svc.log", name="svc", role="test")
    with pytest.raises(ConfigurationError, match=r"svc exited with code 2 before it was ready(.|\n)*--frobnicate"):
        processes.wait_ready(process, processes.ready_text(tmp_path / "never"), 30)


@pytest.mark.timeout(60)
def test_not_ready_in_time_names_the_process_and_its_log(tmp_path):
    process = processes.start_service(python("import time; print('still loading', flush=True); time.sleep(60)"),
                                      tmp_path / "svc.log", name="slow", role="test")
    try:
        started_s = time.monotonic()
        with pytest.raises(ConfigurationError, match=r"slow not ready after 1 s(.|\n)*svc.log"):
            processes.wait_ready(process, processes.ready_text(tmp_path / "never"), 1.0)
        assert time.monotonic() - started_s < 10
    finally:
        processes.stop_service(process, grace_s=5)
    assert not process.alive()


@pytest.mark.timeout(60)
def test_sigterm_ignored_means_sigkill_after_the_grace_period(tmp_path):
    ready = tmp_path / "ready"
    code = """
        import os, signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open(sys.argv[1], "w").write("up")
        time.sleep(60)
    """
    process = processes.start_service(python(code) + [str(ready)], tmp_path / "svc.log", name="stubborn",
                                      role="test")
    processes.wait_ready(process, processes.ready_text(ready), 30)
    started_s = time.monotonic()
    assert processes.stop_services([process], grace_s=0.5) == ["stubborn"]
    assert not process.alive() and time.monotonic() - started_s < 5


@pytest.mark.timeout(60)
def test_paused_process_still_stops_on_sigterm(tmp_path):
    ready = tmp_path / "ready"
    code = "import sys, time; open(sys.argv[1], 'w').write('up'); time.sleep(60)"
    process = processes.start_service(python(code) + [str(ready)], tmp_path / "svc.log", name="paused",
                                      role="test")
    processes.wait_ready(process, processes.ready_text(ready), 30)
    processes.signal_group(process.pid, signal.SIGSTOP)
    assert processes.stop_services([process], grace_s=5) == []
    assert not process.alive()


@pytest.mark.timeout(60)
def test_recorded_process_is_signalled_only_while_its_start_time_matches(tmp_path):
    ready = tmp_path / "ready"
    code = "import sys, time; open(sys.argv[1], 'w').write('up'); time.sleep(60)"
    started = processes.start_service(python(code) + [str(ready)], tmp_path / "svc.log", name="rec", role="test")
    try:
        processes.wait_ready(started, processes.ready_text(ready), 30)
        # As read back from a record by another process (no Popen).
        recorded = processes.ServiceProcess.from_record(started.record())
        assert recorded.alive()
        reused = processes.ServiceProcess("rec", "test", started.pid, started.create_time - 100, recorded.log_path)
        assert not reused.alive()
        assert not processes.signal_if_ours(reused, signal.SIGKILL)  # a reused pid is left alone
        assert started.alive()
        assert processes.stop_services([recorded], grace_s=5) == []
        started.popen.wait(timeout=10)
    finally:
        processes.stop_service(started, force=True, grace_s=1)


@pytest.mark.timeout(60)
def test_ready_probes(tmp_path):
    assert processes.ready_json(tmp_path / "missing")() is None
    (tmp_path / "partial.json").write_text('{"addr')
    assert processes.ready_json(tmp_path / "partial.json")() is None
    (tmp_path / "ready.json").write_text('{"address": "127.0.0.1:1"}')
    assert processes.ready_json(tmp_path / "ready.json")() == {"address": "127.0.0.1:1"}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert processes.port_open("127.0.0.1", port)()
    assert not processes.port_open("127.0.0.1", port)()
