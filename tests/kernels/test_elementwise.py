"""Kernels generated from scalar functions (CPU) against NumPy float64 references and
finite differences: activations (also on row-strided views and in place), losses (value
and gradient), metrics, and the one-compile-per-function cache."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from nexec.kernels.cpu.elementwise import activation_kernels, loss_kernels, metric_kernel
from nexec.testing import assert_close, check_gradients
from tests.kernels.scalar_functions import ACTIVATIONS, LOSSES, METRICS, ref_loss, separated

DTYPES = [np.float32, np.float64]
N, C = 5, 7
SENTINEL = 1234.5
WEIGHT = 0.7


def tol(dtype) -> float:
    return 1e-6 if dtype == np.float32 else 1e-12


def strided(rows: int, cols: int, dtype, left: int = 2, right: int = 3):
    """A (rows, cols) view with row stride cols+left+right, inside a sentinel-filled array."""
    big = np.full((rows, left + cols + right), SENTINEL, dtype=dtype)
    return big, big[:, left:left + cols]


def margins_untouched(big: np.ndarray, cols: int, left: int = 2) -> bool:
    return bool(np.all(big[:, :left] == SENTINEL) and np.all(big[:, left + cols:] == SENTINEL))


# ----------------------------------------------------------------- activations


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("layout", ["contiguous", "strided", "inplace"])
def test_activation_forward(name, dtype, layout):
    forward, derivative, np_fwd, _ = ACTIVATIONS[name]
    fwd, _ = activation_kernels(forward, derivative)
    x64 = 2.0 * np.random.default_rng(0).standard_normal((N, C))
    x = x64.astype(dtype)
    expected = np_fwd(x.astype(np.float64))
    if layout == "contiguous":
        out = np.full((N, C), SENTINEL, dtype)
        fwd(x, out)
    else:
        big, out = strided(N, C, dtype)
        if layout == "inplace":
            out[:] = x
            fwd(out, out)
        else:
            _, xs = strided(N, C, dtype, left=1, right=4)
            xs[:] = x
            fwd(xs, out)
        assert margins_untouched(big, C)
    assert out.dtype == dtype
    assert_close(out, expected, rtol=tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("layout", ["contiguous", "strided", "inplace"])
def test_activation_backward(name, dtype, layout):
    forward, derivative, np_fwd, np_deriv = ACTIVATIONS[name]
    _, bwd = activation_kernels(forward, derivative)
    rng = np.random.default_rng(1)
    y = np_fwd(2.0 * rng.standard_normal((N, C))).astype(dtype)
    dy = rng.standard_normal((N, C)).astype(dtype)
    expected = dy.astype(np.float64) * np_deriv(y.astype(np.float64))
    if layout == "contiguous":
        dz = np.full((N, C), SENTINEL, dtype)
        bwd(y, dy, dz)
    else:
        big, dz = strided(N, C, dtype)
        dz[:] = dy
        if layout == "inplace":
            bwd(y, dz, dz)
        else:
            _, ys = strided(N, C, dtype, left=3, right=1)
            ys[:] = y
            bwd(ys, dy, dz)
        assert margins_untouched(big, C)
    assert_close(dz, expected, rtol=tol(dtype))


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_backward_matches_finite_differences(name):
    forward, derivative, np_fwd, _ = ACTIVATIONS[name]
    fwd, bwd = activation_kernels(forward, derivative)
    rng = np.random.default_rng(2)
    z = rng.choice([-1.0, 1.0], size=(N, C)) * rng.uniform(0.1, 2.0, size=(N, C))  # no kink
    w = rng.standard_normal((N, C))
    y = np.empty_like(z)
    fwd(z, y)
    dz = np.empty_like(z)
    bwd(y, w, dz)
    check_gradients(lambda: float(np.sum(w * np_fwd(z))), {"z": dz}, {"z": z})


def test_activation_shape_mismatch_raises():
    fwd, bwd = activation_kernels(*ACTIVATIONS["softsign"][:2])
    with pytest.raises(ValueError):
        fwd(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError):
        bwd(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 4)))


# ----------------------------------------------------------------- losses


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_value(name, dtype):
    fn, grad, np_fn = LOSSES[name]
    value, _ = loss_kernels(fn, grad)
    p, t = separated(np.random.default_rng(3), (N, C))
    p, t = p.astype(dtype), t.astype(dtype)
    out = np.full(1, np.nan)
    value(p, t, out)
    assert_close(out[0:1], np.array([ref_loss(np_fn, p, t)]), rtol=1e-12)
    _, ps = strided(N, C, dtype)
    ps[:] = p
    out[0] = np.nan
    value(ps, t, out)  # a row-strided prediction
    assert_close(out[0:1], np.array([ref_loss(np_fn, p, t)]), rtol=1e-12)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_grad_matches_finite_differences(name):
    fn, grad, np_fn = LOSSES[name]
    _, grad_kernel = loss_kernels(fn, grad)
    p, t = separated(np.random.default_rng(4), (N, C))
    dp = np.full_like(p, np.nan)
    grad_kernel(p, t, WEIGHT / N, dp)
    check_gradients(lambda: WEIGHT * ref_loss(np_fn, p, t), {"p": dp}, {"p": p})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_grad_dtype_and_strided(name, dtype):
    fn, grad, _ = LOSSES[name]
    _, grad_kernel = loss_kernels(fn, grad)
    p, t = separated(np.random.default_rng(5), (N, C))
    p, t = p.astype(dtype), t.astype(dtype)
    big, dp = strided(N, C, dtype)
    grad_kernel(p, t, 0.25, dp)
    assert margins_untouched(big, C)
    expected = np.empty((N, C))
    grad_kernel(p.astype(np.float64), t.astype(np.float64), 0.25, expected)
    assert_close(dp, expected, rtol=tol(dtype))


def test_loss_empty_and_errors():
    value, grad_kernel = loss_kernels(*LOSSES["absolute_error"][:2])
    out = np.zeros(1)
    value(np.zeros((0, 3)), np.zeros((0, 3)), out)
    assert np.isnan(out[0])
    grad_kernel(np.zeros((0, 3)), np.zeros((0, 3)), 1.0, np.zeros((0, 3)))  # nothing to do
    with pytest.raises(ValueError):
        value(np.zeros((2, 3)), np.zeros((2, 4)), out)
    with pytest.raises(ValueError, match="1-element"):
        value(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(0))
    with pytest.raises(ValueError):
        grad_kernel(np.zeros((2, 3)), np.zeros((2, 3)), 1.0, np.zeros((3, 2)))


# ----------------------------------------------------------------- metrics


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(METRICS))
def test_metric_sum(name, dtype):
    fn, np_fn = METRICS[name]
    count = metric_kernel(fn)
    rng = np.random.default_rng(6)
    p = rng.standard_normal((N, C)).astype(dtype)
    t = (p + rng.uniform(-1.0, 1.0, (N, C))).astype(dtype)
    expected = float(np.sum(np_fn(p.astype(np.float64), t.astype(np.float64))))
    assert 0 < expected
    out = np.full(1, np.nan)
    count(p, t, out)
    assert_close(out, np.array([expected]), rtol=1e-12)
    _, ts = strided(N, C, dtype)
    ts[:] = t
    out[0] = np.nan
    count(p, ts, out)
    assert_close(out, np.array([expected]), rtol=1e-12)


def test_metric_counts_matches_exactly():
    count = metric_kernel(METRICS["within_half"][0])
    p = np.array([[0.0, 1.0, 2.0], [0.2, 0.4, 3.0]])
    t = np.array([[0.4, 0.0, 2.6], [0.2, 1.0, 3.49]])
    out = np.zeros(1)
    count(p, t, out)
    assert out[0] == 3.0
    count(np.zeros((0, 3)), np.zeros((0, 3)), out)
    assert out[0] == 0.0


# ----------------------------------------------------------------- generation and caching


def test_one_kernel_per_function_compiled_on_first_call():
    def cube(z):
        return z * z * z

    def cube_derivative(y):
        return 3.0 * abs(y) ** (2.0 / 3.0)

    fwd, bwd = activation_kernels(cube, cube_derivative)
    assert fwd.signatures == [] and bwd.signatures == []  # nothing compiled yet
    again = activation_kernels(cube, cube_derivative)
    assert again[0] is fwd and again[1] is bwd
    x = np.array([[1.0, -2.0]])
    out = np.empty_like(x)
    fwd(x, out)
    assert out.tolist() == [[1.0, -8.0]]
    assert len(fwd.signatures) == 1
    fwd(x, out)
    assert len(fwd.signatures) == 1
    other, _ = activation_kernels(lambda z: z * z * z, cube_derivative)
    assert other is not fwd
    assert loss_kernels(cube, cube)[0] is loss_kernels(cube, cube_derivative)[0]
    assert metric_kernel(cube) is metric_kernel(cube)


def test_generated_kernels_are_callable_from_njit_code():
    """The future compiled training step calls them from inside one Numba function."""
    fwd, _ = activation_kernels(*ACTIVATIONS["softsign"][:2])
    value, _ = loss_kernels(*LOSSES["absolute_error"][:2])

    @njit
    def step(x, y, t, out):
        fwd(x, y)
        value(y, t, out)

    x = np.array([[1.0, -3.0]])
    y = np.empty_like(x)
    out = np.zeros(1)
    step(x, y, np.zeros_like(x), out)
    assert_close(out, np.array([(0.5 + 0.75) / 2]), rtol=1e-15)


def test_an_njit_function_is_accepted():
    fwd, _ = activation_kernels(njit(lambda z: 2.0 * z), lambda y: 2.0)
    out = np.empty((1, 2))
    fwd(np.array([[1.0, 2.0]]), out)
    assert out.tolist() == [[2.0, 4.0]]
