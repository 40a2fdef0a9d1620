"""Compiling a program's kernels before its first step, timed and announced.

Numba compiles a ``@kernel`` for each new set of argument types the first time it is called
(or loads the machine code from its cache on disk). Left to the first step, that time lands
inside the progress bar ("11s 1s/step") with nothing saying why. So the executor calls
:func:`compile_program` right after binding: every Numba dispatcher of the program is
compiled for the argument types it is bound to, and

* the seconds spent are added to a per-thread clock (:func:`compile_seconds`), which the
  progress bar subtracts, so its per-step figure is the rate of real steps;
* when compiling lasts longer than :data:`NOTICE_AFTER_S` seconds, one line says so
  (``compiling nexec kernels (first run, cached afterwards)... done in 4.2s``), unless the
  caller turned notices off (``verbose=0``, :func:`notices`).

Nothing here imports Numba until a program is compiled, so ``import nexec`` stays light.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import IO, Any, Callable, Iterable, Iterator

from nexec.runtime.compile_workers import compile_all

__all__ = ["NOTICE", "NOTICE_AFTER_S", "compile_calls", "compile_program", "compile_seconds",
           "compiling", "notices", "pending"]

#: What the notice says.
NOTICE = "compiling nexec kernels (first run, cached afterwards)..."
#: Compiling longer than this (seconds) prints the notice; ``NEXEC_COMPILE_NOTICE_AFTER``
#: overrides it (``0``: always when anything compiles, ``inf``: never).
NOTICE_AFTER_S = 1.0

_local = threading.local()


def compile_seconds() -> float:
    """Seconds this thread has spent compiling kernels (the clock the progress bar reads)."""
    return getattr(_local, "seconds", 0.0)


def _notice_after() -> float:
    value = os.environ.get("NEXEC_COMPILE_NOTICE_AFTER")
    try:
        return float(value) if value else NOTICE_AFTER_S
    except ValueError:
        return NOTICE_AFTER_S


class notices:  # noqa: N801 - used as a function: ``with notices(verbose != 0): ...``
    """Within it, compile notices of this thread are shown (or not) on ``stream``.

    A plain class rather than a ``contextlib`` generator: ``fit`` and ``predict`` enter it
    on every call, and a generator context costs several times as much as these two
    assignments.

    Args:
        enabled: False for ``verbose=0``.
        stream: Where the notice goes (standard output, looked up when written, by default).
    """

    __slots__ = ("_value", "_saved")

    def __init__(self, enabled: bool, stream: IO[str] | None = None) -> None:
        self._value = (enabled, stream)
        self._saved: tuple[bool, IO[str] | None] | None = None

    def __enter__(self) -> None:
        self._saved = getattr(_local, "notices", None)
        _local.notices = self._value

    def __exit__(self, *exc: object) -> None:
        _local.notices = self._saved


class _Notice:
    """Prints :data:`NOTICE` once compiling has lasted ``after`` seconds and ``real()`` says
    LLVM is at work (not only loading from the cache), then the total."""

    RECHECK_S = 0.2

    def __init__(self, after: float, real: Callable[[], bool] = lambda: True) -> None:
        enabled, stream = getattr(_local, "notices", None) or (True, None)
        self.stream = stream or sys.stdout
        self.real = real
        self.lock = threading.Lock()
        self.shown = self.done = False
        self.timer: threading.Timer | None = None
        if enabled and after != float("inf"):
            self._arm(max(after, 0.0))

    def _arm(self, delay: float) -> None:
        self.timer = threading.Timer(delay, self._show)
        self.timer.daemon = True
        self.timer.start()

    def _show(self) -> None:
        with self.lock:
            if self.done:
                return
            if not self.real():
                self._arm(self.RECHECK_S)
                return
            self.shown = True
            self.stream.write(NOTICE)
            self.stream.flush()

    def close(self, seconds: float) -> None:
        with self.lock:
            self.done = True
            if self.timer is not None:
                self.timer.cancel()
            if not self.shown and self.timer is not None and self._due(seconds) \
                    and self.real():  # finished before the timer thread got its turn
                self.shown = True
                self.stream.write(NOTICE)
            if self.shown:
                self.stream.write(f" done in {seconds:.1f}s\n")
                self.stream.flush()

    @staticmethod
    def _due(seconds: float) -> bool:
        return seconds >= _notice_after()


@contextlib.contextmanager
def compiling(real: Callable[[], bool] = lambda: True) -> Iterator[None]:
    """Times what runs inside as compilation: onto the clock, and announced when slow.

    Args:
        real: Whether code is being compiled, not only loaded from a cache (asked when the
            notice is due; a slow load is not announced).
    """
    notice = _Notice(_notice_after(), real)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - t0
        _local.seconds = compile_seconds() + seconds
        notice.close(seconds)


def pending(calls: Iterable[tuple]) -> list[tuple[Any, tuple]]:
    """The ``(dispatcher, argument types)`` of ``calls`` that Numba has not compiled (or
    loaded) in this process yet, each once; calls of anything but a Numba CPU dispatcher
    (CUDA launchers, Python functions of plugins) are left to run as they are."""
    from numba.core.registry import CPUDispatcher

    todo: dict[tuple[int, tuple], tuple[Any, tuple]] = {}
    for fn, args in calls:
        if not isinstance(fn, CPUDispatcher) or getattr(fn, "_can_compile", True) is False:
            continue
        types = tuple(fn.typeof_pyval(a) for a in args)
        if types not in fn.overloads:
            todo.setdefault((id(fn), types), (fn, types))
    return list(todo.values())


def compile_calls(calls: Iterable[tuple]) -> float:
    """Compiles every Numba dispatcher of ``calls`` for its bound argument types (loading
    from Numba's cache where it can); returns the seconds it took (0 with nothing to do), as
    :func:`compile_seconds` counted them (one measurement, so the two always agree)."""
    todo = pending(calls)
    if not todo:
        return 0.0
    before = sum(_misses(fn) for fn, _ in todo)
    clock = compile_seconds()
    # Numba counts a cache miss before it compiles: the notice waits for one.
    with compiling(lambda: sum(_misses(fn) for fn, _ in todo) > before):
        compile_all(todo)  # in helper processes too, when several kernels are not cached
    return compile_seconds() - clock


def _misses(fn: Any) -> int:
    """How often ``fn`` found no machine code in Numba's cache (and so compiled)."""
    stats = getattr(fn, "stats", None)
    return sum(stats.cache_misses.values()) if stats is not None else 1


def compile_program(prog: Any) -> float:
    """:func:`compile_calls` over every phase of a bound (materialised) program."""
    return compile_calls(call for calls in prog.calls.values() for call in calls)
