"""Workspaces: the scratch arrays each op's kernel asks for, as buffers with lifetimes.

A workspace lives only during the step that uses it (forward, backward, or one buffer for
each when the kernel asks for ``phase="both"``), except a ``saved`` one, which training keeps
from the op's forward step to its backward step (a dropout mask), and a ``prepared`` one
(inference: weights the kernel derives once, ``Kernel.prepare``), which lives through every
step, so that nothing else overwrites it between one inference step and the next. Kernels
are told whether their output became a strided slice (``nexec.planner.aliasing``), since
writing one may need scratch of its own, so this stage runs after aliasing.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nexec.errors import PluginError
from nexec.planner.buffers import BufferTable
from nexec.planner.steps import StepNumbering

if TYPE_CHECKING:  # pragma: no cover
    from nexec.ops.base import Kernel
    from nexec.planner.lowering import Graph

__all__ = ["workspace_buffers"]


def workspace_buffers(g: Graph, kernels: Sequence[Kernel], steps: StepNumbering, batch: int,
                      names: dict[int, str], value: dict[int, str], table: BufferTable
                      ) -> dict[tuple[int, str], dict[str, str]]:
    """Adds every op's workspaces to ``table``.

    Args:
        g: The fused graph.
        kernels: The kernel of each op (same order as ``g.ops``).
        steps: The step numbering.
        batch: Batch size the workspaces are sized for.
        names: Buffer name of each tensor value (workspaces are named after the op's output).
        value: Tensor id -> value buffer (views already planned).
        table: Where the buffers go.

    Returns:
        (op index, ``"forward"``/``"backward"``) -> the kernel's workspace name -> buffer
        (a prepared workspace is listed with the forward's); for an op with a folded affine
        (inference), (op index, ``"fold"``) -> ``"affine"`` (its scale and shift),
        ``"weight"`` and ``"bias"`` (the op's folded parameters): prepared buffers too.
    """
    phases = ("forward", "backward") if steps.training else ("forward",)
    workspaces: dict[tuple[int, str], dict[str, str]] = {}
    for op, kernel in zip(g.ops, kernels):
        in_shapes = [g.tensors[i].shape for i in op.inputs]
        strided = table[value[op.output]].view[:1] == ("slice",)
        wanted = kernel.workspaces(op.layer, in_shapes, g.tensors[op.output].shape, batch,
                                   steps.training, strided_output=strided)
        out = names[op.output]
        for phase in phases:
            step = steps.forward(op.index) if phase == "forward" else steps.backward(op.index)
            names_of = workspaces.setdefault((op.index, phase), {})
            for wname, ws in wanted.items():
                if ws.saved and steps.training:
                    key = f"{out}.{wname}"
                    if key not in table:
                        table.add(key, "saved", ws.shape, steps.forward(op.index),
                                  steps.backward(op.index), dtype=ws.dtype)
                    names_of[wname] = key
                elif ws.phase == "prepared":
                    if steps.training:
                        raise PluginError(f"{kernel!r} asked for a prepared workspace "
                                          f"{wname!r} in training; prepared workspaces are "
                                          "for inference only")
                    names_of[wname] = _prepared(table, f"{out}.{wname} (prepared)",
                                                ws.shape, steps, ws.dtype)
                elif ws.phase in (phase, "both"):
                    names_of[wname] = table.add(f"{out}.{wname} ({phase})", "workspace",
                                                ws.shape, step, step, dtype=ws.dtype)
        if op.affine is not None:
            a = op.affine
            workspaces[(op.index, "fold")] = {
                wname: _prepared(table, f"{out}.{a.layer.name}.{wname} (prepared)", shape,
                                 steps)
                for wname, shape in (("affine", (2, a.channels)), ("weight", a.weight_shape),
                                     ("bias", (a.channels,)))}
    return workspaces


def _prepared(table: BufferTable, key: str, shape: tuple, steps: StepNumbering,
              dtype: str | None = None) -> str:
    """A buffer kept through every step (``prepared``), added once."""
    if key not in table:
        table.add(key, "prepared", shape, 0, steps.count - 1, dtype=dtype)
    return key
