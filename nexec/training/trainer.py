"""compile / fit / evaluate / predict: the Keras training loop over a planned executor.

``compile`` plans once and builds three executors sharing the flat parameters: training
(forward, loss, backward, update), evaluation (forward and loss) and inference (forward).
The loops here only move batches in and read scalars out; all arithmetic is in kernels.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nexec.checks import ArgumentError, ArgumentTypeError, optional_positive_int
from nexec.devices import check_device, get_device
from nexec.errors import DataError
from nexec.graph import is_integer_dtype
from nexec.planner import make_plan
from nexec.runtime import compiling
from nexec.runtime.executor import Executor, Objective, Program
from nexec.runtime.params import ParamStore
from nexec.training import optimizers as opt_module
from nexec.training.adapters import (
    ArrayFeed,
    Batch,
    PyDataset,
    StreamFeed,
    is_stream,
    preparer,
    source_name,
    weight_rows,
)
from nexec.training.callbacks import (
    BackupAndRestore,
    Callback,
    CallbackList,
    History,
    ModelCheckpoint,
)
from nexec.training.data import _id_readers, all_finite, as_inputs, as_targets, split_by_name
from nexec.training.loss_objects import resolve as resolve_loss
from nexec.training.loss_objects import saved_form
from nexec.training.masking import masked_metric
from nexec.training.metrics import resolve_metric
from nexec.training.progress import ProgressBar
from nexec.training.sample_weights import as_sample_weights

__all__ = ["Trainer", "Predictor", "predictor", "param_store"]


def param_store(model: Any, plan: Any) -> ParamStore:
    """The model's flat parameter store, made once and shared by all its executors (and
    taking the layers' arrays back from another model's store that shares them)."""
    layers = list({id(op.layer): op.layer for op in plan.graph.ops}.values())
    store = getattr(model, "_param_store", None)
    if store is not None and store.covers(layers):
        store.take()
    else:
        store = ParamStore(layers, plan.graph.dtype)
        model._param_store = store
    return store


def _verbosity(verbose: Any, default_when_not_tty: int = 1) -> int:
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else default_when_not_tty
    return int(verbose)


Feed = ArrayFeed | StreamFeed


def make_feed(model: Any, dtype: str, losses: list[Any] | None, x: Any, y: Any,
              batch_size: int | None, shuffle: bool, steps: int | None, what: str,
              sample_weight: Any = None, class_weight: Any = None,
              stream_memmaps: bool = True) -> Feed:
    """Batches of ``x`` (and ``y`` and sample weights unless ``losses`` is None, as for
    predict).

    In-memory arrays are checked and cast whole, once (:class:`ArrayFeed`); memory maps,
    generators, iterables and PyDatasets are read, checked and cast per batch on the
    prefetch thread (:class:`StreamFeed`). With ``stream_memmaps=False`` memory maps are
    taken as arrays (of the model's dtype they stay memory maps: data-parallel workers read
    their rows from the file).
    """
    if is_stream(x, y) and (stream_memmaps or source_name(x) != "memory-mapped arrays"):
        kind = source_name(x)
        if y is not None and kind != "memory-mapped arrays":
            raise DataError(f"When providing `x` as a {kind}, `y` should not be passed. "
                            f"Instead, the targets should be included as part of the {kind}.")
        if sample_weight is not None and kind != "memory-mapped arrays":
            raise DataError(f"When providing `x` as a {kind}, `sample_weight` should not be "
                            f"passed. Instead, the sample weights should be included as part "
                            f"of the {kind}: (x, y, sample_weight) batches.")
        if losses is not None and kind == "memory-mapped arrays" and y is None:
            raise DataError(f"Model '{model.name}' needs targets y to train or evaluate.")
        return StreamFeed(
            x, y, preparer(model, dtype, losses, class_weight), batch_size or 32, shuffle,
            steps, split=lambda d: split_by_name(d, model.input_names, "input"),
            split_y=lambda d: split_by_name(d, model.output_names, "output"),
            sample_weight=sample_weight)
    xs = as_inputs(x, model, dtype)
    ys = [] if losses is None else as_targets(y, model, losses, dtype)
    if ys and len(xs[0]) != len(ys[0]):
        raise DataError(f"x has {len(xs[0])} samples but y has {len(ys[0])}.")
    if losses is not None and len(xs[0]) == 0:
        kind = "training samples" if what == "fit()" else "samples"
        raise DataError(f"{what} got no {kind} (x has 0 rows).")
    ws = None if losses is None else \
        as_sample_weights(sample_weight, class_weight, ys, model, losses, dtype, what)
    return ArrayFeed(xs + ys + (ws or []), max(1, min(batch_size or 32, len(xs[0]))), shuffle,
                     steps, weighted=ws is not None)


def _check_steps(steps: Any, what: str) -> None:
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                              or steps <= 0):
        raise ValueError(f"{what} takes a positive int or None, got {steps!r}.")


def _rows(data: Any, rows: slice) -> Any:
    """Rows of arrays given as an array, a list or a dict (memory maps stay memory maps)."""
    if isinstance(data, dict):
        return {k: v[rows] for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [a[rows] for a in data]
    return data[rows]


class Predictor:
    """Inference over a plan, for ``predict`` (usable before ``compile``)."""

    def __init__(self, model: Any, device: str = "cpu") -> None:
        self.model = model
        self.plan = make_plan(model, check_device(device))
        self.dtype = self.plan.graph.dtype  # the model's float dtype (inputs may be ids)
        self.store = param_store(model, self.plan)
        self.executor = Executor(self.plan, self.store)
        #: What :meth:`_repeat_pass` needs of the model, made on first use (it is fixed
        #: once the model is built): ``(input feature shape, output shapes and dtypes)``, or
        #: ``()`` when the model is not one float input without id-reading layers.
        self._one_input: tuple[Any, ...] | None = None

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = "auto",
                steps: int | None = None) -> Any:
        if steps is None and (verbose is False or type(verbose) is int and verbose == 0) \
                and type(x) is np.ndarray \
                and (batch_size is None or type(batch_size) is int and batch_size > 0):
            out = self._repeat_pass(x, batch_size)
            if out is not None:
                return out
        batch_size = optional_positive_int(batch_size, "batch_size", "predict()")
        _check_steps(steps, "predict(steps=...)")
        feed = make_feed(self.model, self.dtype, None, x, None, batch_size, False, steps,
                         "predict()")
        shapes = [(t.feature_shape, t.dtype if is_integer_dtype(t.dtype) else self.dtype)
                  for t in self.model.outputs]
        if isinstance(feed, ArrayFeed) and steps is None:  # one preallocated result per output
            results = [np.empty((feed.n, *shape), dt) for shape, dt in shapes]
        chunks: list[list[np.ndarray]] = [[] for _ in shapes]
        bar = ProgressBar(feed.epoch_steps(), _verbosity(verbose, 0))
        self.store.to_device()
        with compiling.notices(verbose != 0):
            try:
                done = 0
                if isinstance(feed, ArrayFeed) and steps is None:
                    done = self._native_pass(feed, results, bar)
                batches = feed.epoch() if not done or done < (feed.epoch_steps() or 0) \
                    else iter(())
                for i, b in enumerate(batches):
                    if i < done:  # ran natively
                        continue
                    with self.executor.lock:  # one arena: one thread's batch at a time
                        prog = self.executor.program(b.size)
                        self.executor.load(prog, b.sources, b.lo, b.hi, b.order)
                        self.executor.run_forward(prog)
                        if isinstance(feed, ArrayFeed) and steps is None:
                            self.executor.read_outputs(prog, results, b.lo, b.hi)
                        else:
                            out = [np.empty((b.size, *shape), dt) for shape, dt in shapes]
                            self.executor.read_outputs(prog, out, 0, b.size)
                            for c, o in zip(chunks, out):
                                c.append(o)
                    bar.update(i + 1)
            finally:
                feed.close()
        bar.waited = feed.waited
        bar.finish()
        if not (isinstance(feed, ArrayFeed) and steps is None):
            results = [np.concatenate(c) if c else np.empty((0, *shape), dt)
                       for c, (shape, dt) in zip(chunks, shapes)]
        return results[0] if len(results) == 1 else results

    def _model_shapes(self) -> tuple[Any, ...]:
        """:attr:`_one_input`, made once."""
        if self._one_input is None:
            model = self.model
            t = model.inputs[0]
            one = len(model.inputs) == 1 and not is_integer_dtype(t.dtype) \
                and not _id_readers(model, t)
            self._one_input = () if not one else (
                t.feature_shape,
                [(o.feature_shape, o.dtype if is_integer_dtype(o.dtype) else self.dtype)
                 for o in model.outputs])
        return self._one_input

    def _repeat_pass(self, x: np.ndarray, batch_size: int | None) -> Any:
        """``predict(x, batch_size, verbose=0)`` as one native call with none of the
        general path's preparation, when a pass like it already ran natively
        (``Executor.ready_pass``) and ``x`` needs no conversion: a C-contiguous array of
        the model's float dtype and input shape, all finite. Computes what the general path
        computes (the same compiled function on the same arrays); ``None`` where that path
        must run, which also raises every error (a NaN included)."""
        shapes = self._model_shapes()
        n = x.shape[0] if x.ndim else 0
        if not shapes or not n or x.dtype != self.dtype or not x.flags.c_contiguous \
                or x.shape[1:] != shapes[0] or not all_finite(x):
            return None
        batch = min(batch_size or 32, n)
        full = n // batch
        rest = n - full * batch
        results = [np.empty((n, *shape), dt) for shape, dt in shapes[1]]
        sources = [x]
        ex = self.executor
        self.store.to_device()
        with compiling.notices(False), ex.lock:
            ready = ex.ready_pass(batch, rest, sources, results)
            if ready is None:
                return None
            prog, compiled = ready
            with ex.device.step_guard(prog.threaded):
                compiled(sources, results, 0, full, rest > 0)
        return results[0] if len(results) == 1 else results

    #: With a live progress bar, a native pass call grows until it takes this long.
    BAR_SECONDS = 0.025

    def _native_pass(self, feed: ArrayFeed, results: list[np.ndarray], bar: ProgressBar) -> int:
        """Runs the batches of an in-memory pass as native calls over many batches
        (``Executor.run_forward_pass``) when ``jit_step`` says so; returns how many ran (0:
        the loop runs them all, else the loop runs those left). A silent bar takes one call
        for all batches; a live one (``verbose=1`` on a terminal) calls over 1, 2, 4, ...
        batches until a call takes :attr:`BAR_SECONDS`, redrawing between calls. The last,
        shorter batch is another program (the tail), compiled into the same function and
        run at the end of the last call."""
        ex = self.executor
        if ex.jit_step is False or not feed.n:
            return 0
        full = feed.n // feed.batch
        rest = feed.n - full * feed.batch
        live = bar.verbose == 1 and bar.dynamic
        done, chunk = 0, 1 if live else full
        while True:
            last = min(done + chunk, full)
            t0 = time.perf_counter()
            with ex.lock:  # one arena: one thread's batches at a time
                prog = ex.program(feed.batch)  # first: the tail binds into its arena
                tail = ex.program(rest) if rest else None
                ran = ex.run_forward_pass(prog, feed.sources, results, done, last, tail,
                                          with_tail=last == full)
            asked = last - done + (tail is not None and last == full)
            done += ran
            bar.update(done)
            if ran < asked or last == full:
                return done
            if time.perf_counter() - t0 < self.BAR_SECONDS:
                chunk *= 2


def predictor(model: Any) -> Predictor:
    """The model's predictor (its trainer's, once compiled)."""
    trainer = getattr(model, "_trainer", None)
    if trainer is not None:
        return trainer.predictor
    p = getattr(model, "_predictor", None)
    if p is None:
        p = model._predictor = Predictor(model)
    return p


class Trainer:
    """What ``compile`` sets up; ``fit``/``evaluate``/``train_on_batch`` run on it."""

    def __init__(self, model: Any, optimizer: Any, loss: Any, metrics: Any,
                 loss_weights: Any, device: str, jit_step: bool | str = False,
                 distribute: Any = None, steps_per_execution: int = 1) -> None:

        self.model = model
        self.device = check_device(device)
        #: Batches per execution (Keras): batch callbacks are called once per execution.
        self.steps_per_execution = steps_per_execution
        if not (jit_step is True or jit_step is False or jit_step == "auto"):
            raise ArgumentError(f"compile(): jit_step must be True, False or 'auto', got "
                                f"{jit_step!r}.")
        names = model.output_names
        if loss is None:
            raise ValueError(f"Model '{model.name}': compile() needs a loss, e.g. "
                             "loss='categorical_crossentropy'.")
        loss_names = self._per_output(loss, names, "loss")
        self.losses = [resolve_loss(n) for n in loss_names]
        weights = [1.0] * len(names) if loss_weights is None else \
            [_loss_weight(w) for w in self._per_output(loss_weights, names, "loss_weights")]
        per_output_metrics = self._metrics(metrics, names)
        self.objectives = [
            Objective(loss_fn, w, [resolve_metric(m, loss_fn.name,
                                                  int(out.feature_shape[-1]), loss_fn.sparse)
                                    for m in ms])
            for loss_fn, w, ms, out in zip(self.losses, weights, per_output_metrics,
                                           model.outputs)]
        self._mask_objectives(distribute)
        self.optimizer = opt_module.get(optimizer)
        # What ``model.save`` records to compile a loaded model the same way (by name).
        self.config = {"loss": [saved_form(loss_fn) for loss_fn in self.losses],
                       "loss_weights": weights,
                       "metrics": [[m if isinstance(m, str) else getattr(m, "name", str(m))
                                    for m in ms] for ms in per_output_metrics],
                       "jit_step": jit_step, "steps_per_execution": steps_per_execution}
        self._layout: tuple[list[str], list[str], list[Any]] | None = None  # _log_layout
        self.predictor = Predictor(model, self.device)
        self.plan = self.predictor.plan
        self.dtype = self.predictor.dtype
        self.store = self.predictor.store
        self.optimizer.build(self.store.trainable_size, self.dtype, get_device(self.device))
        self.train_executor = Executor(self.plan, self.store, True, self.objectives,
                                       self.optimizer, jit_step=jit_step)
        self.eval_executor = Executor(self.plan, self.store, False, self.objectives,
                                      jit_step=jit_step)
        self.predictor.executor.jit_step = jit_step
        model._predictor = self.predictor
        self.distribute = None
        if distribute is not None:  # a strategy (nexec.distribute) binds itself to this trainer
            if not callable(getattr(distribute, "attach", None)):
                raise ArgumentTypeError(f"compile(): distribute must be None or a strategy such "
                                        f"as nexec.distribute.RayDataParallel(), got "
                                        f"{distribute!r}.")
            self.distribute = distribute.attach(self)

    def _mask_objectives(self, distribute: Any) -> None:
        """Keras 3's masks on the objectives of the outputs that carry one: their metrics
        become masked ones (``nexec.training.masking``; the executor weights their losses);
        what nexec cannot weigh by the mask is refused here, never computed unmasked."""
        device = get_device(self.device)
        for k, (out, obj) in enumerate(zip(self.model.outputs, self.objectives)):
            if out.mask is None:
                continue
            name = self.model.output_names[k]
            if tuple(out.mask.feature_shape) != tuple(out.feature_shape[:-1]):
                raise ArgumentError(
                    f"compile(): output {name!r} {out.shape} carries a mask of shape "
                    f"{out.mask.shape} (from {out.mask.name!r}), not one flag per loss row "
                    f"{(None, *out.feature_shape[:-1])}; nexec cannot weight its loss by it.")
            if obj.loss.on(device).weighted is None:
                raise ArgumentError(
                    f"compile(): output {name!r} carries a mask (from Embedding(mask_zero="
                    f"True)), which Keras 3 applies to the loss as per-row weights, but loss "
                    f"{obj.loss.name!r} has no weighted kernel on device '{self.device}'.")
            if distribute is not None:
                raise ArgumentError(
                    f"compile(distribute=...): output {name!r} carries a mask; its loss is "
                    "divided by the valid rows of the whole batch, which data-parallel "
                    "training does not combine yet. Train on one process.")
            obj.metrics = [(n, masked_metric(metric, n, name)) for n, metric in obj.metrics]

    @staticmethod
    def _per_output(value: Any, names: list[str], what: str) -> list[Any]:
        if isinstance(value, dict):
            unknown = [k for k in value if k not in names]
            if unknown:
                raise ValueError(f"{what} has keys {unknown} that are not outputs; outputs: "
                                 f"{names}.")
            missing = [n for n in names if n not in value]
            if missing:
                raise ValueError(f"{what} gives nothing for output(s) {missing}.")
            return [value[n] for n in names]
        if isinstance(value, (list, tuple)):
            if len(value) != len(names):
                raise ValueError(f"{what} has {len(value)} entries for {len(names)} outputs "
                                 f"({', '.join(names)}).")
            return list(value)
        return [value] * len(names)

    @staticmethod
    def _metrics(metrics: Any, names: list[str]) -> list[list[Any]]:
        """Per output, its metrics, from the forms Keras 3 accepts: a list (a single output's
        metrics, or one entry per output: a metric, a list of metrics or None), a list
        holding one list (single output), or a dict by output name."""
        forms = ("a list such as ['accuracy', 'mae'], one entry per output for a model with "
                 "several outputs (a metric, a list of metrics, or None), or a dict by "
                 f"output name (outputs: {names})")

        def entries(v: Any) -> list[Any]:
            items = [] if v is None else list(v) if isinstance(v, (list, tuple)) else [v]
            for m in items:
                if isinstance(m, (list, tuple, dict)) or m is None:
                    raise ValueError(f"compile(metrics=...): {m!r} inside {v!r} is not a "
                                     f"metric; metrics must be {forms}.")
            return items

        if metrics is None:
            return [[] for _ in names]
        if isinstance(metrics, dict):
            unknown = [k for k in metrics if k not in names]
            if unknown:
                raise ValueError(f"compile(metrics=...) has keys {unknown} that are not "
                                 f"outputs; outputs: {names}.")
            return [entries(metrics.get(n)) for n in names]
        if not isinstance(metrics, (list, tuple)):
            raise ArgumentTypeError(f"compile(metrics=...) must be a list, tuple or dict (as in "
                             f"Keras 3), got {metrics!r} of type {type(metrics).__name__}; "
                             f"metrics must be {forms}.")
        if len(names) == 1:
            nested = len(metrics) == 1 and isinstance(metrics[0], (list, tuple))
            return [entries(metrics[0] if nested else metrics)]
        if len(metrics) != len(names):
            raise ValueError(f"compile(metrics=...) has {len(metrics)} entries for "
                             f"{len(names)} outputs ({', '.join(names)}); metrics must be "
                             f"{forms}.")
        return [entries(m) for m in metrics]

    def metrics_names(self) -> list[str]:
        """The names of ``evaluate``'s values, in its order (``loss``, per-output losses,
        metrics), as ``model.metrics_names``."""
        loss_names, metric_names = self._log_names()
        return ["loss", *loss_names, *(n for names in metric_names for n in names)]

    # ----- logs ---------------------------------------------------------------------------------
    def _log_layout(self) -> tuple[list[str], list[str], list[Any]]:
        """The per-output loss names, then every metric's log name and metric object in
        log order: fixed once compiled, so made once (``epoch_logs`` runs every epoch)."""
        layout = self._layout
        if layout is None:
            loss_names, metric_names = self._log_names()
            layout = self._layout = (
                loss_names, [name for names in metric_names for name in names],
                [m for o in self.objectives for _, m in o.metrics])
        return layout

    def _log_names(self) -> tuple[list[str], list[list[str]]]:
        names = self.model.output_names
        multi = len(names) > 1
        loss_names = [f"{n}_loss" for n in names] if multi else []
        metric_names = [[f"{n}_{m[0]}" if multi else m[0] for m in o.metrics]
                        for n, o in zip(names, self.objectives)]
        seen: dict[str, int] = {}  # a repeated name gets _1, _2, ... as in Keras 3
        for names_k in metric_names:
            for i, name in enumerate(names_k):
                if name in seen:
                    names_k[i] = f"{name}_{seen[name]}"
                    seen[name] += 1
                else:
                    seen[name] = 1
        return loss_names, metric_names

    # ----- loops --------------------------------------------------------------------------------
    def _run_epoch(self, executor: Executor, batches: Iterable[Batch], train: bool,
                   bar: ProgressBar | None = None, callbacks: CallbackList | None = None,
                   span: _Span | None = None) -> dict[str, float]:
        """One pass over ``batches``, training (``train``) or evaluating; its logs.

        With ``span`` (in-memory arrays, :meth:`_epoch`) the full batches may run as native
        calls over many batches (:meth:`_native_epoch`); their per-batch results are
        accounted here in the loop's order, so the logs are the loop's bit for bit."""
        k = len(self.model.outputs)
        per_output = [0.0] * k
        loss_sum = 0.0
        out_sums = [0.0] * k
        seen = 0
        counts: list[Any] | None = None
        totals: list[int] = []

        def start(prog: Program) -> None:
            nonlocal counts, totals
            if counts is None:  # a number per 1-element slot, a host array per longer one
                counts = [0 if s.shape[0] == 1 else np.zeros(s.shape[0], s.dtype)
                          for _, _, s, _ in prog.metric_slots]
                totals = [0] * len(prog.metric_slots)

        def account(prog: Program, b: int, rows: list[list[float]]) -> None:
            """Adds steps of ``prog`` of ``b`` rows each, one after the other, each given by
            its loss slots' values (``prog.loss_slots`` order): its total loss is summed
            here as ``Executor._results`` sums it (the loop passes one step, a replay
            many). Each float sum takes the steps in order; the sums are independent of
            each other, so each runs over all steps in turn (and integer counts multiply)."""
            nonlocal loss_sum, seen
            if not rows:
                return
            slots = prog.loss_slots
            weights = [weight for _, weight, _ in slots]
            for row in rows:
                total = 0.0
                for weight, value in zip(weights, row):
                    total += weight * value
                loss_sum += total * b
            column = {out: i for i, (out, _, _) in enumerate(slots)}
            for j in range(k):  # per output: its loss (the last step's stays, as in a step)
                i = column.get(j)
                s = out_sums[j]
                if i is None:  # no loss slot: the value of before, every step
                    for _ in rows:
                        s += per_output[j] * b
                else:
                    for row in rows:
                        s += row[i] * b
                    per_output[j] = rows[-1][i]
                out_sums[j] = s
            n = len(rows)
            for m, (*_, total_m) in enumerate(prog.metric_slots):
                if type(total_m) is int:
                    totals[m] += total_m * n
                else:
                    for _ in rows:
                        totals[m] += total_m
            seen += b * n

        def replay(losses: np.ndarray, metrics: list[np.ndarray],
                   parts: list[tuple[Program, int, int]]) -> None:
            """Accounts the native batches of ``parts``, ``(program, lo, hi)`` each: rows
            ``lo:hi`` of the results, in order, as ``Executor._results`` and the loop
            account a step (same values, same order of additions)."""
            assert counts is not None
            for prog, lo, hi in parts:
                if hi <= lo:
                    continue
                # Python floats and ints of the rows, as ``float()``/``.item()`` give them
                account(prog, prog.batch, losses[lo:hi].tolist())
                for m, values in enumerate(metrics):
                    acc = counts[m]
                    if isinstance(acc, np.ndarray):
                        for r in range(lo, hi):
                            np.add(acc, values[r], out=acc)
                    else:
                        for value in values[lo:hi, 0].tolist():
                            acc += value
                        counts[m] = acc

        def running() -> dict[str, float]:  # Keras' batch logs: the epoch's results so far
            return self.epoch_logs(loss_sum, out_sums, seen, counts, totals)

        spe = self.steps_per_execution if callbacks is not None else 1
        done, stopped = 0, False
        hooks = _batch_hooks(callbacks) if span is not None else False
        if span is not None and (spe > 1 or not hooks):
            done, stopped = self._native_epoch(executor, train, span, bar, start, replay,
                                               lambda: loss_sum / max(seen, 1),
                                               callbacks, spe, running, hooks)
        if stopped or span is not None and done >= span.steps:
            return running()  # a batch callback stopped training, or all batches ran natively
        marked = _with_last(batches) if spe > 1 else ((b, False) for b in batches)
        for i, (data, last) in enumerate(marked):
            if i < done:  # ran natively
                continue
            b = data.size
            if callbacks is not None and (i - done) % spe == 0:  # an execution begins
                for c in callbacks.batch_begin:
                    c.on_train_batch_begin(i)
            with executor.lock:  # one arena: one thread's batch at a time
                prog: Program = executor.program(b, data.weighted)
                executor.load(prog, data.sources, data.lo, data.hi, data.order)
                start(prog)
                assert counts is not None  # set by start()
                step = executor.train_step if train else executor.evaluate_step
                step(prog, per_output, counts)
            # the step's total again, from the same values in the same order
            account(prog, b, [[per_output[out] for out, _, _ in prog.loss_slots]])
            if bar is not None:
                bar.update(i + 1, {"loss": loss_sum / seen} if bar.dynamic else None)
            if callbacks is not None and callbacks.batch_end and \
                    ((i - done + 1) % spe == 0 or last):  # an execution ends
                logs = running()
                for c in callbacks.batch_end:
                    c.on_train_batch_end(i, logs)
                if self.model.stop_training:
                    break  # a batch callback (TerminateOnNaN) stopped training, as in Keras
        return running()

    #: With a live progress bar, a native epoch call grows until it takes this long.
    BAR_SECONDS = Predictor.BAR_SECONDS

    @staticmethod
    def _epoch(feed: Feed) -> tuple[Iterable[Batch], _Span | None]:
        """The batches of ``feed``'s next epoch and, for in-memory arrays, the span of
        them native calls may run (``None``: the loop runs them all)."""
        if not isinstance(feed, ArrayFeed):
            return feed.epoch(), None
        first, steps = feed.position, feed.epoch_steps() or 0
        batches = feed.epoch()
        return batches, _Span(feed.sources, feed.order, feed.batch, feed.n, first, steps,
                              feed.weighted)

    def _native_epoch(self, executor: Executor, train: bool, span: _Span,
                      bar: ProgressBar | None, start: Any, replay: Any, mean: Any,
                      callbacks: CallbackList | None = None, spe: int = 1,
                      running: Any = None, hooks: bool | None = None) -> tuple[int, bool]:
        """Runs the batches of an epoch's span as native calls over many batches
        (``Executor.run_epoch``) when ``jit_step`` says so; returns how many ran (0: the
        loop runs them all, else the loop runs those left) and whether a batch callback
        stopped training. The last, shorter batch is another program (the tail), compiled
        into the same function and run at the end of the call that reaches it. Each call's
        per-batch results are replayed (``replay``) before the bar moves. Where callbacks
        have batch hooks, each call is one execution of ``spe`` batches
        (``steps_per_execution``), the hooks called around it with its first and last batch
        index and the ``running()`` logs; otherwise a live bar grows calls over 1, 2, 4, ...
        batches until one takes :attr:`BAR_SECONDS`, as ``predict`` does, and a silent one
        takes them in one call. ``hooks``: ``_batch_hooks(callbacks)`` when the caller
        knows it."""
        if executor.jit_step is False:
            return 0, False
        order = span.order if span.order is not None else np.arange(span.n, dtype=np.int64)
        whole = span.n // span.batch  # full batches of the pass
        full = max(0, min(span.first + span.steps, whole) - span.first)
        rest = span.n - whole * span.batch
        tail_left = bool(rest) and span.first + span.steps > whole  # the span ends with it
        if hooks is None:
            hooks = _batch_hooks(callbacks)
        live = bar is not None and bar.verbose == 1 and bar.dynamic
        mode = "train" if train else "evaluate"
        done, chunk = 0, spe if hooks else 1 if live else max(full, 1)
        while done < full or tail_left:
            last = min(done + chunk, full)
            # The tail joins the call that reaches it (an execution with room for it).
            with_tail = tail_left and last == full and (not hooks or last - done < spe)
            t0 = time.perf_counter()
            if hooks:
                for c in callbacks.batch_begin:  # type: ignore[union-attr]
                    c.on_train_batch_begin(done)
            with executor.lock:  # one arena: one thread's batches at a time
                prog = executor.program(span.batch, span.weighted)  # first: the tail binds
                tail = executor.program(rest, span.weighted) if tail_left else None  # in it
                ran, losses, metrics = executor.run_epoch(
                    prog, mode, span.sources, order, span.first + done,
                    span.first + last, tail, with_tail)
                asked = last - done + with_tail
                start(prog)
                if with_tail and ran == asked:  # the tail ran: its row is the last
                    replay(losses, metrics, [(prog, 0, ran - 1), (tail, ran - 1, ran)])
                    tail_left = False
                else:
                    replay(losses, metrics, [(prog, 0, ran)])
            done += ran
            if bar is not None:
                bar.update(done, {"loss": mean()} if bar.dynamic else None)
            if hooks and ran:
                logs = running()
                for c in callbacks.batch_end:  # type: ignore[union-attr]
                    c.on_train_batch_end(done - 1, logs)
                if self.model.stop_training:
                    return done, True
            if ran < asked:
                return done, False
            if not hooks and time.perf_counter() - t0 < self.BAR_SECONDS:
                chunk *= 2
        return done, False

    def epoch_logs(self, loss_sum: float, out_sums: list[float], seen: int,
                   counts: list[Any] | None, totals: list[int]) -> dict[str, float]:
        """An epoch's logs from its sums: the mean losses over ``seen`` rows and each
        metric's result from its accumulated slots (``counts``, ``totals``)."""
        loss_names, flat_names, flat_metrics = self._log_layout()
        logs = {"loss": loss_sum / max(seen, 1)}
        for name, s in zip(loss_names, out_sums):
            logs[name] = s / max(seen, 1)
        for name, metric, c, t in zip(flat_names, flat_metrics, counts or [], totals):
            logs[name] = metric.result(np.atleast_1d(c), t)
        return logs

    def _data(self, x: Any, y: Any, where: str, sample_weight: Any = None,
              class_weight: Any = None) -> tuple[list[np.ndarray], list[np.ndarray],
                                                 list[np.ndarray] | None]:
        """Checked inputs, targets and per-output sample weights (None: unweighted)."""
        xs = as_inputs(x, self.model, self.dtype)
        ys = as_targets(y, self.model, self.losses, self.dtype)
        if len(xs[0]) != len(ys[0]):
            raise DataError(f"x has {len(xs[0])} samples but y has {len(ys[0])}.")
        ws = as_sample_weights(sample_weight, class_weight, ys, self.model, self.losses,
                               self.dtype, where)
        return xs, ys, ws

    def fit(self, x: Any, y: Any, batch_size: int | None = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: Any = None, validation_split: float = 0.0,
            validation_data: Any = None, shuffle: bool = True, initial_epoch: int = 0,
            steps_per_epoch: int | None = None, validation_freq: Any = 1,
            sample_weight: Any = None, class_weight: Any = None,
            validation_steps: int | None = None) -> History:
        with compiling.notices(verbose != 0):
            return self._fit(x, y, batch_size, epochs, verbose, callbacks, validation_split,
                             validation_data, shuffle, initial_epoch, steps_per_epoch,
                             validation_freq, sample_weight, class_weight, validation_steps)

    def _fit(self, x: Any, y: Any, batch_size: int | None, epochs: int, verbose: Any,
             callbacks: Any, validation_split: float, validation_data: Any, shuffle: bool,
             initial_epoch: int, steps_per_epoch: int | None, validation_freq: Any,
             sample_weight: Any, class_weight: Any, validation_steps: int | None) -> History:
        batch_size = optional_positive_int(batch_size, "batch_size", "fit()")
        model = self.model
        _check_steps(steps_per_epoch, "fit(steps_per_epoch=...)")
        _check_steps(validation_steps, "fit(validation_steps=...)")
        if validation_split and validation_data is None:
            if not 0 < validation_split < 1:
                raise ValueError(f"validation_split must be in (0, 1), got {validation_split}.")
            if is_stream(x, y) and source_name(x) != "memory-mapped arrays":
                raise ValueError(f"`validation_split` is only supported for arrays, not for "
                                 f"a {source_name(x)}; pass validation_data instead.")
        val_source = validation_data
        if validation_data is None and validation_split and is_stream(x, y):
            cut = int(len(split_by_name(x, model.input_names, "input")[0])
                      * (1 - validation_split))
            val_source = (_rows(x, slice(cut, None)), _rows(y, slice(cut, None)))
            if sample_weight is not None and class_weight is None:
                val_source += (weight_rows(sample_weight, slice(cut, None)),)
            x, y = _rows(x, slice(None, cut)), _rows(y, slice(None, cut))
            sample_weight = weight_rows(sample_weight, slice(None, cut))
        feed = make_feed(model, self.dtype, self.losses, x, y, batch_size, shuffle,
                         steps_per_epoch, "fit()", sample_weight, class_weight,
                         stream_memmaps=self.distribute is None)
        if self.distribute is not None:
            if not isinstance(feed, ArrayFeed):
                raise ArgumentError("fit(): compile(distribute=...) trains from in-memory "
                                    f"arrays; got a {source_name(x)}.")
            if feed.weighted:
                raise ArgumentError("fit(): sample_weight and class_weight are not supported "
                                    "with compile(distribute=...) yet; train without them or "
                                    "on one process.")
            self.distribute.check_batch(feed.batch)
        _check_validation_freq(validation_freq)
        batch = feed.batch if isinstance(feed, ArrayFeed) else batch_size or 32
        val: Feed | None = None
        if validation_data is None and validation_split and isinstance(feed, ArrayFeed):
            cut = int(feed.n * (1 - validation_split))
            if cut == 0:
                raise DataError("fit() got no training samples.")
            batch = min(batch_size or 32, cut)
            # Keras splits sample weights too; class weights weigh the training part only.
            unweighted = class_weight is not None
            width = len(model.inputs) + len(model.outputs)  # the weights follow
            val_sources = feed.sources[:width] if unweighted else feed.sources
            val = ArrayFeed([a[cut:] for a in val_sources], batch,
                            weighted=feed.weighted and not unweighted)
            feed = ArrayFeed([a[:cut] for a in feed.sources], batch, shuffle, steps_per_epoch,
                             weighted=feed.weighted)
        elif val_source is not None:
            if isinstance(val_source, (tuple, list)) and not isinstance(val_source, PyDataset):
                if len(val_source) not in (2, 3):
                    raise DataError(f"fit(validation_data=...) takes (x_val, y_val), (x_val, "
                                    f"y_val, val_sample_weight) or a stream, got a "
                                    f"{type(val_source).__name__} of {len(val_source)}.")
                vx, vy, *vsw = val_source
            else:
                vx, vy, vsw = val_source, None, []
            val = make_feed(model, self.dtype, self.losses, vx, vy, batch, False,
                            validation_steps, "fit(validation_data=...)", *vsw)
        verbose = _verbosity(verbose)
        for value, name in ((epochs, "epochs"), (initial_epoch, "initial_epoch")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ArgumentTypeError(f"fit(): {name} must be an int >= 0, got {value!r} "
                                        f"({type(value).__name__}).")
            if value < 0:
                raise ArgumentError(f"fit(): {name} must be an int >= 0, got {value!r}.")
        history = History()
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            raise ArgumentTypeError("fit(): callbacks must be a list of nexec.callbacks.Callback "
                                    f"objects, got {type(callbacks).__name__} {callbacks!r:.60}.")
        user = list(callbacks or [])
        for c in user:
            if not isinstance(c, Callback):
                raise TypeError(f"callbacks must be nexec.callbacks.Callback objects, "
                                f"got {type(c).__name__}.")
        cbs = CallbackList(user + [history], model,
                           {"epochs": epochs, "steps": feed.steps, "verbose": verbose})
        model.stop_training = False
        model.history = history
        model._initial_epoch = None
        device = get_device(self.device)
        cbs.call("on_train_begin", {})
        initial_epoch = model._initial_epoch or initial_epoch  # BackupAndRestore sets it
        model._initial_epoch = None
        self.store.to_device()
        warned_nan = False
        try:
            for epoch in range(initial_epoch, epochs):
                cbs.call("on_epoch_begin", epoch, {})
                self.store.to_device()  # a callback may have set weights
                if verbose:
                    print(f"Epoch {epoch + 1}/{epochs}", flush=True)
                # verbose=0 shows nothing: no bar to keep up to date
                bar = ProgressBar(feed.epoch_steps(), verbose) if verbose else None
                batches, span = self._epoch(feed)
                if self.distribute is None:
                    logs = self._run_epoch(self.train_executor, batches, True, bar, cbs, span)
                else:
                    logs = self.distribute.run_epoch(self.train_executor, batches, True, bar,
                                                     cbs)
                if feed.exhausted:  # the data ran out: no batch this epoch (Keras' warning)
                    break
                if not warned_nan and not math.isfinite(logs["loss"]):
                    warned_nan = True
                    warnings.warn(f"Epoch {epoch + 1}: the training loss of model '{model.name}' "
                                  f"is {logs['loss']}; training has diverged (try a smaller "
                                  "learning rate, or stop at once with "
                                  "callbacks.TerminateOnNaN()).", RuntimeWarning, stacklevel=3)
                if val is not None and _should_eval(epoch, validation_freq):
                    vbatches, vspan = self._epoch(val)
                    vlogs = self._run_epoch(self.eval_executor, vbatches, False, span=vspan)
                    if not val.exhausted:
                        logs.update({f"val_{k}": v for k, v in vlogs.items()})
                if bar is not None:
                    bar.waited = feed.waited
                    bar.finish(logs)
                self.store.from_device(device)  # callbacks read (and may set) the weights
                cbs.call("on_epoch_end", epoch, logs)
                if model.stop_training:
                    break
        finally:
            feed.close()
            if val is not None:
                val.close()
        self.store.from_device(device)  # weights come back once, after training
        cbs.call("on_train_end", {})
        return history

    def evaluate(self, x: Any, y: Any, batch_size: int | None = None, verbose: Any = "auto",
                 sample_weight: Any = None, steps: int | None = None,
                 return_dict: bool = False) -> Any:
        batch_size = optional_positive_int(batch_size, "batch_size", "evaluate()")
        _check_steps(steps, "evaluate(steps=...)")
        feed = make_feed(self.model, self.dtype, self.losses, x, y, batch_size, False, steps,
                         "evaluate()", sample_weight)
        bar = ProgressBar(feed.epoch_steps(), _verbosity(verbose, 0))
        self.store.to_device()
        try:
            with compiling.notices(verbose != 0):
                batches, span = self._epoch(feed)
                logs = self._run_epoch(self.eval_executor, batches, False, bar, span=span)
        finally:
            feed.close()
        bar.waited = feed.waited
        bar.finish(logs)
        return _result(logs, return_dict)

    def train_on_batch(self, x: Any, y: Any, sample_weight: Any = None, class_weight: Any = None,
                       return_dict: bool = False) -> Any:
        feed = self._one_batch(x, y, "train_on_batch()", sample_weight, class_weight)
        self.store.to_device()
        logs = self._run_epoch(self.train_executor, feed.epoch(), True)
        self.store.from_device(get_device(self.device))
        return _result(logs, return_dict)

    def test_on_batch(self, x: Any, y: Any, sample_weight: Any = None,
                      return_dict: bool = False) -> Any:
        """Loss (and metrics) of one batch, without updating anything."""
        feed = self._one_batch(x, y, "test_on_batch()", sample_weight)
        self.store.to_device()
        logs = self._run_epoch(self.eval_executor, feed.epoch(), False)
        return _result(logs, return_dict)

    def _one_batch(self, x: Any, y: Any, what: str, sample_weight: Any = None,
                   class_weight: Any = None) -> ArrayFeed:
        xs, ys, ws = self._data(x, y, what, sample_weight, class_weight)
        if len(xs[0]) == 0:
            raise DataError(f"{what} got no samples (x has 0 rows).")
        return ArrayFeed(xs + ys + (ws or []), len(xs[0]), weighted=ws is not None)


def _with_last(items: Iterable[Any]) -> Iterable[tuple[Any, bool]]:
    """``(item, is_last)`` for each of ``items``, looking one ahead."""
    it = iter(items)
    try:
        prev = next(it)
    except StopIteration:
        return
    for item in it:
        yield prev, False
        prev = item
    yield prev, True


def _batch_hooks(callbacks: CallbackList | None) -> bool:
    """Whether a callback does something per batch, so each batch must be its own step:
    any that overrides ``on_train_batch_begin``/``on_train_batch_end``, except nexec's
    ``ModelCheckpoint`` and ``BackupAndRestore`` saving per epoch (their hook returns at
    once)."""
    if callbacks is None:
        return False

    def idle(c: Callback) -> bool:
        hook = type(c).on_train_batch_end
        return isinstance(c, (ModelCheckpoint, BackupAndRestore)) and c.save_freq == "epoch" \
            and "on_train_batch_end" not in c.__dict__ \
            and hook in (ModelCheckpoint.on_train_batch_end, BackupAndRestore.on_train_batch_end)

    return bool(callbacks.batch_begin) or not all(idle(c) for c in callbacks.batch_end)


@dataclass
class _Span:
    """An in-memory epoch as native calls take it: all rows of ``sources`` (inputs,
    targets, weights), their ``order`` (every row; ``None``: in order), and batches
    ``first`` .. ``first + steps - 1`` of ``batch`` rows."""

    sources: list[np.ndarray]
    order: np.ndarray | None
    batch: int
    n: int
    first: int
    steps: int
    weighted: bool


def _result(logs: dict[str, float], return_dict: bool) -> Any:
    """Keras' return value: the logs dict, or its one value, or its values as a list."""
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def _check_validation_freq(freq: Any) -> None:
    if isinstance(freq, bool) or not (
            (isinstance(freq, int) and freq > 0)
            or (isinstance(freq, (list, tuple)) and all(isinstance(e, int) for e in freq))):
        raise ValueError(f"Expected `validation_freq` to be a positive int or a list of epochs. "
                         f"Received: validation_freq={freq!r} of the type {type(freq)}.")


def _should_eval(epoch: int, freq: Any) -> bool:
    """Keras: validate after epoch ``e`` (1-based) when ``e % freq == 0`` or ``e in freq``."""
    if isinstance(freq, int):
        return (epoch + 1) % freq == 0
    return epoch + 1 in freq


def _loss_weight(w: Any) -> float:
    """One entry of ``compile(loss_weights=...)``: a finite number >= 0."""
    if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)):
        raise ArgumentTypeError(f"compile(): loss_weights entries must be numbers, got "
                                f"{w!r} ({type(w).__name__}).")
    if not np.isfinite(w) or w < 0:
        raise ArgumentError(f"compile(): loss_weights entries must be finite and >= 0, "
                            f"got {w!r}.")
    return float(w)
