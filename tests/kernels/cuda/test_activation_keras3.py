"""CUDA twins of the Keras 3 activations (elu ... log_softmax) against the CPU kernels."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.activations import CODES, LOG_SOFTMAX, NEEDS_INPUT, SILU
from nexec.kernels.cpu import activation as cpu
from nexec.kernels.cuda import activation as gpu
from nexec.kernels.cuda import dense as gpu_dense

from .helpers import CUDA_MARKS, DTYPES, check, dev, sentinel

pytestmark = CUDA_MARKS

NEW = sorted({c for c in CODES.values() if c >= 5})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", NEW)
def test_forward_and_backward_match_cpu(act, dtype):
    rng = np.random.default_rng(act)
    x = (2 * rng.standard_normal((3, 5))).astype(dtype)
    dy = rng.standard_normal((3, 5)).astype(dtype)
    y, dx = np.empty_like(x), np.empty_like(x)
    cpu.activation_forward(x, act, y)
    d_y = sentinel(x.shape, dtype)
    gpu.activation_forward(dev(x), act, d_y)
    check(d_y, y, dtype, "activation_forward")
    d_dx = sentinel(x.shape, dtype)
    if act in NEEDS_INPUT:
        cpu.activation_backward_input(x, dy, act, dx)
        gpu.activation_backward_input(dev(x), dev(dy), act, d_dx)
    else:
        cpu.activation_backward(y, dy, act, dx)
        gpu.activation_backward(dev(y), dev(dy), act, d_dx)
    check(d_dx, dx, dtype, "activation_backward")


@pytest.mark.parametrize("act", [LOG_SOFTMAX, CODES["elu"]])
def test_dense_epilogue_with_new_codes(act):
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 5)), rng.standard_normal(5)
    y = np.empty((4, 5))
    cpu.epilogue_rows(x @ w, b, act, y)
    d = sentinel((4, 5), np.float64)
    gpu_dense.dense_forward(dev(x), dev(w), dev(b), act, d, d)
    check(d, y, np.float64, "dense_forward")
    dy = rng.standard_normal((4, 5))
    dz, db = np.empty_like(y), np.empty(5)
    cpu.epilogue_grad_rows(y, dy, act, dz, db)
    d_dz, d_db = sentinel((4, 5), np.float64), sentinel((5,), np.float64)
    gpu.epilogue_grad(dev(y), dev(dy), act, d_dz, d_db)
    check(d_dz, dz, np.float64, "epilogue_grad dz")
    check(d_db, db, np.float64, "epilogue_grad db")


def test_output_based_gradient_refuses_silu():
    y = dev(np.ones((2, 2)))
    with pytest.raises(ValueError, match="from the input"):
        gpu.activation_backward(y, y, SILU, y)
