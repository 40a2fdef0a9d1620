"""Backward planning: gradient buffers, the extra contributions of a tensor read by several
ops, and which outputs' loss steps fold the final activation in.

A tensor's gradient is written first by the loss step (a model output) or by the first
backward step (in backward order) of an op that reads it, and is read last by the backward
of its producer. Every later reader writes its part to a scratch buffer of its own, which
that reader's backward adds into the gradient.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from nexec.planner.buffers import BufferTable
from nexec.planner.steps import StepNumbering

if TYPE_CHECKING:  # pragma: no cover
    from nexec.planner.lowering import Graph

__all__ = ["fused_losses", "gradient_buffers"]


def gradient_buffers(g: Graph, steps: StepNumbering, batch: int, names: dict[int, str],
                     table: BufferTable) -> tuple[dict[int, str], dict[tuple[int, int], str]]:
    """Adds the gradient of every tensor that gets one, and the contribution buffers.

    Model inputs get no gradient; nor do integer tensors (ids), nor a tensor that no op
    reads and no loss sees.

    Args:
        g: The fused graph.
        steps: The step numbering (training).
        batch: Batch size the buffers are sized for.
        names: Buffer name of each tensor value (``tensor_names``).
        table: Where the buffers go.

    Returns:
        Tensor id -> gradient buffer, and (op index, input position) -> the buffer that op's
        backward writes its part of that input's gradient to, for every part but the first.
    """
    grad: dict[int, str] = {}
    contributions: dict[tuple[int, int], str] = {}
    for tid, t in g.tensors.items():
        if t.is_input or t.is_integer:
            continue
        writers = [steps.backward(c) for c in t.consumers]
        if t.output_index is not None:
            writers.append(steps.loss)
        if not writers:
            continue
        assert t.producer is not None
        grad[tid] = table.add(f"grad {names[tid]}", "gradient", (batch, *t.shape),
                              min(writers), steps.backward(t.producer))
        reads = sorted(((c, j) for c in set(t.consumers)
                        for j, i in enumerate(g.ops[c].inputs) if i == tid),
                       key=lambda cj: (steps.backward(cj[0]), cj[1]))
        for c, j in reads[0 if t.output_index is not None else 1:]:
            step = steps.backward(c)
            contributions[(c, j)] = table.add(
                f"grad {names[tid]} from {names[g.ops[c].output]}[{j}]", "workspace",
                (batch, *t.shape), step, step)
    return grad, contributions


def fused_losses(g: Graph, fuse_loss: Callable[[int], bool]) -> dict[int, bool]:
    """Output tensor -> whether its loss step gives the gradient before the activation.

    Only an output no op reads can skip its activation's backward (softmax + crossentropy).
    """
    return {out: bool(fuse_loss(out)) and not g.tensors[out].consumers for out in g.outputs}
