"""The reworked small-shape epilogues change no bit: each is run against a copy of the
form it replaced, on random rows with -inf, inf, nan and huge values, odd sizes (rows not a
multiple of a block, 1 to 33 columns), row-strided outputs and in-place calls."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from nexec.kernels.activations import (
    ELU,
    EXPONENTIAL,
    GELU,
    LEAKY_RELU,
    LINEAR,
    LOG_SOFTMAX,
    RELU,
    SIGMOID,
    SILU,
    SOFTMAX,
    SOFTPLUS,
    TANH,
)
from nexec.kernels.cpu.activation import (
    _activate_grad_rows,
    _activate_rows,
    _softmax_scale_rows,
    copy_row,
    epilogue_grad_rows,
    epilogue_grad_rows_add,
    epilogue_rows,
    epilogue_softmax_rows,
    exp_typed,
    same_data,
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


@njit
def _old_add_column_sums(z, r0, r1, db):
    """The eight-columns-per-pass ``_add_column_sums`` it replaced (a copy)."""
    cols = z.shape[1]
    j0 = 0
    while j0 + 8 <= cols:
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        a4 = 0.0
        a5 = 0.0
        a6 = 0.0
        a7 = 0.0
        for i in range(r0, r1):
            r = z[i]
            a0 += r[j0]
            a1 += r[j0 + 1]
            a2 += r[j0 + 2]
            a3 += r[j0 + 3]
            a4 += r[j0 + 4]
            a5 += r[j0 + 5]
            a6 += r[j0 + 6]
            a7 += r[j0 + 7]
        db[j0] += a0
        db[j0 + 1] += a1
        db[j0 + 2] += a2
        db[j0 + 3] += a3
        db[j0 + 4] += a4
        db[j0 + 5] += a5
        db[j0 + 6] += a6
        db[j0 + 7] += a7
        j0 += 8
    for j in range(j0, cols):
        acc = 0.0
        for i in range(r0, r1):
            acc += z[i, j]
        db[j] += acc


@njit
def _old_epilogue_grad_rows_add(y, dy, act, dz, db):
    """``epilogue_grad_rows_add`` before this rework: LINEAR copies row by row through
    ``copy_row``, the column sums eight columns per pass (the other codes are unchanged)."""
    rows = y.shape[0]
    for b0 in range(0, rows, 256):
        b1 = min(rows, b0 + 256)
        if act == LINEAR:
            for i in range(b0, b1):
                copy_row(dy[i], dz[i])
        else:
            _activate_grad_rows(y, dy, act, dz, b0, b1)
        if db.shape[0] > 0:
            _old_add_column_sums(dz, b0, b1, db)


@njit
def _old_epilogue_grad_rows(y, dy, act, dz, db):
    for j in range(db.shape[0]):
        db[j] = 0
    _old_epilogue_grad_rows_add(y, dy, act, dz, db)


GRAD_ACTS = [LINEAR, RELU, SIGMOID, TANH, SOFTMAX, LOG_SOFTMAX, ELU, LEAKY_RELU, SOFTPLUS,
             EXPONENTIAL]
assert GELU not in GRAD_ACTS and SILU not in GRAD_ACTS  # their derivative takes the input


def _grad_case(rng, rows, cols, dtype, layout):
    """y, dy and dz (fresh arrays each call) in the layout asked for."""
    y = rough_rows(rng, rows, cols, dtype)
    dy = rough_rows(rng, rows, cols, dtype)

    def make():
        if layout == "every_other_column":  # no unit column stride: the general path
            yv, gv = np.empty((rows, 2 * cols), dtype), np.empty((rows, 2 * cols), dtype)
            yv[:, ::2] = y
            gv[:, ::2] = dy
            return yv[:, ::2], gv[:, ::2], np.full((rows, 2 * cols), SENTINEL, dtype)[:, ::2]
        if layout == "strided":
            yb = np.full((rows, cols + 3), SENTINEL, dtype)
            gb = np.full((rows, cols + 4), SENTINEL, dtype)
            zb = np.full((rows, cols + 5), SENTINEL, dtype)
            yv, gv, zv = yb[:, 1:1 + cols], gb[:, 2:2 + cols], zb[:, 3:3 + cols]
            yv[:] = y
            gv[:] = dy
            return yv, gv, zv
        yc, gc = y.copy(), dy.copy()
        return yc, gc, (gc if layout == "dz_is_dy" else np.full((rows, cols), SENTINEL, dtype))
    return make


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", GRAD_ACTS)
@pytest.mark.parametrize("rows", [1, 6, 35, 302])  # every remainder of 4-row sums
@pytest.mark.parametrize("cols", [1, 3, 10, 17, 33, 64, 65, 130])
@pytest.mark.parametrize("layout", ["contiguous", "strided", "dz_is_dy", "every_other_column"])
def test_epilogue_grad_rows_as_before(dtype, act, rows, cols, layout):
    rng = np.random.default_rng(7 * rows + 1000 * cols + act)
    make = _grad_case(rng, rows, cols, dtype, layout)
    for nb in (cols, 0):
        y, dy, dz = make()
        db = np.full(nb, SENTINEL, dtype)
        _old_epilogue_grad_rows(y, dy, act, dz, db)
        y2, dy2, dz2 = make()
        db2 = np.full(nb, -SENTINEL, dtype)
        epilogue_grad_rows(y2, dy2, act, dz2, db2)
        assert_same_bits(dz2, dz)
        assert_same_bits(db2, db)
        if layout == "strided":
            margins = np.concatenate([dz2.base[:, :3], dz2.base[:, 3 + cols:]], axis=1)
            assert np.all(margins == SENTINEL)


@pytest.mark.parametrize("dtype", DTYPES)
def test_epilogue_grad_rows_add_accumulates_as_before(dtype):
    rng = np.random.default_rng(3)
    y, dy = rough_rows(rng, 40, 70, dtype), rough_rows(rng, 40, 70, dtype)
    y[np.isnan(y)] = 0.5  # finite sums, so that accumulating into db shows
    dy[~np.isfinite(dy)] = -2.0
    start = rng.standard_normal(70).astype(dtype)
    db_old, db_new = start.copy(), start.copy()
    for r0, r1 in ((0, 13), (13, 40)):
        _old_epilogue_grad_rows_add(y[r0:r1], dy[r0:r1], RELU, np.empty((r1 - r0, 70), dtype),
                                    db_old)
        epilogue_grad_rows_add(y[r0:r1], dy[r0:r1], RELU, np.empty((r1 - r0, 70), dtype), db_new)
    assert_same_bits(db_new, db_old)
    assert not np.array_equal(db_new, start)


@njit
def _old_epilogue_rows(src, bias, act, out):
    """``epilogue_rows`` before the one-pass bias + ReLU (a copy)."""
    rows = src.shape[0]
    cols = src.shape[1]
    has_bias = bias.shape[0] > 0
    for b0 in range(0, rows, 256):
        b1 = min(rows, b0 + 256)
        for i in range(b0, b1):
            s = src[i]
            o = out[i]
            if not has_bias:
                copy_row(s, o)
            elif same_data(s, o):
                for j in range(cols):
                    o[j] += bias[j]
            else:
                for j in range(cols):
                    o[j] = s[j] + bias[j]
        _activate_rows(out, act, b0, b1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", GRAD_ACTS)
@pytest.mark.parametrize("rows", [1, 5, 300])
@pytest.mark.parametrize("cols", [1, 3, 10, 17, 33])
@pytest.mark.parametrize("layout", ["contiguous", "strided", "inplace", "strided_inplace"])
def test_epilogue_rows_as_before(dtype, act, rows, cols, layout):
    rng = np.random.default_rng(11 * rows + 1000 * cols + act)
    src = rough_rows(rng, rows, cols, dtype)
    src[rng.random((rows, cols)) < 0.1] = -0.0
    for bias in (rng.standard_normal(cols).astype(dtype), np.zeros(0, dtype)):
        bias[:1] = -0.0  # -0.0 + -0.0 stays -0.0, and ReLU of it is +0
        expected = np.empty((rows, cols), dtype)
        _old_epilogue_rows(src.copy(), bias, act, expected)
        if layout in ("inplace", "strided_inplace"):
            big = np.full((rows, cols + 5), SENTINEL, dtype)
            out = big[:, 2:2 + cols] if layout == "strided_inplace" else big[:, :cols].copy()
            out[:] = src
            epilogue_rows(out, bias, act, out)
        else:
            big = np.full((rows, cols + 5), SENTINEL, dtype)
            out = big[:, 2:2 + cols] if layout == "strided" else np.empty((rows, cols), dtype)
            epilogue_rows(src.copy(), bias, act, out)
        if layout.startswith("strided"):
            assert np.all(big[:, :2] == SENTINEL) and np.all(big[:, 2 + cols:] == SENTINEL)
        assert_same_bits(out, expected)
