"""CUDA merge kernels (Add and gradient plumbing) against the CPU kernels."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.cpu import merge as cpu
from nexec.kernels.cuda import backend
from nexec.kernels.cuda import merge as gpu

from .helpers import CUDA_MARKS, DTYPES, check, dev, host, sentinel

pytestmark = CUDA_MARKS

ROWS, COLS = 5, 7


def pair(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((ROWS, COLS)).astype(dtype),
            rng.standard_normal((ROWS, COLS)).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [LINEAR, RELU, SIGMOID, TANH, SOFTMAX])
def test_add_forward(act, dtype):
    a, b = pair(dtype, seed=act)
    out = np.empty_like(a)
    cpu.add_forward(a, b, act, out)
    d = sentinel(a.shape, dtype)
    gpu.add_forward(dev(a), dev(b), act, d)
    check(d, out, dtype, "add_forward")


@pytest.mark.parametrize("alias", ["a", "b"])
def test_add_forward_in_place(alias):
    a, b = pair(np.float64, seed=9)
    expected = a.copy() if alias == "a" else b.copy()
    cpu.add_forward(a if alias == "b" else expected, b if alias == "a" else expected,
                    TANH, expected)
    da, db = dev(a), dev(b)
    gpu.add_forward(da, db, TANH, da if alias == "a" else db)
    check(da if alias == "a" else db, expected, np.float64, f"add_forward out is {alias}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_accumulate_copy_accumulate_fill(dtype):
    a, b = pair(dtype, seed=3)
    # add_accumulate: linear, then the activation on the last input
    out = a.copy()
    cpu.add_accumulate(out, b, LINEAR)
    cpu.add_accumulate(out, a, SOFTMAX)
    d = dev(a)
    gpu.add_accumulate(d, dev(b), LINEAR)
    gpu.add_accumulate(d, dev(a), SOFTMAX)
    check(d, out, dtype, "add_accumulate")

    dst = sentinel(a.shape, dtype)
    gpu.copy_into(dst, dev(b))
    check(dst, b, dtype, "copy_into")

    acc = a.copy()
    cpu.accumulate(acc, b)
    d = dev(a)
    gpu.accumulate(d, dev(b))
    check(d, acc, dtype, "accumulate")

    d = sentinel(a.shape, dtype)
    gpu.fill_zero(d)
    assert (host(d) == 0).all()


def test_row_strided_views():
    """Branches of a channel concatenation are row-strided slices of one buffer."""
    a, b = pair(np.float64, seed=4)
    whole = np.full((ROWS, 2 * COLS + 1), 5.0)
    expected = whole.copy()
    cpu.add_forward(a, b, RELU, expected[:, 1:COLS + 1])
    cpu.copy_into(expected[:, COLS + 1:], b)

    d_whole = dev(whole)
    gpu.add_forward(dev(a), dev(b), RELU, d_whole[:, 1:COLS + 1])
    gpu.copy_into(d_whole[:, COLS + 1:], dev(b))
    check(d_whole, expected, np.float64, "writes into row-strided slices")

    src = dev(whole)
    d_acc = dev(a)
    gpu.accumulate(d_acc, src[:, 2:COLS + 2])
    check(d_acc, a + whole[:, 2:COLS + 2], np.float64, "reads a row-strided slice")


def test_empty_and_mismatched():
    z = backend.device_array((0, COLS))
    gpu.fill_zero(z)
    gpu.add_forward(z, z, RELU, z)
    with pytest.raises(ValueError, match="shapes differ"):
        gpu.copy_into(dev(np.zeros((2, 3))), dev(np.zeros((3, 2))))
    with pytest.raises(ValueError, match="shapes differ"):
        gpu.accumulate(dev(np.zeros((2, 3))), dev(np.zeros((2, 4))))
