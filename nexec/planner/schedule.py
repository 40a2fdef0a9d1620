"""The executor's schedule and every buffer it touches, with lifetimes.

``build_schedule`` runs the stages in order, each one module and one concept:

1. ``liveness``: one buffer per tensor value, live from its write to its last read;
2. ``backward`` (training): gradient buffers, extra contributions, fused losses;
3. ``aliasing``: views (Flatten reshapes, in-place Concatenate slices, ops writing over
   their input) own no memory; their roots live as long as they do;
4. ``workspaces``: the kernels' scratch arrays;
5. ``memory``: arena offsets.

Step numbers (``steps.StepNumbering``): forward ops ``0..n-1``; in training the loss step
``n``, the backward of op ``i`` at ``2n - i``, and the optimizer update at ``2n + 1``. A buffer
is live from the step that first writes it to the last step that reads it (inclusive).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nexec.planner.algorithms import apply_choices
from nexec.planner.aliasing import plan_views
from nexec.planner.backward import fused_losses, gradient_buffers
from nexec.planner.buffers import Buffer, BufferTable, tensor_names
from nexec.planner.liveness import value_buffers
from nexec.planner.memory import MemoryPlan, parameter_records, plan_memory
from nexec.planner.plan import Plan
from nexec.planner.steps import StepNumbering
from nexec.planner.workspaces import workspace_buffers
from nexec.plugins import registry

if TYPE_CHECKING:  # pragma: no cover
    from nexec.ops.base import Kernel

__all__ = ["Buffer", "Schedule", "build_schedule"]


@dataclass
class Schedule:
    """Buffers and steps of one (plan, batch size, training) triple."""

    plan: Plan
    batch: int
    training: bool
    numbering: StepNumbering
    buffers: dict[str, Buffer]
    value: dict[int, str]  # tensor id -> buffer name of its value
    grad: dict[int, str]  # tensor id -> buffer name of its gradient
    workspaces: dict[tuple[int, str], dict[str, str]]  # (op, "forward"/"backward") -> names
    contributions: dict[tuple[int, int], str]  # (op, input) -> its part of the gradient
    concat_in_place: list[str]  # Concatenate layers whose inputs are slices of the output
    in_place: list[str]  # elementwise ops over their input 0
    fused_loss: dict[int, bool]  # output tensor -> fused
    memory: MemoryPlan

    @property
    def n(self) -> int:
        return self.numbering.n

    def backward_step(self, op_index: int) -> int:
        return self.numbering.backward(op_index)

    @property
    def steps(self) -> int:
        return self.numbering.count


def build_schedule(plan: Plan, batch: int, training: bool,
                   kernel_of: Callable[[str], Kernel] | None = None,
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
    if kernel_of is None:
        def kernel_of(kind: str) -> Kernel:
            return registry().kernel(kind, plan.device)

    plan = plan.for_steps(training)  # inference may fold ops into others
    apply_choices(plan, training)  # Conv2D workspaces depend on the algorithm
    g = plan.graph
    kernels = [kernel_of(op.kind) for op in g.ops]
    numbering = StepNumbering(len(g.ops), training)
    names = tensor_names(g)
    table = BufferTable(g.dtype)
    value = value_buffers(g, kernels, numbering, batch, names, table)
    grad: dict[int, str] = {}
    contributions: dict[tuple[int, int], str] = {}
    fused: dict[int, bool] = {}
    if training:
        grad, contributions = gradient_buffers(g, numbering, batch, names, table)
        if fuse_loss is not None:
            fused = fused_losses(g, fuse_loss)
    concat_in_place, in_place = plan_views(g, kernels, table, value, grad, share=not naive,
                                           strided_output=_strided_output(plan.device))
    workspaces = workspace_buffers(g, kernels, numbering, batch, names, value, table)
    memory = plan_memory(table, numbering.count, alignment, reuse=not naive,
                         persistent=parameter_records(plan, training),
                         concat_in_place=concat_in_place, in_place=in_place)
    return Schedule(plan, batch, training, numbering, table, value, grad, workspaces,
                    contributions, concat_in_place, in_place, fused, memory)


def _strided_output(device: str) -> bool:
    """The device's capability; True for a device name the registry does not know (plans
    drawn for a device that is not installed here)."""
    devices = registry().devices
    return devices[device].strided_output if device in devices else True
