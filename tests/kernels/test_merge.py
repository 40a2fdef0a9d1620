"""Add / Concatenate / gradient-plumbing kernels against NumPy references."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.cpu.activation import activation_backward
from nexec.kernels.cpu.merge import accumulate, add_accumulate, add_forward, copy_into, fill_zero
from nexec.testing import assert_close, check_gradients
from tests.kernels.reference import ref_act

ACTS = [LINEAR, RELU, SIGMOID, TANH, SOFTMAX]
DTYPES = [np.float32, np.float64]
N, C = 5, 3
SENTINEL = 1234.5


def strided(rows: int, cols: int, dtype, left: int = 2, right: int = 3):
    """A (rows, cols) view with row stride cols+left+right, inside a sentinel-filled array."""
    big = np.full((rows, left + cols + right), SENTINEL, dtype=dtype)
    return big, big[:, left:left + cols]


def assert_outside_untouched(big: np.ndarray, cols: int, left: int = 2) -> None:
    assert np.all(big[:, :left] == SENTINEL), "left margin was written"
    assert np.all(big[:, left + cols:] == SENTINEL), "right margin was written"


def placed(values: np.ndarray, dtype, left: int, right: int):
    big, view = strided(values.shape[0], values.shape[1], dtype, left, right)
    view[:] = values
    return big, view


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("layout", ["contiguous", "strided", "out_is_a", "out_is_b"])
def test_add_forward(dtype, act, layout):
    rng = np.random.default_rng(act)
    a64, b64 = rng.standard_normal((N, C)), rng.standard_normal((N, C))
    expected = ref_act(a64 + b64, act)
    if layout == "contiguous":
        a, b = a64.astype(dtype), b64.astype(dtype)
        out = np.full((N, C), SENTINEL, dtype=dtype)
        add_forward(a, b, act, out)
    else:
        abig, a = placed(a64, dtype, 1, 2)
        bbig, b = placed(b64, dtype, 3, 0)
        if layout == "strided":
            obig, out = strided(N, C, dtype)
        else:
            out = a if layout == "out_is_a" else b
        add_forward(a, b, act, out)
        assert_outside_untouched(abig, C, left=1)
        assert_outside_untouched(bbig, C, left=3)
        if layout == "strided":
            assert_outside_untouched(obig, C)
            assert_close(a, a64.astype(dtype), rtol=0, what="a (must be unchanged)")
            assert_close(b, b64.astype(dtype), rtol=0, what="b (must be unchanged)")
    assert_close(out, expected, what="add forward")


@pytest.mark.parametrize("act", [LINEAR, TANH, SOFTMAX])
def test_add_of_a_tensor_with_itself_in_place(act):
    rng = np.random.default_rng(60 + act)
    a64 = rng.standard_normal((N, C))
    big, a = placed(a64, np.float64, 1, 1)
    add_forward(a, a, act, a)
    assert_close(a, ref_act(2 * a64, act), what="x + x in place")
    assert_outside_untouched(big, C, left=1)


def test_shape_mismatch_raises():
    a = np.ones((N, C))
    with pytest.raises(ValueError):
        add_forward(a, np.ones((N, C + 1)), LINEAR, a)
    with pytest.raises(ValueError):
        copy_into(a, np.ones((N + 1, C)))
    with pytest.raises(ValueError):
        accumulate(a, np.ones((N, C + 1)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_add_of_three_inputs(dtype, act):
    """Add(a, b, c): add_forward without activation, then add_accumulate with it."""
    rng = np.random.default_rng(10 + act)
    a64, b64, c64 = (rng.standard_normal((N, C)) for _ in range(3))
    obig, out = strided(N, C, dtype)
    _, c = placed(c64, dtype, 2, 2)
    add_forward(a64.astype(dtype), b64.astype(dtype), LINEAR, out)
    add_accumulate(out, c, act)
    assert_outside_untouched(obig, C)
    assert_close(out, ref_act(a64 + b64 + c64, act), what="add of three")


@pytest.mark.parametrize("act", ACTS)
def test_add_gradient_through_plumbing(act):
    """dL/da = dL/db = act'(y) * dy, assembled from activation_backward and copy_into."""
    rng = np.random.default_rng(20 + act)
    a = rng.choice([-1.0, 1.0], size=(N, C)) * rng.uniform(0.1, 1.0, size=(N, C))
    b = 0.01 * rng.standard_normal((N, C))  # keeps a + b away from the ReLU kink
    r = rng.standard_normal((N, C))
    ybig, y = strided(N, C, np.float64)

    def loss() -> float:
        add_forward(a, b, act, y)
        return float((y * r).sum())

    loss()
    dz = np.empty((N, C))
    activation_backward(y, r, act, dz)
    da, db = np.full((N, C), SENTINEL), np.full((N, C), SENTINEL)
    copy_into(da, dz)
    copy_into(db, dz)
    check_gradients(loss, {"a": da, "b": db}, {"a": a, "b": b})
    assert_outside_untouched(ybig, C)


