"""compile / fit / evaluate / predict: the Keras training loop over a planned executor.

``compile`` plans once and builds three executors sharing the flat parameters: training
(forward, loss, backward, update), evaluation (forward and loss) and inference (forward).
The loops here only move batches in and read scalars out; all arithmetic is in kernels.
"""
from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np

from nexec.checks import ArgumentError, ArgumentTypeError, optional_positive_int
from nexec.devices import check_device, get_device
from nexec.errors import DataError
from nexec.graph import is_integer_dtype
from nexec.planner import make_plan
from nexec.random import generator
from nexec.runtime import compiling
from nexec.runtime.executor import Executor, Objective, Program
from nexec.runtime.params import ParamStore
from nexec.training import optimizers as opt_module
from nexec.training.callbacks import Callback, CallbackList, History
from nexec.training.data import as_inputs, as_targets
from nexec.training.loss_objects import resolve as resolve_loss
from nexec.training.loss_objects import saved_form
from nexec.training.metrics import resolve_metric
from nexec.training.progress import ProgressBar
from nexec.training.sample_weights import as_sample_weights

__all__ = ["Trainer", "Predictor", "predictor", "param_store"]


def param_store(model: Any, plan: Any) -> ParamStore:
    """The model's flat parameter store, made once and shared by all its executors."""
    layers = list({id(op.layer): op.layer for op in plan.graph.ops}.values())
    store = getattr(model, "_param_store", None)
    if store is None or not store.owns(layers):
        store = ParamStore(layers, plan.graph.dtype)
        model._param_store = store
    return store


def _verbosity(verbose: Any, default_when_not_tty: int = 1) -> int:
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else default_when_not_tty
    return int(verbose)


def _slices(n: int, batch: int) -> list[tuple[int, int]]:
    return [(s, min(s + batch, n)) for s in range(0, n, batch)]


