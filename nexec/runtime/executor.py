"""The executor: binds a plan's kernels to views of one arena, then runs them.

Binding happens once per batch size: every op kernel returns ``(function, args)`` pairs over
arena views, so a step is a loop over pre-bound calls with no allocation. The arena is sized
for the largest batch seen; a smaller batch (the last of an epoch) binds views of the same
arena at the same offsets.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from nexec.kernels.activations import LINEAR, code_of
from nexec.ops.base import BoundCall, Call, rows
from nexec.planner.plan import Plan
from nexec.planner.schedule import Schedule, build_schedule
from nexec.runtime.memory import ALIGNMENT, kernel_fn, memory_for
from nexec.runtime.params import ParamStore
from nexec.runtime.threads import get_num_threads, run_shards, single_threaded_blas

__all__ = ["Executor", "Program", "Objective"]


@dataclass
class Objective:
    """What training optimises for one output: a loss, its weight, its metrics."""

    loss: Any  # nexec.training.losses.Loss
    weight: float = 1.0
    metrics: list[tuple[str, Callable[..., int], str, tuple]] = field(default_factory=list)
    # (name, count kernel, denominator: "rows" or "elements", extra kernel arguments)


@dataclass
class Program:
    """All bound calls of one step for one batch size."""

    batch: int
    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    targets: list[np.ndarray] = field(default_factory=list)
    forward: list[BoundCall] = field(default_factory=list)
    loss_values: list[tuple[int, float, Callable[..., float], tuple]] = field(default_factory=list)
    metrics: list[tuple[int, str, Callable[..., int], tuple, int]] = field(default_factory=list)
    backward: list[BoundCall] = field(default_factory=list)
    #: Some op runs shards on several threads: BLAS is held at one thread during each step.
    threaded: bool = False


class Executor:
    """Runs one plan in one mode (training or inference) for any batch size.

    Args:
        plan: The model's plan.
        store: The flat parameters the layers' arrays are views of.
        training: Whether programs include backward and the optimizer update.
        objectives: Per model output, the loss and metrics (training and evaluation).
        optimizer: Updates ``store.values`` from ``store.grads`` (training only).
        naive_memory: One buffer per tensor instead of the memory plan (for comparison).
    """

    def __init__(self, plan: Plan, store: ParamStore, training: bool = False,
                 objectives: list[Objective] | None = None, optimizer: Any = None,
                 naive_memory: bool = False) -> None:
        from nexec.plugins import registry

        self.plan = plan
        self.store = store
        self.training = training
        self.objectives = objectives or []
        self.optimizer = optimizer
        self.naive_memory = naive_memory
        self.memory = memory_for(plan.device)
        self.params = store.on(plan.device)  # the store's arrays where the kernels run
        self.kernels = [registry().kernel(op.kind, plan.device) for op in plan.graph.ops]
        self.schedule: Schedule | None = None
        self._arena: np.ndarray | None = None
        self._programs: dict[int, Program] = {}
        self._targets: list[np.ndarray] = []
        self._scratch: dict[str, np.ndarray] = {}
        self._staging: dict = {}  # pinned host buffers of batches on their way to a device
        self._threads = get_num_threads()

    # ----- planning ---------------------------------------------------------------------------
    def _fuse_loss(self, out: int) -> bool:
        k = self.plan.graph.outputs.index(out)
        act = self.plan.graph.ops[self.plan.graph.tensors[out].producer].activation \
            if self.plan.graph.tensors[out].producer is not None else None
        return act in self.objectives[k].loss.fused if self.objectives else False

    def _schedule(self, batch: int) -> Schedule:
        kinds = {op.kind: k for op, k in zip(self.plan.graph.ops, self.kernels)}
        return build_schedule(self.plan, batch, self.training, kernel_of=kinds.__getitem__,
                              fuse_loss=self._fuse_loss if self.training else None,
                              alignment=ALIGNMENT, naive=self.naive_memory)

    def program(self, batch: int) -> Program:
        """The bound program for ``batch`` rows, binding it on first use."""
        threads = get_num_threads()
        if threads != self._threads:  # op kernels split their work by it: plan anew
            self._threads, self.schedule = threads, None
            self._programs.clear()
        prog = self._programs.get(batch)
        if prog is not None:
            return prog
        if self.schedule is None or batch > self.schedule.batch:
            self.schedule = self._schedule(batch)
            self._arena = self.memory.arena(self.schedule.memory.arena_bytes)
            self._programs.clear()
            self._staging.clear()
            self._targets = self._make_targets(batch)
        sched = self.schedule if batch == self.schedule.batch else self._schedule(batch)
        prog = self._bind(sched, batch)
        self._programs[batch] = prog
        return prog

    def _make_targets(self, batch: int) -> list[np.ndarray]:
        g = self.plan.graph
        out = []
        for tid, obj in zip(g.outputs, self.objectives):
            if obj.loss.sparse:
                out.append(self.memory.zeros((batch, *g.tensors[tid].shape[:-1]), np.int64))
            else:
                out.append(self.memory.zeros((batch, *g.tensors[tid].shape),
                                             g.tensors[tid].dtype))
        return out

    # ----- binding ------------------------------------------------------------------------------
    def _arrays(self, sched: Schedule) -> Callable[[str], np.ndarray]:
        """Buffer name -> view of the arena (offsets from the largest batch's plan)."""
        assert self.schedule is not None and self._arena is not None
        offsets = self.schedule.buffers
        made: dict[str, np.ndarray] = {}

        def get(name: str) -> np.ndarray:
            if name in made:
                return made[name]
            b = sched.buffers[name]
            if b.view_of is None:
                a = self.memory.view(self._arena, offsets[name].offset, b.nbytes, b.dtype,
                                     b.shape)
            elif b.view[0] == "reshape":
                a = self.memory.reshape(get(b.view_of), b.shape)
            else:
                _, axis, lo, hi = b.view
                parent = get(b.view_of)
                index = [slice(None)] * parent.ndim
                index[axis] = slice(lo, hi)
                a = parent[tuple(index)]
            made[name] = a
            return a

        return get

    def _bind(self, sched: Schedule, batch: int) -> Program:
        device = self.plan.device
        accumulate = kernel_fn(device, "merge", "accumulate")
        copy_into = kernel_fn(device, "merge", "copy_into")
        g = self.plan.graph
        arr = self._arrays(sched)
        prog = Program(batch, [arr(sched.value[i]) for i in g.inputs],
                       [arr(sched.value[o]) for o in g.outputs])
        for op, kernel in zip(g.ops, self.kernels):
            ws = {k: arr(v) for k, v in sched.workspaces.get((op.index, "forward"), {}).items()}
            call = Call(op.layer, code_of(op.activation), [arr(sched.value[i]) for i in op.inputs],
                        arr(sched.value[op.output]), self.params.params_of(op.layer), ws,
                        self.training)
            prog.forward += _checked(kernel, "forward", kernel.forward(call), op)
        if not self.objectives:
            return _mark_threaded(prog)
        prog.targets = [t[:batch] for t in self._targets]
        for k, (out, obj) in enumerate(zip(g.outputs, self.objectives)):
            p = rows(arr(sched.value[out]))
            y = prog.targets[k] if obj.loss.sparse else rows(prog.targets[k])
            fn, args = obj.loss.bind_value(p, y)
            if device != "cpu":  # device reductions write into a slot read back per step
                fn, args = self._device_twin(fn), args + (self._slot("loss", k, np.float64),)
            prog.loss_values.append((k, obj.weight, fn, args))
            for name, count, denom, extra in obj.metrics:
                total = p.shape[0] if denom == "rows" else p.size
                args = (p, y, *extra)
                if device != "cpu":
                    count, args = self._device_twin(count), \
                        args + (self._slot("count", len(prog.metrics), np.int64),)
                prog.metrics.append((k, name, count, args, total))
            if self.training and out in sched.grad:  # a model input as output has none
                act = g.ops[g.tensors[out].producer].activation \
                    if sched.fused_loss.get(out) else None
                fn, args = obj.loss.bind_grad(p, y, obj.weight / p.shape[0],
                                              rows(arr(sched.grad[out])), act)
                prog.backward.append((self._device_twin(fn) if device != "cpu" else fn, args))
        if not self.training:
            return _mark_threaded(prog)
        written: set[int] = set()
        for op, kernel in reversed(list(zip(g.ops, self.kernels))):
            after: list[BoundCall] = []
            d_inputs: list[np.ndarray | None] = []
            for j, tid in enumerate(op.inputs):
                if tid not in sched.grad:
                    d_inputs.append(None)
                elif (op.index, j) in sched.contributions:
                    part = arr(sched.contributions[(op.index, j)])
                    d_inputs.append(part)
                    after.append((accumulate, (rows(arr(sched.grad[tid])), rows(part))))
                else:
                    d_inputs.append(arr(sched.grad[tid]))
            d_params = self.params.grads_of(op.layer)
            if id(op.layer) in written:  # a shared layer: sum this call's share in
                d_params = {n: self._scratch_like(f"{op.index}.{n}", p)
                            for n, p in d_params.items()}
                after += [(accumulate, (_flat(self.params.grads_of(op.layer)[n]), _flat(p)))
                          for n, p in d_params.items()]
            written.add(id(op.layer))
            act = LINEAR if sched.fused_loss.get(op.output) else code_of(op.activation)
            ws = {k: arr(v) for k, v in sched.workspaces.get((op.index, "backward"), {}).items()}
            call = Call(op.layer, act, [arr(sched.value[i]) for i in op.inputs],
                        arr(sched.value[op.output]), self.params.params_of(op.layer), ws, True,
                        arr(sched.grad[op.output]), d_inputs, d_params)
            calls = _checked(kernel, "backward", kernel.backward(call), op)
            d0 = d_inputs[0] if d_inputs else None
            if kernel.view_of_input and d0 is not None and \
                    not np.shares_memory(d0, call.d_output):
                calls = [(copy_into, (self._flat2(d0), self._flat2(call.d_output)))]
            prog.backward += calls + after
        return _mark_threaded(prog)

    def _scratch_like(self, key: str, like: np.ndarray) -> np.ndarray:
        a = self._scratch.get(key)
        if a is None or a.shape != like.shape:
            a = self._scratch[key] = self.memory.zeros(like.shape, like.dtype)
        return a

    def _slot(self, kind: str, index: int, dtype: Any) -> Any:
        """A 1-element device array a reduction kernel writes its result into."""
        return self._scratch_like(f"{kind} slot {index}", np.zeros(1, dtype))

    def _device_twin(self, cpu_fn: Callable[..., Any]) -> Callable[..., Any]:
        """The device kernel with the same module and name as a CPU kernel function."""
        family = cpu_fn.__module__.rsplit(".", 1)[-1]
        return kernel_fn(self.plan.device, family, cpu_fn.__name__)

    def _flat2(self, a: Any) -> Any:
        return self.memory.reshape(a, (a.shape[0], -1))

    # ----- data in and out ------------------------------------------------------------------------
    def load(self, prog: Program, sources: list[np.ndarray], lo: int, hi: int,
             order: np.ndarray | None = None) -> None:
        """Copies rows ``lo:hi`` (of ``order`` when shuffled) of inputs then targets in."""
        for dst, src in zip(prog.inputs + prog.targets, sources):
            self.memory.load(dst, src, lo, hi, order, self._staging)

    def read_outputs(self, prog: Program, results: list[np.ndarray], lo: int, hi: int) -> None:
        for res, out in zip(results, prog.outputs):
            self.memory.read(res[lo:hi], out)

    # ----- running ------------------------------------------------------------------------------
    def run_forward(self, prog: Program) -> None:
        with _blas_for(prog):
            for fn, args in prog.forward:
                fn(*args)

    def train_step(self, prog: Program, losses: list[float], counts: list[int]) -> float:
        """Forward, loss, metrics, backward, update.

        Per-output losses are written into ``losses``; metric counts are added to ``counts``
        (one per ``prog.metrics`` entry) before backward reuses the outputs' memory.
        """
        with _blas_for(prog):
            total = self.evaluate_step(prog, losses, counts)
            for fn, args in prog.backward:
                fn(*args)
        t = self.store.trainable_size
        self.optimizer.step(self.params.values[:t], self.params.grads[:t])
        return total

    def evaluate_step(self, prog: Program, losses: list[float], counts: list[int]) -> float:
        """Forward, loss and metrics only (validation, ``evaluate``)."""
        if self.plan.device != "cpu":
            return self._device_evaluate_step(prog, losses, counts)
        self.run_forward(prog)
        total = 0.0
        for k, weight, fn, args in prog.loss_values:
            value = fn(*args)
            losses[k] = value
            total += weight * value
        for i, (_, _, fn, args, _) in enumerate(prog.metrics):
            counts[i] += fn(*args)
        return total

    def _device_evaluate_step(self, prog: Program, losses: list[float],
                              counts: list[int]) -> float:
        for fn, args in prog.forward:
            fn(*args)
        total = 0.0
        for k, weight, fn, args in prog.loss_values:
            fn(*args)
            value = float(args[-1].copy_to_host()[0])
            losses[k] = value
            total += weight * value
        for i, (_, _, fn, args, _) in enumerate(prog.metrics):
            fn(*args)
            counts[i] += int(args[-1].copy_to_host()[0])
        return total


def _mark_threaded(prog: Program) -> Program:
    calls = prog.forward + prog.backward
    prog.threaded = any(fn is run_shards for fn, _ in calls)
    return prog


def _blas_for(prog: Program) -> Any:
    """One BLAS thread while a threaded program's step runs (see ``runtime/threads.py``)."""
    return single_threaded_blas() if prog.threaded else contextlib.nullcontext()


def _flat(a: np.ndarray) -> np.ndarray:
    """A contiguous parameter as one row, for the 2-D merge kernels."""
    return a.reshape(1, -1)


def _checked(kernel: Any, phase: str, calls: Any, op: Any) -> list[BoundCall]:
    """Validates what a (possibly third-party) kernel returned, naming it when wrong."""
    from nexec.errors import PluginError

    if not isinstance(calls, list) or not all(
            isinstance(c, tuple) and len(c) == 2 and callable(c[0]) and isinstance(c[1], tuple)
            for c in calls):
        raise PluginError(f"{kernel!r}.{phase} for layer '{op.layer.name}' must return a list of "
                          f"(function, args_tuple) pairs, got {calls!r:.200}.")
    return calls
