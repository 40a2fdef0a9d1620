"""Op kernel of :class:`nexec.layers.mask_combine.MaskCombine`: the OR of the masks of a merge
whose inputs are masked by different sources (``mask_or``, pairwise, into the int32 output).

Masks carry no gradient: backward does nothing, and nothing is kept for it.
"""
from __future__ import annotations

from nexec.ops.base import BoundCall, Call, rows
from nexec.ops.builtin import BuiltinKernel

__all__ = ["OP_KERNEL_CLASSES", "MaskCombineKernel"]


class MaskCombineKernel(BuiltinKernel):
    """``out = (m0 != 0) | (m1 != 0) | ...`` as 0/1, each mask a 2-D (rows, steps) view."""

    layer_type = "MaskCombine"
    saves_inputs = False
    saves_output = False

    def forward(self, call: Call) -> list[BoundCall]:
        ms = [rows(m) for m in call.inputs]
        out = rows(call.output)
        calls: list[BoundCall] = [(self.k.mask_or, (ms[0], ms[1], out))]
        calls += [(self.k.mask_or, (out, m, out)) for m in ms[2:]]
        return calls

    def backward(self, call: Call) -> list[BoundCall]:
        return []


OP_KERNEL_CLASSES = (MaskCombineKernel,)
