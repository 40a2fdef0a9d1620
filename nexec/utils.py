"""Keras' ``utils`` namespace: plotting a model, one-hot labels, padding sequences, the
random seed, ``PyDataset``/``Sequence``.

Example:
    >>> from nexec.utils import to_categorical
    >>> to_categorical([0, 2], num_classes=3).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nexec.plot import model_to_dot, plot_model
from nexec.random import set_random_seed
from nexec.training.adapters import PyDataset, Sequence

__all__ = ["plot_model", "model_to_dot", "to_categorical", "normalize", "pad_sequences",
           "set_random_seed", "PyDataset", "Sequence"]


def to_categorical(x: Any, num_classes: int | None = None) -> np.ndarray:
    """Integer class labels as one-hot float32 rows, as ``keras.utils.to_categorical``.

    Args:
        x: Integer labels, any shape; a trailing axis of size 1 is dropped, as in Keras.
        num_classes: Number of classes; default ``max(x) + 1``.
    """
    labels = np.asarray(x)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError("to_categorical needs integer class labels.")
        labels = labels.astype(np.int64)
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    n = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        raise ValueError(f"to_categorical: labels must lie in [0, {n}), got "
                         f"[{labels.min()}, {labels.max()}].")
    out = np.zeros(labels.shape + (n,), np.float32)
    np.put_along_axis(out, labels[..., None].astype(np.int64), 1.0, axis=-1)
    return out


def normalize(x: Any, axis: int = -1, order: int = 2) -> np.ndarray:
    """``x`` divided by its ``order``-norm along ``axis`` (a zero norm leaves zeros), as
    ``keras.utils.normalize``. **Difference:** Keras' NumPy path returns a 1-D ``x`` as one
    row and takes ``axis=0`` as -1; its tensor path, and nexec, keep ``x``'s shape and
    ``axis``."""
    x = np.asarray(x)
    x = x.astype(np.result_type(x.dtype, np.float32), copy=False)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) \
            or not -x.ndim <= axis < max(x.ndim, 1):
        raise ValueError(f"normalize: axis must be an int in [-{x.ndim}, {x.ndim}) for an "
                         f"array of {x.ndim} dimensions, got {axis!r}.")
    norm = np.linalg.norm(x, order, axis, keepdims=True)
    return x / np.where(norm == 0, 1, norm)


def pad_sequences(sequences: Any, maxlen: int | None = None, dtype: Any = "int32",
                  padding: str = "pre", truncating: str = "pre", value: Any = 0.0) -> np.ndarray:
    """Sequences of different lengths as one ``(len(sequences), maxlen, ...)`` array, as
    ``keras.utils.pad_sequences``: longer ones cut and shorter ones padded with ``value``,
    both at the start (``"pre"``, Keras' default) or the end (``"post"``).

    Example:
        >>> pad_sequences([[1, 2, 3], [4]], maxlen=2).tolist()
        [[2, 3], [0, 4]]
    """
    if not hasattr(sequences, "__len__"):
        raise ValueError(f"pad_sequences: sequences must be a list of sequences, got "
                         f"{type(sequences).__name__}.")
    for name, given in (("padding", padding), ("truncating", truncating)):
        if given not in ("pre", "post"):
            raise ValueError(f'pad_sequences: {name} must be "pre" or "post", got {given!r}.')
    if maxlen is not None and (isinstance(maxlen, bool)
                               or not isinstance(maxlen, (int, np.integer)) or maxlen < 1):
        raise ValueError(f"pad_sequences: maxlen must be a positive int or None, got {maxlen!r}.")
    width = None if maxlen is None else int(maxlen)
    rows = []
    for i, s in enumerate(sequences):
        if not hasattr(s, "__len__"):
            raise ValueError(f"pad_sequences: sequences[{i}] is {type(s).__name__} {s!r:.40}, "
                             "not a sequence.")
        rows.append(np.asarray(s, dtype=dtype))
    if width is None:
        width = max((len(r) for r in rows), default=0)
    tail = next((r.shape[1:] for r in rows if len(r)), ())
    out = np.full((len(rows), width) + tail, value, dtype=dtype)
    for i, r in enumerate(rows):
        if not len(r):
            continue
        if r.shape[1:] != tail:
            raise ValueError(f"pad_sequences: sequences[{i}]'s elements have shape "
                             f"{r.shape[1:]}, the others {tail}.")
        r = r[-width:] if truncating == "pre" else r[:width]
        if padding == "post":
            out[i, :len(r)] = r
        else:
            out[i, width - len(r):] = r
    return out
