"""fastmath32's exp32 (the float32 softmax's exp) against NumPy, and the softmax epilogue in
float32 against float64 NumPy. sigmoid32/tanh32 are tested with the recurrent gates
(tests/kernels/test_recurrent_gates.py)."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from nexec.kernels.activations import SOFTMAX
from nexec.kernels.cpu.activation import epilogue_rows, epilogue_softmax_rows
from nexec.kernels.cpu.fastmath32 import exp32

TINY32 = float(np.finfo(np.float32).tiny)


@njit
def _exp32(x: np.ndarray, out: np.ndarray) -> None:
    for j in range(x.shape[0]):
        out[j] = exp32(x[j])


def test_exp32_is_within_two_ulp_of_numpy_over_the_whole_range() -> None:
    x = np.concatenate([np.linspace(-110.0, 88.7, 200001), np.linspace(-1e-3, 1e-3, 2001),
                        [88.72, -87.33, -103.9, 1e-42]]).astype(np.float32)
    out = np.empty_like(x)
    _exp32(x, out)
    want = np.exp(x)  # float32 NumPy, correctly rounded within 1 ulp
    normal = want >= TINY32
    ulps = np.abs(out[normal].view(np.int32) - want[normal].view(np.int32))
    assert ulps.max() <= 2, ulps.max()
    exact = np.exp(x[~normal].astype(np.float64))  # subnormals and 0: absolute error
    assert np.abs(out[~normal] - exact).max() <= 2 * 2.0 ** -149


def test_exp32_special_values_as_numpy() -> None:
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 89.0, 100.0, -150.0], np.float32)
    out = np.empty_like(x)
    _exp32(x, out)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out, np.exp(x))


@pytest.mark.parametrize("cols", [1, 10, 37])
def test_float32_softmax_epilogues_agree_and_match_float64(cols: int) -> None:
    rng = np.random.default_rng(cols)
    z = (rng.normal(size=(9, cols)) * 8).astype(np.float32)
    z[0, 0] = -200.0  # an exp that underflows
    bias = rng.normal(size=cols).astype(np.float32)
    fast, generic = np.empty_like(z), np.empty_like(z)
    epilogue_softmax_rows(z.copy(), bias, fast)
    epilogue_rows(z.copy(), bias, np.int64(SOFTMAX), generic)
    np.testing.assert_array_equal(fast, generic)  # the two forms give the same bits
    s = z + bias  # the float32 shift as the kernel rounds it; exp and sum in float64
    e = np.exp((s - s.max(axis=1, keepdims=True)).astype(np.float64))
    np.testing.assert_allclose(fast, e / e.sum(axis=1, keepdims=True), rtol=4e-7, atol=1e-44)
