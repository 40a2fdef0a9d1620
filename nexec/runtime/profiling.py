"""Where a step's time goes: every bound call of a program timed on its own, summed per part.

A program is a flat list of kernel calls (``runtime/program.py``), each carrying who made it
(``checking.Origin.part``: a layer, a loss, a metric, the optimizer). Profiling runs the
steps through the same list as the executor's loop, with a clock read around each call, so
the parts add up to the step (less the clock's own ~0.1 µs per call). Calls the executor
adds without an origin (sums of gradient contributions, mask weights) count towards the
part before them in their phase. On a device that runs calls asynchronously each call is
waited for, which serialises it: read such profiles as shares, not as step times.

The steps run for real: a training profile trains (updates weights, optimizer state and
moving statistics), as the steps it measures would.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from nexec.checks import ArgumentError
from nexec.runtime import checking, wholestep
from nexec.runtime.program import Program

__all__ = ["PartTime", "StepProfile", "profile_program"]

OTHER = "(other)"


@dataclass(frozen=True)
class PartTime:
    """One part's time in one phase of a step.

    Attributes:
        part: Who the calls belong to, e.g. ``"layer 'conv2d' (Conv2D)"``, ``"optimizer"``.
        phase: ``forward``, ``loss``, ``metric``, ``backward`` or ``update``.
        calls: Kernel calls per step.
        seconds: Median over the profiled steps of the calls' summed time.
    """

    part: str
    phase: str
    calls: int
    seconds: float


@dataclass
class StepProfile:
    """The parts of one step of a program, in run order; ``print`` it for a table.

    Attributes:
        mode: What ran (``"train"``, ``"evaluate"``, ``"forward"``).
        batch: Rows per step.
        steps: Steps timed (after one untimed step).
        parts: One entry per part and phase, in the order they first run.
        step_seconds: Median over the steps of all calls' summed time.
    """

    mode: str
    batch: int
    steps: int
    parts: list[PartTime] = field(default_factory=list)
    step_seconds: float = 0.0

    def by_part(self) -> dict[str, float]:
        """Seconds per part, its phases added."""
        out: dict[str, float] = {}
        for p in self.parts:
            out[p.part] = out.get(p.part, 0.0) + p.seconds
        return out

    def __str__(self) -> str:
        unit, scale = ("µs", 1e6) if self.step_seconds < 0.01 else ("ms", 1e3)
        head = (f"{self.mode} step, batch {self.batch}, median of {self.steps} steps: "
                f"{self.step_seconds * scale:.1f} {unit}")
        width = max([len(p.part) for p in self.parts] + [4])
        lines = [head, f"{'part':<{width}}  {'phase':<8}  {'calls':>5}  {unit:>9}  {'share':>6}"]
        total = self.step_seconds or 1.0
        for p in self.parts:
            lines.append(f"{p.part:<{width}}  {p.phase:<8}  {p.calls:>5}  "
                         f"{p.seconds * scale:>9.1f}  {p.seconds / total:>6.1%}")
        return "\n".join(lines)


def profile_program(executor: Any, prog: Program, mode: str = "forward",
                    steps: int = 10) -> StepProfile:
    """Runs ``steps`` steps of ``mode`` of ``prog`` (bound by ``executor``), timing each call.

    Args:
        executor: The :class:`~nexec.runtime.executor.Executor` that bound ``prog``.
        prog: The program; its inputs (and targets) hold whatever the caller loaded.
        mode: A key of ``wholestep.MODES`` the program has the phases of.
        steps: How many steps to time (one more runs first, untimed: kernels load).

    Raises:
        ArgumentError: an unknown mode, a mode the program was not bound for, or
            ``steps`` < 1.
    """
    if mode not in wholestep.MODES:
        raise ArgumentError(f"mode must be one of {', '.join(wholestep.MODES)}; got {mode!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ArgumentError(f"steps must be an integer >= 1; got {steps!r}")
    phases = wholestep.MODES[mode]
    missing = [p for p in phases if p in ("backward", "update") and not prog.calls.get(p)]
    if missing:
        raise ArgumentError(f"mode {mode!r} needs a training program; this one has no "
                            f"{' or '.join(missing)} calls")
    bound = prog.bound(phases)
    keys = _parts(bound, phases, prog)
    order = list(dict.fromkeys(keys))
    calls = {k: keys.count(k) for k in order}
    sync = executor.device.synchronize if not executor.device.host_memory else None
    samples: dict[tuple[str, str], list[float]] = {k: [] for k in order}
    totals: list[float] = []
    with executor.lock:
        executor.prepare(prog)  # derived weights, not timed: made once, not every step
        if not checking.check_types(bound):
            with executor.device.step_guard(prog.threaded):
                checking.run_checked(bound)
        for step in range(steps + 1):
            sums = dict.fromkeys(order, 0.0)
            with executor.device.step_guard(prog.threaded):
                for (fn, args, _), key in zip(bound, keys):
                    t0 = time.perf_counter()
                    fn(*args)
                    if sync is not None:
                        sync()
                    sums[key] += time.perf_counter() - t0
            if step:  # the first step loads kernels and warms caches: not counted
                for k, s in sums.items():
                    samples[k].append(s)
                totals.append(sum(sums.values()))
    parts = [PartTime(k[0], k[1], calls[k], statistics.median(samples[k])) for k in order]
    return StepProfile(mode, prog.batch, steps, parts, statistics.median(totals))


def _parts(bound: list[tuple], phases: tuple[str, ...], prog: Program) -> list[tuple[str, str]]:
    """``(part, phase)`` of each bound call (``Program.bound`` runs phase by phase); an
    origin-less call takes its predecessor's part in the phase."""
    phase_of = [p for p in phases for _ in prog.calls.get(p, [])]
    keys: list[tuple[str, str]] = []
    last: dict[str, str] = {}
    for (_, _, origin), phase in zip(bound, phase_of):
        part = getattr(origin, "part", "") or last.get(phase, OTHER)
        last[phase] = part
        keys.append((part, phase))
    return keys
