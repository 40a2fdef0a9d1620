"""Metrics by Keras name, computed from per-batch counts that kernels return."""
from __future__ import annotations

from typing import Callable

__all__ = ["resolve_metric"]


def resolve_metric(name: str, loss_name: str) -> tuple[str, Callable[..., int], str, tuple]:
    """``(log name, count kernel, denominator, extra args)`` for a metric name.

    ``"accuracy"`` picks the accuracy that matches the loss, as Keras does.
    """
    from nexec.kernels.cpu import loss as k

    key = name
    if name in ("accuracy", "acc"):
        key = {"sparse_categorical_crossentropy": "sparse_categorical_accuracy",
               "binary_crossentropy": "binary_accuracy"}.get(loss_name, "categorical_accuracy")
    table = {
        "categorical_accuracy": (k.categorical_accuracy_count, "rows", ()),
        "sparse_categorical_accuracy": (k.sparse_categorical_accuracy_count, "rows", ()),
        "binary_accuracy": (k.binary_accuracy_count, "elements", (0.5,)),
    }
    if key not in table:
        raise ValueError(f"Unknown metric {name!r}; known: accuracy, {', '.join(table)}.")
    fn, denom, extra = table[key]
    return ("accuracy" if name in ("accuracy", "acc") else key), fn, denom, extra
