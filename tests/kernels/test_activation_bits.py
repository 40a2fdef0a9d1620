"""The reworked small-shape epilogues change no bit: each is run against a copy of the
form it replaced, on random rows with -inf, inf, nan and huge values, odd sizes (rows not a
multiple of a block, 1 to 33 columns), row-strided outputs and in-place calls."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from nexec.kernels.cpu.activation import (
    _softmax_scale_rows,
    epilogue_softmax_rows,
    exp_typed,
)

DTYPES = [np.float32, np.float64]
ROWS = [1, 5, 31, 32, 33, 70, 128]
COLS = [1, 3, 10, 17, 32, 33]
SENTINEL = 1234.5


@njit
def _old_epilogue_softmax_rows(src, bias, out):
    """The row-wise ``epilogue_softmax_rows`` before the transposed blocks (a copy)."""
    rows = src.shape[0]
    cols = src.shape[1]
    has_bias = bias.shape[0] > 0
    if cols == 0:
        return
    for i in range(rows):
        s = src[i]
        if has_bias:
            for j in range(cols):
                s[j] += bias[j]
        m = s[0]
        for j in range(1, cols):
            if s[j] > m:
                m = s[j]
        for j in range(cols):
            s[j] = s[j] - m
    flat = src.reshape(rows * cols)
    for k in range(rows * cols):
        flat[k] = exp_typed(flat[k])
    _softmax_scale_rows(src, out)


def rough_rows(rng: np.random.Generator, rows: int, cols: int, dtype) -> np.ndarray:
    """Wide-ranging values with a sprinkling of nan, -inf, inf and huge ones."""
    x = 30.0 * rng.standard_normal((rows, cols))
    for value, share in ((np.nan, 0.04), (-np.inf, 0.05), (np.inf, 0.02), (1e30, 0.03),
                         (-1e30, 0.03)):
        x[rng.random((rows, cols)) < share] = value
    return x.astype(dtype)


def assert_same_bits(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal bit patterns, except that a nan may carry another payload."""
    kind = f"u{got.itemsize}"
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got.view(kind)[~nan], expected.view(kind)[~nan])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("cols", COLS)
@pytest.mark.parametrize("layout", ["contiguous", "strided", "inplace"])
def test_epilogue_softmax_rows_as_the_row_wise_form(dtype, rows, cols, layout):
    rng = np.random.default_rng(1000 * rows + cols)
    src = rough_rows(rng, rows, cols, dtype)
    src[0] = 1.0  # one plain row and one all -inf row, whatever the draw
    if rows > 1:
        src[1] = -np.inf
    for bias in (rng.standard_normal(cols).astype(dtype), np.zeros(0, dtype)):
        expected = np.full((rows, cols), SENTINEL, dtype)
        _old_epilogue_softmax_rows(src.copy(), bias, expected)
        if layout == "inplace":
            out = src.copy()
            epilogue_softmax_rows(out, bias, out)
        else:
            big = np.full((rows, cols + 5), SENTINEL, dtype)
            out = big[:, 2:2 + cols] if layout == "strided" else np.empty((rows, cols), dtype)
            epilogue_softmax_rows(src.copy(), bias, out)
            assert np.all(big[:, :2] == SENTINEL) and np.all(big[:, 2 + cols:] == SENTINEL)
        assert_same_bits(out, expected)
