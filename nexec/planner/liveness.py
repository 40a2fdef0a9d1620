"""Value buffers and their lifetimes: when each tensor's value is written and last read.

A value is live from the step that writes it (0 for a model input) to the last step that
reads it. In training, backward reads what its kernel saves (``saves_inputs``,
``saves_output``), and the loss step reads the model outputs and the mask sources of masked
outputs (``Graph.output_masks``); at inference the outputs (and those mask sources) stay
until the last forward step, where the caller copies them out (or the loss reads them).
Values still needed after the forward steps have the role ``saved``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nexec.planner.buffers import BufferTable
from nexec.planner.steps import StepNumbering

if TYPE_CHECKING:  # pragma: no cover
    from nexec.ops.base import Kernel
    from nexec.planner.lowering import Graph

__all__ = ["value_buffers"]


def value_buffers(g: Graph, kernels: Sequence[Kernel], steps: StepNumbering, batch: int,
                  names: dict[int, str], table: BufferTable) -> dict[int, str]:
    """Adds one buffer per tensor value to ``table``; returns tensor id -> buffer name.

    Args:
        g: The fused graph.
        kernels: The kernel of each op (same order as ``g.ops``).
        steps: The step numbering.
        batch: Batch size the buffers are sized for.
        names: Buffer name of each tensor (``tensor_names``).
        table: Where the buffers go.
    """
    value: dict[int, str] = {}
    masked_by: dict[int, list[int]] = {}  # mask source -> the ops reading it as a mask
    for op in g.ops:
        if op.mask is not None:
            masked_by.setdefault(op.mask, []).append(op.index)
    loss_masks = {m for m in g.output_masks if m is not None}  # read by the loss step
    for tid, t in g.tensors.items():
        first = 0 if t.producer is None else steps.forward(t.producer)
        mask_readers = masked_by.get(tid, [])
        last = max([first, *t.consumers, *mask_readers])
        if steps.training:
            for c in t.consumers:
                if kernels[c].saves_inputs:
                    last = max(last, steps.backward(c))
            for c in mask_readers:  # a mask is read again by backward
                last = max(last, steps.backward(c))
            if t.producer is not None and kernels[t.producer].saves_output:
                last = max(last, steps.backward(t.producer))
            if t.output_index is not None or tid in loss_masks:
                last = max(last, steps.loss)
        elif t.output_index is not None or tid in loss_masks:
            last = max(last, steps.n - 1)
        role = "input" if t.is_input else ("saved" if last >= steps.n else "activation")
        value[tid] = table.add(names[tid], role, (batch, *t.shape), first, last,
                               dtype=t.dtype if t.is_integer else None)
    return value
