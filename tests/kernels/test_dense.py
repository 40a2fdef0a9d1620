"""Dense kernels against NumPy float64 references and finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels import activations
from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.cpu.dense import dense_backward, dense_forward, epilogue_in_place
from nexec.testing import assert_close, check_gradients
from tests.kernels.reference import ref_act, ref_act_grad

ACTS = [LINEAR, RELU, SIGMOID, TANH, SOFTMAX]
DTYPES = [np.float32, np.float64]
N, I, O = 5, 7, 3
SENTINEL = 1234.5


def strided(rows: int, cols: int, dtype, left: int = 2, right: int = 3):
    """A (rows, cols) view with row stride cols+left+right, inside a sentinel-filled array."""
    big = np.full((rows, left + cols + right), SENTINEL, dtype=dtype)
    return big, big[:, left:left + cols]


def assert_outside_untouched(big: np.ndarray, cols: int, left: int = 2) -> None:
    assert np.all(big[:, :left] == SENTINEL), "left margin was written"
    assert np.all(big[:, left + cols:] == SENTINEL), "right margin was written"


def make_problem(seed: int, bias: bool):
    """float64 x, w, b (b of shape (0,) without bias) whose pre-activations avoid 0."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((I, O)) / np.sqrt(I)
    b = rng.standard_normal(O) if bias else np.zeros(0)
    while True:  # redraw x until no pre-activation is near the ReLU kink
        x = rng.standard_normal((N, I))
        if np.min(np.abs(x @ w + (b if bias else 0.0))) > 0.05:
            return x, w, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layout", ["tmp_is_out", "separate_tmp", "strided_out"])
def test_forward_matches_numpy(dtype, act, bias, layout):
    x64, w64, b64 = make_problem(act, bias)
    expected = ref_act(x64 @ w64 + (b64 if bias else 0.0), act)
    x, w, b = x64.astype(dtype), w64.astype(dtype), b64.astype(dtype)
    tmp = np.full((N, O), SENTINEL, dtype=dtype)
    if layout == "tmp_is_out":
        out = tmp
    elif layout == "separate_tmp":
        out = np.full((N, O), SENTINEL, dtype=dtype)
    else:
        big, out = strided(N, O, dtype)
    dense_forward(x, w, b, act, out, tmp)
    if layout == "strided_out":
        assert_outside_untouched(big, O)
    if layout != "tmp_is_out":
        assert np.all(tmp == SENTINEL), "tmp is unused on the CPU"
    assert out.dtype == dtype
    assert_close(out, expected, what="dense forward")
    assert_close(x, x64.astype(dtype), rtol=0, what="x (must be unchanged)")


