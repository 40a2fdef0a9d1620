"""Memory planning: offsets of every buffer in one arena, reusing dead memory.

Greedy by size over lifetimes: the largest buffers are placed first, each at the lowest
offset (aligned) that overlaps no already-placed buffer live at the same time. The lower
bound any placement can reach is the largest total of simultaneously live bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from nexec.planner.schedule import Schedule

__all__ = ["BufferRecord", "MemoryPlan", "assign_offsets", "plan_memory"]


@dataclass
class BufferRecord:
    """One row of the memory plan. ``offset`` is -1 for memory outside the arena."""

    name: str
    role: str
    shape: tuple
    nbytes: int
    offset: int
    first_step: int
    last_step: int
    view_of: str | None = None


def _align(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def assign_offsets(blocks: list[tuple[int, int, int]], alignment: int = 64) -> list[int]:
    """Offsets for blocks ``(nbytes, first, last)``; greedy by size, lowest fitting gap.

    Returns one offset per block (same order). Blocks whose lifetimes intersect never
    overlap in memory.
    """
    order = sorted(range(len(blocks)), key=lambda i: (-blocks[i][0], blocks[i][1], i))
    offsets = [0] * len(blocks)  # empty blocks need no room: offset 0
    placed: list[int] = []
    for i in order:
        size, first, last = blocks[i]
        size = _align(size, alignment)
        if size == 0:
            continue
        busy = sorted((offsets[j], offsets[j] + _align(blocks[j][0], alignment))
                      for j in placed if blocks[j][1] <= last and first <= blocks[j][2])
        at = 0
        for lo, hi in busy:
            if at + size <= lo:
                break
            at = max(at, hi)
        offsets[i] = at
        placed.append(i)
    return offsets


class MemoryPlan:
    """Where each buffer of a step lives; ``print`` it for the table.

    Attributes:
        buffers: Records of every buffer (arena ones, views, and persistent parameters).
        arena_bytes: Size of the one arena the executor allocates.
        lower_bound_bytes: Largest total of bytes live at one step (same schedule).
        naive_bytes: Sum of all step buffers (aligned), as if none were reused or shared.
        concat_in_place: Names of the Concatenate layers planned in place.
        in_place: Names of elementwise layers (Add, Activation) writing over their input.
    """

    def __init__(self, buffers: list[BufferRecord], arena_bytes: int, lower_bound_bytes: int,
                 naive_bytes: int, steps: int, alignment: int,
                 concat_in_place: list[str], in_place: list[str] | None = None) -> None:
        self.buffers = buffers
        self.arena_bytes = arena_bytes
        self.lower_bound_bytes = lower_bound_bytes
        self.naive_bytes = naive_bytes
        self.steps = steps
        self.alignment = alignment
        self.concat_in_place = concat_in_place
        self.in_place = in_place or []

    def verify(self) -> None:
        """Runs the independent checker (``nexec.planner.verify``); raises on any overlap."""
        from nexec.planner.verify import check_memory_plan

        check_memory_plan(self)

    def __str__(self) -> str:
        head = f"{'buffer':<40} {'role':<18} {'shape':<22} {'bytes':>12} {'offset':>12}  live"
        lines = [head, "-" * len(head)]
        for b in self.buffers:
            where = "persistent" if b.offset < 0 else f"{b.offset:,}"
            note = f"  (view of {b.view_of})" if b.view_of else ""
            live = f"{b.first_step}..{b.last_step}" if b.first_step >= 0 else "always"
            lines.append(f"{b.name[:40]:<40} {b.role:<18} {str(b.shape):<22} {b.nbytes:>12,} "
                         f"{where:>12}  {live}{note}")
        lines.append(f"arena {self.arena_bytes:,} B; lower bound {self.lower_bound_bytes:,} B; "
                     f"naive {self.naive_bytes:,} B")
        if self.concat_in_place:
            lines.append(f"concatenated in place: {', '.join(self.concat_in_place)}")
        if self.in_place:
            lines.append(f"written over their input: {', '.join(self.in_place)}")
        return "\n".join(lines)

    __repr__ = __str__

    def plot(self, path: str) -> None:
        """Draws buffers as rectangles (x = step, y = offset) into ``path``.

        ``.svg`` needs nothing installed; ``.png`` and other formats need matplotlib.
        """
        from nexec.planner.picture import plot_memory

        plot_memory(self, path)


def plan_memory(s: Schedule, alignment: int = 64, reuse: bool = True) -> MemoryPlan:
    """Assigns arena offsets to the schedule's root buffers (views share their root's).

    With ``reuse=False`` buffers are laid end to end, each with memory of its own.
    """
    bufs = s.buffers

    def root(name: str) -> str:
        while bufs[name].view_of is not None:
            name = bufs[name].view_of  # type: ignore[assignment]
        return name

    span: dict[str, tuple[int, int]] = {}
    for b in bufs.values():
        r = root(b.name)
        lo, hi = span.get(r, (b.first, b.last))
        span[r] = (min(lo, b.first), max(hi, b.last))
    roots = list(span)
    blocks = [(bufs[r].nbytes, *span[r]) for r in roots]
    if reuse:
        offsets = assign_offsets(blocks, alignment)
    else:
        ends = np.cumsum([0] + [_align(b[0], alignment) for b in blocks])
        offsets = [int(e) for e in ends[:-1]]
    for r, off in zip(roots, offsets):
        bufs[r].offset = off
        bufs[r].first, bufs[r].last = span[r]
    for b in bufs.values():
        if b.view_of is not None:
            b.offset = bufs[root(b.name)].offset
    arena = max((off + _align(bufs[r].nbytes, alignment) for r, off in zip(roots, offsets)),
                default=0)
    live = [0] * max(s.steps, 1)
    for r in roots:
        lo, hi = span[r]
        for step in range(lo, hi + 1):
            live[step] += _align(bufs[r].nbytes, alignment)
    records = [BufferRecord(b.name, b.role, b.shape, b.nbytes, b.offset, b.first, b.last,
                            b.view_of) for b in bufs.values()]
    records += _persistent_records(s)
    naive = sum(_align(b.nbytes, alignment) for b in bufs.values())
    return MemoryPlan(records, arena, max(live), naive,
                      s.steps, alignment, list(s.concat_in_place), list(s.in_place))


def _persistent_records(s: Schedule) -> list[BufferRecord]:
    out = []
    itemsize = np.dtype(s.plan.graph.tensors[s.plan.graph.inputs[0]].dtype).itemsize
    seen: set[str] = set()
    for op in s.plan.graph.ops:
        if op.layer.name in seen:
            continue
        seen.add(op.layer.name)
        for pname, shape in s.plan.param_shapes[op.layer.name].items():
            nbytes = int(np.prod(shape)) * itemsize
            out.append(BufferRecord(f"{op.layer.name}.{pname}", "parameter", shape, nbytes,
                                    -1, -1, -1))
            if s.training:
                out.append(BufferRecord(f"grad {op.layer.name}.{pname}", "parameter_gradient",
                                        shape, nbytes, -1, -1, -1))
    trainer: Any = getattr(s.plan, "trainer", None)
    slots = getattr(getattr(trainer, "optimizer", None), "slots", 0) if s.training else 0
    for rec in [r for r in out if r.role == "parameter"]:
        for k in range(slots):
            out.append(BufferRecord(f"{rec.name} slot {k}", "optimizer_state", rec.shape,
                                    rec.nbytes, -1, -1, -1))
    return out
