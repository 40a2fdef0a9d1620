"""Activation kernels against NumPy float64 references and finite differences."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.cpu.activation import (
    activation_backward,
    activation_forward,
    epilogue_grad_rows,
    epilogue_rows,
    epilogue_softmax_rows,
    fast_exp,
    fast_sigmoid,
    fast_tanh,
    row_dot,
    row_sum,
)
from nexec.testing import assert_close, check_gradients
from tests.kernels.reference import ref_act, ref_act_grad, ref_sigmoid

ACTS = [LINEAR, RELU, SIGMOID, TANH, SOFTMAX]
DTYPES = [np.float32, np.float64]
N, C = 5, 7
SENTINEL = 1234.5


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values in ±[0.1, 2]: no ReLU kink within reach of a finite-difference step."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)


def strided(rows: int, cols: int, dtype, left: int = 2, right: int = 3):
    """A (rows, cols) view with row stride cols+left+right, inside a sentinel-filled array."""
    big = np.full((rows, left + cols + right), SENTINEL, dtype=dtype)
    return big, big[:, left:left + cols]


def assert_outside_untouched(big: np.ndarray, cols: int, left: int = 2) -> None:
    assert np.all(big[:, :left] == SENTINEL), "left margin was written"
    assert np.all(big[:, left + cols:] == SENTINEL), "right margin was written"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("layout", ["contiguous", "strided", "inplace"])
def test_forward_matches_numpy(dtype, act, layout):
    rng = np.random.default_rng(act)
    x64 = 2.0 * rng.standard_normal((N, C))
    expected = ref_act(x64, act)
    if layout == "contiguous":
        x = x64.astype(dtype)
        out = np.full((N, C), SENTINEL, dtype=dtype)
        activation_forward(x, act, out)
    else:
        xbig, x = strided(N, C, dtype)
        x[:] = x64
        if layout == "inplace":
            out = x
        else:
            obig, out = strided(N, C, dtype, left=1, right=4)
        activation_forward(x, act, out)
        assert_outside_untouched(xbig, C)
        if layout == "strided":
            assert_outside_untouched(obig, C, left=1)
            assert_close(x, x64.astype(dtype), rtol=0, what="input (must be unchanged)")
    assert out.dtype == dtype
    assert_close(out, expected, what="activation forward")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("layout", ["contiguous", "strided", "dx_aliases_dy"])
def test_backward_matches_finite_differences(act, layout):
    rng = np.random.default_rng(10 + act)
    x = away_from_zero(rng, (N, C))
    r = rng.standard_normal((N, C))
    ybig, y = strided(N, C, np.float64)

    def loss() -> float:
        activation_forward(x, act, y)
        return float((y * r).sum())

    loss()
    yv = y  # the forward output, row-strided
    if layout == "contiguous":
        yv = np.ascontiguousarray(y)
        dy = r.copy()
        dx = np.full((N, C), SENTINEL)
    else:
        dybig, dy = strided(N, C, np.float64, left=3, right=1)
        dy[:] = r
        if layout == "dx_aliases_dy":
            dx = dy
        else:
            dxbig, dx = strided(N, C, np.float64, left=1, right=2)
    activation_backward(yv, dy, act, dx)
    if layout != "contiguous":
        assert_outside_untouched(dybig, C, left=3)
        if layout == "strided":
            assert_outside_untouched(dxbig, C, left=1)
            assert_close(dy, r, rtol=0, what="dy (must be unchanged)")
    dx = np.array(dx)
    check_gradients(loss, {"x": dx}, {"x": x})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_backward_matches_numpy(dtype, act):
    rng = np.random.default_rng(20 + act)
    y64 = ref_act(away_from_zero(rng, (N, C)), act)
    dy64 = rng.standard_normal((N, C))
    y, dy = y64.astype(dtype), dy64.astype(dtype)
    dx = np.full((N, C), SENTINEL, dtype=dtype)
    activation_backward(y, dy, act, dx)
    assert_close(dx, ref_act_grad(y, dy, act), what="activation backward")


def test_extreme_inputs_stay_finite():
    x = np.array([[1000.0, -1000.0, 0.0], [-800.0, -800.0, -801.0]])
    out = np.empty_like(x)
    activation_forward(x, SOFTMAX, out)
    assert_close(out, ref_act(x, SOFTMAX), what="softmax of large inputs")
    activation_forward(x, SIGMOID, out)
    assert np.all(np.isfinite(out))
    assert_close(out, [[1.0, 0.0, 0.5], [0.0, 0.0, 0.0]], atol=1.0, what="saturated sigmoid")


@njit
def _map(f, x, out):
    for i in range(x.shape[0]):
        out[i] = f(x[i])


WIDE = np.concatenate([
    np.linspace(-800.0, 800.0, 20001),
    np.random.default_rng(0).standard_normal(20000) * 3.0,
    np.logspace(-300, 2, 2000),
    -np.logspace(-300, 2, 2000),
])


@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid"])
def test_scalar_math_is_accurate_in_float64(name):
    f, ref = {"exp": (fast_exp, np.exp), "tanh": (fast_tanh, np.tanh),
              "sigmoid": (fast_sigmoid, ref_sigmoid)}[name]
    got = np.empty_like(WIDE)
    _map(f, WIDE, got)
    with np.errstate(over="ignore", under="ignore"):
        expected = ref(WIDE)
    normal = np.isfinite(expected) & (np.abs(expected) > 1e-300)
    rel = np.abs(got[normal] - expected[normal]) / np.abs(expected[normal])
    assert rel.max() <= 1e-15, f"{name}: max relative error {rel.max():.3g}"
    # Overflow to inf and underflow to (nearly) 0 behave like NumPy.
    assert np.array_equal(np.isinf(got), np.isinf(expected))
    assert np.all(np.abs(got[~normal & np.isfinite(got)]) <= 1e-300)


@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid"])
def test_scalar_math_special_values(name):
    f = {"exp": fast_exp, "tanh": fast_tanh, "sigmoid": fast_sigmoid}[name]
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0])
    got = np.empty_like(x)
    _map(f, x, got)
    expected = {"exp": [np.inf, 0.0, np.nan, 1.0, 1.0],
                "tanh": [1.0, -1.0, np.nan, 0.0, -0.0],
                "sigmoid": [1.0, 0.0, np.nan, 0.5, 0.5]}[name]
    np.testing.assert_array_equal(got, expected)
    if name == "tanh":
        assert np.signbit(got[4]) and not np.signbit(got[3])


@pytest.mark.parametrize("act", [SIGMOID, TANH])
def test_float32_outputs_are_correctly_rounded_float64_results(act):
    x = WIDE.astype(np.float32)[None, :]
    out = np.empty_like(x)
    activation_forward(x, act, out)
    expected = ref_act(x.astype(np.float64), act)
    normal = np.abs(expected) > 1e-30
    rel = np.abs(out[normal] - expected[normal]) / np.abs(expected[normal])
    assert rel.max() <= 1.2e-7, f"max relative error {rel.max():.3g}"


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 9])
def test_row_sum_and_dot(n):
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    assert_close(np.array(row_sum(a)), np.array(a.sum()), atol=1e-12, what="row_sum")
    assert_close(np.array(row_dot(a, b)), np.array(a @ b), atol=1e-12, what="row_dot")
    a32 = a.astype(np.float32)
    assert_close(np.array(row_sum(a32)), np.array(a32.astype(np.float64).sum()),
                 rtol=1e-12, atol=1e-12, what="row_sum accumulates in float64")


def test_shape_mismatch_raises():
    x = np.ones((2, 3))
    with pytest.raises(ValueError):
        activation_forward(x, RELU, np.ones((2, 4)))
    with pytest.raises(ValueError):
        activation_backward(x, np.ones((3, 3)), RELU, x)
    with pytest.raises(ValueError):
        epilogue_rows(x, np.ones(4), RELU, x)


def test_unknown_code_raises():
    x = np.ones((2, 3))
    with pytest.raises(ValueError):
        activation_forward(x, 99, x)
    with pytest.raises(ValueError):
        activation_backward(x, x, 99, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "strided", "inplace"])
def test_epilogue_rows(dtype, act, bias, layout):
    rng = np.random.default_rng(30 + act)
    s64 = 2.0 * rng.standard_normal((N, C))
    b64 = rng.standard_normal(C) if bias else np.zeros(0)
    expected = ref_act(s64 + (b64 if bias else 0.0), act)
    b = b64.astype(dtype)
    if layout == "contiguous":
        src = s64.astype(dtype)
        out = np.full((N, C), SENTINEL, dtype=dtype)
    else:
        sbig, src = strided(N, C, dtype)
        src[:] = s64
        if layout == "inplace":
            out = src
        else:
            obig, out = strided(N, C, dtype, left=4, right=0)
    epilogue_rows(src, b, act, out)
    if layout == "strided":
        assert_outside_untouched(obig, C, left=4)
        assert_close(src, s64.astype(dtype), rtol=0, what="src (must be unchanged)")
    if layout != "contiguous":
        assert_outside_untouched(sbig, C)
    assert_close(out, expected, what="epilogue")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cols", [1, 3, 10, 17])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "strided", "inplace"])
@pytest.mark.parametrize("rows", [N, N + 3])  # four rows at a time, and a remainder
def test_epilogue_softmax_rows_matches_numpy_and_epilogue_rows_bitwise(dtype, cols, bias, layout,
                                                                       rows):
    rng = np.random.default_rng(cols)
    s64 = 4.0 * rng.standard_normal((rows, cols))
    s64[0, 0] = 80.0  # exp would overflow without the max shift
    b64 = rng.standard_normal(cols) if bias else np.zeros(0)
    b = b64.astype(dtype)
    src = s64.astype(dtype)
    if layout == "contiguous":
        out = np.full((rows, cols), SENTINEL, dtype=dtype)
    elif layout == "inplace":
        out = src
    else:
        obig, out = strided(rows, cols, dtype)
    epilogue_softmax_rows(src, b, out)
    if layout == "strided":
        assert_outside_untouched(obig, cols)
    assert_close(out, ref_act(s64.astype(dtype) + (b64.astype(dtype) if bias else 0.0),
                              SOFTMAX), what="block softmax")
    same = np.empty((rows, cols), dtype)
    epilogue_rows(s64.astype(dtype), b, SOFTMAX, same)
    np.testing.assert_array_equal(out, same)  # the fast form changes no bit


def test_epilogue_softmax_rows_special_values_as_epilogue_rows():
    src = np.array([[np.inf, 0.0, 1.0], [np.nan, 1.0, 2.0], [-np.inf, 0.0, 0.0]], np.float32)
    expected = np.empty_like(src)
    epilogue_rows(src.copy(), np.zeros(0, np.float32), SOFTMAX, expected)
    got = np.empty_like(src)
    epilogue_softmax_rows(src.copy(), np.zeros(0, np.float32), got)
    np.testing.assert_array_equal(got, expected)  # nan where epilogue_rows has nan
    with pytest.raises(ValueError, match="bias length"):
        epilogue_softmax_rows(src.copy(), np.zeros(2, np.float32), got)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dz_is_dy", [False, True])
def test_epilogue_grad_rows(dtype, act, bias, dz_is_dy):
    rng = np.random.default_rng(40 + act)
    y64 = ref_act(away_from_zero(rng, (N, C)), act)
    dy64 = rng.standard_normal((N, C))
    ybig, y = strided(N, C, dtype)
    dybig, dy = strided(N, C, dtype, left=1, right=1)
    y[:] = y64
    dy[:] = dy64
    expected = ref_act_grad(y.astype(np.float64), dy.astype(np.float64), act)
    dz = dy if dz_is_dy else np.full((N, C), SENTINEL, dtype=dtype)
    db = np.full(C if bias else 0, SENTINEL, dtype=dtype)
    epilogue_grad_rows(y, dy, act, dz, db)
    assert_close(dz, expected, what="dz")
    if bias:
        assert_close(db, expected.sum(axis=0), what="db")
    assert_outside_untouched(ybig, C)
    assert_outside_untouched(dybig, C, left=1)


@pytest.mark.parametrize("act", ACTS)
def test_python_bodies_without_jit(act):
    """Runs the pure-Python bodies (``py_func``), for coverage and as a second opinion."""
    rng = np.random.default_rng(50 + act)
    x = rng.standard_normal((3, 4))
    out = np.empty_like(x)
    activation_forward.py_func(x, act, out)
    assert_close(out, ref_act(x, act), what="py_func forward")
    dy = rng.standard_normal((3, 4))
    dx = np.empty_like(x)
    activation_backward.py_func(out, dy, act, dx)
    assert_close(dx, ref_act_grad(out, dy, act), what="py_func backward")
