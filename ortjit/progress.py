"""A one-line progress bar on stderr for slow work such as compiling a big model's kernels.

It stays silent unless the work has already taken DELAY seconds, so that the common fast
compile prints nothing, and unless stderr is a terminal or ORTJIT_PROGRESS=1 is set
(ORTJIT_PROGRESS=0 turns it off everywhere). Standard library only.
"""
from __future__ import annotations

import os
import sys
import time

DELAY = 1.0       # seconds of work before the bar first appears
INTERVAL = 0.1    # least seconds between two redraws: a redraw per node would cost more than the node
WIDTH = 24        # characters of the bar itself


def wanted(stream) -> bool:
    """ORTJIT_PROGRESS=1 forces the bar on (logs, CI), =0 forces it off; else only on a terminal."""
    flag = os.environ.get("ORTJIT_PROGRESS", "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return False
    if flag:
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """with Progress(len(items), "compiling") as bar: for item in items: bar.advance(str(item))

    advance() is called as each item starts, so the line names the item being worked on,
    which is the one to blame when the bar stops moving.
    """

    def __init__(self, total: int, label: str = "", delay: float | None = None, stream=None):
        self.total, self.label = total, label
        self.delay = DELAY if delay is None else delay
        self.stream = sys.stderr if stream is None else stream
        self.on = wanted(self.stream)
        self.done = 0
        self.start = time.perf_counter()
        self._last = None   # time of the last redraw; None: nothing drawn yet
        self._width = 0     # length of the last line drawn, to blank out a longer one

    def __enter__(self) -> Progress:
        return self

    def advance(self, text: str = "") -> None:
        self.done += 1
        if not self.on:
            return
        now = time.perf_counter()
        if now - self.start < self.delay or (self._last is not None and now - self._last < INTERVAL):
            return
        self._last = now
        self._draw(now, text)

    def __exit__(self, *exc) -> None:
        # Leave the finished bar with its total time on its own line, but only if one was
        # drawn: a compile too fast to show a bar leaves no trace.
        if self._last is not None:
            self._draw(time.perf_counter(), "done" if exc[0] is None else "failed")
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float, text: str) -> None:
        filled = WIDTH * min(self.done, self.total) // max(self.total, 1)
        line = (f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] "
                f"{self.done}/{self.total} {now - self.start:.1f}s {text}")
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)
