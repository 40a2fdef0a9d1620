"""The executor's schedule and every buffer it touches, with lifetimes.

Steps are numbered: forward ops ``0..n-1``; in training the loss step ``n``, the backward of
op ``i`` at ``2n - i``, and the optimizer update at ``2n + 1``. A buffer is live from the step
that first writes it to the last step that reads it (inclusive). Views (a Flatten's output,
a branch's slice of an in-place Concatenate) own no memory: their root's lifetime covers them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from nexec.planner.lowering import Graph, Op
from nexec.planner.plan import Plan

__all__ = ["Buffer", "Schedule", "build_schedule"]


@dataclass
class Buffer:
    """One array of the step. ``view_of`` names the buffer whose memory it uses.

    ``view`` is ``("reshape",)`` or ``("slice", axis, start, stop)`` (axis counts the batch).
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


@dataclass
class Schedule:
    """Buffers and steps of one (plan, batch size, training) triple."""

    plan: Plan
    batch: int
    training: bool
    buffers: dict[str, Buffer]
    value: dict[int, str]  # tensor id -> buffer name of its value
    grad: dict[int, str]  # tensor id -> buffer name of its gradient
    workspaces: dict[tuple[int, str], dict[str, str]]  # (op, "forward"/"backward") -> names
    contributions: dict[tuple[int, int], str] = field(default_factory=dict)  # (op, input)
    concat_in_place: list[str] = field(default_factory=list)
    in_place: list[str] = field(default_factory=list)  # elementwise ops over their input 0
    fused_loss: dict[int, bool] = field(default_factory=dict)  # output tensor -> fused
    memory: Any = None  # MemoryPlan, set by build_schedule

    @property
    def n(self) -> int:
        return len(self.plan.graph.ops)

    def backward_step(self, op_index: int) -> int:
        return 2 * self.n - op_index

    @property
    def steps(self) -> int:
        return 2 * self.n + 2 if self.training else self.n


