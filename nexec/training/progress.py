"""A Keras-style progress bar: ``8/8 [==============================] - 0s 1ms/step - loss: 0.3``.

On a terminal it redraws one line as batches finish; elsewhere (logs, CI, notebooks captured
to files) it prints only the final line of each epoch. When batches come from a stream
(generator, PyDataset, memory map), the final line also says what share of the epoch the
steps spent waiting for data (``data wait: 12%``), when that is 1% or more. Time spent
compiling kernels while the bar runs (the first step of a fresh process,
``runtime/compiling.py``) is left out of its times: the per-step figure is the rate of real
steps.
"""
from __future__ import annotations

import sys
import time
from typing import IO

from nexec.runtime.compiling import compile_seconds

__all__ = ["ProgressBar", "format_logs", "format_step_time"]


def format_step_time(seconds: float) -> str:
    """``1ms/step``, ``850us/step`` or ``2s/step``, as Keras prints it."""
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def format_logs(logs: dict[str, float]) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class ProgressBar:
    """One epoch's (or one predict pass's) progress.

    Args:
        total: Number of batches; None while unknown (a generator's first epoch), shown
            as ``Unknown`` as Keras does, and then the batches done.
        verbose: 1 for the bar, 2 for one plain line at the end, 0 for nothing.
        stream: Where to write; standard output by default.
        width: Characters inside the brackets.
    """

    def __init__(self, total: int | None, verbose: int = 1, stream: IO[str] | None = None,
                 width: int = 30) -> None:
        self.total = total
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.width = width
        self.start = time.perf_counter()
        self._compile0 = compile_seconds()
        self.dynamic = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_draw = 0.0
        self._drawn = 0  # length of the line on screen, so a shorter one can blank the rest
        self.done = 0  # batches finished
        self.waited: float | None = None  # seconds the steps waited for data (streams only)

    def update(self, done: int, logs: dict[str, float] | None = None) -> None:
        """Redraws the bar (at most every 50 ms) when on a terminal."""
        self.done = done
        if self.verbose != 1 or not self.dynamic or (self.total is not None
                                                     and done >= self.total):
            return
        now = time.perf_counter()
        if now - self._last_draw < 0.05:
            return
        self._last_draw = now
        self.stream.write("\r" + self._padded(self._line(done, logs or {}, self.elapsed(now))))
        self.stream.flush()

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the bar started, less those spent compiling kernels meanwhile."""
        now = time.perf_counter() if now is None else now
        return max(now - self.start - (compile_seconds() - self._compile0), 0.0)

    def finish(self, logs: dict[str, float] | None = None) -> None:
        elapsed = self.elapsed()
        if self.total is None:
            self.total = self.done
        logs = dict(logs or {})
        waits = self._wait_share(elapsed)
        if self.verbose == 1:
            line = self._line(self.total, logs, elapsed) + waits
            self.stream.write(("\r" + self._padded(line) if self.dynamic else line) + "\n")
        elif self.verbose == 2:
            tail = f" - {format_logs(logs)}" if logs else ""
            self.stream.write(f"{self.total}/{self.total} - {elapsed:.0f}s - "
                              f"{format_step_time(elapsed / max(self.total, 1))}{tail}{waits}\n")
        self.stream.flush()

    def _wait_share(self, elapsed: float) -> str:
        """`` - data wait: 12%`` when the steps waited on the data for 1% of the time or more."""
        if self.waited is None or elapsed <= 0:
            return ""
        share = self.waited / elapsed
        return f" - data wait: {share:.0%}" if share >= 0.01 else ""

    def _padded(self, line: str) -> str:
        """``line`` with spaces over what a longer earlier line left on screen."""
        padded = line.ljust(self._drawn)
        self._drawn = len(line)
        return padded

    def _line(self, done: int, logs: dict[str, float], elapsed: float) -> str:
        if self.total is None:  # an unknown number of batches: no bar, as Keras
            return f"{done}/Unknown - {elapsed:.0f}s " \
                   f"{format_step_time(elapsed / max(done, 1))}" + \
                   (f" - {format_logs(logs)}" if logs else "")
        n = len(str(self.total))
        filled = int(self.width * done / max(self.total, 1))
        bar = "=" * filled
        if done < self.total and filled < self.width:
            bar += ">"
        bar = bar.ljust(self.width, ".")
        if done < self.total:
            eta = elapsed / max(done, 1) * (self.total - done)
            timing = f" - ETA: {eta:.0f}s"
        else:
            timing = f" - {elapsed:.0f}s {format_step_time(elapsed / max(self.total, 1))}"
        tail = f" - {format_logs(logs)}" if logs else ""
        return f"{done:>{n}}/{self.total} [{bar}]{timing}{tail}"
