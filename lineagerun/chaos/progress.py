"""Live progress of a chaos run on a stream (stderr): a bar redrawn in
place on a terminal, a line every ``PROGRESS_LINE_INTERVAL_S`` otherwise,
and one line per fault action."""

from __future__ import annotations

import threading
from typing import Mapping, TextIO

# Without a terminal, a progress line every this often (logs stay short).
PROGRESS_LINE_INTERVAL_S = 2.0
PROGRESS_BAR_WIDTH = 30


class Progress:
    """Live progress on a stream: a bar redrawn in place on a terminal, a
    line every ``PROGRESS_LINE_INTERVAL_S`` otherwise; one line per fault."""

    def __init__(self, stream: TextIO | None, duration_s: float):
        self.stream = stream
        self.duration_s = duration_s
        self.tty = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
        self._last_line_s = 0.0
        self._lock = threading.Lock()
        self._bar_shown = False

    def line(self, text: str) -> None:
        if self.stream is None:
            return
        with self._lock:
            if self._bar_shown:
                self.stream.write("\r\x1b[K")
                self._bar_shown = False
            self.stream.write(text + "\n")
            self.stream.flush()

    def update(self, elapsed_s: float, counts: Mapping[str, int], faults: int, force: bool = False) -> None:
        if self.stream is None:
            return
        done = min(1.0, elapsed_s / self.duration_s) if self.duration_s else 1.0
        filled = int(done * PROGRESS_BAR_WIDTH)
        text = (f"[{'#' * filled}{'.' * (PROGRESS_BAR_WIDTH - filled)}] {elapsed_s:5.1f}/{self.duration_s:.0f} s  "
                f"ops ok {counts.get('ok', 0)}  unknown {counts.get('unknown', 0)}  faults {faults}")
        with self._lock:
            if self.tty:
                self.stream.write("\r\x1b[K" + text)
                self._bar_shown = True
                self.stream.flush()
                return
        if force or elapsed_s - self._last_line_s >= PROGRESS_LINE_INTERVAL_S:
            self._last_line_s = elapsed_s
            self.line(text)

    def end_bar(self) -> None:
        with self._lock:
            if self._bar_shown and self.stream is not None:
                self.stream.write("\n")
                self.stream.flush()
                self._bar_shown = False
