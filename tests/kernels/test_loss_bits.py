"""Categorical crossentropy's transposed small-row form changes no bit: it is run against a
copy of the row-by-row form it replaced, on probabilities, unnormalised and NaN/inf/zero
rows, one-hot, smoothed, zero and negative targets, with and without sample weights."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from nexec.kernels.cpu import loss as K
from nexec.kernels.cpu.loss import _clip_bounds, _log
from nexec.kernels.cpu.stack import stack_array

_CHUNK = 256


@njit
def _old_cce_total(p, y, eps, w):
    """The row-by-row ``_cce_total`` before the transposed blocks (a copy)."""
    n, k = p.shape
    lo, hi = _clip_bounds(p, eps)
    buf = stack_array(0.0, _CHUNK)
    step = max(1, _CHUNK // max(k, 1))
    total = 0.0
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        for j0 in range(0, k, _CHUNK):
            j1 = min(k, j0 + _CHUNK)
            kk = j1 - j0
            for i in range(i0, i1):
                s = 0.0
                for j in range(k):
                    s += p[i, j]
                inv = np.divide(1.0, s)
                qrow = buf[(i - i0) * kk:(i - i0 + 1) * kk]
                for j in range(kk):
                    qrow[j] = min(max(float(p[i, j0 + j]) * inv, lo), hi)
            for t in range((i1 - i0) * kk):
                buf[t] = _log(buf[t])
            for i in range(i0, i1):
                lrow = buf[(i - i0) * kk:(i - i0 + 1) * kk]
                row = 0.0
                for j in range(kk):
                    row -= float(y[i, j0 + j]) * lrow[j]
                total += row if w is None else float(w[i]) * row
    return total


def _problem(rng, rows, cols, dtype, targets, special):
    p = rng.random((rows, cols)) ** 3
    p /= p.sum(axis=1, keepdims=True)
    p[0, 0] = 1.0  # saturated, clipped
    if special and rows > 3:
        p[1] = 0.0  # sum 0: NaN quotients
        p[2, -1] = np.nan
        p[3, 0] = np.inf
    p[rng.random((rows, cols)) < 0.02] = 0.0
    p[:, 0] += 1e-3  # no row sums to zero unless asked to
    if targets == "one_hot":
        y = np.eye(cols)[rng.integers(0, cols, rows)]
    elif targets == "smoothed":
        y = 0.9 * np.eye(cols)[rng.integers(0, cols, rows)] + 0.1 / cols
    elif targets == "zero":
        y = np.zeros((rows, cols))
    else:  # anything, negative zeros and negatives included
        y = rng.standard_normal((rows, cols))
        y[rng.random((rows, cols)) < 0.3] = -0.0
    return p.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 5, 31, 32, 33, 70, 128])
@pytest.mark.parametrize("cols", [1, 2, 3, 10, 17, 32, 33])
@pytest.mark.parametrize("targets", ["one_hot", "smoothed", "zero", "signed"])
@pytest.mark.parametrize("special", [False, True])
def test_cce_total_as_the_row_wise_form(dtype, rows, cols, targets, special):
    """The same float64 total; with NaN/inf/zero rows also row by row (a NaN total would
    hide the other rows)."""
    rng = np.random.default_rng(100 * rows + cols)
    p, y = _problem(rng, rows, cols, dtype, targets, special)
    w = rng.random(rows).astype(dtype)
    cases = [(p, y, w)]
    if special:
        cases += [(p[i:i + 1], y[i:i + 1], w[i:i + 1]) for i in range(rows)]
    for pc, yc, wc in cases:
        for weights in (None, wc):
            expected = _old_cce_total(pc, yc, 1e-7, weights)
            got = K._cce_total(pc, yc, 1e-7, weights)
            assert np.float64(got).tobytes() == np.float64(expected).tobytes() or (
                np.isnan(got) and np.isnan(expected)), (got, expected)
            assert special or targets == "signed" or np.isfinite(got)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cce_total_finite_rows_as_before_and_kernels_use_it(dtype):
    """Finite rows give the very float (no NaN to hide a difference), through both value
    kernels."""
    rng = np.random.default_rng(5)
    p = (rng.random((100, 10)) + 0.01).astype(dtype)
    y = np.eye(10, dtype=dtype)[rng.integers(0, 10, 100)]
    w = rng.random(100).astype(dtype)
    out = np.zeros(1)
    K.categorical_crossentropy(p, y, 1e-7, out)
    assert out[0] == _old_cce_total(p, y, 1e-7, None) / 100 and np.isfinite(out[0])
    K.categorical_crossentropy_weighted(p, y, 1e-7, w, out)
    assert out[0] == _old_cce_total(p, y, 1e-7, w) / 100
