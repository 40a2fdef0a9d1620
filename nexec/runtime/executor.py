"""The executor: binds a plan's kernels to one arena as a :class:`Program`, then runs it.

Binding happens once per batch size: every op kernel returns ``(function, args)`` pairs over
arena views, which the program keeps as references into memory (``runtime/program.py``), so
a step is a loop over pre-bound calls with no allocation. The arena is sized for the largest
batch seen; a smaller batch (the last of an epoch) binds views of the same arena at the same
offsets. The executor is written once for every device: memory, kernels and capabilities
come from the plan's ``nexec.devices.Device``. Its ``lock`` serialises steps from several
threads (one arena per executor, one parameter store per model).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nexec.errors import PluginError
from nexec.kernels.activations import LINEAR
from nexec.ops.base import BoundCall, Call, rows, view_2d
from nexec.planner.algorithms import apply_choices
from nexec.planner.plan import Plan
from nexec.planner.schedule import Schedule, build_schedule
from nexec.plugins import registry
from nexec.runtime import autotune, checking, compiling, wholestep
from nexec.runtime.checking import Origin
from nexec.runtime.params import ParamStore
from nexec.runtime.program import Program

__all__ = ["Executor", "Program", "Objective"]


@dataclass
class Objective:
    """What training optimises for one output: a loss, its weight, its metrics."""

    loss: Any  # nexec.training.losses.Loss
    weight: float = 1.0
    metrics: list[tuple[str, Any]] = field(default_factory=list)  # (log name, Metric)


class Executor:
    """Runs one plan in one mode (training or inference) for any batch size.

    Args:
        plan: The model's plan.
        store: The flat parameters the layers' arrays are views of.
        training: Whether programs include backward and the optimizer update.
        objectives: Per model output, the loss and metrics (training and evaluation).
        optimizer: Updates the trainable parameters from their gradients (training only).
        naive_memory: One buffer per tensor instead of the memory plan (for comparison).
        jit_step: Run each step as one compiled native call (``runtime/wholestep.py``):
            ``True`` (raises ``StepCompileError`` when a step cannot be compiled), ``False``
            (the Python loop, the reference), or ``"auto"`` (:meth:`_auto_compiles`).
    """

    #: "auto" compiles a mode's step once the loop has run it this many times ...
    AUTO_AFTER_STEPS = 500
    #: ... at this mean step time or less (above it, dispatch is under ~1% of a step).
    AUTO_MAX_STEP_S = 2e-3

    def __init__(self, plan: Plan, store: ParamStore, training: bool = False,
                 objectives: list[Objective] | None = None, optimizer: Any = None,
                 naive_memory: bool = False, jit_step: bool | str = False) -> None:
        reg = self._registry = registry()
        self.plan = plan.for_steps(training)  # inference may fold ops into others
        self.store = store
        self.training = training
        self.objectives = objectives or []
        self.optimizer = optimizer
        self.naive_memory = naive_memory
        self.jit_step = jit_step
        self.device = reg.device(plan.device)
        self.params = store.on(self.device)  # the store's arrays where the kernels run
        self.kernels = [reg.kernel(op.kind, plan.device) for op in self.plan.graph.ops]
        self.activations = [reg.activation(op.activation or "linear")
                            for op in self.plan.graph.ops]
        self.schedule: Schedule | None = None
        self._arena: Any = None
        self._programs: dict[tuple[int, bool], Program] = {}
        self._targets: list[Any] = []
        self._weights: list[Any] = []  # sample weights per output, made on first weighted use
        self._scratch: dict[str, Any] = {}
        self._staging: dict = {}  # pinned host buffers of batches on their way to a device
        self._threads = self.device.threads()

    @property
    def lock(self) -> Any:
        """Held by callers around each step (bind, load, run, read): the programs of one
        executor share its arena, and all executors of a model share its parameters, which
        a training step writes; so one lock per parameter store (a forked child's is new).
        A ``predict`` while another thread trains sees the weights between two steps."""
        return self.store.lock

    # ----- planning ---------------------------------------------------------------------------
    def _fuse_loss(self, out: int) -> bool:
        g = self.plan.graph
        producer = g.tensors[out].producer
        if producer is None or not self.objectives:
            return False
        return self.objectives[g.outputs.index(out)].loss.fuses(g.ops[producer].activation)

    def _schedule(self, batch: int) -> Schedule:
        kinds = {op.kind: k for op, k in zip(self.plan.graph.ops, self.kernels)}
        return build_schedule(self.plan, batch, self.training, kernel_of=kinds.__getitem__,
                              fuse_loss=self._fuse_loss if self.training else None,
                              naive=self.naive_memory)

    def program(self, batch: int, weighted: bool = False) -> Program:
        """The bound program for ``batch`` rows, binding it on first use.

        Args:
            batch: Rows of the batch.
            weighted: Losses weighted per sample (``fit(sample_weight=...)``): the program
                also loads ``prog.weights`` and binds weighted loss values and gradients.
                Unweighted programs are bound exactly as without this option.
        """
        threads = self.device.threads()
        if threads != self._threads:  # op kernels split their work by it: plan anew
            self._threads, self.schedule = threads, None
            self._programs.clear()
        prog = self._programs.get((batch, weighted))
        if prog is not None:
            return prog
        if self.schedule is None or batch > self.schedule.batch:
            autotune.calibrate(self.plan, batch, self.training, self.device)  # "auto" convs
            self.schedule = self._schedule(batch)
            self._arena = self.device.arena(self.schedule.memory.arena_bytes)
            self._programs.clear()
            self._staging.clear()
            self._targets = self._make_targets(batch)
            self._weights = []
        if weighted and not self._weights:
            self._weights = self._make_weights(self.schedule.batch)
        apply_choices(self.plan, self.training)  # the kernels read them when binding
        sched = self.schedule if batch == self.schedule.batch else self._schedule(batch)
        prog = self._bind(sched, batch, weighted)
        prog.materialise()
        checking.check_arity(prog.bound(("prepare", *wholestep.MODES["train"])))
        prog.threaded = self.device.threaded(prog.forward + prog.backward + prog.update)
        # Compile (or load) every kernel now, outside the first step: timed, announced when
        # slow, and kept out of the progress bar's per-step rate (runtime/compiling.py).
        compiling.compile_program(prog)
        self._programs[(batch, weighted)] = prog
        return prog

    def _make_targets(self, batch: int) -> list[Any]:
        g = self.plan.graph
        out = []
        for tid, obj in zip(g.outputs, self.objectives):
            t = g.tensors[tid]
            shape, dtype = ((batch, *t.shape[:-1]), np.int64) if obj.loss.sparse else \
                ((batch, *t.shape), t.dtype)
            out.append(self.device.zeros(shape, dtype))
        return out

    def _make_weights(self, batch: int) -> list[Any]:
        """Per output, room for one sample weight per loss row, in the output's dtype (Keras
        casts sample weights to the loss dtype)."""
        g = self.plan.graph
        return [self.device.zeros((batch, *g.tensors[tid].shape[:-1]), g.tensors[tid].dtype)
                for tid in g.outputs[:len(self.objectives)]]

    # ----- binding ------------------------------------------------------------------------------
    def _arrays(self, sched: Schedule) -> Any:
        """Buffer name -> view of the arena (offsets from the largest batch's plan)."""
        assert self.schedule is not None and self._arena is not None
        offsets = self.schedule.buffers
        made: dict[str, Any] = {}

        def get(name: str) -> Any:
            if name in made:
                return made[name]
            b = sched.buffers[name]
            if b.view_of is None:
                a = self.device.view(self._arena, offsets[name].offset, b.nbytes, b.dtype,
                                     b.shape)
            elif b.view[0] == "reshape":
                a = self.device.reshape(get(b.view_of), b.shape)
            else:
                _, axis, lo, hi = b.view
                parent = get(b.view_of)
                index = [slice(None)] * len(parent.shape)
                index[axis] = slice(lo, hi)
                a = parent[tuple(index)]
            made[name] = a
            return a

        return get

    def _memories(self, batch: int) -> dict[str, Any]:
        """Every allocation a program's arrays may live in, by name."""
        mem = {"arena": self._arena, "values": self.params.values, "grads": self.params.grads}
        mem.update({f"target {k}": t for k, t in enumerate(self._targets)})
        mem.update({f"weights {k}": w for k, w in enumerate(self._weights)})
        if self.training and self.optimizer is not None:
            mem.update({f"optimizer {i}": s for i, s in enumerate(self.optimizer.state)})
            mem["optimizer hyperparameters"] = self.optimizer.hyper
        return mem

    def _bind(self, sched: Schedule, batch: int, weighted: bool = False) -> Program:
        g = self.plan.graph
        dev = self.device
        arr = self._arrays(sched)
        prog = Program(batch, memories=self._memories(batch), specialise=dev.specialise)
        prog.inputs = [prog.refs(arr(sched.value[i])) for i in g.inputs]
        prog.outputs = [prog.refs(arr(sched.value[o])) for o in g.outputs]
        for op, kernel, act in zip(g.ops, self.kernels, self.activations):
            ws = {k: arr(v) for k, v in sched.workspaces.get((op.index, "forward"), {}).items()}
            params = self.params.params_of(op.layer)
            if op.affine is not None:
                params = self._fold_affine(prog, op, params, {
                    k: arr(v) for k, v in sched.workspaces[(op.index, "fold")].items()})
            call = Call(op.layer, act.code if act.fused else LINEAR,
                        [arr(sched.value[i]) for i in op.inputs], arr(sched.value[op.output]),
                        params, ws, self.training, device=dev,
                        mask=None if op.mask is None else arr(sched.value[op.mask]),
                        outputs=[arr(sched.value[o]) for o in op.outputs])
            origin = self._kernel_origin(kernel, "forward", op)
            prog.add("forward", _checked(kernel, "forward", kernel.forward(call), op, origin),
                     origin)
            if not self.training:
                prepare_origin = self._kernel_origin(kernel, "prepare", op)
                prog.add("prepare", _checked(kernel, "prepare", kernel.prepare(call), op,
                                             prepare_origin), prepare_origin)
            if not act.fused:  # a plugin activation: its own pass over the output
                fwd, _ = dev.generated("activation", act.forward, act.derivative)
                prog.add("forward", [(fwd, (rows(call.output), rows(call.output)))],
                         self._activation_origin(act, op))
        if self.objectives:
            self._bind_objectives(prog, sched, arr, weighted)
        if not self.training:
            return prog
        self._bind_backward(prog, sched, arr)
        t = self.store.trainable_size
        threaded = dev.threaded([(ins.fn, ()) for ins in prog.instructions])
        prog.add("update", self.optimizer.calls(self.params.values[:t], self.params.grads[:t],
                                                self.store, threaded=threaded),
                 self._origin("optimizers", self.optimizer.name, type(self.optimizer),
                              f"optimizer '{self.optimizer.name}' "
                              f"({type(self.optimizer).__name__})", "optimizer"))
        return prog

    def _fold_affine(self, prog: Program, op: Any, params: dict[str, Any],
                     ws: dict[str, Any]) -> dict[str, Any]:
        """``op``'s parameters with its folded affine (``op.affine``: inference
        BatchNormalization) applied, prepared copies in ``ws``; binds the ``prepare`` calls
        that make them, before the op's own (which derive from them)."""
        a = op.affine
        kernel = self._registry.kernel(a.kind, self.plan.device)
        affine = Call(a.layer, LINEAR, [], ws["affine"], self.params.params_of(a.layer),
                      device=self.device)
        origin = self._kernel_origin(kernel, "channel_affine", op)
        calls = _checked(kernel, "channel_affine", kernel.channel_affine(affine), op, origin)
        weight = params[a.weight]
        bias = params[a.bias] if a.bias in params else \
            self.device.zeros((0,), ws["bias"].dtype)  # none: the shift alone
        n = weight.size // a.channels  # the weight as a (n, channels) matrix
        calls.append((self.device.kernels.fold_channel_affine,
                      (view_2d(weight, n, a.channels), bias, ws["affine"],
                       view_2d(ws["weight"], n, a.channels), ws["bias"])))
        prog.add("prepare", calls, origin)
        return {**params, a.weight: ws["weight"], a.bias: ws["bias"]}

    def _bind_objectives(self, prog: Program, sched: Schedule, arr: Any,
                         weighted: bool = False) -> None:
        g = self.plan.graph
        dev = self.device
        targets = [t[:prog.batch] for t in self._targets]
        prog.targets = [prog.refs(t) for t in targets]
        weights = [w[:prog.batch] for w in self._weights] if weighted else []
        prog.weights = [prog.refs(w) for w in weights]
        masks = g.output_masks or [None] * len(g.outputs)
        for k, (out, obj) in enumerate(zip(g.outputs, self.objectives)):
            p = rows(arr(sched.value[out]))
            # Integer labels: one per row of ``p`` (a sequence output's are (batch, T)).
            y = dev.reshape(targets[k], (p.shape[0],)) if obj.loss.sparse else rows(targets[k])
            # One weight per row of ``p`` (the loss rows of a sample are consecutive).
            w = dev.reshape(weights[k], (p.shape[0],)) if weighted else None
            source = masks[k]
            ids = None if source is None else dev.reshape(arr(sched.value[source]),
                                                          (p.shape[0],))
            if ids is not None:  # Keras' apply_mask: the mask (and sample weights) as weights
                w = self._mask_weights(prog, k, ids, w, g.tensors[out].dtype)
            slot = self._slot(f"loss {k}", np.float64)
            prog.memories[f"loss {k}"] = slot
            loss_origin = self._origin("losses", obj.loss.name, obj.loss,
                                       f"loss '{obj.loss.name}' of output {k}")
            prog.add("loss", [obj.loss.bind_value(dev, p, y, slot, w)], loss_origin)
            prog.loss_slots.append((k, obj.weight, prog.refs(slot)))
            for name, metric in obj.metrics:
                m = len(prog.metric_slots)
                slot = self._slot(f"metric {m}", np.dtype(metric.dtype), metric.size)
                prog.memories[f"metric {m}"] = slot
                reads_mask = getattr(metric, "reads_mask", False)
                if reads_mask and ids is None:
                    raise PluginError(f"Metric '{name}' of output {k} reads a mask, but the "
                                      "output carries none.")
                prog.add("metric", [metric.bind(dev, p, y, slot, *([ids] if reads_mask
                                                                   else []))],
                         self._origin("metrics", metric.name, metric,
                                      f"metric '{name}' of output {k}"))
                prog.metric_slots.append((k, name, prog.refs(slot), metric.total(p)))
            if self.training and out in sched.grad:  # a model input as output has none
                producer = g.tensors[out].producer
                act = g.ops[producer].activation \
                    if producer is not None and sched.fused_loss.get(out) else None
                dp = rows(arr(sched.grad[out]))
                prog.add("backward",
                         [obj.loss.bind_grad(dev, p, y, obj.weight / p.shape[0], dp, act)],
                         loss_origin)
                if w is not None:  # d(sum_i w_i l_i / N): each row's gradient times its weight
                    prog.add("backward", [(dev.kernels.scale_rows, (dp, w))])

    def _mask_weights(self, prog: Program, k: int, ids: Any, w: Any, dtype: Any) -> Any:
        """Binds the call writing output ``k``'s loss weights from its mask (``ids != 0``)
        and sample weights ``w`` (None: unweighted), Keras 3's ``apply_mask`` for the
        "sum_over_batch_size" reduction (``nexec.kernels.cpu.masking``); returns them."""
        assert self.schedule is not None
        rows_per_sample = int(ids.shape[0]) // max(prog.batch, 1)
        full = self._slot(f"mask weights {k}", np.dtype(dtype),
                          self.schedule.batch * rows_per_sample)
        prog.memories[f"mask weights {k}"] = full
        mw = full[:ids.shape[0]]
        kern = self.device.kernels
        call = (kern.loss_mask_weights, (ids, mw)) if w is None else \
            (kern.loss_mask_weights_times, (ids, w, mw))
        prog.add("loss", [call])
        return mw

    def _bind_backward(self, prog: Program, sched: Schedule, arr: Any) -> None:
        g = self.plan.graph
        k = self.device.kernels
        written: set[int] = set()
        for op, kernel, act in reversed(list(zip(g.ops, self.kernels, self.activations))):
            before: list[BoundCall] = []
            after: list[BoundCall] = []
            d_inputs: list[Any] = []
            for j, tid in enumerate(op.inputs):
                if tid not in sched.grad:
                    d_inputs.append(None)
                elif (op.index, j) in sched.contributions:
                    part = arr(sched.contributions[(op.index, j)])
                    d_inputs.append(part)
                    after.append((k.accumulate, (rows(arr(sched.grad[tid])), rows(part))))
                else:
                    d_inputs.append(arr(sched.grad[tid]))
            d_params = self.params.grads_of(op.layer)
            if id(op.layer) in written:  # a shared layer: sum this call's share in
                d_params = {n: self._scratch_like(f"{op.index}.{n}", p, prog)
                            for n, p in d_params.items()}
                after += [(k.accumulate, (_flat(self.params.grads_of(op.layer)[n]), _flat(p)))
                          for n, p in d_params.items()]
            written.add(id(op.layer))
            code = act.code if act.fused else LINEAR
            y = arr(sched.value[op.output])
            # An output of a layer with several may go unread: no gradient (None).
            dy = arr(sched.grad[op.output]) if op.output in sched.grad else None
            if sched.fused_loss.get(op.output):
                code = LINEAR
            elif not act.fused:  # a plugin activation: its gradient first, in place
                _, bwd = self.device.generated("activation", act.forward, act.derivative)
                before.append((bwd, (rows(y), rows(dy), rows(dy))))
            ws = {n: arr(v) for n, v in sched.workspaces.get((op.index, "backward"), {}).items()}
            call = Call(op.layer, code, [arr(sched.value[i]) for i in op.inputs], y,
                        self.params.params_of(op.layer), ws, True, dy, d_inputs, d_params,
                        device=self.device,
                        mask=None if op.mask is None else arr(sched.value[op.mask]),
                        outputs=[arr(sched.value[o]) for o in op.outputs],
                        d_outputs=[arr(sched.grad[o]) if o in sched.grad else None
                                   for o in op.outputs])
            kernel_origin = self._kernel_origin(kernel, "backward", op)
            calls = _checked(kernel, "backward", kernel.backward(call), op, kernel_origin)
            origin: Origin | None = kernel_origin
            d0 = d_inputs[0] if d_inputs else None
            if kernel.view_of_input and d0 is not None and \
                    not (isinstance(d0, np.ndarray) and np.shares_memory(d0, dy)):
                calls, origin = [(k.copy_into, (_flat2(d0), _flat2(dy)))], None
            prog.add("backward", before, self._activation_origin(act, op))
            prog.add("backward", calls, origin)
            prog.add("backward", after)

    # ----- who contributed each call (error messages of runtime/checking.py) ------------------
    def _origin(self, kind: str, key: Any, value: Any, what: str, part: str = "") -> Origin:
        """``what``, attributed to the plugin that registered ``value`` under ``key``;
        ``part`` is what a profile counts its time towards (default: ``what``)."""
        table = getattr(self._registry, kind)
        registered = table.get(key) is value if kind != "optimizers" else \
            isinstance(value, type) and issubclass(value, table.get(key, ()) or ())
        return Origin(self._registry.owner.get((kind, key)) if registered else None, what,
                      part or what)

    def _kernel_origin(self, kernel: Any, phase: str, op: Any) -> Origin:
        layer = f"layer '{op.layer.name}' ({type(op.layer).__name__})"
        return self._origin("kernels", (kernel.layer_type, kernel.device), kernel,
                            f"kernel {kernel.layer_type}/{kernel.device} "
                            f"({type(kernel).__name__}.{phase}) of {layer}", layer)

    def _activation_origin(self, act: Any, op: Any) -> Origin:
        layer = f"layer '{op.layer.name}' ({type(op.layer).__name__})"
        return self._origin("activations", act.name, act,
                            f"activation '{act.name}' of {layer}", layer)

    def _scratch_like(self, key: str, like: Any, prog: Program) -> Any:
        a = self._scratch.get(key)
        if a is None or tuple(a.shape) != tuple(like.shape):
            a = self._scratch[key] = self.device.zeros(tuple(like.shape), like.dtype)
        prog.memories[f"scratch {key}"] = a
        return a

    def _slot(self, key: str, dtype: Any, size: int = 1) -> Any:
        """A ``size``-element array a reduction kernel writes its result(s) into."""
        a = self._scratch.get(key)
        if a is None or a.shape[0] != size or a.dtype != dtype:
            a = self._scratch[key] = self.device.zeros((size,), dtype)
        return a

    # ----- data in and out ------------------------------------------------------------------------
    def load(self, prog: Program, sources: list[np.ndarray], lo: int, hi: int,
             order: np.ndarray | None = None) -> None:
        """Copies rows ``lo:hi`` (of ``order`` when shuffled) of inputs, targets, then (for
        a weighted program) sample weights in."""
        for dst, src in zip(prog.inputs + prog.targets + prog.weights, sources):
            self.device.load(dst, src, lo, hi, order, self._staging)

    def read_outputs(self, prog: Program, results: list[np.ndarray], lo: int, hi: int) -> None:
        for res, out in zip(results, prog.outputs):
            self.device.read(res[lo:hi], out)

    # ----- running ------------------------------------------------------------------------------
    def prepare(self, prog: Program) -> None:
        """Runs ``prog``'s ``prepare`` calls (``Kernel.prepare``: weights derived once for
        inference) when the parameters changed since they last ran (``ParamStore.version``);
        every way of running a step calls it first. Called under :attr:`lock`. Code that
        writes the weights in place and then runs steps itself, not through ``fit``,
        ``evaluate`` or ``predict``, calls ``store.changed()`` first
        (``nexec.testing.model_gradients`` does)."""
        version = self.store.version
        if prog.prepared == version:
            return
        if prog.calls.get("prepare"):
            with self.device.step_guard(False):
                if "prepare" in prog.checked:
                    for fn, args in prog.calls["prepare"]:
                        fn(*args)
                else:  # the first time: a plugin kernel's bad types raise PluginError
                    calls = prog.bound(("prepare",))
                    if checking.check_types(calls):
                        for fn, args, _ in calls:
                            fn(*args)
                    else:
                        checking.run_checked(calls)
                    prog.checked.add("prepare")
        prog.prepared = version

    def _before_steps(self, phases: tuple[str, ...], prog: Program,
                      tail: Program | None = None) -> None:
        """What every way of running steps of ``phases`` (of ``prog``, then ``tail``) does
        first: steps that update the weights count as a change of them; any others make
        what inference derives from them current (:meth:`prepare`)."""
        if "update" in phases:
            self.store.changed()
            return
        self.prepare(prog)
        if tail is not None:
            self.prepare(tail)

    def run_forward(self, prog: Program) -> None:
        self._run(prog, "forward")

    def run_forward_pass(self, prog: Program, sources: list[np.ndarray],
                         results: list[np.ndarray], first: int, last: int,
                         tail: Program | None = None, with_tail: bool = True) -> int:
        """Batches ``first``..``last - 1`` of in-memory ``sources`` (each ``prog.batch`` rows,
        in order) through the forward, their outputs written into the same rows of
        ``results``, as one native call (``wholestep.CompiledPass``) when ``jit_step`` says
        so (:meth:`_compiled_pass`).

        The rows are copied in as :meth:`load` copies them (a source of another dtype is
        converted once, as ``np.copyto`` would per batch) and out as :meth:`read_outputs`
        does, so the results are bit for bit those of the loop.

        Args:
            tail: The program of the last, shorter batch, whose rows follow batch
                ``last - 1`` (this executor's ``program(rows)``): compiled into the same
                function as ``prog`` and, when ``with_tail``, run after the full batches in
                the same call. When it cannot be compiled, the function is ``prog``'s alone
                and the caller runs the tail.
            with_tail: Whether this call runs the tail (calls over part of the batches
                pass the tail program without running it, to share one function).

        Returns:
            How many batches from ``first`` ran, the tail counted as one (fewer than asked,
            usually 0: the caller runs the rest itself).
        """
        if last <= first and (tail is None or not with_tail) \
                or prog.compiled.get("forward pass") is False:
            return 0
        hi = last * prog.batch
        if tail is not None and not self._tail_ready(tail, ("forward",), hi, sources):
            tail = None
        run_tail = tail is not None and with_tail
        end = hi + tail.batch if run_tail else hi  # type: ignore[union-attr]
        srcs = self._pass_arrays(sources, prog.inputs, prog.batch, end, True)
        outs = self._pass_arrays(results, prog.outputs, prog.batch, end, False)
        if srcs is None or outs is None:
            return 0
        ran = 0
        if "forward" not in prog.checked:  # a plugin kernel's bad types: PluginError first
            if not checking.check_types(prog.bound(("forward",))):
                # Calls that cannot be typed in advance run once through the checking loop.
                if first == last:
                    return 0
                lo = first * prog.batch
                self.load(prog, sources, lo, lo + prog.batch)
                self._run(prog, "forward")
                self.read_outputs(prog, results, lo, lo + prog.batch)
                first, ran = first + 1, 1
                if first == last and not run_tail:
                    return ran
            prog.checked.add("forward")
        compiled = self._compiled_pass(prog, srcs, outs, tail)
        if not compiled:
            return ran
        if run_tail and compiled.tail is None:
            run_tail, end = False, hi
            if first == last:
                return ran
        self._before_steps(("forward",), prog, tail if run_tail else None)
        with self.device.step_guard(prog.threaded):
            compiled(srcs, outs, first, last, run_tail)
        for r, o in zip(results, outs):
            if o is not r:  # another dtype: converted as ``np.copyto`` does per batch
                np.copyto(r[first * prog.batch:end], o[first * prog.batch:end])
        return ran + last - first + run_tail

    def ready_pass(self, batch: int, rest: int, sources: list[Any],
                   results: list[Any]) -> tuple[Program, Any] | None:
        """The program and compiled pass a repeated ``predict`` of ``sources`` into
        ``results`` (batches of ``batch`` rows, then a tail of ``rest``) runs whole in one
        call, when an earlier :meth:`run_forward_pass` left everything ready: the function
        of both programs as bound now, their forward typed, and every source and result a
        C-contiguous array of its buffer's dtype and row shape (nothing to convert).
        ``None``: not (yet), :meth:`run_forward_pass` decides. Called under :attr:`lock`.

        Calling ``compiled(sources, results, 0, len // batch, rest > 0)`` then computes what
        :meth:`run_forward_pass` over all the batches computes: the same function, the same
        arguments."""
        if self.jit_step is False:
            return None
        prog = self.program(batch)
        tail = self.program(rest) if rest else None
        compiled = prog.compiled.get(f"forward pass + {rest}" if rest else "forward pass")
        if not compiled or compiled.tail is not tail or "forward" not in prog.checked \
                or tail is not None and "forward" not in tail.checked \
                or len(sources) != len(prog.inputs) or len(results) != len(prog.outputs):
            return None
        for arrays, buffers in ((sources, prog.inputs), (results, prog.outputs)):
            for a, buf in zip(arrays, buffers):
                if type(a) is not np.ndarray or not isinstance(buf, np.ndarray) \
                        or a.dtype != buf.dtype or a.shape[1:] != buf.shape[1:] \
                        or not a.flags.c_contiguous:
                    return None
        self._before_steps(("forward",), prog, tail)
        return prog, compiled

    @staticmethod
    def _known_tail(prog: Program, key: str, tail: Program | None) -> Program | None:
        """``tail``, or ``None`` when ``prog``'s function under ``key`` is to run without
        it: the tail could not be compiled, or ``prog`` itself keeps the loop. A function
        compiled for another binding of the tail's batch size is dropped."""
        if tail is None or prog.compiled.get(key) is False:
            return None
        both = prog.compiled.get(f"{key} + {tail.batch}")
        if both is False:
            return None
        if both is not None and both.tail is not tail:
            del prog.compiled[f"{key} + {tail.batch}"]
        return tail

    def _tail_ready(self, tail: Program, phases: tuple[str, ...], lo: int,
                    sources: list[Any]) -> bool:
        """Whether a tail program of rows ``lo:lo + tail.batch`` may run inside a native
        call: those rows exist, its phases' calls are typed (``runtime/checking.py``: a
        plugin kernel's bad types raise ``PluginError`` here, before any kernel runs; calls
        that can only be typed by running them leave the tail to the caller's loop)."""
        if not sources or len(sources[0]) < lo + tail.batch:
            return False
        if not tail.checked.issuperset(phases):
            if not checking.check_types(tail.bound(tuple(p for p in phases
                                                         if p not in tail.checked))):
                return False
            tail.checked.update(phases)
        return True

    @staticmethod
    def _pass_arrays(arrays: list[Any], buffers: list[Any], batch: int, rows: int,
                     into: bool) -> list[np.ndarray] | None:
        """``arrays`` as the pass takes them: C-contiguous host arrays of the buffers' dtypes
        (a source converted, a result of another dtype replaced by one of ``rows`` rows to
        copy from), or ``None`` when their rows are not shaped as the program's buffers."""
        if len(arrays) != len(buffers):
            return None
        out = []
        for a, buf in zip(arrays, buffers):
            if not isinstance(a, np.ndarray) or not isinstance(buf, np.ndarray) \
                    or buf.shape[0] != batch or a.shape[1:] != buf.shape[1:]:
                return None
            if a.dtype == buf.dtype and type(a) is np.ndarray and a.flags.c_contiguous:
                out.append(a)
            elif into:
                out.append(np.ascontiguousarray(a[:rows]).astype(buf.dtype, casting="same_kind"))
            else:
                out.append(np.empty((rows, *a.shape[1:]), buf.dtype))
        return out

    def _compiled_pass(self, prog: Program, sources: list[np.ndarray],
                       results: list[np.ndarray], tail: Program | None = None) -> Any:
        """The compiled pass of ``prog``'s forward, or a false value for the loop.

        ``jit_step=True`` compiles it; ``"auto"`` when its code is on disk or the forward
        step itself was compiled by the "auto" rule (:meth:`_auto_compiles`); ``False``
        never. A forward that cannot be compiled (``wholestep.pass_refusal``: intra-op
        shards, a CUDA launcher, a Python-level call) keeps the loop, which raises for
        ``True`` as the whole step does. With a ``tail`` program, the function of both
        (kept per tail batch size), or ``prog``'s alone when the tail cannot be compiled."""
        key = "forward pass"
        tail = self._known_tail(prog, key, tail)
        compiled = prog.compiled.get(key if tail is None else f"{key} + {tail.batch}")
        if compiled is not None:
            return compiled
        if self.jit_step is False or not self.device.host_memory \
                or wholestep.pass_refusal(prog):
            prog.compiled[key] = False
            return False
        if tail is not None and wholestep.pass_refusal(prog, tail):
            prog.compiled[f"{key} + {tail.batch}"] = False
            return self._compiled_pass(prog, sources, results)
        if self.jit_step == "auto":
            first_sight = key not in prog.loop_stats
            prog.loop_stats[key] = [0, 0.0]
            if not (isinstance(prog.compiled.get("forward"), wholestep.CompiledStep)
                    or first_sight and wholestep.generate_pass(prog, tail=tail).on_disk()):
                return None  # undecided: the loop runs (and measures the forward step)
        with compiling.compiling():
            made = wholestep.compile_pass(prog, sources, results, tail=tail)
        prog.compiled[key if tail is None else f"{key} + {tail.batch}"] = made
        return made

    def run_epoch(self, prog: Program, mode: str, sources: list[np.ndarray],
                  order: np.ndarray, first: int, last: int, tail: Program | None = None,
                  with_tail: bool = True) -> tuple[int, np.ndarray, list[np.ndarray]]:
        """Batches ``first``..``last - 1`` (each ``prog.batch`` rows of ``sources`` through
        ``order``) through ``mode`` (``"train"`` or ``"evaluate"``) as one native call
        (``wholestep.CompiledEpoch``) when ``jit_step`` says so (:meth:`_compiled_epoch`).

        Rows are gathered in as :meth:`load` gathers them (a source of another dtype is
        converted once, as ``np.copyto`` would per batch), so every step computes what the
        loop's does, bit for bit.

        Args:
            sources: Inputs, targets, then (a weighted program) sample weights, all rows.
            order: The epoch's row order (int64, every row); ``np.arange`` when unshuffled.
            tail: The program of the last, shorter batch, whose rows follow batch
                ``last - 1`` (this executor's ``program(rows, weighted)``): compiled into the
                same function and, when ``with_tail``, run after the full batches in the same
                call (as :meth:`run_forward_pass`).
            with_tail: Whether this call runs the tail.

        Returns:
            How many batches from ``first`` ran, the tail counted as one (usually all asked;
            0 when the loop must run them), a float64 ``(ran, losses)`` array of each batch's
            loss slots in ``prog.loss_slots`` order (the tail's last), and per metric slot a
            ``(ran, size)`` array of its values after each batch.
        """
        if last <= first and (tail is None or not with_tail) \
                or prog.compiled.get(f"{mode} epoch") is False:
            return self._nothing(prog)
        phases = wholestep.MODES[mode]
        hi = last * prog.batch
        if tail is not None and not self._tail_ready(tail, phases, hi, sources):
            tail = None
        run_tail = tail is not None and with_tail
        srcs = self._epoch_sources(sources, [*prog.inputs, *prog.targets, *prog.weights])
        if srcs is None:
            return self._nothing(prog)
        if type(order) is not np.ndarray or order.dtype != np.int64 \
                or not order.flags.c_contiguous:
            order = np.ascontiguousarray(order, np.int64)
        if int(order.shape[0]) < hi + (tail.batch if run_tail else 0):  # type: ignore
            return self._nothing(prog)
        rows = last - first + run_tail
        losses = np.empty((rows, len(prog.loss_slots)), np.float64)
        metrics = [np.empty((rows, int(s.shape[0])), s.dtype)
                   for _, _, s, _ in prog.metric_slots]
        ran = 0
        if not prog.checked.issuperset(phases):  # a plugin kernel's bad types: PluginError
            if not checking.check_types(prog.bound(tuple(p for p in phases
                                                          if p not in prog.checked))):
                # Calls that cannot be typed in advance run once through the checking loop.
                if first == last:
                    return self._nothing(prog)
                lo = first * prog.batch
                self.load(prog, sources, lo, lo + prog.batch, order)
                self._run(prog, mode)
                self._slot_row(prog, losses, metrics, 0)
                ran = 1
                if first + ran == last and not run_tail:
                    return ran, losses, metrics
            prog.checked.update(phases)
        srcs.append(order)
        compiled = self._compiled_epoch(prog, mode, srcs, [losses, *metrics], tail)
        if not compiled:
            return ran, losses[:ran], [m[:ran] for m in metrics]
        if run_tail and compiled.tail is None:  # the tail could not be compiled in
            run_tail, rows = False, rows - 1
            if first + ran == last:
                return ran, losses[:ran], [m[:ran] for m in metrics]
        self._before_steps(phases, prog, tail if run_tail else None)
        with self.device.step_guard(prog.threaded):
            compiled(srcs, [losses, *metrics] if not ran else
                     [losses[ran:], *(m[ran:] for m in metrics)], first + ran, last, run_tail)
        if rows < losses.shape[0]:
            return rows, losses[:rows], [m[:rows] for m in metrics]
        return rows, losses, metrics

    @staticmethod
    def _nothing(prog: Program) -> tuple[int, np.ndarray, list[np.ndarray]]:
        """:meth:`run_epoch`'s answer when no batch ran natively."""
        return 0, np.empty((0, len(prog.loss_slots))), []

    def _slot_row(self, prog: Program, losses: np.ndarray, metrics: list[np.ndarray],
                  row: int) -> None:
        """A step's loss and metric slots into row ``row`` of :meth:`run_epoch`'s results."""
        for j, (_, _, slot) in enumerate(prog.loss_slots):
            losses[row, j] = slot[0]
        for m, (_, _, slot, _) in zip(metrics, prog.metric_slots):
            m[row] = slot

    @staticmethod
    def _epoch_sources(arrays: list[Any], buffers: list[Any]) -> list[np.ndarray] | None:
        """``arrays`` as an epoch takes them: whole C-contiguous host arrays of the buffers'
        dtypes, or ``None`` when their rows are not shaped as the buffers'."""
        if len(arrays) != len(buffers):
            return None
        out = []
        for a, buf in zip(arrays, buffers):
            if not isinstance(a, np.ndarray) or not isinstance(buf, np.ndarray) \
                    or a.shape[1:] != buf.shape[1:]:
                return None
            if a.dtype == buf.dtype and type(a) is np.ndarray and a.flags.c_contiguous:
                out.append(a)
            else:
                out.append(np.ascontiguousarray(a).astype(buf.dtype, casting="same_kind"))
        return out

    def _compiled_epoch(self, prog: Program, mode: str, sources: list[np.ndarray],
                        results: list[np.ndarray], tail: Program | None = None) -> Any:
        """The compiled epoch of ``prog``'s ``mode``, or a false value for the loop.

        As :meth:`_compiled_pass`: ``jit_step=True`` compiles it; ``"auto"`` when its code is
        on disk or the mode's step itself was compiled by the "auto" rule; ``False`` never.
        What cannot be compiled (``wholestep.epoch_refusal``) keeps the loop, which raises
        for ``True`` as the whole step does. With a ``tail`` program, the function of both
        (kept per tail batch size), or ``prog``'s alone when the tail cannot be compiled."""
        key = f"{mode} epoch"
        tail = self._known_tail(prog, key, tail)
        compiled = prog.compiled.get(key if tail is None else f"{key} + {tail.batch}")
        if compiled is not None:
            return compiled
        if self.jit_step is False or not self.device.host_memory \
                or wholestep.epoch_refusal(prog, mode):
            prog.compiled[key] = False
            return False
        if tail is not None and wholestep.epoch_refusal(prog, mode, tail):
            prog.compiled[f"{key} + {tail.batch}"] = False
            return self._compiled_epoch(prog, mode, sources, results)
        if self.jit_step == "auto":
            first_sight = key not in prog.loop_stats
            prog.loop_stats[key] = [0, 0.0]
            if not (isinstance(prog.compiled.get(mode), wholestep.CompiledStep)
                    or first_sight
                    and wholestep.generate_epoch(prog, mode, tail=tail).on_disk()):
                return None  # undecided: the loop runs (and measures the step)
        with compiling.compiling():
            made = wholestep.compile_epoch(prog, mode, sources, results, tail=tail)
        prog.compiled[key if tail is None else f"{key} + {tail.batch}"] = made
        return made

    def train_step(self, prog: Program, losses: list[float], counts: list[Any]) -> float:
        """Forward, loss, metrics, backward, update.

        Per-output losses are written into ``losses``; metric sums are added to ``counts``
        (one per ``prog.metric_slots`` entry: a number for a 1-element slot, a host array of
        the slot's length, added to in place, for a longer one). Returns the weighted total
        loss.
        """
        self._run(prog, "train")
        return self._results(prog, losses, counts)

    def gradients(self, prog: Program, losses: list[float], counts: list[Any]) -> float:
        """Forward, loss, metrics and backward, without the update: ``train_step`` split in
        two, so gradients can be combined across processes before :meth:`apply_update`.

        The gradient of the batch's mean loss is left in ``self.params.grads`` (the
        trainable prefix); ``losses``, ``counts`` and the return value are as
        :meth:`train_step`'s.
        """
        self._run(prog, "gradients")
        return self._results(prog, losses, counts)

    def apply_update(self, prog: Program) -> None:
        """The optimizer update from whatever is in ``self.params.grads`` now (after
        :meth:`gradients`, or gradients written there by the caller)."""
        self._run(prog, "update")

    def evaluate_step(self, prog: Program, losses: list[float], counts: list[Any]) -> float:
        """Forward, loss and metrics only (validation, ``evaluate``)."""
        self._run(prog, "evaluate")
        return self._results(prog, losses, counts)

    def _run(self, prog: Program, mode: str) -> None:
        """One step of ``mode``: its compiled function, or the loop over its bound calls.

        The first step of each phase first types its Numba calls (``runtime/checking.py``),
        so a broken plugin kernel raises ``PluginError`` before any kernel of the step ran;
        calls that cannot be typed in advance run once through the checking loop.
        """
        phases = wholestep.MODES[mode]
        run_checked = False
        if not prog.checked.issuperset(phases):
            run_checked = not checking.check_types(
                prog.bound(tuple(p for p in phases if p not in prog.checked)))
            if not run_checked:
                prog.checked.update(phases)
        compiled = prog.compiled.get(mode)
        if compiled is None:
            compiled = self._compiled(prog, mode)
        self._before_steps(phases, prog)
        with self.device.step_guard(prog.threaded):
            if compiled:
                compiled()
                prog.checked.update(phases)
                return
            t0 = time.perf_counter()
            if run_checked:
                checking.run_checked(prog.bound(phases))
                prog.checked.update(phases)
            else:
                for phase in phases:
                    for fn, args in prog.calls[phase]:
                        fn(*args)
            if compiled is None:  # "auto", undecided: its measure
                stats = prog.loop_stats[mode]
                stats[0] += 1
                if stats[0] > 0:
                    stats[1] += time.perf_counter() - t0

    def _compiled(self, prog: Program, mode: str) -> Any:
        """The compiled step of ``mode`` when ``jit_step`` says so; ``None`` while "auto" is
        undecided; ``False`` for the loop (both remembered in ``prog.compiled``)."""
        if self.jit_step is True:
            with compiling.compiling():
                prog.compiled[mode] = wholestep.compile_step(prog, mode)
        elif self.jit_step == "auto":
            decision = self._auto_compiles(prog, mode)
            if decision is not None:
                with compiling.compiling():
                    prog.compiled[mode] = wholestep.compile_step(prog, mode) if decision \
                        else False
        else:
            prog.compiled[mode] = False
        return prog.compiled.get(mode)

    def _auto_compiles(self, prog: Program, mode: str) -> bool | None:
        """The "auto" rule (``None``: not yet). A compilable step compiles when Numba's code
        for it is already on disk (a load, ~0.1 s), or once the loop has run it
        :attr:`AUTO_AFTER_STEPS` times at a mean of :attr:`AUTO_MAX_STEP_S` or less: a cold
        compile costs seconds and saves about a microsecond per kernel call, so only long runs
        of small steps earn it back (and they leave it cached for every later process)."""
        stats = prog.loop_stats.get(mode)
        if stats is None:  # first sight of this program
            if wholestep.uncompilable(prog, mode):
                return False
            prog.loop_stats[mode] = [-1, 0.0]  # the first step (kernels load) is not counted
            return True if wholestep.generate(prog, mode).on_disk() else None
        steps, seconds = stats
        if steps < self.AUTO_AFTER_STEPS:
            return None
        return seconds / steps <= self.AUTO_MAX_STEP_S

    def _results(self, prog: Program, losses: list[float], counts: list[Any]) -> float:
        total = 0.0
        for k, weight, slot in prog.loss_slots:
            value = float(self.device.scalar(slot))
            losses[k] = value
            total += weight * value
        for i, (_, _, slot, _) in enumerate(prog.metric_slots):
            acc = counts[i]
            if isinstance(acc, np.ndarray):  # a vector slot (AUC, precision): add in place
                self._add_slot(acc, slot)
            else:
                counts[i] += self.device.scalar(slot).item()
        return total

    def _add_slot(self, acc: np.ndarray, slot: Any) -> None:
        """``acc += slot`` for a metric slot of several sums, through a reused host buffer
        on devices whose memory the host cannot read."""
        if self.device.host_memory:
            np.add(acc, slot, out=acc)
            return
        key = f"host {tuple(slot.shape)} {np.dtype(slot.dtype).str}"
        buf = self._staging.get(key)
        if buf is None:
            buf = self._staging[key] = np.empty(tuple(slot.shape), slot.dtype)
        self.device.read(buf, slot)
        np.add(acc, buf, out=acc)


def _flat(a: Any) -> Any:
    """A contiguous parameter as one row, for the 2-D merge kernels."""
    return view_2d(a, 1, int(np.prod(a.shape)))


def _flat2(a: Any) -> Any:
    return view_2d(a, int(a.shape[0]), int(np.prod(a.shape[1:])))


def _checked(kernel: Any, phase: str, calls: Any, op: Any, origin: Origin) -> list[BoundCall]:
    """Validates what a (possibly third-party) kernel returned, naming it when wrong."""
    if not isinstance(calls, list) or not all(
            isinstance(c, tuple) and len(c) == 2 and callable(c[0]) and isinstance(c[1], tuple)
            for c in calls):
        owner = f" (from plugin '{origin.plugin}')" if origin.plugin else ""
        raise PluginError(f"{kernel!r}.{phase}{owner} for layer '{op.layer.name}' must return "
                          f"a list of (function, args_tuple) pairs, got {calls!r:.200}.")
    return list(calls)
