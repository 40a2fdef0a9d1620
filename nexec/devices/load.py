"""How many of this process's CPUs other processes leave free, measured between steps.

Why: a thread that waits for a core another process holds stalls every shard barrier and
keeps OpenBLAS's workers spinning for a core they cannot get. With one of two cores busy,
two threads made the wide MLP's epoch 2.6x and its predict 3.7x slower, where the lost core
explains 2x; one thread loses only that core. So between steps nexec looks at what the
*other* processes used of its CPUs over the last quarter second (``/proc/stat`` for the
CPUs in its affinity mask, less its own time from ``/proc/self/stat``; time a hypervisor
stole counts as used) and runs with the cores that are left, never more than
``set_num_threads`` allows. Results do not depend on it: shards are independent and BLAS
splits a GEMM by rows and columns, never along the summed axis (tests/runtime/test_load.py).

Reading the two files takes ~50 us, every 0.25 s at most; between samples a step pays one
clock read. Off with ``NEXEC_ADAPT_THREADS=0`` or ``set_adaptive_threads(False)``; where
``/proc`` is missing (not Linux) nothing changes.
"""
from __future__ import annotations

import os
import time
from typing import Callable

__all__ = ["CpuAvailability", "others_busy_cpus", "free_cpus"]

INTERVAL_S = 0.25
# Rounding of the free cores: 2 cores with a busy process beside two of our threads leave
# ~1.3 free (the scheduler shares 3 threads over 2 cores); quiet leaves ~1.95.
_ROUND_UP = 0.35


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def cpu_ticks(stat: str, cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) clock ticks summed over ``cpus`` from the text of ``/proc/stat``."""
    busy = total = 0
    seen = False
    for line in stat.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        if not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        seen = True
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]
    return (busy, total) if seen else None


def own_ticks(self_stat: str) -> int:
    """This process's user + system clock ticks from the text of ``/proc/self/stat``."""
    fields = self_stat.rsplit(")", 1)[1].split()  # the name may contain spaces
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def others_busy_cpus(before: tuple[int, int, int], after: tuple[int, int, int],
                     ncpus: int) -> float:
    """CPUs' worth of time other processes used between two ``(busy, total, own)`` samples."""
    busy = after[0] - before[0]
    total = after[1] - before[1]
    own = after[2] - before[2]
    if total <= 0:
        return 0.0
    return max(0.0, (busy - own) / total * ncpus)


def free_cpus(ncpus: int, others: float) -> int:
    """The whole cores left for this process when others use ``others`` CPUs of ``ncpus``."""
    return max(1, int(ncpus - others + _ROUND_UP))


class CpuAvailability:
    """The free cores of this process's CPUs, re-measured at most every ``interval`` s.

    Args:
        interval: Seconds between samples.
        clock: Monotonic clock (tests pass their own).
        read: Reads a ``/proc`` file's text or returns None (tests pass their own).
    """

    def __init__(self, interval: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic,
                 read: Callable[[str], str | None] = _read) -> None:
        self.interval = interval
        self.clock = clock
        self.read = read
        try:
            self.cpus = set(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            self.cpus = set(range(os.cpu_count() or 1))
        self.last: tuple[int, int, int] | None = None
        self.last_time = -float("inf")
        self.free: int | None = None  # None: not measured (yet, or no /proc)
        self.usable = True

    def sample(self) -> tuple[int, int, int] | None:
        stat, own = self.read("/proc/stat"), self.read("/proc/self/stat")
        if stat is None or own is None:
            return None
        ticks = cpu_ticks(stat, self.cpus)
        return None if ticks is None else (*ticks, own_ticks(own))

    def update(self) -> int | None:
        """The free cores (None while unknown); samples again once ``interval`` has passed."""
        if not self.usable:
            return None
        now = self.clock()
        if now - self.last_time < self.interval:
            return self.free
        try:
            current = self.sample()
        except (ValueError, IndexError):  # an unexpected /proc format: stop looking
            current = None
        if current is None:
            self.usable = False
            self.free = None
            return None
        if self.last is not None and current[1] > self.last[1]:
            self.free = free_cpus(len(self.cpus),
                                  others_busy_cpus(self.last, current, len(self.cpus)))
        self.last, self.last_time = current, now
        return self.free
