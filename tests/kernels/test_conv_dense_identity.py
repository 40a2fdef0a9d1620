"""A 1x1 Conv2D is a Dense layer: same weights, same bits, forward and backward.

Both kernels end in the same epilogue helpers of ``nexec.kernels.cpu.activation`` and run the
same BLAS GEMMs, so a Conv2D with a 1x1 kernel on ``(N, 1, 1, I)`` inputs and the Dense layer
with the same weights (reshaped ``(1, 1, I, O)``) must agree exactly, not just closely: for
every built-in activation, float32 and float64, into contiguous and row-strided outputs.
"""
from __future__ import annotations

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers
from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.cpu.conv import conv2d_backward, conv2d_forward
from nexec.kernels.cpu.dense import dense_backward, dense_forward
from nexec.ops.geometry import conv2d_geometry, conv2d_workspace_shapes, pointwise_rows
from nexec.testing import model_gradients
from tests.kernels.reference import ref_act, ref_act_grad

ACTS = [LINEAR, RELU, SIGMOID, TANH, SOFTMAX]
ACT_NAMES = {LINEAR: "linear", RELU: "relu", SIGMOID: "sigmoid", TANH: "tanh",
             SOFTMAX: "softmax"}
DTYPES = [np.float32, np.float64]
N, I, O = 300, 13, 11  # more rows than one 256-row epilogue block; O covers 8 + remainder


def _problem(dtype, act, bias):
    rng = np.random.default_rng(10 + act)
    x = (2.0 * rng.standard_normal((N, I))).astype(dtype)
    w = (rng.standard_normal((I, O)) / np.sqrt(I)).astype(dtype)
    b = (rng.standard_normal(O) if bias else np.zeros(0)).astype(dtype)
    dy = rng.standard_normal((N, O)).astype(dtype)
    return x, w, b, dy


