"""CUDA dense kernels and the tiled GEMM against the CPU kernels and NumPy."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.cpu import dense as cpu
from nexec.kernels.cuda import dense as gpu
from nexec.kernels.cuda.activation import _grad_db_config

from .helpers import CUDA_MARKS, DTYPES, check, dev, sentinel

pytestmark = CUDA_MARKS

ACTS = [LINEAR, RELU, SIGMOID, TANH, SOFTMAX]


def make(n, i, o, dtype, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, i)).astype(dtype)
    w = (rng.standard_normal((i, o)) / np.sqrt(i)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else np.zeros(0, dtype)
    dy = rng.standard_normal((n, o)).astype(dtype)
    return x, w, b, dy


def cpu_dense(x, w, b, dy, act, need_dx=True):
    n, o = x.shape[0], w.shape[1]
    y = np.empty((n, o), x.dtype)
    cpu.dense_forward(x, w, b, act, y, y)
    dz = np.empty_like(y)
    dx = np.empty(x.shape if need_dx else (0, x.shape[1]), x.dtype)
    dw = np.empty_like(w)
    db = np.empty_like(b)
    cpu.dense_backward(x, w, y, dy, act, dz, dx, dw, db)
    return y, dz, dx, dw, db


def run_and_check(x, w, b, dy, act, need_dx=True, dz_is_dy=False):
    dtype = x.dtype
    y, dz, dx, dw, db = cpu_dense(x, w, b, dy, act, need_dx)
    n, o = y.shape
    d_y = sentinel((n, o), dtype)
    gpu.dense_forward(dev(x), dev(w), dev(b), act, d_y, d_y)
    check(d_y, y, dtype, "dense_forward")

    d_dy = dev(dy)
    d_dz = d_dy if dz_is_dy else sentinel((n, o), dtype)
    d_dx = sentinel(dx.shape, dtype)
    d_dw = sentinel(w.shape, dtype)
    d_db = sentinel(b.shape, dtype)
    gpu.dense_backward(dev(x), dev(w), dev(y), d_dy, act, d_dz, d_dx, d_dw, d_db)
    check(d_dz, dz, dtype, "dz")
    if need_dx:
        check(d_dx, dx, dtype, "dx")
    check(d_dw, dw, dtype, "dw")
    if b.shape[0]:
        check(d_db, db, dtype, "db")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_dense_matches_cpu_odd_sizes(act, dtype):
    """N=5, I=7, O=3: nothing divides the 16x16 tile."""
    run_and_check(*make(5, 7, 3, dtype, seed=act), act)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_several_tiles(dtype):
    """17x19 -> 18: two tiles along every GEMM dimension, including K (grid-stride too,
    under the simulator's 2-block cap in the dx product's 2x2 tiles)."""
    run_and_check(*make(17, 19, 18, dtype, seed=3), TANH)


def test_dense_no_bias_no_dx_and_dz_is_dy():
    x, w, b, dy = make(5, 7, 3, np.float64, seed=4, bias=False)
    run_and_check(x, w, b, dy, RELU, need_dx=False, dz_is_dy=True)


def test_dense_db_with_atomics_over_row_blocks():
    """130 rows x 20 columns: the dz/db kernel uses several row blocks (on a GPU and in
    the simulator) that atomically add into a zeroed db."""
    x, w, b, dy = make(130, 2, 20, np.float64, seed=5)
    grid, _ = _grad_db_config(130, 20)
    assert grid[1] > 1, "this test must exercise the atomic db path"
    run_and_check(x, w, b, dy, SIGMOID, need_dx=False)


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_gemm_transposes_against_numpy(trans_a, trans_b):
    rng = np.random.default_rng(6)
    m, k, n = 18, 17, 5
    a = rng.standard_normal((k, m) if trans_a else (m, k))
    b = rng.standard_normal((n, k) if trans_b else (k, n))
    bias = rng.standard_normal(n)
    expected = np.maximum((a.T if trans_a else a) @ (b.T if trans_b else b) + bias, 0)
    c = sentinel((m, n), np.float64)
    gpu.gemm(dev(a), dev(b), c, trans_a, trans_b, dev(bias), RELU)
    check(c, expected, np.float64, f"gemm trans_a={trans_a} trans_b={trans_b}")


def test_gemm_rejects_bad_shapes_and_dtypes():
    a = dev(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="do not match"):
        gpu.gemm(a, dev(np.zeros((5, 2))), dev(np.zeros((3, 2))))
    with pytest.raises(ValueError, match="dtypes differ"):
        gpu.gemm(a, dev(np.zeros((4, 2), np.float32)), dev(np.zeros((3, 2))))
    with pytest.raises(ValueError, match="do not match"):
        gpu.dense_forward(a, dev(np.zeros((4, 2))), dev(np.zeros(2)), RELU,
                          dev(np.zeros((3, 2))), dev(np.zeros((3, 3))))


def test_wrong_activation_is_detected():
    """The comparison is able to fail: GPU relu against CPU linear."""
    x, w, b, dy = make(5, 7, 3, np.float64, seed=7)
    y = cpu_dense(x, w, b, dy, LINEAR)[0]
    assert (y < 0).any()
    d_y = sentinel(y.shape, np.float64)
    gpu.dense_forward(dev(x), dev(w), dev(b), RELU, d_y, d_y)
    with pytest.raises(AssertionError):
        check(d_y, y, np.float64, "deliberately wrong")
