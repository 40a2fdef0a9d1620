"""An independent checker of memory plans: it shares no code with the planner.

It replays the schedule step by step, lists the arena byte ranges live at each step, and
fails if two of them intersect, if a range leaves the arena, or if an offset is misaligned.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["MemoryPlanError", "check_memory_plan"]


class _Row(Protocol):
    """What the checker reads of one buffer (``memory.BufferRecord`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def first_step(self) -> int: ...
    @property
    def last_step(self) -> int: ...
    @property
    def view_of(self) -> str | None: ...


class _Plan(Protocol):
    """What the checker reads of a plan (``memory.MemoryPlan`` has it)."""

    @property
    def buffers(self) -> Sequence[_Row]: ...
    @property
    def arena_bytes(self) -> int: ...
    @property
    def alignment(self) -> int: ...


class MemoryPlanError(AssertionError):
    """Two buffers live at the same step share bytes, or a buffer leaves the arena."""


def check_memory_plan(plan: _Plan) -> None:
    """Raises :class:`MemoryPlanError` unless ``plan`` (a ``MemoryPlan``) is safe."""
    owners = [b for b in plan.buffers if b.offset >= 0 and b.view_of is None]
    by_name = {b.name: b for b in plan.buffers}
    for b in plan.buffers:
        if b.view_of is not None:
            top = b
            while top.view_of is not None:
                top = by_name[top.view_of]
            if b.nbytes > top.nbytes:
                raise MemoryPlanError(f"view {b.name} ({b.nbytes} B) is larger than its "
                                      f"memory {top.name} ({top.nbytes} B)")
            if not (top.first_step <= b.first_step and b.last_step <= top.last_step):
                raise MemoryPlanError(f"view {b.name} lives {b.first_step}..{b.last_step} "
                                      f"outside {top.name}'s {top.first_step}..{top.last_step}")
    for b in owners:
        if b.offset % plan.alignment:
            raise MemoryPlanError(f"{b.name} at offset {b.offset} is not "
                                  f"{plan.alignment}-byte aligned")
        if b.offset + b.nbytes > plan.arena_bytes:
            raise MemoryPlanError(f"{b.name} ends at {b.offset + b.nbytes}, past the arena "
                                  f"({plan.arena_bytes} B)")
    last = max((b.last_step for b in owners), default=-1)
    for step in range(last + 1):
        live = sorted((b.offset, b.offset + b.nbytes, b.name) for b in owners
                      if b.first_step <= step <= b.last_step and b.nbytes > 0)
        for (lo1, hi1, n1), (lo2, hi2, n2) in zip(live, live[1:]):
            if lo2 < hi1:
                raise MemoryPlanError(f"step {step}: {n1} [{lo1}, {hi1}) overlaps "
                                      f"{n2} [{lo2}, {hi2})")