def build_schedule(plan: Plan, batch: int, training: bool,
                   kernel_of: Callable[[str], Any] | None = None,
                   fuse_loss: Callable[[int], bool] | None = None,
                   alignment: int = 64, naive: bool = False) -> Schedule:
    """Builds the schedule and its memory plan.

    Args:
        plan: The model's plan.
        batch: Batch size the buffers are sized for (smaller batches reuse them).
        training: Whether backward and update steps follow the forward steps.
        kernel_of: Op kind -> kernel (defaults to the registry's kernels for the device).
        fuse_loss: Output tensor id -> whether the loss step gives the gradient with respect
            to the pre-activation (softmax + crossentropy), so backward skips the activation.
        alignment: Byte alignment of every offset in the arena.
        naive: One buffer per tensor, no reuse and no Concatenate in place (the reference
            the planned memory is tested against).
    """
    from nexec.planner.memory import plan_memory

    if kernel_of is None:
        from nexec.plugins import registry

        def kernel_of(kind: str) -> Any:
            return registry().kernel(kind, plan.device)

    g = plan.graph
    n = len(g.ops)
    dtype = g.tensors[g.inputs[0]].dtype
    s = Schedule(plan, batch, training, {}, {}, {}, {})
    kernels = [kernel_of(op.kind) for op in g.ops]
    names = _tensor_names(g)

    def add(name: str, role: str, shape: tuple, first: int, last: int,
            view_of: str | None = None, view: tuple = (), dt: str | None = None) -> str:
        assert name not in s.buffers, f"two buffers named {name!r}"
        s.buffers[name] = Buffer(name, role, tuple(shape), dt or dtype, first, last, view_of, view)
        return name

    def bwd(i: int) -> int:
        return 2 * n - i

    loss_step = n
    # ----- values ---------------------------------------------------------------------------
    for tid, t in g.tensors.items():
        first = 0 if t.producer is None else t.producer
        last = max([first, *t.consumers])
        if training:
            for c in t.consumers:
                if kernels[c].saves_inputs:
                    last = max(last, bwd(c))
            if t.producer is not None and kernels[t.producer].saves_output:
                last = max(last, bwd(t.producer))
            if t.output_index is not None:
                last = max(last, loss_step)
        elif t.output_index is not None:
            last = max(last, n - 1)
        role = "input" if t.is_input else ("saved" if last >= n else "activation")
        s.value[tid] = add(names[tid], role, (batch, *t.shape), first, last)
    # ----- gradients ------------------------------------------------------------------------
    if training:
        for tid, t in g.tensors.items():
            if t.is_input:
                continue
            writers = [bwd(c) for c in t.consumers]
            if t.output_index is not None:
                writers.append(loss_step)
            if not writers:
                continue
            s.grad[tid] = add(f"grad {names[tid]}", "gradient", (batch, *t.shape), min(writers),
                              bwd(t.producer))
            # The first writer (in backward order) writes the gradient; later contributions
            # go to a scratch buffer and are summed in.
            reads = sorted(((c, j) for c in set(t.consumers)
                            for j, i in enumerate(g.ops[c].inputs) if i == tid),
                           key=lambda cj: (bwd(cj[0]), cj[1]))
            for c, j in reads[0 if t.output_index is not None else 1:]:
                s.contributions[(c, j)] = add(
                    f"grad {names[tid]} from {names[g.ops[c].output]}[{j}]", "workspace",
                    (batch, *t.shape), bwd(c), bwd(c))
        if fuse_loss is not None:
            for out in g.outputs:
                s.fused_loss[out] = bool(fuse_loss(out)) and not g.tensors[out].consumers
    # ----- views ----------------------------------------------------------------------------
    for op, kernel in zip(g.ops, kernels):
        if kernel.view_of_input:
            src = op.inputs[0]
            _view(s, s.value[op.output], s.value[src], ("reshape",))
            if training and src in s.grad and len(g.tensors[src].consumers) == 1 \
                    and g.tensors[src].output_index is None:
                _view(s, s.grad[src], s.grad[op.output], ("reshape",))
    if not naive:
        for op in g.ops:
            if op.kind == "Concatenate" and _concat_in_place_ok(g, op, kernels):
                _concat_in_place(s, g, op)
        for op, kernel in zip(g.ops, kernels):
            if kernel.overwrites_input and _overwrite_ok(s, g, op):
                _view(s, s.value[op.output], s.value[op.inputs[0]], ("reshape",))
                s.in_place.append(op.layer.name)
    # ----- workspaces -----------------------------------------------------------------------
    for op, kernel in zip(g.ops, kernels):
        in_shapes = [g.tensors[i].shape for i in op.inputs]
        strided = s.buffers[s.value[op.output]].view[:1] == ("slice",)
        wanted = kernel.workspaces(op.layer, in_shapes, g.tensors[op.output].shape, batch,
                                   training, strided_output=strided)
        for phase in ("forward", "backward") if training else ("forward",):
            step = op.index if phase == "forward" else bwd(op.index)
            table = s.workspaces.setdefault((op.index, phase), {})
            for wname, ws in wanted.items():
                if ws.saved and training:
                    key = f"{names[op.output]}.{wname}"
                    if key not in s.buffers:
                        add(key, "saved", ws.shape, op.index, bwd(op.index), dt=ws.dtype)
                    table[wname] = key
                elif ws.phase in (phase, "both"):
                    table[wname] = add(f"{names[op.output]}.{wname} ({phase})", "workspace",
                                       ws.shape, step, step, dt=ws.dtype)
    s.memory = plan_memory(s, alignment, reuse=not naive)
    return s


def _tensor_names(g: Graph) -> dict[int, str]:
    names: dict[int, str] = {}
    seen: set[str] = set()
    for tid, t in g.tensors.items():
        name = t.name if t.name not in seen else f"{t.name}#{tid}"
        seen.add(name)
        names[tid] = name
    return names


def _view(s: Schedule, name: str, parent: str, view: tuple) -> None:
    b = s.buffers[name]
    b.view_of, b.view = parent, view


def _concat_in_place_ok(g: Graph, op: Op, kernels: list[Any]) -> bool:
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
        k = kernels[t.producer]
        if not k.strided_output or k.view_of_input:
            return False
    return True


def _overwrite_ok(s: Schedule, g: Graph, op: Op) -> bool:
    """An elementwise op may write over input 0 when that value dies at this op, and
    neither buffer takes part in another sharing (a concat slice, a view of it)."""
    src, out = s.buffers[s.value[op.inputs[0]]], s.buffers[s.value[op.output]]
    t = g.tensors[op.inputs[0]]
    if t.is_input or t.output_index is not None or op.inputs.count(op.inputs[0]) > 1:
        return False
    if src.last != op.index or src.view_of is not None or out.view_of is not None:
        return False
    return not any(b.view_of in (src.name, out.name) for b in s.buffers.values())


def _concat_in_place(s: Schedule, g: Graph, op: Op) -> None:
    start = 0
    axis = len(g.tensors[op.output].shape)
    for i in op.inputs:
        width = g.tensors[i].shape[-1]
        view = ("slice", axis, start, start + width)
        _view(s, s.value[i], s.value[op.output], view)
        if i in s.grad and op.output in s.grad:
            _view(s, s.grad[i], s.grad[op.output], view)
        start += width
    s.concat_in_place.append(op.layer.name)
