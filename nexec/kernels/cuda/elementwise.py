"""CUDA kernels generated from plain scalar Python functions: plugin activations, losses,
metrics. Same factories, returned-kernel signatures and conventions as
:mod:`nexec.kernels.cpu.elementwise` (read its docstring), on device arrays; every returned
launcher also takes an optional keyword-only ``stream``.

The scalar functions are compiled as CUDA device functions (a CPU dispatcher is compiled
again from its Python) and called with float64 arguments; results are rounded once on
store, as on the CPU. Each factory returns the same launchers for the same function object
(one compile per function per process, on the first launch). What a scalar function may use
is what Numba compiles for CUDA device code: arithmetic, ``abs``, comparisons and
conditional expressions, ``math`` functions; *not* the builtin ``min``/``max`` of scalars,
which Numba's built-in CUDA target fails to type ("Signature mismatch") -- write
``a if a > b else b``. ``tests/kernels/cuda/ptx_compile.py`` compiles sample functions for
the real target, which the simulator cannot check.

Parallel layout: activations and loss gradients run one thread per element, grid-stride
over ``rows * cols`` (any row stride, column stride 1). Loss values and metric sums are one
block with a float64 shared-memory tree reduction and a single store by thread 0
(:func:`nexec.kernels.cuda.loss.block_sum`): deterministic, no atomics, no zeroing launch.
Each launcher's ``kernel`` attribute is the CUDA kernel it launches (for PTX checks).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from numba import float64

from nexec.kernels.cuda.backend import MAX_THREADS, config_1d, cuda, jit
from nexec.kernels.cuda.loss import block_sum, check_out, reduce_config

__all__ = ["activation_kernels", "loss_kernels", "weighted_loss_kernel", "metric_kernel"]

Scalar1 = Callable[[float], float]
Scalar2 = Callable[[float, float], float]


def _device_fn(fn: Callable[..., Any]) -> Any:
    """``fn`` compiled as a CUDA device function."""
    if not callable(fn):
        raise TypeError(f"expected a scalar Python function, got {fn!r}")
    return jit(device=True)(getattr(fn, "py_func", fn))


def _with_kernel(launcher: Callable[..., None], kernel: Any) -> Callable[..., None]:
    """Exposes the CUDA kernel a launcher launches as its ``kernel`` attribute."""
    setattr(launcher, "kernel", kernel)  # noqa: B010 - a function attribute, not typed
    return launcher


def _same_shape(where: str, a: Any, *more: Any) -> None:
    if a.ndim != 2 or any(b.shape != a.shape for b in more):
        raise ValueError(f"{where}: arrays must be 2-D of one shape")


@functools.cache
def _forward_kernel(forward: Scalar1) -> Callable[..., None]:
    f = _device_fn(forward)

    @jit
    def _fwd(x, out):
        cols = x.shape[1]
        for idx in range(cuda.grid(1), x.shape[0] * cols, cuda.gridsize(1)):
            i = idx // cols
            j = idx - i * cols
            out[i, j] = f(float64(x[i, j]))

    def fwd(x: Any, out: Any, *, stream: Any = 0) -> None:
        """``out = forward(x)`` elementwise; ``out`` may be ``x``."""
        _same_shape("activation forward", x, out)
        if x.size:
            _fwd[config_1d(x.size) + (stream,)](x, out)

    return _with_kernel(fwd, _fwd)


@functools.cache
def _backward_kernel(derivative: Scalar1) -> Callable[..., None]:
    d = _device_fn(derivative)

    @jit
    def _bwd(y, dy, dz):
        cols = y.shape[1]
        for idx in range(cuda.grid(1), y.shape[0] * cols, cuda.gridsize(1)):
            i = idx // cols
            j = idx - i * cols
            dz[i, j] = float64(dy[i, j]) * d(float64(y[i, j]))

    def bwd(y: Any, dy: Any, dz: Any, *, stream: Any = 0) -> None:
        """``dz = dy * derivative(y)`` elementwise; ``dz`` may be ``dy``."""
        _same_shape("activation backward", y, dy, dz)
        if y.size:
            _bwd[config_1d(y.size) + (stream,)](y, dy, dz)

    return _with_kernel(bwd, _bwd)


def activation_kernels(forward: Scalar1, derivative: Scalar1) -> tuple[Any, Any]:
    """Elementwise launchers ``(fwd(x, out), bwd(y, dy, dz))`` of an activation given by
    scalar functions ``forward(z)`` and ``derivative(y)`` (from the output)."""
    return _forward_kernel(forward), _backward_kernel(derivative)


def _sum_kernel(f: Any) -> Any:
    """One-block kernel: ``out[0] = sum of f(p, y) over all elements``, divided by the
    element count when ``mean`` (NaN for none)."""

    @jit
    def _sum(p, y, mean, out):
        rows = p.shape[0]
        cols = p.shape[1]
        part = cuda.shared.array(MAX_THREADS, float64)
        acc = 0.0
        for i in range(cuda.threadIdx.x, rows, cuda.blockDim.x):
            for j in range(cols):
                acc += f(float64(p[i, j]), float64(y[i, j]))
        total = block_sum(part, acc)
        if cuda.threadIdx.x == 0:
            if mean:
                out[0] = total / (rows * cols) if rows * cols > 0 else math.nan
            else:
                out[0] = total

    return _sum


@functools.cache
def _sum_of(fn: Scalar2) -> Any:
    return _sum_kernel(_device_fn(fn))


@functools.cache
def _loss_value_kernel(fn: Scalar2) -> Callable[..., None]:
    kernel = _sum_of(fn)

    def value(p: Any, y: Any, out: Any, *, stream: Any = 0) -> None:
        """``out[0]`` = mean of the per-element loss over all elements (NaN for none)."""
        _same_shape("loss value", p, y)
        check_out(out, "loss value")
        kernel[reduce_config(p.shape[0]) + (stream,)](p, y, True, out)

    return _with_kernel(value, kernel)


@functools.cache
def _loss_grad_kernel(grad: Scalar2) -> Callable[..., None]:
    d = _device_fn(grad)

    @jit
    def _grad(p, y, f, dp):
        cols = p.shape[1]
        for idx in range(cuda.grid(1), p.shape[0] * cols, cuda.gridsize(1)):
            i = idx // cols
            j = idx - i * cols
            dp[i, j] = f * d(float64(p[i, j]), float64(y[i, j]))

    def grad_kernel(p: Any, y: Any, scale: float, dp: Any, *, stream: Any = 0) -> None:
        """``dp = scale * grad(p, y) / C`` (C columns)."""
        _same_shape("loss gradient", p, y, dp)
        if p.size:
            _grad[config_1d(p.size) + (stream,)](p, y, float(scale) / p.shape[1], dp)

    return _with_kernel(grad_kernel, _grad)


def loss_kernels(fn: Scalar2, grad: Scalar2) -> tuple[Any, Any]:
    """Launchers ``(value(p, y, out), grad_kernel(p, y, scale, dp))`` of a loss given per
    element by ``fn(p, t)`` and its derivative ``grad(p, t)`` with respect to ``p``."""
    return _loss_value_kernel(fn), _loss_grad_kernel(grad)


@functools.cache
def weighted_loss_kernel(fn: Scalar2) -> Callable[..., None]:
    """Launcher ``value(p, y, w, out)``: ``out[0] = sum_i w[i] * sum_j fn(p_ij, y_ij) /
    (rows * C)``, one weight per row (``fit(sample_weight=...)``)."""
    f = _device_fn(fn)

    @jit
    def _wsum(p, y, w, out):
        rows = p.shape[0]
        cols = p.shape[1]
        part = cuda.shared.array(MAX_THREADS, float64)
        acc = 0.0
        for i in range(cuda.threadIdx.x, rows, cuda.blockDim.x):
            row = 0.0
            for j in range(cols):
                row += f(float64(p[i, j]), float64(y[i, j]))
            acc += float64(w[i]) * row
        total = block_sum(part, acc)
        if cuda.threadIdx.x == 0:
            out[0] = total / (rows * cols) if rows * cols > 0 else math.nan

    def value(p: Any, y: Any, w: Any, out: Any, *, stream: Any = 0) -> None:
        """``out[0]`` = weighted per-row mean loss summed, over the rows (NaN for none)."""
        _same_shape("loss value", p, y)
        if w.ndim != 1 or w.shape[0] != p.shape[0]:
            raise ValueError("weighted loss: w must hold one weight per row of p")
        check_out(out, "loss value")
        _wsum[reduce_config(p.shape[0]) + (stream,)](p, y, w, out)

    return _with_kernel(value, _wsum)


@functools.cache
def metric_kernel(fn: Scalar2) -> Callable[..., None]:
    """Launcher ``count(p, y, out)``: ``out[0]`` (float64) = sum of ``fn(p, t)`` over all
    elements."""
    kernel = _sum_of(fn)

    def count(p: Any, y: Any, out: Any, *, stream: Any = 0) -> None:
        """``out[0]`` = sum of the per-element metric over all elements."""
        _same_shape("metric", p, y)
        check_out(out, "metric")
        kernel[reduce_config(p.shape[0]) + (stream,)](p, y, False, out)

    return _with_kernel(count, kernel)