@pytest.mark.parametrize("dtype", DTYPES)
def test_concatenate_forward_and_backward(dtype):
    rng = np.random.default_rng(30)
    p64, q64 = rng.standard_normal((N, 2)), rng.standard_normal((N, 4))
    joined = np.full((N, 6), SENTINEL, dtype=dtype)
    # Forward fallback: each branch output copied into its slice of the joined buffer.
    copy_into(joined[:, :2], p64.astype(dtype))
    _, q = placed(q64, dtype, 1, 1)  # a row-strided source
    copy_into(joined[:, 2:], q)
    assert_close(joined, np.concatenate([p64, q64], axis=1), what="concatenate")
    # Backward: each branch gets its slice of dy.
    dy64 = rng.standard_normal((N, 6))
    dy = dy64.astype(dtype)
    dp = np.full((N, 2), SENTINEL, dtype=dtype)
    dqbig, dq = strided(N, 4, dtype)
    copy_into(dp, dy[:, :2])
    copy_into(dq, dy[:, 2:])
    assert_close(dp, dy64[:, :2], what="dp")
    assert_close(dq, dy64[:, 2:], what="dq")
    assert_outside_untouched(dqbig, 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strided_args", [False, True])
def test_accumulate(dtype, strided_args):
    rng = np.random.default_rng(40)
    d64, s64 = rng.standard_normal((N, C)), rng.standard_normal((N, C))
    if strided_args:
        dbig, dst = placed(d64, dtype, 2, 3)
        _, src = placed(s64, dtype, 0, 4)
    else:
        dst, src = d64.astype(dtype), s64.astype(dtype)
    accumulate(dst, src)
    accumulate(dst, src)
    assert_close(dst, d64 + 2 * s64, what="accumulate")
    assert_close(src, s64.astype(dtype), rtol=0, what="src (must be unchanged)")
    if strided_args:
        assert_outside_untouched(dbig, C)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fill_zero(dtype):
    big, view = strided(N, C, dtype)
    fill_zero(view)
    assert np.all(view == 0)
    assert_outside_untouched(big, C)
    full = np.full((N, C), SENTINEL, dtype=dtype)
    fill_zero(full)
    assert np.all(full == 0)


def test_python_bodies_without_jit():
    """Runs the pure-Python bodies (``py_func``), for coverage and as a second opinion."""
    rng = np.random.default_rng(50)
    a, b = rng.standard_normal((N, C)), rng.standard_normal((N, C))
    big, out = strided(N, C, np.float64)
    add_forward.py_func(a, b, SOFTMAX, out)
    assert_close(out, ref_act(a + b, SOFTMAX), what="py_func add_forward")
    add_accumulate.py_func(out, a, RELU)
    assert_close(out, ref_act(ref_act(a + b, SOFTMAX) + a, RELU), what="py_func add_accumulate")
    dst = np.empty((N, C))
    copy_into.py_func(dst, out)
    assert_close(dst, np.array(out), rtol=0, what="py_func copy_into")
    accumulate.py_func(dst, a)
    assert_close(dst, np.array(out) + a, what="py_func accumulate")
    fill_zero.py_func(out)
    assert np.all(out == 0)
    assert_outside_untouched(big, C)
