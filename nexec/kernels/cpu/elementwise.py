"""Kernels generated from plain scalar Python functions: plugin activations, losses, metrics.

A plugin gives its math as scalar functions (``forward(z)``, ``derivative(y)``, a per-element
loss ``fn(p, t)`` and its derivative ``grad(p, t)``, a per-element metric ``fn(p, t)``);
the factories here compile them with Numba and wrap them in loops with the same signatures
and conventions as the built-in kernels (``nexec.kernels.cuda.elementwise`` has the same
factories for the device):

* ``activation_kernels(forward, derivative) -> (fwd, bwd)``: ``fwd(x, out)`` writes
  ``forward(x)``; ``bwd(y, dy, dz)`` writes ``dz = dy * derivative(y)``. 2-D ``(rows, cols)``
  arrays whose rows may be strided (column stride 1); ``out`` may be ``x`` and ``dz`` may be
  ``dy`` (in place).
* ``loss_kernels(fn, grad) -> (value, grad_kernel)``: ``value(p, y, out)`` writes the mean
  of ``fn`` over all elements (Keras: over the last axis, then the batch) into ``out[0]``
  (float64; NaN for no elements); ``grad_kernel(p, y, scale, dp)`` writes
  ``dp = scale * grad(p, y) / C`` (C columns; the caller passes ``scale = weight / rows``,
  as for the built-in losses).
* ``weighted_loss_kernel(fn) -> value``: ``value(p, y, w, out)`` writes
  ``sum_i w_i * mean_j fn(p_ij, y_ij) / rows`` (``fit(sample_weight=...)``, Keras'
  "sum_over_batch_size"); ``w`` holds one weight per row.
* ``metric_kernel(fn) -> count``: ``count(p, y, out)`` writes the float64 sum of ``fn`` over
  all elements into ``out[0]`` (the caller divides by the element count).

The scalar functions are called with float64 arguments; sums accumulate in float64 and every
stored value is rounded once to the output's dtype, so float32 and float64 arrays give the
same math and each scalar function compiles once.

Each factory returns the same kernels for the same function object (one compile per
function per process; compilation happens on the first call). The generated kernels are
``uncached_kernel`` dispatchers (``kernels/jit.py``: no ``cache=True``): they are closures
over the plugin's functions, which Numba cannot reliably cache to disk, so each process
compiles them again. Being dispatchers, they can be called from other njit code.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from nexec.kernels.jit import uncached_kernel

__all__ = ["activation_kernels", "loss_kernels", "weighted_loss_kernel", "metric_kernel"]

Scalar1 = Callable[[float], float]
Scalar2 = Callable[[float, float], float]

def _scalar(fn: Callable[..., Any]) -> Any:
    """``fn`` compiled for the CPU (a CPU dispatcher is compiled again from its Python)."""
    if not callable(fn):
        raise TypeError(f"expected a scalar Python function, got {fn!r}")
    return uncached_kernel(getattr(fn, "py_func", fn))


@functools.cache
def _forward_kernel(forward: Scalar1) -> Any:
    f = _scalar(forward)

    @uncached_kernel
    def fwd(x, out):
        if x.shape != out.shape:
            raise ValueError("activation forward: x and out shapes differ")
        rows, cols = x.shape
        for i in range(rows):
            for j in range(cols):
                out[i, j] = f(np.float64(x[i, j]))

    return fwd


@functools.cache
def _backward_kernel(derivative: Scalar1) -> Any:
    d = _scalar(derivative)

    @uncached_kernel
    def bwd(y, dy, dz):
        if y.shape != dy.shape or dz.shape != y.shape:
            raise ValueError("activation backward: y, dy and dz shapes differ")
        rows, cols = y.shape
        for i in range(rows):
            for j in range(cols):
                dz[i, j] = np.float64(dy[i, j]) * d(np.float64(y[i, j]))

    return bwd


def activation_kernels(forward: Scalar1, derivative: Scalar1) -> tuple[Any, Any]:
    """Elementwise kernels of an activation given by scalar functions.

    Args:
        forward: ``z -> y`` for one float.
        derivative: ``y -> dy/dz`` for one float, from the activation's output ``y``.

    Returns:
        ``(fwd, bwd)``: ``fwd(x, out)`` sets ``out = forward(x)``; ``bwd(y, dy, dz)`` sets
        ``dz = dy * derivative(y)``. ``out`` may be ``x``, ``dz`` may be ``dy``.
    """
    return _forward_kernel(forward), _backward_kernel(derivative)


@functools.cache
def _loss_value_kernel(fn: Scalar2) -> Any:
    f = _scalar(fn)

    @uncached_kernel
    def value(p, y, out):
        if p.shape != y.shape:
            raise ValueError("loss value: p and y shapes differ")
        if out.shape[0] < 1:
            raise ValueError("loss value: out must be a 1-element array")
        rows, cols = p.shape
        if rows * cols == 0:
            out[0] = np.nan
            return
        total = 0.0
        for i in range(rows):
            for j in range(cols):
                total += f(np.float64(p[i, j]), np.float64(y[i, j]))
        out[0] = total / (rows * cols)

    return value


@functools.cache
def _loss_grad_kernel(grad: Scalar2) -> Any:
    d = _scalar(grad)

    @uncached_kernel
    def grad_kernel(p, y, scale, dp):
        if p.shape != y.shape or dp.shape != p.shape:
            raise ValueError("loss gradient: p, y and dp shapes differ")
        rows, cols = p.shape
        if cols == 0:
            return
        f = scale / cols
        for i in range(rows):
            for j in range(cols):
                dp[i, j] = f * d(np.float64(p[i, j]), np.float64(y[i, j]))

    return grad_kernel


def loss_kernels(fn: Scalar2, grad: Scalar2) -> tuple[Any, Any]:
    """Value and gradient kernels of a loss given per element.

    Args:
        fn: ``(p, t) -> loss`` of one prediction and its target.
        grad: ``(p, t) -> d loss / d p``.

    Returns:
        ``(value, grad_kernel)``: ``value(p, y, out)`` sets ``out[0]`` to the mean of ``fn``
        over all elements; ``grad_kernel(p, y, scale, dp)`` sets
        ``dp = scale * grad(p, y) / C`` with ``C = p.shape[1]``.
    """
    return _loss_value_kernel(fn), _loss_grad_kernel(grad)


@functools.cache
def weighted_loss_kernel(fn: Scalar2) -> Any:
    """``value(p, y, w, out)``: ``out[0] = sum_i w[i] * sum_j fn(p_ij, y_ij) / (rows * C)``.

    Args:
        fn: ``(p, t) -> loss`` of one prediction and its target.
    """
    f = _scalar(fn)

    @uncached_kernel
    def value(p, y, w, out):
        if p.shape != y.shape:
            raise ValueError("loss value: p and y shapes differ")
        if out.shape[0] < 1:
            raise ValueError("loss value: out must be a 1-element array")
        rows, cols = p.shape
        if w.ndim != 1 or w.shape[0] != rows:
            raise ValueError("weighted loss: w must hold one weight per row of p")
        if rows * cols == 0:
            out[0] = np.nan
            return
        total = 0.0
        for i in range(rows):
            row = 0.0
            for j in range(cols):
                row += f(np.float64(p[i, j]), np.float64(y[i, j]))
            total += np.float64(w[i]) * row
        out[0] = total / (rows * cols)

    return value


@functools.cache
def metric_kernel(fn: Scalar2) -> Any:
    """``count(p, y, out)``: ``out[0]`` = float64 sum over all elements of ``fn(p, t)``.

    Args:
        fn: ``(p, t) -> float`` of one prediction and its target (1.0 for a match, say).
    """
    f = _scalar(fn)

    @uncached_kernel
    def count(p, y, out):
        if p.shape != y.shape:
            raise ValueError("metric: p and y shapes differ")
        if out.shape[0] < 1:
            raise ValueError("metric: out must be a 1-element array")
        rows, cols = p.shape
        total = 0.0
        for i in range(rows):
            for j in range(cols):
                total += f(np.float64(p[i, j]), np.float64(y[i, j]))
        out[0] = total

    return count
