"""Callbacks with Keras 3's names, arguments, defaults, log keys and messages.

``fit`` calls the hooks; a callback reaches the model as ``self.model`` and the optimizer
through :func:`model_optimizer`. Files are written atomically (``nexec.io.atomic_write``,
``model.save``, ``model.save_weights``), so an interrupted run never leaves half a file.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import warnings
from typing import Any, Callable

import numpy as np

from nexec.io import atomic_write

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "CSVLogger",
           "ReduceLROnPlateau", "LearningRateScheduler", "LambdaCallback", "TerminateOnNaN",
           "BackupAndRestore", "CallbackList", "model_optimizer"]

_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
          "on_train_batch_begin", "on_train_batch_end")


class Callback:
    """Base class: override the hooks you need; ``self.model`` is set by ``fit``."""

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: dict | None = None) -> None: ...
    def on_train_end(self, logs: dict | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None: ...


def model_optimizer(model: Any) -> Any:
    """The compiled model's optimizer (``model.optimizer``, else its trainer's)."""
    opt = getattr(model, "optimizer", None)
    if opt is None and getattr(model, "_trainer", None) is not None:
        opt = model._trainer.optimizer
    if opt is None:
        raise ValueError(f"Model '{getattr(model, 'name', model)}' has no optimizer; "
                         "compile it first.")
    return opt


class History(Callback):
    """Records every epoch's logs: ``history.history["loss"]`` is a list of floats."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))


# ----- monitoring a log value -------------------------------------------------------------
_UP = ("acc", "auc", "precision", "recall", "cosine_similarity")
_DOWN = ("loss", "error", "mse", "mae", "rmse", "mape", "msle", "hinge", "crossentropy",
         "divergence", "poisson", "log_cosh")


class _Monitor(Callback):
    """Keras' ``MonitorCallback``: which way ``monitor`` improves, and by how much."""

    def __init__(self, monitor: str = "val_loss", mode: str = "auto",
                 baseline: float | None = None, min_delta: float = 0.0) -> None:
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode '{mode}' is unknown, fallback to auto "
                          "mode.", stacklevel=3)
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.best = baseline
        self.min_delta = abs(min_delta)
        self._maximize: bool | None = None

    def _direction(self) -> bool:
        """True when larger is better; Keras' rule for ``mode="auto"``: losses go down,
        accuracies (and AUC, precision, recall) go up, anything else must name a mode."""
        if self.mode != "auto":
            return self.mode == "max"
        name = self.monitor.removeprefix("val_")
        if name == "loss" or name.endswith("_loss"):
            return False
        if any(k in name for k in _UP):
            return True
        if any(k in name for k in _DOWN):
            return False
        raise ValueError(f"{type(self).__name__} callback received monitor={self.monitor}, but "
                         "nexec isn't able to automatically determine whether that metric should "
                         "be maximized or minimized. Pass `mode='max'` in order to monitor based "
                         "on the highest metric value, or pass `mode='min'` in order to use the "
                         "lowest value.")

    def _is_improvement(self, value: float, reference: float | None) -> bool:
        if self._maximize is None:
            self._maximize = self._direction()
        if reference is None:
            return True
        if self._maximize:
            return bool(value - self.min_delta > reference)
        return bool(value + self.min_delta < reference)


