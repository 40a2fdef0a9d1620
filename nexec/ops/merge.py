"""Op kernels of the merge layers beyond Add and Concatenate: Subtract, Multiply, Average,
Maximum, Minimum and Dot.

Every array is taken as a 2-D row view (``rows``), so the elementwise merges work on any
rank. None fuses an activation (Keras' merge layers take none; an ``Activation`` after one
stays its own op). A large image tensor is split over the convolutions' intra-op shards,
forward and backward (``ops/elementwise.py``); Dot is not.
"""
from __future__ import annotations

from typing import Any

from nexec.kernels.cpu.merge import MERGE_MAX, MERGE_MIN, MERGE_MUL, MERGE_SUB, MERGE_SUM
from nexec.ops.base import BoundCall, Call, Workspace, empty_like_skip, rows
from nexec.ops.builtin import BuiltinKernel
from nexec.ops.elementwise import split_rows

__all__ = ["OP_KERNEL_CLASSES", "SubtractKernel", "MultiplyKernel", "AverageKernel",
           "MaximumKernel", "MinimumKernel", "DotKernel"]


def _chain(k: Any, call: Call, op: int, part: Any) -> list[BoundCall]:
    """out = x0 <op> x1 <op> ... <op> xn over the rows ``part`` keeps."""
    xs = [part(rows(x)) for x in call.inputs]
    out = part(rows(call.output))
    calls: list[BoundCall] = [(k.merge_forward, (xs[0], xs[1], op, out))]
    calls += [(k.merge_accumulate, (out, x, op)) for x in xs[2:]]
    return calls


def _split(kernel: BuiltinKernel, call: Call, build: Any) -> list[BoundCall]:
    """``build``'s calls, split over the intra-op shards for a large image tensor."""
    return split_rows(kernel.dev, call.output, build, len(call.inputs) + 1)


class SubtractKernel(BuiltinKernel):
    """``x0 - x1``; backward ``dx0 = dy``, ``dx1 = -dy``."""

    layer_type = "Subtract"
    saves_inputs = False
    saves_output = False
    strided_output = True
    overwrites_input = True

    def forward(self, call: Call) -> list[BoundCall]:
        return _split(self, call, lambda part: _chain(self.k, call, MERGE_SUB, part))

    def backward(self, call: Call) -> list[BoundCall]:
        d0, d1 = call.d_inputs

        def build(part: Any) -> list[BoundCall]:
            dy = part(rows(call.d_output))
            calls: list[BoundCall] = []
            if d0 is not None:
                calls.append((self.k.copy_into, (part(rows(d0)), dy)))
            if d1 is not None:
                calls.append((self.k.scale_into, (part(rows(d1)), dy, -1.0)))
            return calls

        return _split(self, call, build)


class AverageKernel(BuiltinKernel):
    """Sum, then times ``1/n``; backward ``dx_i = dy / n``."""

    layer_type = "Average"
    saves_inputs = False
    saves_output = False
    strided_output = True
    overwrites_input = True

    def forward(self, call: Call) -> list[BoundCall]:
        def build(part: Any) -> list[BoundCall]:
            out = part(rows(call.output))
            return _chain(self.k, call, MERGE_SUM, part) + [
                (self.k.scale_into, (out, out, 1.0 / len(call.inputs)))]

        return _split(self, call, build)

    def backward(self, call: Call) -> list[BoundCall]:
        s = 1.0 / len(call.inputs)
        return _split(self, call, lambda part: [
            (self.k.scale_into, (part(rows(d)), part(rows(call.d_output)), s))
            for d in call.d_inputs if d is not None])


class MultiplyKernel(BuiltinKernel):
    """Product; backward ``dx_i = dy * prod(x_j, j != i)`` (n - 1 passes per input)."""

    layer_type = "Multiply"
    saves_inputs = True
    saves_output = False
    strided_output = True

    def forward(self, call: Call) -> list[BoundCall]:
        return _split(self, call, lambda part: _chain(self.k, call, MERGE_MUL, part))

    def backward(self, call: Call) -> list[BoundCall]:
        def build(part: Any) -> list[BoundCall]:
            dy = part(rows(call.d_output))
            xs = [part(rows(x)) for x in call.inputs]
            calls: list[BoundCall] = []
            for i, d in enumerate(call.d_inputs):
                if d is None:
                    continue
                others = [x for j, x in enumerate(xs) if j != i]
                d2 = part(rows(d))
                calls.append((self.k.merge_forward, (dy, others[0], MERGE_MUL, d2)))
                calls += [(self.k.merge_accumulate, (d2, x, MERGE_MUL)) for x in others[1:]]
            return calls

        return _split(self, call, build)


class _ExtremeKernel(BuiltinKernel):
    """Maximum / Minimum: the gradient goes to the first input attaining the extreme."""

    op = MERGE_MAX
    saves_inputs = True
    saves_output = True
    strided_output = True

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201, ANN202
                   strided_output=False):  # noqa: ANN001
        return {"rest": Workspace((batch, *out_shape), phase="backward")} if training else {}

    def forward(self, call: Call) -> list[BoundCall]:
        return _split(self, call, lambda part: _chain(self.k, call, self.op, part))

    def backward(self, call: Call) -> list[BoundCall]:
        if all(d is None for d in call.d_inputs):
            return []

        def build(part: Any) -> list[BoundCall]:
            y, rest = part(rows(call.output)), part(rows(call.workspace["rest"]))
            calls: list[BoundCall] = [(self.k.copy_into, (rest, part(rows(call.d_output))))]
            for x, d in zip(call.inputs, call.d_inputs):
                x2 = part(rows(x))
                calls.append((self.k.extreme_grad, (x2, y, rest, part(rows(d)) if d is not None
                                                    else empty_like_skip(x2))))
            return calls

        return _split(self, call, build)


class MaximumKernel(_ExtremeKernel):
    layer_type = "Maximum"
    op = MERGE_MAX


class MinimumKernel(_ExtremeKernel):
    layer_type = "Minimum"
    op = MERGE_MIN


class DotKernel(BuiltinKernel):
    """Row-wise dot product of two 2-D inputs (cosine similarity with ``normalize``)."""

    layer_type = "Dot"
    saves_inputs = True
    saves_output = False

    def forward(self, call: Call) -> list[BoundCall]:
        a, b = call.inputs
        return [(self.k.dot_forward, (a, b, call.layer.normalize, call.output))]

    def backward(self, call: Call) -> list[BoundCall]:
        a, b = call.inputs
        da, db = call.d_inputs
        if da is None and db is None:
            return []
        return [(self.k.dot_backward, (
            a, b, call.d_output, call.layer.normalize,
            da if da is not None else empty_like_skip(a),
            db if db is not None else empty_like_skip(b)))]


OP_KERNEL_CLASSES = (SubtractKernel, MultiplyKernel, AverageKernel, MaximumKernel,
                     MinimumKernel, DotKernel)