class Predictor:
    """Inference over a plan, for ``predict`` (usable before ``compile``)."""

    def __init__(self, model: Any, device: str = "cpu") -> None:
        self.model = model
        self.plan = make_plan(model, check_device(device))
        self.dtype = self.plan.graph.dtype  # the model's float dtype (inputs may be ids)
        self.store = param_store(model, self.plan)
        self.executor = Executor(self.plan, self.store)

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = "auto") -> Any:
        batch_size = optional_positive_int(batch_size, "batch_size", "predict()")
        xs = as_inputs(x, self.model, self.dtype)
        n = len(xs[0])
        batch = batch_size or 32
        results = [np.empty((n, *t.feature_shape), t.dtype if is_integer_dtype(t.dtype)
                            else self.dtype) for t in self.model.outputs]
        bar = ProgressBar(-(-n // batch), _verbosity(verbose, 0))
        self.store.to_device()
        with compiling.notices(verbose != 0):
            self._predict(xs, results, batch, bar)
        bar.finish()
        return results[0] if len(results) == 1 else results

    def _predict(self, xs: list[np.ndarray], results: list[np.ndarray], batch: int,
                 bar: ProgressBar) -> None:
        n = len(xs[0])
        for i, (lo, hi) in enumerate(_slices(n, batch)):
            with self.executor.lock:  # one arena: one thread's batch at a time
                prog = self.executor.program(hi - lo)
                self.executor.load(prog, xs, lo, hi)
                self.executor.run_forward(prog)
                self.executor.read_outputs(prog, results, lo, hi)
            bar.update(i + 1)


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
                 distribute: Any = None) -> None:

        self.model = model
        self.device = check_device(device)
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
        self.optimizer = opt_module.get(optimizer)
        # What ``model.save`` records to compile a loaded model the same way (by name).
        self.config = {"loss": [saved_form(loss_fn) for loss_fn in self.losses],
                       "loss_weights": weights,
                       "metrics": [[m if isinstance(m, str) else getattr(m, "name", str(m))
                                    for m in ms] for ms in per_output_metrics]}
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
    def _run_epoch(self, executor: Executor, xs: list[np.ndarray], ys: list[np.ndarray],
                   batch: int, order: np.ndarray | None, train: bool,
                   bar: ProgressBar | None = None, callbacks: CallbackList | None = None,
                   ws: list[np.ndarray] | None = None) -> dict[str, float]:
        """One pass over ``xs``/``ys`` (with per-output sample weights ``ws``, if any)."""
        n = len(xs[0])
        k = len(ys)
        per_output = [0.0] * k
        loss_sum = 0.0
        out_sums = [0.0] * k
        seen = 0
        counts: list[Any] | None = None
        totals: list[int] = []
        loss_names, metric_names = self._log_names()
        for i, (lo, hi) in enumerate(_slices(n, batch)):
            b = hi - lo
            if callbacks is not None:
                for c in callbacks.batch_begin:
                    c.on_train_batch_begin(i)
            with executor.lock:  # one arena: one thread's batch at a time
                prog: Program = executor.program(b, ws is not None)
                executor.load(prog, xs + ys + (ws or []), lo, hi, order)
                if counts is None:  # a number per 1-element slot, a host array per longer one
                    counts = [0 if s.shape[0] == 1 else np.zeros(s.shape[0], s.dtype)
                              for _, _, s, _ in prog.metric_slots]
                    totals = [0] * len(prog.metric_slots)
                step = executor.train_step if train else executor.evaluate_step
                total = step(prog, per_output, counts)
            loss_sum += total * b
            for j in range(k):
                out_sums[j] += per_output[j] * b
            for m, (*_, total_m) in enumerate(prog.metric_slots):
                totals[m] += total_m
            seen += b
            if bar is not None and bar.dynamic:
                bar.update(i + 1, {"loss": loss_sum / seen})
            if callbacks is not None and callbacks.batch_end:
                for c in callbacks.batch_end:
                    c.on_train_batch_end(i, {"loss": total})
                if self.model.stop_training:
                    break  # a batch callback (TerminateOnNaN) stopped training, as in Keras
        logs = {"loss": loss_sum / max(seen, 1)}
        for name, s in zip(loss_names, out_sums):
            logs[name] = s / max(seen, 1)
        flat_names = [name for names in metric_names for name in names]
        flat_metrics = [m for o in self.objectives for _, m in o.metrics]
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
            sample_weight: Any = None, class_weight: Any = None) -> History:
        with compiling.notices(verbose != 0):
            return self._fit(x, y, batch_size, epochs, verbose, callbacks, validation_split,
                             validation_data, shuffle, initial_epoch, steps_per_epoch,
                             validation_freq, sample_weight, class_weight)

    def _fit(self, x: Any, y: Any, batch_size: int | None, epochs: int, verbose: Any,
             callbacks: Any, validation_split: float, validation_data: Any, shuffle: bool,
             initial_epoch: int, steps_per_epoch: int | None, validation_freq: Any,
             sample_weight: Any, class_weight: Any) -> History:
        batch_size = optional_positive_int(batch_size, "batch_size", "fit()")
        model = self.model
        xs, ys, ws = self._data(x, y, "fit()", sample_weight, class_weight)
        if ws is not None and self.distribute is not None:
            raise ArgumentError("fit(): sample_weight and class_weight are not supported with "
                                "compile(distribute=...) yet; train without them or on one "
                                "process.")
        _check_validation_freq(validation_freq)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or \
                    len(validation_data) not in (2, 3):
                raise ArgumentError("fit(validation_data=...) takes a tuple (x_val, y_val) or "
                                    "(x_val, y_val, val_sample_weight), got "
                                    f"{type(validation_data).__name__}.")
            vx, vy, *vsw = validation_data
            val = self._data(vx, vy, "fit(validation_data=...)", *vsw)
        elif validation_split:
            if not 0 < validation_split < 1:
                raise ValueError(f"validation_split must be in (0, 1), got {validation_split}.")
            cut = int(len(xs[0]) * (1 - validation_split))
            # Keras splits sample weights too; class weights weigh the training part only.
            val = ([a[cut:] for a in xs], [a[cut:] for a in ys],
                   None if ws is None or class_weight is not None else [a[cut:] for a in ws])
            xs, ys = [a[:cut] for a in xs], [a[:cut] for a in ys]
            ws = None if ws is None else [a[:cut] for a in ws]
        n = len(xs[0])
        if n == 0:
            raise DataError("fit() got no training samples.")
        batch = min(batch_size or 32, n)
        batches = -(-n // batch)
        if steps_per_epoch is not None and (
                isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int)
                or steps_per_epoch <= 0):
            raise ValueError(f"fit(steps_per_epoch=...) takes a positive int or None, got "
                             f"{steps_per_epoch!r}.")
        steps = steps_per_epoch or batches
        verbose = _verbosity(verbose)
        history = History()
        user = list(callbacks or [])
        for c in user:
            if not isinstance(c, Callback):
                raise TypeError(f"callbacks must be nexec.callbacks.Callback objects, "
                                f"got {type(c).__name__}.")
        cbs = CallbackList(user + [history], model,
                           {"epochs": epochs, "steps": steps, "verbose": verbose})
        model.stop_training = False
        model.history = history
        model._initial_epoch = None
        device = get_device(self.device)
        cbs.call("on_train_begin", {})
        initial_epoch = model._initial_epoch or initial_epoch  # BackupAndRestore sets it
        model._initial_epoch = None
        self.store.to_device()
        warned_nan = False
        position = 0  # the next batch of the current pass over the data (steps_per_epoch)
        order: np.ndarray | None = None
        for epoch in range(initial_epoch, epochs):
            cbs.call("on_epoch_begin", epoch, {})
            self.store.to_device()  # a callback may have set weights
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}", flush=True)
            if position == 0:
                order = generator().permutation(n) if shuffle else None
            ex, ey, ew, eorder = xs, ys, ws, order
            epoch_steps = batches
            if steps_per_epoch is not None:
                # Keras 3 on arrays: an epoch takes the next ``steps_per_epoch`` batches of
                # one pass over the data, which continues across epochs; a pass that runs
                # out ends the epoch early (with Keras' warning) and the next one starts anew.
                end = position + steps_per_epoch
                if end > batches:
                    warnings.warn("Your input ran out of data; interrupting training. Make sure "
                                  "that your dataset or generator can generate at least "
                                  "`steps_per_epoch * epochs` batches.", stacklevel=3)
                    end = batches
                lo, hi = position * batch, min(end * batch, n)
                rows = order[lo:hi] if order is not None else slice(lo, hi)
                ex, ey = [a[rows] for a in xs], [a[rows] for a in ys]
                ew = None if ws is None else [a[rows] for a in ws]
                eorder, epoch_steps = None, end - position
                position = 0 if end >= batches else end
            bar = ProgressBar(epoch_steps, verbose)
            if self.distribute is None:
                logs = self._run_epoch(self.train_executor, ex, ey, batch, eorder, True, bar,
                                       cbs, ew)
            else:
                logs = self.distribute.run_epoch(self.train_executor, ex, ey, batch, eorder,
                                                 True, bar, cbs)
            if not warned_nan and not np.isfinite(logs["loss"]):
                warned_nan = True
                warnings.warn(f"Epoch {epoch + 1}: the training loss of model '{model.name}' is "
                              f"{logs['loss']}; training has diverged (try a smaller learning "
                              "rate, or stop at once with callbacks.TerminateOnNaN()).",
                              RuntimeWarning, stacklevel=3)
            if val is not None and _should_eval(epoch, validation_freq):
                vlogs = self._run_epoch(self.eval_executor, val[0], val[1], batch, None, False,
                                        ws=val[2])
                logs.update({f"val_{k}": v for k, v in vlogs.items()})
            bar.finish(logs)
            self.store.from_device(device)  # callbacks read (and may set) the weights
            cbs.call("on_epoch_end", epoch, logs)
            if model.stop_training:
                break
        self.store.from_device(device)  # weights come back once, after training
        cbs.call("on_train_end", {})
        return history

    def evaluate(self, x: Any, y: Any, batch_size: int | None = None, verbose: Any = "auto",
                 return_dict: bool = False, sample_weight: Any = None) -> Any:
        batch_size = optional_positive_int(batch_size, "batch_size", "evaluate()")
        xs, ys, ws = self._data(x, y, "evaluate()", sample_weight)
        if len(xs[0]) == 0:
            raise DataError("evaluate() got no samples (x has 0 rows).")
        batch = min(batch_size or 32, len(xs[0]))
        bar = ProgressBar(-(-len(xs[0]) // batch), _verbosity(verbose, 0))
        self.store.to_device()
        with compiling.notices(verbose != 0):
            logs = self._run_epoch(self.eval_executor, xs, ys, batch, None, False, ws=ws)
        bar.finish(logs)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def train_on_batch(self, x: Any, y: Any, sample_weight: Any = None, class_weight: Any = None,
                       return_dict: bool = False) -> Any:
        xs, ys, ws = self._data(x, y, "train_on_batch()", sample_weight, class_weight)
        if len(xs[0]) == 0:
            raise DataError("train_on_batch() got no samples (x has 0 rows).")
        self.store.to_device()
        logs = self._run_epoch(self.train_executor, xs, ys, len(xs[0]), None, True, ws=ws)
        self.store.from_device(get_device(self.device))
        return _result(logs, return_dict)

    def test_on_batch(self, x: Any, y: Any, sample_weight: Any = None,
                      return_dict: bool = False) -> Any:
        """Loss (and metrics) of one batch, without updating anything."""
        xs, ys, ws = self._data(x, y, "test_on_batch()", sample_weight)
        if len(xs[0]) == 0:
            raise DataError("test_on_batch() got no samples (x has 0 rows).")
        self.store.to_device()
        logs = self._run_epoch(self.eval_executor, xs, ys, len(xs[0]), None, False, ws=ws)
        return _result(logs, return_dict)


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
