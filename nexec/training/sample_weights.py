"""``sample_weight=`` and ``class_weight=`` of fit/evaluate/train_on_batch, as Keras 3 has them.

Both become, per model output, one weight per loss row: an array of shape
``(n, *output_shape[:-1])`` in the model's float dtype (Keras casts weights to the loss
dtype), which the executor loads with each batch like the targets. Training then minimises
Keras' weighted "sum_over_batch_size" loss, ``sum_i w_i * loss_i / N``; metrics stay
unweighted (Keras 3 weights only ``weighted_metrics``).

Forms accepted (Keras 3.15, ``trainers/data_adapters/array_data_adapter.py``):

* ``sample_weight``: one array for every output (``(n,)`` or ``(n, 1)``), or per output a
  list or a dict by output name (an entry may be None: weight 1). An output with time or
  space dimensions ``(n, d1, ..., k)`` also takes weights of shape ``(n, d1, ...)``.
* ``class_weight``: ``{class index: weight}`` for a single-output model; a sample's class is
  ``argmax(y)`` for one-hot targets, the label for sparse ones and ``round(y)`` for a
  one-unit output; classes missing from the dict weigh 1.0. Not together with
  ``sample_weight``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nexec.checks import ArgumentError, ArgumentTypeError
from nexec.errors import DataError

__all__ = ["as_sample_weights"]


def as_sample_weights(sample_weight: Any, class_weight: Any, ys: list[np.ndarray], model: Any,
                      losses: list[Any], dtype: str, where: str) -> list[np.ndarray] | None:
    """Per output, the weight of every loss row, or None when neither argument is given.

    Args:
        sample_weight: What the user passed as ``sample_weight`` (see the module docstring).
        class_weight: What the user passed as ``class_weight``.
        ys: The checked targets (``nexec.training.data.as_targets``), one per output.
        model: The model (output names and shapes).
        losses: Per output, its :class:`~nexec.training.losses.Loss` (sparse or not).
        dtype: The model's float dtype.
        where: The calling method, for messages (``"fit()"``).
    """
    if class_weight is None and sample_weight is None:
        return None
    if class_weight is not None and sample_weight is not None:
        raise ArgumentError(f"{where}: you cannot use `class_weight` and `sample_weight` at "
                            "the same time (as in Keras); fold the class weights into the "
                            "sample weights.")
    n = len(ys[0])
    if class_weight is not None:
        return [_from_classes(class_weight, ys, model, losses, dtype, where)]
    names = model.output_names
    per_output = _per_output(sample_weight, names, where)
    single = per_output is None and len(names) > 1  # one array for several outputs
    return [_expand(w, n, t.feature_shape, name, dtype, where, single)
            for name, t, w in zip(names, model.outputs,
                                  per_output or [sample_weight] * len(names))]


def _is_array(a: Any) -> bool:
    return hasattr(a, "shape") and hasattr(a, "dtype")


def _per_output(sw: Any, names: list[str], where: str) -> list[Any] | None:
    """The per-output entries of ``sw``, or None when it is one array for every output."""
    if isinstance(sw, Mapping):
        extra = [k for k in sw if k not in names]
        missing = [k for k in names if k not in sw]
        if extra or missing:
            raise DataError(f"{where}: sample_weight dict must have one entry per output "
                            f"{names}; missing {missing}, unexpected {extra}.")
        return [sw[k] for k in names]
    if isinstance(sw, (list, tuple)) and all(_is_array(a) or a is None for a in sw):
        if len(sw) != len(names):
            raise DataError(f"{where}: sample_weight has {len(sw)} arrays for {len(names)} "
                            f"output(s) ({', '.join(names)}); give one array per output, or "
                            "one array of shape (num_samples,) for all.")
        return list(sw)
    return None


def _expand(w: Any, n: int, feature_shape: tuple, name: str, dtype: str, where: str,
            single: bool) -> np.ndarray:
    """One output's weights as ``(n, *feature_shape[:-1])`` (rows of its loss)."""
    rows = tuple(feature_shape[:-1])
    if w is None:
        return np.ones((n, *rows), dtype)
    try:
        a = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ArgumentTypeError(f"{where}: sample_weight for output '{name}' must be an array "
                                f"of numbers, got {type(w).__name__} ({e}).") from None
    full = bool(rows) and not single and a.shape == (n, *rows)
    if a.shape == (n, 1):
        a = a[:, 0]
    if a.shape == (n,):
        a = a.reshape((n,) + (1,) * len(rows))
    elif not full:
        if a.ndim == 0 or len(a) != n:
            raise DataError(f"{where}: sample_weight for output '{name}' has "
                            f"{len(a) if a.ndim else 0} entries but there are {n} samples.")
        accepted = [(n,), (n, 1)] + ([(n, *rows)] if rows and not single else [])
        hint = " (one weight per sample)" if not rows else ""
        if single and rows:
            hint = ("; one array for all outputs of a multi-output model holds one weight "
                    "per sample; give a list with one array per output for weights per "
                    "time step or position")
        raise DataError(f"{where}: sample_weight for output '{name}' has shape {a.shape}; "
                        f"accepted: {' or '.join(map(str, accepted))}{hint}.")
    if not np.isfinite(a).all():
        raise DataError(f"{where}: sample_weight for output '{name}' contains NaN or infinite "
                        "values.")
    return np.ascontiguousarray(np.broadcast_to(a, (n, *rows)), dtype=dtype)


def _from_classes(class_weight: Any, ys: list[np.ndarray], model: Any, losses: list[Any],
                  dtype: str, where: str) -> np.ndarray:
    """Keras' ``class_weight_to_sample_weights`` for the single output."""
    if not isinstance(class_weight, Mapping):
        raise ArgumentTypeError(f"{where}: class_weight must be a dict {{class index: weight}}, "
                                f"got {type(class_weight).__name__}.")
    names = model.output_names
    if len(names) != 1:
        raise ArgumentError(f"{where}: `class_weight` is only supported for models with a "
                            f"single output (as in Keras); this model has {len(names)} "
                            f"({', '.join(names)}). Give sample_weight per output instead.")
    shape = model.outputs[0].feature_shape
    if len(shape) != 1:
        raise ArgumentError(f"{where}: `class_weight` needs an output of shape (None, classes); "
                            f"output '{names[0]}' has shape {model.outputs[0].shape}. Give "
                            "sample_weight instead.")
    k = int(shape[0])
    table: dict[int, float] = {}
    for key, value in class_weight.items():
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
            raise ArgumentTypeError(f"{where}: class_weight keys must be integer class "
                                    f"indices, got {key!r} ({type(key).__name__}).")
        if k > 1 and not 0 <= key < k:
            raise ArgumentError(f"{where}: class_weight has class {key}, but output "
                                f"'{names[0]}' has {k} classes (0 to {k - 1}).")
        if isinstance(value, (bool, np.bool_)) or \
                not isinstance(value, (int, float, np.integer, np.floating)) or \
                not np.isfinite(value):
            raise ArgumentTypeError(f"{where}: class_weight values must be finite numbers, "
                                    f"got {value!r} for class {key}.")
        table[int(key)] = float(value)
    y = ys[0]
    if losses[0].sparse:
        classes = y.astype(np.int64)
    elif y.shape[-1] != 1:
        classes = np.argmax(y, axis=-1)
    else:
        classes = np.round(y[:, 0]).astype(np.int64)
    weights = np.ones(len(y), dtype)
    for c, value in table.items():
        weights[classes == c] = value
    return weights
