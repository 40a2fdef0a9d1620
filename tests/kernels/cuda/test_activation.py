"""CUDA activation kernels against the CPU kernels (forward, backward, in place)."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.cpu import activation as cpu
from nexec.kernels.cuda import activation as gpu

from .helpers import CUDA_MARKS, DTYPES, check, dev, sentinel

pytestmark = CUDA_MARKS

ACTS = [LINEAR, RELU, SIGMOID, TANH, SOFTMAX]
ROWS, COLS = 5, 7


def inputs(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (3 * rng.standard_normal((ROWS, COLS))).astype(dtype)
    x[0, 0], x[1, 1], x[2, 2] = 60.0, -60.0, 0.0  # saturated sigmoid/tanh, relu at 0
    dy = rng.standard_normal((ROWS, COLS)).astype(dtype)
    return x, dy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_forward_and_backward_match_cpu(act, dtype):
    x, dy = inputs(dtype)
    y = np.empty_like(x)
    cpu.activation_forward(x, act, y)
    dx = np.empty_like(x)
    cpu.activation_backward(y, dy, act, dx)

    d_y = sentinel(x.shape, dtype)
    gpu.activation_forward(dev(x), act, d_y)
    check(d_y, y, dtype, "activation_forward")
    d_dx = sentinel(x.shape, dtype)
    gpu.activation_backward(dev(y), dev(dy), act, d_dx)
    check(d_dx, dx, dtype, "activation_backward")


@pytest.mark.parametrize("act", [RELU, SOFTMAX])
def test_in_place(act):
    dtype = np.float64
    x, dy = inputs(dtype, seed=1)
    y = x.copy()
    cpu.activation_forward(y, act, y)
    dx = dy.copy()
    cpu.activation_backward(y, dx, act, dx)

    d = dev(x)
    gpu.activation_forward(d, act, d)
    check(d, y, dtype, "activation_forward in place")
    g = dev(dy)
    gpu.activation_backward(dev(y), g, act, g)
    check(g, dx, dtype, "activation_backward in place (dx is dy)")


def test_epilogue_grad_matches_cpu_rows():
    """The fused dz/db kernel (with and without db) against ``epilogue_grad_rows``."""
    dtype = np.float64
    x, dy = inputs(dtype, seed=2)
    for act in ACTS:
        y = np.empty_like(x)
        cpu.activation_forward(x, act, y)
        dz = np.empty_like(x)
        db = np.empty(COLS, dtype)
        cpu.epilogue_grad_rows(y, dy, act, dz, db)
        d_dz, d_db = sentinel(x.shape, dtype), sentinel((COLS,), dtype)
        gpu.epilogue_grad(dev(y), dev(dy), act, d_dz, d_db)
        check(d_dz, dz, dtype, f"epilogue_grad dz act={act}")
        check(d_db, db, dtype, f"epilogue_grad db act={act}")


def test_unknown_activation_is_rejected():
    d = dev(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="unknown activation"):
        gpu.activation_forward(d, 99, d)
    with pytest.raises(ValueError, match="shapes differ"):
        gpu.activation_backward(d, dev(np.zeros((2, 3))), RELU, d)


def test_comparison_can_fail():
    """A wrong result must be caught: tanh from the GPU is not the CPU's sigmoid."""
    x, _ = inputs(np.float64)
    y = np.empty_like(x)
    cpu.activation_forward(x, SIGMOID, y)
    d_y = sentinel(x.shape, np.float64)
    gpu.activation_forward(dev(x), TANH, d_y)
    with pytest.raises(AssertionError, match="relative error"):
        check(d_y, y, np.float64, "deliberately wrong")
    with pytest.raises(AssertionError):  # an output left unwritten (NaN sentinel) fails too
        check(sentinel(x.shape, np.float64), y, np.float64, "unwritten")