class EarlyStopping(_Monitor):
    """Stops training when a monitored quantity stops improving (Keras 3).

    Args:
        monitor: Log to watch; default ``"val_loss"``.
        min_delta: Smallest change that counts as an improvement.
        patience: Epochs without improvement before stopping.
        verbose: 1 prints ``Epoch N: early stopping`` and the restore message.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (losses down, accuracies up).
        baseline: Value the monitor must beat before the wait is reset.
        restore_best_weights: At the end of training (stopped early or not), restore the
            weights of the best epoch, as Keras 3 does.
        start_from_epoch: Epochs to wait before monitoring starts.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0) -> None:
        super().__init__(monitor, mode, min_delta=min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.best_epoch = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs)}", stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print("Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(_Monitor):
    """Saves the model (or its weights) at the end of every epoch, atomically.

    Args:
        filepath: Where to save; formatted with ``epoch`` (1-based) and the epoch's logs,
            e.g. ``"ckpt-{epoch:02d}-{val_loss:.2f}.npz"``. The extension chooses the format,
            as for ``model.save``: ``.keras``/``.h5`` a Keras file (no optimizer state), any
            other nexec's own (not required to be Keras' ``.keras``).
        monitor: Log compared when ``save_best_only``.
        verbose: 1 prints Keras' messages.
        save_best_only: Save only when ``monitor`` improves.
        save_weights_only: ``model.save_weights`` instead of ``model.save``.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        save_freq: ``"epoch"`` or a number of batches.
        initial_value_threshold: The value ``monitor`` must beat for the first save.
    """

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq: Any = "epoch",
                 initial_value_threshold: float | None = None) -> None:
        super().__init__(monitor, mode, initial_value_threshold)
        self.filepath = os.fspath(filepath)
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        if save_freq != "epoch" and (not isinstance(save_freq, int) or save_freq <= 0):
            raise ValueError(f"Unrecognized save_freq: {save_freq}. Expected save_freq are "
                             "'epoch' or integer values")
        self.save_freq = save_freq
        self._epoch = 0
        self._counter = _BatchCounter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.save_freq == "epoch":
            return
        if self._counter.due(batch, self.save_freq):
            self._save(self._epoch, batch, logs or {})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    def _path(self, epoch: int, batch: int | None, logs: dict) -> str:
        try:
            if batch is None or "batch" in logs:
                return self.filepath.format(epoch=epoch + 1, **logs)
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except KeyError as e:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". '
                           f"Reason: {e}") from None

    def _should_save(self, epoch: int, logs: dict, path: str) -> bool:
        if not self.save_best_only:
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: saving model to {path}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.",
                          stacklevel=3)
            return True
        best = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
            return True
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best}")
        return False

    def _save(self, epoch: int, batch: int | None, logs: dict) -> None:
        path = self._path(epoch, batch, logs)
        if os.path.isdir(path):
            raise OSError("Please specify a non-directory filepath for ModelCheckpoint. "
                          f"Filepath used is an existing directory: {path}")
        if not self._should_save(epoch, logs, path):
            return
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class CSVLogger(Callback):
    """Streams each epoch's logs to a CSV file (``epoch`` first, then the sorted keys).

    Args:
        filename: The CSV file.
        separator: Field separator.
        append: Append to an existing file (writing the header only if it is empty).
    """

    def __init__(self, filename: str | os.PathLike, separator: str = ",",
                 append: bool = False) -> None:
        super().__init__()
        self.sep = separator
        self.filename = os.fspath(filename)
        self.append = append
        self.keys: list[str] | None = None
        self.writer: Any = None
        self.csv_file: Any = None
        self.append_header = True

    def on_train_begin(self, logs: dict | None = None) -> None:
        mode = "w"
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename) as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode, newline="")  # noqa: SIM115 - kept open
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys.extend([f"val_{k}" for k in self.keys])
        if self.writer is None:
            sep = self.sep

            class Dialect(csv.excel):
                delimiter = sep

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch", *self.keys],
                                         dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((k, logs.get(k, "NA")) for k in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


class ReduceLROnPlateau(_Monitor):
    """Multiplies the learning rate by ``factor`` when ``monitor`` stops improving; adds
    ``learning_rate`` to the epoch's logs.

    Args:
        monitor: Log to watch.
        factor: New rate = rate * factor (must be < 1).
        patience: Epochs without improvement before reducing.
        verbose: 1 prints Keras' message.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        min_delta: Smallest change that counts as an improvement.
        cooldown: Epochs to wait after a reduction before counting again.
        min_lr: Lower bound on the rate.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0, **kwargs: Any) -> None:
        super().__init__(monitor, mode, min_delta=min_delta)
        if factor >= 1.0:
            raise ValueError("ReduceLROnPlateau does not support a factor >= 1.0. "
                             f"Received factor={factor}")
        self.factor = factor
        self.min_lr = min_lr
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        opt = model_optimizer(self.model)
        logs["learning_rate"] = float(opt.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` "
                          f"which is not available. Available metrics are: {','.join(logs)}.",
                          stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old = float(opt.learning_rate)
                if old > np.float32(self.min_lr):
                    new = max(old * self.factor, self.min_lr)
                    opt.learning_rate = new
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """Sets the learning rate at each epoch's start to ``schedule(epoch, lr)`` (or
    ``schedule(epoch)``); adds ``learning_rate`` to the epoch's logs.

    Args:
        schedule: Takes the 0-based epoch (and the current rate), returns a float.
        verbose: 1 prints Keras' message.
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        opt = model_optimizer(self.model)
        try:
            lr = self.schedule(epoch, float(opt.learning_rate))
        except TypeError:  # the one-argument form
            lr = self.schedule(epoch)
        if not isinstance(lr, (float, np.floating)):
            raise ValueError(f"The output of the `schedule` function should be a float. Got: {lr}")
        opt.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(model_optimizer(self.model).learning_rate)


class LambdaCallback(Callback):
    """A callback from plain functions, as Keras': ``on_epoch_begin(epoch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_train_begin(logs)``, ``on_train_end(logs)``,
    ``on_train_batch_begin(batch, logs)``, ``on_train_batch_end(batch, logs)``.
    """

    def __init__(self, on_epoch_begin: Callable | None = None,
                 on_epoch_end: Callable | None = None, on_train_begin: Callable | None = None,
                 on_train_end: Callable | None = None,
                 on_train_batch_begin: Callable | None = None,
                 on_train_batch_end: Callable | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.__dict__.update(kwargs)
        given = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end,
                 "on_train_begin": on_train_begin, "on_train_end": on_train_end,
                 "on_train_batch_begin": on_train_batch_begin,
                 "on_train_batch_end": on_train_batch_end}
        for hook, fn in given.items():
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"LambdaCallback {hook} must be callable, got "
                                    f"{type(fn).__name__}.")
                setattr(self, hook, fn)


class TerminateOnNaN(Callback):
    """Stops training at the first batch whose loss is NaN or infinite.

    Args:
        raise_error: Raise ``RuntimeError`` at once (``on_train_end`` is then not called)
            instead of stopping gracefully.
    """

    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        self.raise_error = raise_error

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: "
                                   f"{loss}. Terminating training immediately.")
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class BackupAndRestore(Callback):
    """Backs up the model (weights and optimizer state) and the epoch at each epoch's end;
    a ``fit`` interrupted by an exception resumes from the backup when run again.

    The backup is ``backup_dir/latest.npz`` (a ``model.save`` file) and
    ``backup_dir/training_metadata.json``, each written atomically; the directory is
    deleted when training completes (``delete_checkpoint``).

    Args:
        backup_dir: Folder of the backup (created when missing).
        save_freq: ``"epoch"``, or a number of batches.
        delete_checkpoint: Delete the backup when training completes.
    """

    def __init__(self, backup_dir: str | os.PathLike, save_freq: Any = "epoch",
                 delete_checkpoint: bool = True) -> None:
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        if save_freq != "epoch" and (not isinstance(save_freq, int) or save_freq <= 0):
            raise ValueError(f"Invalid value for argument `save_freq`. Received: "
                             f"save_freq={save_freq}. Expected either 'epoch' or an integer "
                             "value.")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.delete_checkpoint = delete_checkpoint
        self._model_path = os.path.join(self.backup_dir, "latest.npz")
        self._metadata_path = os.path.join(self.backup_dir, "training_metadata.json")
        self._epoch = 0
        self._counter = _BatchCounter()

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not os.path.exists(self._metadata_path) or not os.path.exists(self._model_path):
            return
        _restore(self.model, self._model_path)
        with open(self._metadata_path) as f:
            self.model._initial_epoch = int(json.load(f)["epoch"])

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch + 1
        if self.save_freq == "epoch":
            self._save()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.save_freq == "epoch":
            return
        if self._counter.due(batch, self.save_freq):
            self._save()

    def _save(self) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        self.model.save(self._model_path)
        text = json.dumps({"epoch": self._epoch}).encode()
        atomic_write(self._metadata_path, lambda f: f.write(text))

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.delete_checkpoint and os.path.exists(self.backup_dir):
            shutil.rmtree(self.backup_dir)


class _BatchCounter:
    """Batches seen since the last save, counted from batch indices as Keras 3 does, so a
    callback called once per execution of several batches (``steps_per_execution``) still
    counts batches, not calls."""

    def __init__(self) -> None:
        self.since = 0
        self.last = -1

    def due(self, batch: int, every: int) -> bool:
        """Counts the batches up to ``batch``; True (and restarts) once ``every`` passed."""
        self.since += batch + 1 if batch <= self.last else batch - self.last
        self.last = batch
        if self.since >= every:
            self.since = 0
            return True
        return False


def _restore(model: Any, path: str) -> None:
    """Loads the weights and optimizer state of a ``model.save`` file into ``model``."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    # By position (``model.save`` writes them in the model's order), as Keras' weight files
    # are: a model rebuilt in a new process may have other auto-generated layer names.
    saved = [v for k, v in arrays.items() if not k.startswith("__")]
    own = model._weight_arrays()
    if len(saved) != len(own) or any(s.shape != o.shape for s, o in zip(saved, own.values())):
        raise ValueError(f"BackupAndRestore: the weights in '{path}' "
                         f"({[s.shape for s in saved]}) do not fit model '{model.name}' "
                         f"({[o.shape for o in own.values()]}); delete the backup folder to "
                         "start afresh.")
    model._assign_weight_arrays(dict(zip(own, saved)))
    opt = model_optimizer(model)
    slots = [arrays[f"__optimizer__/{i}"] for i in range(len(opt.state))
             if f"__optimizer__/{i}" in arrays]
    if len(slots) != len(opt.state) or any(
            s.shape != tuple(t.shape) for s, t in zip(slots, opt.state)):
        raise ValueError(f"BackupAndRestore: the optimizer state in '{path}' does not fit "
                         f"{type(opt).__name__} of model '{model.name}'; delete the backup "
                         "folder to start afresh.")
    opt.load_state(slots)
    opt.iterations = int(arrays["__optimizer__/iterations"])


def _overrides(c: Callback, hook: str) -> bool:
    """Whether ``c`` does something in ``hook`` (a method or an attribute it was given)."""
    if hook in c.__dict__:
        return True
    return getattr(type(c), hook) is not getattr(Callback, hook)


class CallbackList:
    """Dispatches hooks; batch hooks only to callbacks that override them (they cost)."""

    def __init__(self, callbacks: list[Callback], model: Any, params: dict[str, Any]) -> None:
        self.callbacks = callbacks
        for c in callbacks:
            c.set_model(model)
            c.set_params(params)
        self.batch_end = [c for c in callbacks if _overrides(c, "on_train_batch_end")]
        self.batch_begin = [c for c in callbacks if _overrides(c, "on_train_batch_begin")]

    def call(self, hook: str, *args: Any) -> None:
        for c in self.callbacks:
            getattr(c, hook)(*args)
