"""The worker log format, the echo and the progress bar, without a cluster."""

from __future__ import annotations

import json

import pytest

from lineagerun.api import log_echo
from lineagerun.api.progress import format_bar
from lineagerun.cli import logs as logs_cli
from lineagerun.exceptions import InvalidArgumentError, NotFoundError
from lineagerun.worker import log_capture
from lineagerun.worker.log_capture import (
    LINE_CHARS_MAX,
    LineSplitter,
    StreamAttribution,
    encode_marker,
    split_marker,
)

pytestmark = pytest.mark.timeout(30)

HEADER = encode_marker({"worker": "ab" * 28, "pid": 4242, "node": "cd" * 28})


def _task(name: str, job: str) -> bytes:
    return encode_marker({"task": name, "job": job})


def test_markers_attribute_the_lines_after_them():
    attribution = StreamAttribution()
    got = []
    for line in (HEADER + b"boot\n" + _task("f", "01") + b"one\n" + _task("Counter", "02") + b"two\n"
                 ).decode().splitlines():
        got += [(who.name, who.job_hex, who.pid, text) for who, text in attribution.feed(line)]
    assert got == [("", "", 4242, "boot"), ("f", "01", 4242, "one"), ("Counter", "02", 4242, "two")]
    assert attribution.current.prefix() == f"(Counter pid=4242 node={'cd' * 4})"
    assert attribution.tasks_seen == 2


def test_text_before_a_marker_belongs_to_the_task_before():
    attribution = StreamAttribution()
    attribution.feed(_task("f", "01").decode().strip())
    line = "no newline" + _task("g", "01").decode().strip()
    assert [(w.name, t) for w, t in attribution.feed(line)] == [("f", "no newline")]
    assert attribution.current.name == "g"


@pytest.mark.parametrize("line", [":lineagerun:not json", ":lineagerun:[1, 2]", "say :lineagerun: hello"])
def test_lines_that_only_look_like_markers_are_output(line):
    assert split_marker(line) == (line, None)
    attribution = StreamAttribution()
    assert [t for _, t in attribution.feed(line)] == [line]


def test_splitter_keeps_partial_lines_and_bounds_them():
    splitter = LineSplitter()
    assert splitter.feed(b"a\nb") == ["a"]
    assert splitter.feed(b"c\n") == ["bc"]
    assert splitter.feed("é".encode()[:1]) == []  # half a UTF-8 character: replaced, never raises
    splitter.flush()
    long = b"x" * (LINE_CHARS_MAX + 10)
    assert splitter.feed(long) == ["x" * (LINE_CHARS_MAX + 10)]
    assert splitter.feed(b"tail") == []
    assert splitter.flush() == ["tail"]
    assert splitter.flush() == []


def _write_worker(logs_dir, name: str, out: bytes, err: bytes = b"") -> None:
    (logs_dir / f"worker-{name}.out").write_bytes(out)
    (logs_dir / f"worker-{name}.err").write_bytes(err)


def test_echo_prints_only_new_lines_of_its_job_to_the_matching_stream(tmp_path, capsys):
    _write_worker(tmp_path, "1" * 16, HEADER + _task("f", "01") + b"old\n")
    echo = log_echo.LogEcho(tmp_path, "01")
    echo.start_at_end()  # the thread is not needed: poll by hand
    with open(tmp_path / f"worker-{'1' * 16}.out", "ab") as out:
        out.write(b"new\n" + _task("g", "02") + b"other job\n" + _task("h", "01") + b"partial")
    _write_worker(tmp_path, "2" * 16, HEADER + _task("k", "01") + b"fresh\n", HEADER + _task("k", "01") + b"oops\n")
    echo.poll_once()
    captured = capsys.readouterr()
    node = "cd" * 4
    assert captured.out.splitlines() == [f"(f pid=4242 node={node}) new", f"(k pid=4242 node={node}) fresh"]
    assert captured.err.splitlines() == [f"(k pid=4242 node={node}) oops"]
    echo.stop()  # the final read flushes the unfinished line
    assert capsys.readouterr().out == f"(h pid=4242 node={node}) partial\n"
    assert echo.lines_echoed == 4


def test_echo_of_all_jobs_and_raw(tmp_path, capsys):
    echo = log_echo.LogEcho(tmp_path, None, raw=True)
    _write_worker(tmp_path, "3" * 16, HEADER + _task("f", "01") + b"a\n" + _task("g", "02") + b"b\n")
    echo.poll_once()
    assert capsys.readouterr().out.splitlines() == [m.decode().strip() if isinstance(m, bytes) else m for m in
                                                    (HEADER, _task("f", "01"), "a", _task("g", "02"), "b")]


def test_echo_started_late_still_knows_the_running_task(tmp_path, capsys):
    _write_worker(tmp_path, "4" * 16, HEADER + _task("slow", "07") + b"before\n")
    echo = log_echo.LogEcho(tmp_path, "07")
    echo.start_at_end()
    with open(tmp_path / f"worker-{'4' * 16}.out", "ab") as out:
        out.write(b"after\n")
    echo.poll_once()
    assert capsys.readouterr().out == f"(slow pid=4242 node={'cd' * 4}) after\n"


def test_cli_resolves_workers_by_pid_prefix_and_name(tmp_path):
    other = encode_marker({"worker": "abababab00000000" + "ef" * 20, "pid": 99, "node": "cd" * 28})
    _write_worker(tmp_path, "ab" * 8, HEADER)
    _write_worker(tmp_path, "abababab00000000", other)
    (tmp_path / "node_manager.log").write_text("hi\n")
    workers, others = logs_cli.worker_logs(tmp_path)
    assert sorted(w.pid for w in workers) == [99, 4242]
    assert [p.name for p in others] == ["node_manager.log"]
    assert logs_cli.resolve("4242", workers, others).pid == 4242
    assert logs_cli.resolve("worker-abababab00000000.err", workers, others).pid == 99
    assert logs_cli.resolve("node_manager.log", workers, others).name == "node_manager.log"
    assert logs_cli.resolve("ab" * 8, workers, others).pid == 4242
    with pytest.raises(InvalidArgumentError, match="give more digits"):
        logs_cli.resolve("abab", workers, others)
    with pytest.raises(NotFoundError, match="lineagerun logs"):
        logs_cli.resolve("7", workers, others)


def test_marker_is_one_json_line():
    line = encode_marker({"task": "a\nb", "job": "01"})
    assert line.count(b"\n") == 1
    assert json.loads(line[len(log_capture.MARKER):]) == {"task": "a\nb", "job": "01"}


def test_format_bar():
    assert format_bar(0, 10, 0.0, "x") == "x:   0%|" + " " * 30 + "| 0/10 [00:00<?, 0.0/s]"
    line = format_bar(5, 10, 2.0)
    assert line.startswith(" 50%|" + "#" * 15 + " " * 15 + "| 5/10 [00:02<00:02, 2.5/s]")
    assert format_bar(0, 0, 1.0).startswith("100%|" + "#" * 30)
    assert "1:00:00<" in format_bar(1, 2, 3600.0)
