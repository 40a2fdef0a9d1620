"""Turning what users pass to fit/evaluate/predict into checked, model-typed arrays.

Every check runs here, once, before any kernel: counts, lengths, feature shapes, dtypes,
finiteness, and the range of token ids. Data is cast once, not per batch: to the model's
float dtype, or for an integer input (``Input(dtype="int32")``) to that integer dtype.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nexec.devices.threads import fork_safe_step
from nexec.errors import DataError
from nexec.graph import Function, is_integer_dtype

__all__ = ["as_inputs", "as_targets", "check_same_length", "split_by_name", "all_finite"]


def all_finite(a: np.ndarray) -> bool:
    """``np.isfinite(a).all()`` without its temporary boolean array, for the checks of every
    ``fit``/``predict`` call on a float array.

    A C-contiguous float32/float64 array is first summed as squares by BLAS (``dot``, one
    pass, ~2x faster than ``isfinite`` and nothing to compile): NaN and infinity propagate
    into that sum, so a finite sum proves every element finite. Squares of huge finite
    values may overflow it; only then (and for other layouts and dtypes) ``isfinite`` decides.
    """
    if a.dtype.kind != "f":
        return True
    if a.dtype in (np.float32, np.float64) and a.flags.c_contiguous and a.size:
        # A fork from another thread must wait for a threaded BLAS call (OpenBLAS shuts its
        # threads down at a fork: the call in flight would spin for ever).
        with fork_safe_step():
            total = _square_sum(a.reshape(-1))
        if np.isfinite(total):
            return True
    return bool(np.isfinite(a).all())


def _dot_self(flat: np.ndarray) -> Any:
    return np.dot(flat, flat)


if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
    # NumPy 2's errstate as a decorator keeps its state per call (a context variable): one
    # shared instance is thread-safe and costs half of a ``with np.errstate(...)`` block.
    _square_sum = np.errstate(over="ignore", invalid="ignore")(_dot_self)
else:  # NumPy 1's decorator keeps the state on the instance: a new one per call
    def _square_sum(flat: np.ndarray) -> Any:
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is an answer here
            return np.dot(flat, flat)


def split_by_name(data: Any, names: list[str], what: str) -> list[Any]:
    """One entry per model input (or output) of ``data``: an array, a list or a dict by name."""
    if isinstance(data, dict):
        missing = [n for n in names if n not in data]
        extra = [k for k in data if k not in names]
        if missing or extra:
            raise DataError(f"{what} dict must have keys {names}; missing {missing}, "
                            f"unexpected {extra}.")
        return [data[n] for n in names]
    if isinstance(data, (list, tuple)):
        arrays = all(hasattr(a, "shape") for a in data)
        if len(names) == 1 and not arrays:
            return [data]  # nested lists of numbers for a one-input model
        if len(data) != len(names):
            raise DataError(f"The model has {len(names)} {what}(s) ({', '.join(names)}), "
                            f"got a list of {len(data)} arrays.")
        return list(data)
    if len(names) != 1:
        raise DataError(f"The model has {len(names)} {what}s ({', '.join(names)}); pass a list "
                        "or a dict keyed by name.")
    return [data]


def as_inputs(x: Any, model: Any, dtype: str) -> list[np.ndarray]:
    """One contiguous array per model input, checked against the input shapes."""
    if x is None:
        raise DataError(f"Model '{model.name}' needs input data x.")
    names = model.input_names
    arrays = []
    for name, t, a in zip(names, model.inputs, split_by_name(x, names, "input")):
        a = np.asarray(a)
        if a.dtype.kind not in "fiub":
            raise DataError(f"Input '{name}' has dtype {a.dtype}; expected numbers.")
        if tuple(a.shape[1:]) != t.feature_shape:
            raise DataError(f"Input '{name}' expects shape {t.shape}, got data of shape "
                            f"{a.shape}.")
        readers = _id_readers(model, t)
        if is_integer_dtype(t.dtype):
            a = _as_ids(a, name, t.dtype)
        else:
            a = np.ascontiguousarray(a, dtype=dtype)
            if not all_finite(a):
                raise DataError(f"Input '{name}' contains NaN or infinite values.")
            if readers and a.size and not np.all(np.mod(a, 1) == 0):
                raise DataError(f"Input '{name}' feeds layer '{readers[0].name}' "
                                f"({type(readers[0]).__name__}), which takes integer ids, but "
                                "holds values that are not whole numbers.")
        _check_id_range(a, name, readers)
        arrays.append(a)
    check_same_length(arrays, names, "input")
    return arrays


def _as_ids(a: np.ndarray, name: str, dtype: str) -> np.ndarray:
    """Data for an integer input: whole numbers that fit ``dtype``, as a contiguous copy."""
    if a.dtype.kind == "f":
        if not all_finite(a):
            raise DataError(f"Input '{name}' ({dtype}) contains NaN or infinite values.")
        if a.size and not np.all(np.mod(a, 1) == 0):
            raise DataError(f"Input '{name}' has dtype {dtype} (token ids) but its data holds "
                            "values that are not whole numbers.")
    info = np.iinfo(dtype)
    if a.size and (a.min() < info.min or a.max() > info.max):
        raise DataError(f"Input '{name}' has dtype {dtype}, which cannot hold its values "
                        f"[{a.min()}, {a.max()}]; use Input(dtype='int64').")
    return np.ascontiguousarray(a, dtype=dtype)


def _id_readers(function: Any, t: Any) -> list[Any]:
    """The layers reading ``t`` as integer ids (``accepts_ids``) with an id bound
    (``input_dim``), looking inside nested models."""
    found: list[Any] = []
    for node in getattr(function, "nodes", []):
        for i, inp in enumerate(node.inputs):
            if inp is not t:
                continue
            layer = node.layer
            if isinstance(layer, Function):
                found += _id_readers(layer, layer.inputs[i])
            elif getattr(layer, "accepts_ids", False) and \
                    getattr(layer, "input_dim", None) is not None:
                found.append(layer)
    return found


def _check_id_range(a: np.ndarray, name: str, readers: list[Any]) -> None:
    """Ids in ``[0, input_dim)`` of every layer reading them, before any kernel runs."""
    if not a.size or not readers:
        return
    lo, hi = a.min(), a.max()
    for layer in readers:
        if lo < 0 or hi >= layer.input_dim:
            raise DataError(f"Input '{name}' feeds layer '{layer.name}' "
                            f"({type(layer).__name__}, input_dim={layer.input_dim}), whose ids "
                            f"must be in [0, {layer.input_dim}), but holds ids in "
                            f"[{lo:g}, {hi:g}].")


def as_targets(y: Any, model: Any, losses: list[Any], dtype: str) -> list[np.ndarray]:
    """One array per output: integer labels for sparse losses, else model-typed values."""
    if y is None:
        raise DataError(f"Model '{model.name}' needs targets y to train or evaluate.")
    names = model.output_names
    arrays = []
    for name, t, loss, a in zip(names, model.outputs, losses,
                                split_by_name(y, names, "output")):
        a = np.asarray(a)
        shape = t.feature_shape
        if loss.sparse:
            if a.ndim == len(shape) + 1 and a.shape[-1] == 1:
                a = a[..., 0]
            if tuple(a.shape[1:]) != tuple(shape[:-1]):
                raise DataError(f"Output '{name}' with {loss.name} takes integer labels of shape "
                                f"{(None, *shape[:-1])}, got {a.shape}.")
            if a.dtype.kind not in "iu" and not np.all(np.mod(a, 1) == 0):
                raise DataError(f"Output '{name}': {loss.name} takes integer class labels.")
            labels = np.ascontiguousarray(a, dtype=np.int64)
            if labels.size and (labels.min() < 0 or labels.max() >= shape[-1]):
                raise DataError(f"Output '{name}': labels must be in [0, {shape[-1]}), got "
                                f"[{labels.min()}, {labels.max()}].")
            arrays.append(labels)
            continue
        if a.dtype.kind in "iub" and loss.name == "categorical_crossentropy" and \
                tuple(a.shape[1:]) != shape:
            raise DataError(f"Output '{name}': categorical_crossentropy takes one-hot targets of "
                            f"shape {t.shape}, got integer labels of shape {a.shape}; one-hot "
                            "encode them or use loss='sparse_categorical_crossentropy'.")
        if a.ndim == 1 and shape == (1,):
            a = a[:, None]  # one value per sample for a one-unit output, as Keras takes it
        if tuple(a.shape[1:]) != shape:
            raise DataError(f"Output '{name}' expects targets of shape {t.shape}, got {a.shape}.")
        a = np.ascontiguousarray(a, dtype=dtype)
        if not all_finite(a):
            raise DataError(f"Targets of output '{name}' contain NaN or infinite values.")
        arrays.append(a)
    check_same_length(arrays, names, "target")
    return arrays


def check_same_length(arrays: list[np.ndarray], names: list[str], what: str) -> None:
    if len(arrays) < 2:  # one array: nothing to compare (every fit/predict of one input)
        return
    lengths = {n: len(a) for n, a in zip(names, arrays)}
    if len(set(lengths.values())) > 1:
        raise DataError(f"All {what} arrays need the same number of samples, got {lengths}.")
