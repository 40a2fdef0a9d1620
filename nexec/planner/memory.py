"""Memory planning: offsets of every buffer in one arena, reusing dead memory.

Greedy by size over lifetimes: the largest buffers are placed first, each at the lowest
offset (aligned) that overlaps no already-placed buffer live at the same time. The lower
bound any placement can reach is the largest total of simultaneously live bytes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nexec.planner.buffers import Buffer
from nexec.planner.verify import check_memory_plan

if TYPE_CHECKING:  # pragma: no cover
    from nexec.planner.plan import Plan

__all__ = ["BufferRecord", "MemoryPlan", "assign_offsets", "parameter_records", "plan_memory"]


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
        check_memory_plan(self)

    def __str__(self) -> str:
        head = f"{'buffer':<40} {'role':<18} {'shape':<22} {'bytes':>12} {'offset':>12}  live"
        lines = [head, "-" * len(head)]
        for b in self.buffers:
            where = "persistent" if b.offset < 0 else f"{b.offset:,}"
            note = f"  (view of {b.view_of})" if b.view_of else ""
            live = f"{b.first_step}..{b.last_step}" if b.first_step >= 0 else "always"
            lines.append(f"{b.name[:40]:<40} {b.role:<18} {b.shape!s:<22} {b.nbytes:>12,} "
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


def plan_memory(buffers: Mapping[str, Buffer], steps: int, alignment: int = 64,
                reuse: bool = True, persistent: Sequence[BufferRecord] = (),
                concat_in_place: Sequence[str] = (), in_place: Sequence[str] = ()
                ) -> MemoryPlan:
    """Gives every buffer its arena offset (views their root's) and returns the plan.

    Each root buffer's lifetime must already cover its views' (``aliasing.cover_views``).
    Writes ``offset`` of every buffer.

    Args:
        buffers: The step's buffers by name, in a fixed order (it breaks ties of the greedy
            placement).
        steps: How many steps the schedule has.
        alignment: Byte alignment of every offset.
        reuse: Whether buffers that are never live together share memory; without it they
            are laid end to end, each with memory of its own.
        persistent: Rows for memory outside the arena (``parameter_records``).
        concat_in_place: Names of the Concatenate layers planned in place (for the table).
        in_place: Names of the layers writing over their input (for the table).
    """
    def root(name: str) -> Buffer:
        b = buffers[name]
        while b.view_of is not None:
            b = buffers[b.view_of]
        return b

    # Roots in the order their first member (the root or one of its views) comes.
    roots = list({id(r): r for r in (root(name) for name in buffers)}.values())
    blocks = [(b.nbytes, b.first, b.last) for b in roots]
    if reuse:
        offsets = assign_offsets(blocks, alignment)
    else:
        ends = np.cumsum([0] + [_align(b[0], alignment) for b in blocks])
        offsets = [int(e) for e in ends[:-1]]
    for b, off in zip(roots, offsets):
        b.offset = off
    for b in buffers.values():
        if b.view_of is not None:
            b.offset = root(b.name).offset
    arena = max((b.offset + _align(b.nbytes, alignment) for b in roots), default=0)
    live = [0] * max(steps, 1)
    for b in roots:
        for step in range(b.first, b.last + 1):
            live[step] += _align(b.nbytes, alignment)
    records = [BufferRecord(b.name, b.role, b.shape, b.nbytes, b.offset, b.first, b.last,
                            b.view_of) for b in buffers.values()]
    naive = sum(_align(b.nbytes, alignment) for b in buffers.values())
    return MemoryPlan(records + list(persistent), arena, max(live), naive, steps, alignment,
                      list(concat_in_place), list(in_place))


def parameter_records(plan: Plan, training: bool) -> list[BufferRecord]:
    """Rows for the parameters (and in training their gradients), kept outside the arena.

    Optimizer state is not listed: it belongs to the optimizer, which the plan does not know.
    """
    out = []
    g = plan.graph
    itemsize = np.dtype(g.dtype).itemsize
    seen: set[str] = set()
    for op in g.ops:
        if op.layer.name in seen:
            continue
        seen.add(op.layer.name)
        for pname, shape in plan.param_shapes[op.layer.name].items():
            nbytes = int(np.prod(shape)) * itemsize
            out.append(BufferRecord(f"{op.layer.name}.{pname}", "parameter", shape, nbytes,
                                    -1, -1, -1))
            if training:
                out.append(BufferRecord(f"grad {op.layer.name}.{pname}", "parameter_gradient",
                                        shape, nbytes, -1, -1, -1))
    return out
