"""Aliasing: values that share memory with another buffer instead of having their own.

Three cases, each read from the kernels' declarations (``nexec.ops.base.Kernel``), never
from layer type names, so plugin ops take part:

- ``view_of_input`` (Flatten): the output is a reshape of input 0; so is input 0's gradient
  of the output's, when nothing else adds to it.
- ``concatenates_inputs`` (Concatenate along the feature axis): each input is a slice of the
  output, so its producer writes straight into it, when that producer can write strided rows
  (``strided_output``) and nothing else reads the input.
- ``overwrites_input`` (elementwise ops): the output takes input 0's memory when that value
  dies at this op.

A view owns no memory: its root buffer then lives as long as any of its views does.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nexec.planner.buffers import BufferTable

if TYPE_CHECKING:  # pragma: no cover
    from nexec.ops.base import Kernel
    from nexec.planner.lowering import Graph, Op

__all__ = ["cover_views", "plan_views"]

RESHAPE = ("reshape",)


def plan_views(g: Graph, kernels: Sequence[Kernel], table: BufferTable, value: dict[int, str],
               grad: dict[int, str], share: bool = True, strided_output: bool = True
               ) -> tuple[list[str], list[str]]:
    """Makes views of the buffers in ``table`` and extends roots over their views.

    Args:
        g: The fused graph.
        kernels: The kernel of each op (same order as ``g.ops``).
        table: The value and gradient buffers.
        value: Tensor id -> value buffer.
        grad: Tensor id -> gradient buffer (empty at inference).
        share: Whether to concatenate in place and overwrite inputs (off: the naive plan,
            which keeps only the reshape views, since those take no work at all).
        strided_output: Whether the device's kernels can write row-strided slices at all
            (a capability of the device, ``nexec.devices.Device.strided_output``).

    Returns:
        The names of the layers concatenated in place, and of those writing over input 0.
    """
    for op, kernel in zip(g.ops, kernels):
        if kernel.view_of_input and not op.more_outputs:
            src = op.inputs[0]
            table.make_view(value[op.output], value[src], RESHAPE)
            t = g.tensors[src]
            if src in grad and len(t.consumers) == 1 and t.output_index is None:
                table.make_view(grad[src], grad[op.output], RESHAPE)
    concat_in_place: list[str] = []
    in_place: list[str] = []
    if share:
        for op, kernel in zip(g.ops, kernels):
            if kernel.concatenates_inputs and strided_output and not op.more_outputs and \
                    _concat_in_place_ok(g, op, kernels):
                _concat_in_place(g, op, table, value, grad)
                concat_in_place.append(op.layer.name)
        for op, kernel in zip(g.ops, kernels):
            if kernel.overwrites_input and not op.more_outputs and \
                    _overwrite_ok(g, op, table, value):
                table.make_view(value[op.output], value[op.inputs[0]], RESHAPE)
                in_place.append(op.layer.name)
    cover_views(table)
    return concat_in_place, in_place


def cover_views(table: BufferTable) -> None:
    """Extends each root buffer's lifetime over the lifetimes of all its views."""
    span: dict[str, tuple[int, int]] = {}
    for b in table.values():
        r = table.root(b.name).name
        lo, hi = span.get(r, (b.first, b.last))
        span[r] = (min(lo, b.first), max(hi, b.last))
    for r, (lo, hi) in span.items():
        table[r].first, table[r].last = lo, hi


def _concat_in_place_ok(g: Graph, op: Op, kernels: Sequence[Kernel]) -> bool:
    """Each branch may write straight into its slice of the concatenated buffer when the
    slice is row-strided (last axis), the branch is read by nothing else, and its producer's
    kernel can write strided rows."""
    rank = len(g.tensors[op.output].shape)
    if op.layer.feature_axis(rank) != rank - 1:
        return False
    if len(set(op.inputs)) != len(op.inputs):
        return False
    for i in op.inputs:
        t = g.tensors[i]
        if t.producer is None or t.output_index is not None or len(t.consumers) != 1:
            return False
        if g.ops[t.producer].more_outputs:  # an op with several outputs writes each whole
            return False
        k = kernels[t.producer]
        if not k.strided_output or k.view_of_input:
            return False
    return True


def _concat_in_place(g: Graph, op: Op, table: BufferTable, value: dict[int, str],
                     grad: dict[int, str]) -> None:
    """Each input's value (and gradient) becomes its slice of the output's (last axis)."""
    start = 0
    axis = len(g.tensors[op.output].shape)
    for i in op.inputs:
        width = g.tensors[i].shape[-1]
        view = ("slice", axis, start, start + width)
        table.make_view(value[i], value[op.output], view)
        if i in grad and op.output in grad:
            table.make_view(grad[i], grad[op.output], view)
        start += width


def _overwrite_ok(g: Graph, op: Op, table: BufferTable, value: dict[int, str]) -> bool:
    """An elementwise op may write over input 0 when that value dies at this op, and
    neither buffer takes part in another sharing (a concat slice, a view of it)."""
    src, out = table[value[op.inputs[0]]], table[value[op.output]]
    t = g.tensors[op.inputs[0]]
    if t.is_input or t.output_index is not None or op.inputs.count(op.inputs[0]) > 1:
        return False
    if src.last != op.index or src.view_of is not None or out.view_of is not None:
        return False
    if src.dtype != out.dtype:  # ids in, floats out: not the same kind of memory
        return False
    return not any(b.view_of in (src.name, out.name) for b in table.values())
