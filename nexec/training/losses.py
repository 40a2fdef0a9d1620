"""Losses by Keras name, each bound to its value and gradient kernels.

A loss may also give the gradient with respect to the *pre-activation* of an output whose
activation it knows (softmax + crossentropy, sigmoid + binary crossentropy): the backward of
that output layer then skips its activation gradient.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from nexec.ops.base import BoundCall

__all__ = ["Loss", "BUILTIN_LOSSES", "EPSILON"]

EPSILON = 1e-7  # Keras' backend epsilon, used for probability clipping


@dataclass(frozen=True)
class Loss:
    """A loss: kernels for its value and gradient, and the fused forms it has.

    Args:
        name: Keras name (``"categorical_crossentropy"``).
        value: ``value(p, y[, eps]) -> float``, the batch mean.
        grad: ``grad(p, y, [eps,] scale, dp)`` writes ``scale * dloss/dp`` (scale = w / N).
        fused: Activation name -> ``grad(p, y, scale, dz)`` with respect to the logits.
        sparse: Targets are integer class labels of shape ``(N,)``.
        clipped: Whether value and grad take Keras' epsilon.
    """

    name: str
    value: Callable[..., float]
    grad: Callable[..., None]
    fused: dict[str, Callable[..., None]] = field(default_factory=dict)
    sparse: bool = False
    clipped: bool = True

    def bind_value(self, p: np.ndarray, y: np.ndarray) -> BoundCall:
        return (self.value, (p, y, EPSILON) if self.clipped else (p, y))

    def bind_grad(self, p: np.ndarray, y: np.ndarray, scale: float, out: np.ndarray,
                  activation: str | None = None) -> BoundCall:
        if activation in self.fused:
            return (self.fused[activation], (p, y, scale, out))
        if self.clipped:
            return (self.grad, (p, y, EPSILON, scale, out))
        return (self.grad, (p, y, scale, out))


def _builtin() -> list[Loss]:
    from nexec.kernels.cpu import loss as k

    return [
        Loss("categorical_crossentropy", k.categorical_crossentropy,
             k.categorical_crossentropy_grad, {"softmax": k.softmax_crossentropy_grad}),
        Loss("sparse_categorical_crossentropy", k.sparse_categorical_crossentropy,
             k.sparse_categorical_crossentropy_grad,
             {"softmax": k.sparse_softmax_crossentropy_grad}, sparse=True),
        Loss("binary_crossentropy", k.binary_crossentropy, k.binary_crossentropy_grad,
             {"sigmoid": k.sigmoid_binary_crossentropy_grad}),
        Loss("mean_squared_error", k.mean_squared_error, k.mean_squared_error_grad,
             clipped=False),
    ]


ALIASES = {"mse": "mean_squared_error", "crossentropy": "categorical_crossentropy"}


class _Lazy(list):
    """The built-in list, made on first iteration so importing nexec compiles nothing."""

    def __iter__(self) -> Any:
        if not len(self):
            self.extend(_builtin())
        return super().__iter__()


BUILTIN_LOSSES: list[Loss] = _Lazy()
