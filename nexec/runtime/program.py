"""A program: one step for one batch size, as a list of uniform instructions.

Every instruction is a kernel function and its arguments; each array argument is a
:class:`Ref`, a place in one of the program's memories (the arena, the flat parameters and
gradients, the targets, the result slots, the optimizer's state) given as byte offset, shape,
strides and dtype. Views are made from the references only at the end
(:meth:`Program.materialise`), so the same list can be run by the executor's Python loop or
handed to a compiler that indexes the memories itself. Forward, loss values, metrics,
backward and the optimizer update are all instructions; ``phase`` says which.

Arrays in no known memory (a zero-length "skip this output" array, a device array whose
address the device does not expose) stay literal arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["Ref", "Instruction", "Program", "PHASES"]

#: The phases of a step, in the order they run. ``prepare`` (inference) runs only when the
#: parameters changed since it last ran (``Executor.prepare``); no compiled step holds it.
PHASES = ("prepare", "forward", "loss", "metric", "backward", "update")


@dataclass(frozen=True)
class Ref:
    """An array as a place in one memory of the program."""

    memory: str
    offset: int  # bytes from the memory's start
    shape: tuple
    strides: tuple  # bytes
    dtype: str

    def view(self, base: np.ndarray) -> np.ndarray:
        return np.ndarray(self.shape, self.dtype, buffer=base, offset=self.offset,
                          strides=self.strides)


@dataclass(frozen=True)
class Instruction:
    """One kernel call of a step: ``fn(*args)`` once ``args`` are views."""

    phase: str
    fn: Callable[..., Any]
    args: tuple
    #: Who contributed the call (``runtime/checking.Origin``), for error messages.
    origin: Any = field(default=None, compare=False)


@dataclass
class Program:
    """All instructions of one step for one batch size, and where its data goes in and out.

    Attributes:
        memories: Name -> the base array each :class:`Ref` points into.
        inputs, outputs, targets: Where batches are copied in and predictions read out.
        weights: Per output with a loss, its sample weights, one per loss row (``(batch,
            *output_shape[:-1])``); empty unless the program was bound for weighted
            training (``fit(sample_weight=...)``).
        loss_slots: Per model output with a loss: ``(output index, weight, slot)``; the loss
            value instruction writes the batch mean into ``slot[0]``.
        metric_slots: Per metric: ``(output index, log name, slot, total)``; ``total`` is
            what the batch's sum is divided by.
        threaded: Some op runs shards on several threads (BLAS then runs on one).
    """

    batch: int
    instructions: list[Instruction] = field(default_factory=list)
    memories: dict[str, Any] = field(default_factory=dict)
    inputs: list[Any] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)
    targets: list[Any] = field(default_factory=list)
    weights: list[Any] = field(default_factory=list)
    loss_slots: list[tuple[int, float, Any]] = field(default_factory=list)
    metric_slots: list[tuple[int, str, Any, int]] = field(default_factory=list)
    threaded: bool = False
    #: The bound calls of each phase, made by :meth:`materialise`.
    calls: dict[str, list[tuple]] = field(default_factory=dict)
    #: ``inputs``, ``outputs``, ``targets``, ``weights`` and the slots as references
    #: (before views).
    places: dict[str, list[Any]] = field(default_factory=dict)
    #: Per mode (``train``, ``evaluate``, ``forward``): its whole-step compiled function
    #: (``runtime/wholestep.py``), or ``False`` once the executor keeps the loop for it.
    compiled: dict[str, Any] = field(default_factory=dict)
    #: Per mode: ``[steps, seconds]`` run by the Python loop (what ``jit_step="auto"`` reads).
    loop_stats: dict[str, list] = field(default_factory=dict)
    #: The phases whose calls were checked before their first run (``runtime/checking.py``).
    checked: set = field(default_factory=set)
    #: The ``ParamStore.version`` the ``prepare`` calls last ran for (-1: never).
    prepared: int = -1
    #: The device's :meth:`~nexec.devices.base.Device.specialise`, applied to every call added.
    specialise: Callable[[Callable[..., Any], tuple], tuple[Callable[..., Any], tuple]] | None \
        = None

    def add(self, phase: str, calls: list[tuple], origin: Any = None) -> None:
        """Appends bound ``(fn, args)`` calls of ``phase``, their arrays as references;
        ``origin`` says who contributed them."""
        for fn, args in calls:
            if self.specialise is not None:
                fn, args = self.specialise(fn, args)
            self.instructions.append(Instruction(phase, fn, self.refs(args), origin))

    def bound(self, phases: tuple[str, ...]) -> list[tuple]:
        """``(fn, args, origin)`` of every call of ``phases`` in run order, args as views
        (after :meth:`materialise`)."""
        out = []
        for phase in phases:
            origins = [ins.origin for ins in self.instructions if ins.phase == phase]
            out += [(fn, args, o) for (fn, args), o in zip(self.calls.get(phase, []), origins)]
        return out

    def refs(self, value: Any) -> Any:
        """``value`` with every NumPy array (in tuples too) as a :class:`Ref` where it can."""
        if isinstance(value, tuple):
            return tuple(self.refs(v) for v in value)
        if isinstance(value, np.ndarray) and value.size:
            return self.ref(value)
        return value

    def ref(self, a: np.ndarray) -> Ref | np.ndarray:
        """``a`` as a place in one of the memories (``a`` itself when it is in none)."""
        address = a.ctypes.data
        for name, base in self.memories.items():
            if not isinstance(base, np.ndarray):
                continue
            start = base.ctypes.data
            if start <= address < start + base.nbytes:
                return Ref(name, address - start, a.shape, a.strides, a.dtype.str)
        return a

    def materialise(self) -> None:
        """Makes views of every reference and groups the calls by phase."""
        views: dict[Ref, np.ndarray] = {}

        def view(value: Any) -> Any:
            if isinstance(value, tuple):
                return tuple(view(v) for v in value)
            if isinstance(value, Ref):
                if value not in views:
                    views[value] = value.view(self.memories[value.memory])
                return views[value]
            return value

        self.places = {"inputs": self.inputs, "outputs": self.outputs, "targets": self.targets,
                       "weights": self.weights, "loss_slots": self.loss_slots,
                       "metric_slots": self.metric_slots}
        self.calls = {phase: [] for phase in PHASES}
        for ins in self.instructions:
            self.calls[ins.phase].append((ins.fn, view(ins.args)))
        self.inputs, self.outputs, self.targets, self.weights = (
            [view(a) for a in arrays]
            for arrays in (self.inputs, self.outputs, self.targets, self.weights))
        self.loss_slots = [(k, w, view(s)) for k, w, s in self.loss_slots]
        self.metric_slots = [(k, n, view(s), t) for k, n, s, t in self.metric_slots]

    # ----- the phases as bound calls ---------------------------------------------------------
    @property
    def forward(self) -> list[tuple]:
        return self.calls.get("forward", [])

    @property
    def backward(self) -> list[tuple]:
        """Loss gradients and the backward pass (the update is :attr:`update`)."""
        return self.calls.get("backward", [])

    @property
    def losses(self) -> list[tuple]:
        return self.calls.get("loss", [])

    @property
    def metrics(self) -> list[tuple]:
        return self.calls.get("metric", [])

    @property
    def update(self) -> list[tuple]:
        return self.calls.get("update", [])