def _out(dtype, layout):
    """The output array and the GEMM target: contiguous (one array) or row-strided."""
    if layout == "contiguous":
        out = np.full((N, O), np.nan, dtype)
        return out, out
    big = np.full((N, O + 5), np.nan, dtype)
    return big[:, 2:2 + O], np.full((N, O), np.nan, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_pointwise_conv_kernels_equal_dense_bitwise(dtype, act, bias, layout):
    x, w, b, dy = _problem(dtype, act, bias)
    x4, w4 = x.reshape(N, 1, 1, I), w.reshape(1, 1, I, O)
    ho, wo, pt, pl = conv2d_geometry(1, 1, 1, 1, 1, 1, "valid")
    ws = {k: np.full(s, np.nan, dtype)
          for k, s in conv2d_workspace_shapes(N, 1, 1, I, 1, 1, O, ho, wo, 1, 1, True,
                                              tiled=True).items()}

    y_dense, tmp = _out(dtype, layout)
    dense_forward(x, w, b, act, y_dense, tmp)
    y_conv, tmp = _out(dtype, layout)
    conv2d_forward(x4, w4, b, 1, 1, pt, pl, ho, wo, act, ws["cols"], tmp, y_conv)
    np.testing.assert_array_equal(y_conv, y_dense)
    # And both are right (the reference is float64 NumPy).
    ref = ref_act(x.astype(np.float64) @ w + (b if bias else 0.0), act)
    np.testing.assert_allclose(y_dense, ref, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-14)

    dz, dx, dw, db = (np.full(s, np.nan, dtype) for s in ((N, O), x.shape, w.shape, b.shape))
    dense_backward(x, w, y_dense, dy, act, dz, dx, dw, db)
    dx4, dw4, db4 = (np.full(s, np.nan, dtype) for s in (x4.shape, w4.shape, b.shape))
    conv2d_backward(x4, w4, y_conv, dy, 1, 1, pt, pl, ho, wo, act, ws["cols"], ws["dz"],
                    ws["dcols"], dx4, dw4, db4)
    np.testing.assert_array_equal(ws["dz"], dz)
    np.testing.assert_array_equal(dx4.reshape(x.shape), dx)
    np.testing.assert_array_equal(dw4.reshape(w.shape), dw)
    np.testing.assert_array_equal(db4, db)
    dz_ref = ref_act_grad(y_dense.astype(np.float64), dy.astype(np.float64), act)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(dw, x.astype(np.float64).T @ dz_ref, **tol)
    if bias:
        np.testing.assert_allclose(db, dz_ref.sum(axis=0), **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [RELU, SIGMOID, TANH])
def test_conv_epilogue_bits_do_not_depend_on_output_layout(dtype, act):
    """A 3x3 convolution into a row-strided output (finished in tmp, then copied) gives the
    bits of the same convolution written in place."""
    rng = np.random.default_rng(act)
    h, wd, c, f = 9, 8, 3, 10
    x = rng.standard_normal((4, h, wd, c)).astype(dtype)
    w = (rng.standard_normal((3, 3, c, f)) / 5).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    ho, wo, pt, pl = conv2d_geometry(h, wd, 3, 3, 1, 1, "same")
    shapes = conv2d_workspace_shapes(4, h, wd, c, 3, 3, f, ho, wo, 1, 1, False)
    cols = np.empty(shapes["cols"], dtype)
    inplace = np.empty((4 * ho * wo, f), dtype)
    conv2d_forward(x, w, b, 1, 1, pt, pl, ho, wo, act, cols, inplace, inplace)
    big = np.full((4 * ho * wo, f + 3), np.nan, dtype)
    conv2d_forward(x, w, b, 1, 1, pt, pl, ho, wo, act, cols, np.empty_like(inplace),
                   big[:, 1:1 + f])
    np.testing.assert_array_equal(big[:, 1:1 + f], inplace)
    assert np.isnan(big[:, 0]).all() and np.isnan(big[:, 1 + f:]).all()


def _model(kind, act, use_bias):
    if kind == "dense":
        i = Input(shape=(I,), dtype="float64")
        return Model(i, layers.Dense(O, activation=act, use_bias=use_bias, name="layer")(i))
    i = Input(shape=(1, 1, I), dtype="float64")
    return Model(i, layers.Conv2D(O, 1, activation=act, use_bias=use_bias, name="layer")(i))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("use_bias", [True, False])
def test_pointwise_conv_model_equals_dense_model(act, use_bias):
    """Through the whole stack: predictions and the parameter gradients of one step."""
    name = ACT_NAMES[act]
    nexec.clear_session()
    dense, conv = _model("dense", name, use_bias), _model("conv", name, use_bias)
    conv.set_weights([v.reshape(u.shape) for v, u in zip(dense.get_weights(),
                                                         conv.get_weights())])
    rng = np.random.default_rng(act)
    x = rng.standard_normal((16, I))
    y = rng.random((16, O))
    p_dense = dense.predict(x, batch_size=16)
    p_conv = conv.predict(x.reshape(16, 1, 1, I), batch_size=16)
    np.testing.assert_array_equal(p_conv.reshape(16, O), p_dense)
    _, g_dense = model_gradients(dense, x, y, "mse")
    _, g_conv = model_gradients(conv, x.reshape(16, 1, 1, I), y.reshape(16, 1, 1, O), "mse")
    assert g_conv.keys() == g_dense.keys() and g_dense
    for key in g_dense:
        np.testing.assert_array_equal(g_conv[key].reshape(g_dense[key].shape), g_dense[key],
                                      err_msg=key)


@pytest.mark.parametrize("act", [RELU, SOFTMAX])
def test_pointwise_conv_in_row_blocks(act):
    """A sharded 1x1 convolution's blocks of rows (``cols`` of shape (R, 0); two blocks here,
    the second partial) into a row-strided output: right against float64 NumPy, forward and
    backward, with ``dz`` one block's rows or all rows (the same bits). (Not Dense's bits:
    BLAS rounds a product split into row blocks differently.)"""
    dtype, n, h, c, f = np.float32, 3, 16, 32, 32
    m = n * h * h
    ho, wo, pt, pl = conv2d_geometry(h, h, 1, 1, 1, 1, "valid")
    shapes = conv2d_workspace_shapes(n, h, h, c, 1, 1, f, ho, wo, 1, 1, True, tiled=True,
                                     shards=2)
    cols = np.empty(shapes["cols"], dtype)
    assert cols.shape == (pointwise_rows(c, f, 2), 0) and cols.shape[0] < m < 2 * cols.shape[0]
    rng = np.random.default_rng(act)
    x = rng.standard_normal((n, h, h, c)).astype(dtype)
    w = (rng.standard_normal((1, 1, c, f)) / np.sqrt(c)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    dy = rng.standard_normal((m, f + 4)).astype(dtype)[:, 1:1 + f]
    big = np.full((m, f + 3), np.nan, dtype)
    y = big[:, 2:2 + f]
    conv2d_forward(x, w, b, 1, 1, pt, pl, ho, wo, act, cols, y, y)
    x2, w2 = x.reshape(m, c).astype(np.float64), w.reshape(c, f).astype(np.float64)
    np.testing.assert_allclose(y, ref_act(x2 @ w2 + b, act), rtol=1e-5, atol=1e-5)
    assert np.isnan(big[:, :2]).all() and np.isnan(big[:, 2 + f:]).all()
    assert shapes["dz"] == (cols.shape[0], f)  # one block's pre-activation gradient
    for dz_rows in (m, cols.shape[0]):
        dz, dx, dw, db = (np.full(s, np.nan, dtype)
                          for s in ((dz_rows, f), x.shape, w.shape, (f,)))
        conv2d_backward(x, w, y, dy, 1, 1, pt, pl, ho, wo, act, cols, dz,
                        np.empty(shapes["dcols"], dtype), dx, dw, db)
        if dz_rows == m:
            dz_all, grads = dz, (dx.copy(), dw.copy(), db.copy())
    r = cols.shape[0]
    np.testing.assert_array_equal(dz[:m - r], dz_all[r:])  # the block holds the last one's
    for got, want in zip((dx, dw, db), grads):
        np.testing.assert_array_equal(got, want)  # a block's dz or all rows': the same bits
    dz = dz_all
    dz_ref = ref_act_grad(y.astype(np.float64), dy.astype(np.float64), act)
    tol = {"rtol": 1e-4, "atol": 1e-4}
    np.testing.assert_allclose(dz, dz_ref, **tol)
    np.testing.assert_allclose(dw.reshape(c, f), x2.T @ dz_ref, **tol)
    np.testing.assert_allclose(db, dz_ref.sum(axis=0), **tol)
    np.testing.assert_allclose(dx.reshape(m, c), dz_ref @ w2.T, **tol)

