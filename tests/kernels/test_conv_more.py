"""Depthwise and transposed convolution kernels against NumPy float64 references, finite
differences and PyTorch float64 (``groups=cin`` convolution, ``conv_transpose2d``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.cpu.conv_more import (
    conv2d_transpose_backward,
    conv2d_transpose_forward,
    depthwise_conv2d_backward,
    depthwise_conv2d_forward,
)
from nexec.ops.geometry import (
    conv1d_geometry,
    conv2d_geometry,
    conv2d_transpose_geometry,
    window_geometry_2d,
)
from nexec.testing import assert_close, check_gradients
from tests.kernels.reference import ref_act, ref_act_grad

N = 2
TORCH_ACT = {LINEAR: lambda z: z, RELU: torch.relu, SIGMOID: torch.sigmoid,
             TANH: torch.tanh, SOFTMAX: lambda z: torch.softmax(z, dim=-1)}

# (h, w, cin, dm, kh, kw, sh, sw, padding)
DW_CASES = [
    (5, 5, 3, 1, 3, 3, 1, 1, "same"),
    (6, 5, 2, 2, 3, 3, 2, 2, "same"),     # depth multiplier, odd padding split
    (6, 6, 3, 3, 2, 3, 1, 2, "valid"),    # uneven kernel and strides
    (5, 6, 2, 1, 4, 4, 2, 1, "same"),     # even kernel: extra padding bottom/right
]
# (h, w, cin, f, kh, kw, sh, sw, padding)
TR_CASES = [
    (3, 4, 2, 3, 3, 3, 2, 2, "same"),
    (3, 3, 3, 2, 3, 3, 2, 2, "valid"),
    (4, 3, 2, 2, 4, 4, 2, 2, "same"),
    (3, 2, 2, 3, 2, 3, 3, 1, "valid"),    # kernel smaller than the stride on one axis
    (3, 3, 2, 2, 3, 3, 1, 1, "same"),
]


def tf_pad(h: int, w: int, kh: int, kw: int, sh: int, sw: int, padding: str) -> tuple:
    """(left, right, top, bottom) zero padding of a TF/Keras convolution, for ``F.pad``."""
    ho, wo, pt, pl = window_geometry_2d(h, w, kh, kw, sh, sw, padding)
    pb = max((ho - 1) * sh + kh - h - pt, 0)
    pr = max((wo - 1) * sw + kw - w - pl, 0)
    return (pl, pr, pt, pb)


# ----------------------------------------------------------------------------- references


def ref_depthwise_z(x, w, b, sh, sw, pt, pl, ho, wo):
    """Pre-activation (N, Ho, Wo, C*DM), float64, one tap at a time."""
    n, h, wd, c = x.shape
    kh, kw, _, dm = w.shape
    xp = np.zeros((n, max(pt + h, (ho - 1) * sh + kh), max(pl + wd, (wo - 1) * sw + kw), c))
    xp[:, pt:pt + h, pl:pl + wd] = x
    z = np.zeros((n, ho, wo, c, dm))
    for ky in range(kh):
        for kx in range(kw):
            win = xp[:, ky:ky + (ho - 1) * sh + 1:sh, kx:kx + (wo - 1) * sw + 1:sw, :]
            z += win[..., None] * w[ky, kx]
    z = z.reshape(n, ho, wo, c * dm)
    return z + b if b.shape[0] else z


def ref_transpose_z(x, w, b, sh, sw, pt, pl, ho, wo):
    """Pre-activation (N, Ho, Wo, F) of a transposed convolution: scatter of every input
    pixel times the kernel onto the padded output, then the crop, float64."""
    n, h, wd, cin = x.shape
    kh, kw, f, _ = w.shape
    full = np.zeros((n, max((h - 1) * sh + kh, pt + ho), max((wd - 1) * sw + kw, pl + wo), f))
    for iy in range(h):
        for ix in range(wd):
            full[:, iy * sh:iy * sh + kh, ix * sw:ix * sw + kw] += np.einsum(
                "nc,yxfc->nyxf", x[:, iy, ix], w)
    z = full[:, pt:pt + ho, pl:pl + wo]
    return z + b if b.shape[0] else z


def torch_depthwise(x, w, b, case, act):
    h, wd, c, dm, kh, kw, sh, sw, pad = case
    xt = F.pad(x.permute(0, 3, 1, 2), tf_pad(h, wd, kh, kw, sh, sw, pad))
    wt = w.permute(2, 3, 0, 1).reshape(c * dm, 1, kh, kw)
    z = F.conv2d(xt, wt, b if b.shape[0] else None, stride=(sh, sw), groups=c)
    return TORCH_ACT[act](z.permute(0, 2, 3, 1))


def torch_transpose(x, w, b, case, act):
    h, wd, cin, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = conv2d_transpose_geometry(h, wd, kh, kw, sh, sw, pad)
    full = F.conv_transpose2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1), stride=(sh, sw))
    hf, wf = full.shape[2:]
    z = F.pad(full, (-pl, wo - (wf - pl), -pt, ho - (hf - pt)))  # negative pads crop
    z = z.permute(0, 2, 3, 1)
    return TORCH_ACT[act](z + b if b.shape[0] else z)


def problem(shape_x, shape_w, nb, seed, z_fn):
    """float64 x, w, b whose pre-activations stay away from the ReLU kink."""
    rng = np.random.default_rng(seed)
    while True:
        x = rng.standard_normal(shape_x)
        w = rng.standard_normal(shape_w) / np.sqrt(np.prod(shape_w[:-1]))
        b = rng.standard_normal(nb) * 0.5 if nb else np.zeros(0)
        if np.min(np.abs(z_fn(x, w, b))) > 1e-3:
            return x, w, b


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("size", [1, 2, 5, 6])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_transpose_geometry_is_the_adjoint_of_the_convolution(size, kernel, stride, padding):
    ho, wo, pt, pl = conv2d_transpose_geometry(size, size, kernel, kernel, stride, stride,
                                               padding)
    # Keras' output lengths, and the convolution of that output gives back the input size.
    assert ho == (size * stride if padding == "same"
                  else (size - 1) * stride + max(kernel, stride))
    assert window_geometry_2d(ho, wo, kernel, kernel, stride, stride, padding) == \
        (size, size, pt, pl)
    # JAX's conv_transpose padding (Keras' jax backend), as the adjoint's padding before.
    if padding == "same":
        pad_len = stride + kernel - 2
        left = min(pad_len // 2 + pad_len % 2, kernel - 1)
        assert pt == kernel - 1 - left


@pytest.mark.parametrize("length,kernel,stride,padding,expected", [
    (7, 3, 1, "causal", (7, 2)),
    (7, 3, 2, "causal", (4, 2)),
    (7, 1, 1, "causal", (7, 0)),
    (7, 3, 2, "same", (4, 1)),
    (7, 4, 1, "same", (7, 1)),
    (7, 3, 2, "valid", (3, 0)),
])
def test_conv1d_geometry(length, kernel, stride, padding, expected):
    assert conv1d_geometry(length, kernel, stride, padding) == expected


def test_conv1d_geometry_rejects_a_kernel_longer_than_the_input():
    with pytest.raises(ValueError, match="longer than input"):
        conv1d_geometry(2, 3, 1, "valid")


# ----------------------------------------------------------------------------- depthwise


def _dw_geometry(case):
    h, wd, c, dm, kh, kw, sh, sw, pad = case
    return conv2d_geometry(h, wd, kh, kw, sh, sw, pad)


@pytest.mark.parametrize("case", DW_CASES)
@pytest.mark.parametrize("act", [LINEAR, RELU, SIGMOID, TANH, SOFTMAX])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_forward_matches_numpy(case, act, dtype):
    h, wd, c, dm, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = _dw_geometry(case)
    x, w, b = problem((N, h, wd, c), (kh, kw, c, dm), c * dm, 0,
                      lambda x, w, b: ref_depthwise_z(x, w, b, sh, sw, pt, pl, ho, wo))
    out = np.full((N * ho * wo, c * dm), np.nan, dtype)
    depthwise_conv2d_forward(x.astype(dtype), w.astype(dtype), b.astype(dtype), sh, sw, pt, pl,
                             ho, wo, act, out)
    ref = ref_act(ref_depthwise_z(x, w, b, sh, sw, pt, pl, ho, wo), act)
    assert_close(out, ref.reshape(out.shape), rtol=1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("case", DW_CASES)
@pytest.mark.parametrize("act", [LINEAR, TANH, SOFTMAX])
@pytest.mark.parametrize("bias", [True, False])
def test_depthwise_gradients_match_numpy_and_finite_differences(case, act, bias):
    h, wd, c, dm, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = _dw_geometry(case)
    cm = c * dm
    x, w, b = problem((N, h, wd, c), (kh, kw, c, dm), cm if bias else 0, 1,
                      lambda x, w, b: ref_depthwise_z(x, w, b, sh, sw, pt, pl, ho, wo))
    g = np.random.default_rng(2).standard_normal((N * ho * wo, cm))
    y = np.empty((N * ho * wo, cm))
    depthwise_conv2d_forward(x, w, b, sh, sw, pt, pl, ho, wo, act, y)
    dz, dx = np.full_like(y, np.nan), np.full_like(x, np.nan)
    dw, db = np.full_like(w, np.nan), np.full_like(b, np.nan)
    depthwise_conv2d_backward(x, w, y, g, sh, sw, pt, pl, ho, wo, act, dz, dx, dw, db)

    # NumPy reference: dz from the activation, then dx/dw by the chain rule on one tap each.
    ref_dz = ref_act_grad(ref_act(ref_depthwise_z(x, w, b, sh, sw, pt, pl, ho, wo), act)
                          .reshape(y.shape), g, act)
    assert_close(dz, ref_dz, rtol=1e-12)

    def loss():
        out = np.empty_like(y)
        depthwise_conv2d_forward(x, w, b, sh, sw, pt, pl, ho, wo, act, out)
        return float(np.sum(out * g))

    arrays = {"x": x, "w": w, **({"b": b} if bias else {})}
    check_gradients(loss, {"x": dx, "w": dw, "b": db}, arrays, rtol=1e-6)


@pytest.mark.parametrize("case", DW_CASES)
@pytest.mark.parametrize("act", [RELU, SOFTMAX])
def test_depthwise_matches_torch_float64(case, act):
    h, wd, c, dm, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = _dw_geometry(case)
    x, w, b = problem((N, h, wd, c), (kh, kw, c, dm), c * dm, 3,
                      lambda x, w, b: ref_depthwise_z(x, w, b, sh, sw, pt, pl, ho, wo))
    g = np.random.default_rng(4).standard_normal((N * ho * wo, c * dm))
    y = np.empty((N * ho * wo, c * dm))
    depthwise_conv2d_forward(x, w, b, sh, sw, pt, pl, ho, wo, act, y)
    dz, dx, dw, db = np.empty_like(y), np.empty_like(x), np.empty_like(w), np.empty_like(b)
    depthwise_conv2d_backward(x, w, y, g, sh, sw, pt, pl, ho, wo, act, dz, dx, dw, db)

    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch_depthwise(xt, wt, bt, case, act)
    yt.backward(torch.tensor(g.reshape(yt.shape)))
    np.testing.assert_allclose(y, yt.detach().numpy().reshape(y.shape), rtol=0, atol=1e-10)
    for mine, theirs in ((dx, xt), (dw, wt), (db, bt)):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=0, atol=1e-10)


def test_depthwise_backward_skips_dx_and_db():
    case = DW_CASES[1]
    h, wd, c, dm, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = _dw_geometry(case)
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((N, h, wd, c)), rng.standard_normal((kh, kw, c, dm))
    g = rng.standard_normal((N * ho * wo, c * dm))
    y = np.empty_like(g)
    depthwise_conv2d_forward(x, w, np.zeros(0), sh, sw, pt, pl, ho, wo, LINEAR, y)
    dw_full, dw_skip = np.empty_like(w), np.empty_like(w)
    depthwise_conv2d_backward(x, w, y, g, sh, sw, pt, pl, ho, wo, LINEAR, np.empty_like(g),
                              np.empty_like(x), dw_full, np.zeros(0))
    depthwise_conv2d_backward(x, w, y, g, sh, sw, pt, pl, ho, wo, LINEAR, np.empty_like(g),
                              np.empty((0, h, wd, c)), dw_skip, np.zeros(0))
    np.testing.assert_array_equal(dw_skip, dw_full)


# ----------------------------------------------------------------------------- transposed


def _tr_geometry(case):
    h, wd, cin, f, kh, kw, sh, sw, pad = case
    return conv2d_transpose_geometry(h, wd, kh, kw, sh, sw, pad)


def _tr_run(x, w, b, case, act, block_rows=None):
    """Forward and backward of the kernels with a cols block of ``block_rows`` input pixels
    (all of them by default), for a random upstream gradient; NaN-filled scratch."""
    h, wd, cin, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = _tr_geometry(case)
    m, k = N * h * wd, kh * kw * f
    rows = m if block_rows is None else block_rows
    cols = np.full((rows, k), np.nan, x.dtype)
    y = np.full((N, ho, wo, f), np.nan, x.dtype)
    conv2d_transpose_forward(x, w, b, sh, sw, pt, pl, act, cols, y)
    g = np.random.default_rng(7).standard_normal((N * ho * wo, f)).astype(x.dtype)
    dz = np.full((N, ho, wo, f), np.nan, x.dtype)
    dx, dw, db = (np.full_like(a, np.nan) for a in (x, w, b))
    conv2d_transpose_backward(x, w, y.reshape(-1, f), g, sh, sw, pt, pl, act, cols, dz,
                              dx, dw, db)
    return y, g, dx, dw, db


@pytest.mark.parametrize("case", TR_CASES)
@pytest.mark.parametrize("act", [LINEAR, RELU, SIGMOID, TANH, SOFTMAX])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transpose_forward_matches_numpy(case, act, dtype):
    h, wd, cin, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = _tr_geometry(case)
    x, w, b = problem((N, h, wd, cin), (kh, kw, f, cin), f, 0,
                      lambda x, w, b: ref_transpose_z(x, w, b, sh, sw, pt, pl, ho, wo))
    y = np.full((N, ho, wo, f), np.nan, dtype)
    cols = np.full((N * h * wd, kh * kw * f), np.nan, dtype)
    conv2d_transpose_forward(x.astype(dtype), w.astype(dtype), b.astype(dtype), sh, sw, pt, pl,
                             act, cols, y)
    ref = ref_act(ref_transpose_z(x, w, b, sh, sw, pt, pl, ho, wo).reshape(-1, f), act)
    assert_close(y.reshape(-1, f), ref, rtol=1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("case", TR_CASES)
@pytest.mark.parametrize("act", [LINEAR, TANH])
@pytest.mark.parametrize("block_rows", [None, 5])
def test_transpose_gradients_match_finite_differences(case, act, block_rows):
    h, wd, cin, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = _tr_geometry(case)
    x, w, b = problem((N, h, wd, cin), (kh, kw, f, cin), f, 1,
                      lambda x, w, b: ref_transpose_z(x, w, b, sh, sw, pt, pl, ho, wo))
    y, g, dx, dw, db = _tr_run(x, w, b, case, act, block_rows)

    def loss():
        out = np.empty_like(y)
        cols = np.empty((N * h * wd, kh * kw * f))
        conv2d_transpose_forward(x, w, b, sh, sw, pt, pl, act, cols, out)
        return float(np.sum(out.reshape(g.shape) * g))

    check_gradients(loss, {"x": dx, "w": dw, "b": db}, {"x": x, "w": w, "b": b}, rtol=1e-6)


@pytest.mark.parametrize("case", TR_CASES)
@pytest.mark.parametrize("act", [RELU, SOFTMAX])
def test_transpose_matches_torch_float64(case, act):
    h, wd, cin, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = _tr_geometry(case)
    x, w, b = problem((N, h, wd, cin), (kh, kw, f, cin), f, 3,
                      lambda x, w, b: ref_transpose_z(x, w, b, sh, sw, pt, pl, ho, wo))
    y, g, dx, dw, db = _tr_run(x, w, b, case, act, block_rows=4)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch_transpose(xt, wt, bt, case, act)
    yt.backward(torch.tensor(g.reshape(yt.shape)))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=1e-10)
    for mine, theirs in ((dx, xt), (dw, wt), (db, bt)):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=0, atol=1e-10)


def test_transpose_backward_skips_dx_and_db_and_blocks_give_the_same_weights():
    case = TR_CASES[0]
    h, wd, cin, f, kh, kw, sh, sw, pad = case
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((N, h, wd, cin)), rng.standard_normal((kh, kw, f, cin))
    _, _, _, dw_whole, _ = _tr_run(x, w, np.zeros(0), case, LINEAR)
    _, _, _, dw_blocks, _ = _tr_run(x, w, np.zeros(0), case, LINEAR, block_rows=7)
    assert_close(dw_blocks, dw_whole, rtol=1e-13)
    ho, wo, pt, pl = _tr_geometry(case)
    y = np.empty((N, ho, wo, f))
    cols = np.empty((N * h * wd, kh * kw * f))
    conv2d_transpose_forward(x, w, np.zeros(0), sh, sw, pt, pl, LINEAR, cols, y)
    dw = np.empty_like(w)
    g = np.random.default_rng(7).standard_normal((N * ho * wo, f))
    conv2d_transpose_backward(x, w, y.reshape(-1, f), g, sh, sw, pt, pl, LINEAR, cols,
                              np.empty_like(y), np.empty((0, h, wd, cin)),
                              dw, np.zeros(0))
    np.testing.assert_array_equal(dw, dw_whole)
