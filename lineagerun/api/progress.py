"""``lineagerun.progress(refs, desc=None)``: wait for refs with a progress bar.

Like ``get(refs)`` (same values, same order, same errors, a single ref gives
a single value), but while waiting it draws a tqdm-style bar on stderr::

    squares: 100%|##############################| 1000/1000 [00:04<00:00, 243.1/s]

The bar counts refs whose object is ready (made, or failed: an error value
is ready too); when every ref is ready the values are fetched with ``get``,
which raises the first error in the order of the refs. On a terminal the bar
is redrawn in place every ``REDRAW_INTERVAL_S``; otherwise (a log file, a
pipe) a line is printed at most every ``PLAIN_INTERVAL_S`` and at the end.

Readiness is asked with ``wait`` in windows of at most ``WAIT_WINDOW_MAX``
refs, so a list of 100,000 refs does not send 100,000 ids every redraw; the
count can lag while the refs of the current window are the slow ones.
"""

from __future__ import annotations

import math
from collections import Counter
import sys
import time

from lineagerun import exceptions
from lineagerun.api import objects
from lineagerun.api.object_ref import ObjectRef

REDRAW_INTERVAL_S = 0.1
PLAIN_INTERVAL_S = 5.0
WAIT_WINDOW_MAX = 10_000
BAR_WIDTH_CHARS = 30


def format_bar(done: int, total: int, elapsed_s: float, desc: str | None = None,
               width_chars: int = BAR_WIDTH_CHARS) -> str:
    """One line of the bar (pure)."""
    fraction = 1.0 if total == 0 else done / total
    filled = int(fraction * width_chars)
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    remaining_s = (total - done) / rate if rate > 0 else math.nan
    head = f"{desc}: " if desc else ""
    return (f"{head}{int(fraction * 100):3d}%|{'#' * filled}{' ' * (width_chars - filled)}| {done}/{total} "
            f"[{_clock(elapsed_s)}<{_clock(remaining_s)}, {rate:.1f}/s]")


def _clock(seconds: float) -> str:
    if math.isnan(seconds) or math.isinf(seconds):
        return "?"
    seconds = int(seconds)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


class _Bar:
    def __init__(self, total: int, desc: str | None, stream):
        self.total = total
        self.desc = desc
        self.stream = stream
        self.started_s = time.monotonic()
        self.drawn_s = -math.inf
        self.drawn_done = -1
        try:
            self.in_place = stream.isatty()
        except (AttributeError, ValueError):
            self.in_place = False

    def draw(self, done: int, final: bool = False) -> None:
        now_s = time.monotonic()
        interval_s = REDRAW_INTERVAL_S if self.in_place else PLAIN_INTERVAL_S
        if not final and (done == self.drawn_done or now_s - self.drawn_s < interval_s):
            return
        self.drawn_s, self.drawn_done = now_s, done
        line = format_bar(done, self.total, now_s - self.started_s, self.desc)
        end = "\n" if final or not self.in_place else ""
        try:
            self.stream.write(("\r" if self.in_place else "") + line + end)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed: the bar is only a courtesy


def progress(refs, desc: str | None = None, *, timeout: float | None = None, file=None):
    """Wait for ``refs`` (an ObjectRef or a list of them) drawing a progress
    bar on ``file`` (default stderr); return ``get(refs)``. ``timeout``
    seconds -> ``GetTimeoutError``."""
    single = type(refs) is ObjectRef
    ref_list = [refs] if single else refs
    if not isinstance(ref_list, (list, tuple)) or any(type(ref) is not ObjectRef for ref in ref_list):
        raise exceptions.InvalidArgumentError(
            f"progress() takes an ObjectRef or a list of ObjectRefs (e.g. [f.remote(i) for i in ...]), "
            f"got {type(refs).__name__}")
    if desc is not None and not isinstance(desc, str):
        raise exceptions.InvalidArgumentError(f"progress(desc=...) must be a str, got {type(desc).__name__}")
    timeout_s = objects._check_timeout(timeout, "progress")
    deadline_s = None if timeout_s is None else time.monotonic() + timeout_s
    bar = _Bar(len(ref_list), desc, file if file is not None else sys.stderr)
    copies = Counter(ref_list)  # wait() wants unique refs; a repeated ref counts as many times as it is listed
    pending = list(copies)
    done = 0
    while pending:
        bar.draw(done)
        window = pending[:WAIT_WINDOW_MAX]
        wait_s = REDRAW_INTERVAL_S if bar.in_place else min(PLAIN_INTERVAL_S, 1.0)
        if deadline_s is not None:
            wait_s = max(0.0, min(wait_s, deadline_s - time.monotonic()))
        ready, _ = objects.wait(window, num_returns=len(window), timeout=wait_s, fetch_local=False)
        if ready:
            done += sum(copies[ref] for ref in ready)
            ready_set = set(ready)
            pending = [ref for ref in pending if ref not in ready_set]
        if pending and deadline_s is not None and time.monotonic() >= deadline_s:
            bar.draw(done, final=True)
            raise exceptions.GetTimeoutError(
                f"progress(): {len(pending)} of {len(copies)} refs were not ready after {timeout} s")
    bar.draw(len(ref_list), final=True)
    values = objects.get(list(ref_list)) if ref_list else []
    return values[0] if single else values
