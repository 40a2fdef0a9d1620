"""Keras' ``utils`` namespace: plotting a model, one-hot labels, ``PyDataset``/``Sequence``.

Example:
    >>> from nexec.utils import to_categorical
    >>> to_categorical([0, 2], num_classes=3).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nexec.plot import model_to_dot, plot_model
from nexec.training.adapters import PyDataset, Sequence

__all__ = ["plot_model", "model_to_dot", "to_categorical", "PyDataset", "Sequence"]


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
