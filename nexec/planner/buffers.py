"""The buffers of a schedule: every array one step touches, with its lifetime and view.

Stages of the schedule add buffers to one :class:`BufferTable` in a fixed order; the memory
planner then gives each root buffer an offset (the table's order breaks its ties, so the
order is part of the result).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from nexec.planner.lowering import Graph

__all__ = ["Buffer", "BufferTable", "tensor_names"]


@dataclass
class Buffer:
    """One array of the step. ``view_of`` names the buffer whose memory it uses.

    ``view`` is ``("reshape",)`` or ``("slice", axis, start, stop)`` (axis counts the batch).
    ``first``/``last`` are the steps (``nexec.planner.steps``) it is live, both inclusive.
    """

    name: str
    role: str  # input, activation, saved, gradient, workspace
    shape: tuple
    dtype: str
    first: int
    last: int
    view_of: str | None = None
    view: tuple = ()
    offset: int = -1

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


class BufferTable(dict[str, Buffer]):
    """Buffers by name, in the order they were added; names are unique.

    Args:
        dtype: The dtype of buffers added without one (the model's).
    """

    def __init__(self, dtype: str) -> None:
        super().__init__()
        self.dtype = dtype

    def add(self, name: str, role: str, shape: tuple, first: int, last: int,
            dtype: str | None = None) -> str:
        """Adds a buffer with memory of its own and returns its name."""
        assert name not in self, f"two buffers named {name!r}"
        self[name] = Buffer(name, role, tuple(shape), dtype or self.dtype, first, last)
        return name

    def make_view(self, name: str, parent: str, view: tuple) -> None:
        """Makes ``name`` a view of ``parent``'s memory."""
        b = self[name]
        b.view_of, b.view = parent, view

    def root(self, name: str) -> Buffer:
        """The buffer that owns ``name``'s memory (``name`` itself unless it is a view)."""
        b = self[name]
        while b.view_of is not None:
            b = self[b.view_of]
        return b


def tensor_names(g: Graph) -> dict[int, str]:
    """Buffer name of each tensor's value: the tensor's name, made unique with ``#id``."""
    names: dict[int, str] = {}
    seen: set[str] = set()
    for tid, t in g.tensors.items():
        name = t.name if t.name not in seen else f"{t.name}#{tid}"
        seen.add(name)
        names[tid] = name
    return names