ALL_CODES = [getattr(activations, name) for name in dir(activations)
             if name.isupper() and isinstance(getattr(activations, name), int)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", sorted(set(ALL_CODES)))
def test_epilogue_bits_do_not_depend_on_layout(dtype, act):
    """The in-place epilogue over a row-strided slice (rows typed contiguous) gives the bits
    of the contiguous block helpers, for every activation code; a strided x as well."""
    rng = np.random.default_rng(act)
    rows, cols = 300, 19  # more than one 256-row block
    z = rng.standard_normal((rows, cols)).astype(dtype)
    b = rng.standard_normal(cols).astype(dtype)
    contiguous = z.copy()
    epilogue_in_place(contiguous, b, act)
    big, view = strided(rows, cols, dtype)
    view[...] = z
    epilogue_in_place(view, b, act)
    np.testing.assert_array_equal(view, contiguous)
    assert_outside_untouched(big, cols)
    xbig, x = strided(rows, I, dtype)
    x[...] = rng.standard_normal((rows, I))
    w = rng.standard_normal((I, cols)).astype(dtype)
    out_c, (obig, out_s) = np.empty((rows, cols), dtype), strided(rows, cols, dtype)
    dense_forward(np.ascontiguousarray(x), w, b, act, out_c, out_c)
    dense_forward(x, w, b, act, out_s, out_s)
    np.testing.assert_array_equal(out_s, out_c)
    assert_outside_untouched(obig, cols)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("strided_y", [False, True])
@pytest.mark.parametrize("need_dx", [True, False])
def test_backward_matches_finite_differences(act, bias, strided_y, need_dx):
    x, w, b = make_problem(100 + act, bias)
    r = np.random.default_rng(200 + act).standard_normal((N, O))
    if strided_y:
        ybig, y = strided(N, O, np.float64)
        tmp = np.empty((N, O))
    else:
        y = np.empty((N, O))
        tmp = y

    def loss() -> float:
        dense_forward(x, w, b, act, y, tmp)
        return float((y * r).sum())

    loss()
    if strided_y:
        dybig, dy = strided(N, O, np.float64, left=1, right=1)
        dy[:] = r
    else:
        dy = r.copy()
    # Garbage everywhere: the kernel must overwrite, not accumulate.
    dz = np.full((N, O), SENTINEL)
    dx = np.full((N, I) if need_dx else (0, I), SENTINEL)
    dw = np.full((I, O), SENTINEL)
    db = np.full(b.shape, SENTINEL)
    dense_backward(x, w, y, dy, act, dz, dx, dw, db)
    if strided_y:
        assert_outside_untouched(ybig, O)
        assert_outside_untouched(dybig, O, left=1)
    assert dx.shape == ((N, I) if need_dx else (0, I))
    analytic = {"w": dw.copy(), "b": db.copy(), "x": dx.copy()}
    wrt = {"w": w}
    if bias:
        wrt["b"] = b
    if need_dx:
        wrt["x"] = x
    check_gradients(loss, analytic, wrt)
    assert_close(dz, ref_act_grad(np.array(y), r, act), what="dz")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
def test_backward_matches_numpy(dtype, act, bias):
    x64, w64, b64 = make_problem(300 + act, bias)
    x, w, b = x64.astype(dtype), w64.astype(dtype), b64.astype(dtype)
    ybig, y = strided(N, O, dtype, left=3, right=0)
    dense_forward(x, w, b, act, y, np.empty((N, O), dtype=dtype))
    dy64 = np.random.default_rng(400 + act).standard_normal((N, O))
    dy = dy64.astype(dtype)
    dz = np.empty((N, O), dtype=dtype)
    dx = np.full((N, I), SENTINEL, dtype=dtype)
    dw = np.full((I, O), SENTINEL, dtype=dtype)
    db = np.full(b.shape, SENTINEL, dtype=dtype)
    dense_backward(x, w, y, dy, act, dz, dx, dw, db)
    dz_ref = ref_act_grad(y.astype(np.float64), dy.astype(np.float64), act)
    xr, wr = x.astype(np.float64), w.astype(np.float64)
    assert_close(dz, dz_ref, what="dz")
    assert_close(dw, xr.T @ dz_ref, what="dw")
    assert_close(dx, dz_ref @ wr.T, what="dx")
    if bias:
        assert_close(db, dz_ref.sum(axis=0), what="db")
    assert_outside_untouched(ybig, O, left=3)


@pytest.mark.parametrize("act", [LINEAR, TANH, SOFTMAX])
def test_backward_with_dz_aliasing_dy(act):
    x, w, b = make_problem(700 + act, True)
    y = np.empty((N, O))
    dense_forward(x, w, b, act, y, y)
    dy64 = np.random.default_rng(800).standard_normal((N, O))
    dz_ref = ref_act_grad(y, dy64, act)
    dy = dy64.copy()
    dx, dw, db = np.empty((N, I)), np.empty((I, O)), np.empty(O)
    dense_backward(x, w, y, dy, act, dy, dx, dw, db)
    assert_close(dy, dz_ref, what="dz written over dy")
    assert_close(dw, x.T @ dz_ref, what="dw")
    assert_close(dx, dz_ref @ w.T, what="dx")
    assert_close(db, dz_ref.sum(axis=0), what="db")


def test_shape_mismatch_raises():
    x, w, b = make_problem(900, True)
    with pytest.raises(ValueError):
        dense_forward(x, w, b, RELU, np.empty((N, O + 1)), np.empty((N, O + 1)))
    with pytest.raises(ValueError):
        dense_forward(x, w, np.ones(O + 1), RELU, np.empty((N, O)), np.empty((N, O)))
    y = np.ones((N, O))
    with pytest.raises(ValueError):
        dense_backward(x, w, y, y, RELU, np.empty((N, O)), np.empty((N, I + 1)),
                       np.empty((I, O)), np.empty(O))


@pytest.mark.parametrize("act", [RELU, SOFTMAX])
def test_python_bodies_without_jit(act):
    """Runs the pure-Python bodies (``py_func``), for coverage and as a second opinion."""
    x, w, b = make_problem(500 + act, True)
    big, out = strided(N, O, np.float64)
    tmp = np.empty((N, O))
    dense_forward.py_func(x, w, b, act, out, tmp)
    assert_close(out, ref_act(x @ w + b, act), what="py_func forward")
    assert_outside_untouched(big, O)
    dy = np.random.default_rng(600).standard_normal((N, O))
    dz, dx, dw, db = np.empty((N, O)), np.empty((N, I)), np.empty((I, O)), np.empty(O)
    dense_backward.py_func(x, w, out, dy, act, dz, dx, dw, db)
    dz_ref = ref_act_grad(np.array(out), dy, act)
    assert_close(dw, x.T @ dz_ref, what="py_func dw")
    assert_close(dx, dz_ref @ w.T, what="py_func dx")
    assert_close(db, dz_ref.sum(axis=0), what="py_func db")
