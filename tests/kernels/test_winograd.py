"""Winograd F(2x2,3x3) and F(4x4,3x3) kernels against float64 direct convolution.

Float32 tolerances (norm-wise relative error, ``nexec.testing.assert_close``): F(2x2,3x3)'s
matrices hold 0, +-1 and 1/2, so its error stays near direct convolution's (1e-5 here);
F(4x4,3x3)'s hold 4, 5, 8, 1/6, 1/24 and its error is about 10x larger (1e-4 here).
Float64 is held to 1e-11 for both.
"""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.cpu.winograd import (
    winograd_backward,
    winograd_backward_filter,
    winograd_backward_input,
    winograd_filter,
    winograd_filter_flipped,
    winograd_forward,
)
from nexec.ops.geometry import conv2d_geometry
from nexec.ops.winograd import transform_matrices, winograd_workspace_shapes
from nexec.testing import assert_close, check_gradients
from tests.kernels.reference import ref_act
from tests.kernels.test_conv import SENTINEL, ref_conv_grad, ref_conv_z

TOL = {(np.float32, 2): 1e-5, (np.float32, 4): 1e-4, (np.float64, 2): 1e-11,
       (np.float64, 4): 1e-11}

# (n, h, w, cin, f, padding): odd sizes leave partial tiles; batch 1 and > 1.
CASES = [
    (1, 5, 5, 3, 2, "same"),
    (2, 7, 6, 4, 5, "same"),
    (2, 6, 9, 2, 3, "valid"),
    (3, 4, 4, 1, 1, "valid"),
    (1, 9, 7, 8, 16, "same"),
    (2, 3, 3, 5, 2, "valid"),   # one output pixel
]
IDS = [f"n{n}_{h}x{w}x{c}-{f}_{p}" for (n, h, w, c, f, p) in CASES]


def _workspaces(case, m, dtype, block=None):
    n, h, w, c, f, pad = case
    shapes = winograd_workspace_shapes(n, h, w, c, f, pad, m, True)
    ws = {k: np.full(s, np.nan, dtype) for k, s in shapes.items()}  # garbage: never read
    if block is not None:  # force several tile blocks
        a = m + 2
        for name, ch in (("V", c), ("M", f)):
            ws[name] = np.full((a * a, block, ch), np.nan, dtype)
        ws["Y"] = np.full((block * m * m, f), np.nan, dtype)
        for name, ch in (("dV", f), ("dM", c)):
            ws[name] = np.full((a * a, block, ch), np.nan, dtype)
        ws["dY"] = np.full((block * m * m, c), np.nan, dtype)
    return ws


def _problem(case, seed, dtype):
    n, h, w, c, f, _ = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c))
    k = rng.standard_normal((3, 3, c, f)) / np.sqrt(9 * c)
    b = rng.standard_normal(f) * 0.5
    return x.astype(dtype), k.astype(dtype), b.astype(dtype)


def _forward(x, k, b, case, m, act, ws, out):
    _, h, w, _, _, pad = case
    ho, wo, pt, pl = conv2d_geometry(h, w, 3, 3, 1, 1, pad)
    bt, g, at = transform_matrices(m, x.dtype)
    winograd_filter(k, g, ws["U"])
    winograd_forward(x, ws["U"], b, pt, pl, ho, wo, act, bt, at, ws["V"], ws["M"], ws["Y"],
                     ws["scratch"], out)


def _input_grad(dz, k, case, m, ws, dx):
    _, h, w, _, _, pad = case
    _, _, pt, pl = conv2d_geometry(h, w, 3, 3, 1, 1, pad)
    bt, g, at = transform_matrices(m, dz.dtype)
    winograd_filter_flipped(k, g, ws["dU"])
    winograd_backward_input(dz, ws["dU"], pt, pl, bt, at, ws["dV"], ws["dM"], ws["dY"],
                            ws["dscratch"], dx)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_direct(case, dtype, m):
    n, h, w, c, f, pad = case
    ho, wo, pt, pl = conv2d_geometry(h, w, 3, 3, 1, 1, pad)
    x, k, b = _problem(case, 1, dtype)
    out = np.full((n * ho * wo, f), np.nan, dtype)
    _forward(x, k, np.zeros(0, dtype), case, m, LINEAR, _workspaces(case, m, dtype), out)
    ref = ref_conv_z(x, k, np.zeros(0), 1, 1, pt, pl, ho, wo)
    assert_close(out.reshape(ref.shape), ref, rtol=TOL[dtype, m])


@pytest.mark.parametrize("act", [LINEAR, RELU, SIGMOID, TANH, SOFTMAX])
@pytest.mark.parametrize("m", [2, 4])
def test_bias_activation_into_a_concat_slice(act, m):
    """Fused epilogue, written into a row-strided slice; the rest of the row untouched."""
    case = (2, 7, 5, 3, 4, "same")
    n, h, w, c, f, pad = case
    ho, wo, pt, pl = conv2d_geometry(h, w, 3, 3, 1, 1, pad)
    x, k, b = _problem(case, 2, np.float32)
    big = np.full((n * ho * wo, 2 + f + 3), SENTINEL, np.float32)
    out = big[:, 2:2 + f]
    _forward(x, k, b, case, m, act, _workspaces(case, m, np.float32, block=3), out)
    ref = ref_act(ref_conv_z(x, k, b, 1, 1, pt, pl, ho, wo), act)
    assert_close(out.reshape(ref.shape), ref, rtol=TOL[np.float32, m])
    assert np.all(big[:, :2] == SENTINEL) and np.all(big[:, 2 + f:] == SENTINEL)


@pytest.mark.parametrize("block", [None, 1, 5])
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_input_gradient_matches_direct(case, dtype, m, block):
    n, h, w, c, f, pad = case
    ho, wo, pt, pl = conv2d_geometry(h, w, 3, 3, 1, 1, pad)
    x, k, _ = _problem(case, 3, dtype)
    dz = np.random.default_rng(4).standard_normal((n, ho, wo, f)).astype(dtype)
    dx = np.full(x.shape, np.nan, dtype)
    _input_grad(dz, k, case, m, _workspaces(case, m, dtype, block), dx)
    ref, _, _ = ref_conv_grad(x, k, dz, 1, 1, pt, pl, ho, wo)
    assert_close(dx, ref, rtol=TOL[dtype, m])


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("pad", ["same", "valid"])
def test_input_gradient_finite_differences(pad, m):
    """The Winograd forward's own input gradient, float64, by finite differences."""
    case = (2, 5, 6, 2, 3, pad)
    n, h, w, c, f, _ = case
    ho, wo, _, _ = conv2d_geometry(h, w, 3, 3, 1, 1, pad)
    x, k, b = _problem(case, 5, np.float64)
    g = np.random.default_rng(6).standard_normal((n, ho, wo, f))
    ws = _workspaces(case, m, np.float64)
    out = np.empty((n * ho * wo, f))

    def loss() -> float:
        _forward(x, k, b, case, m, TANH, ws, out)
        return float(np.sum(out.reshape(g.shape) * g))

    loss()
    y = out.reshape(g.shape)
    dz = g * (1 - y * y)  # tanh'
    dx = np.empty_like(x)
    _input_grad(np.ascontiguousarray(dz), k, case, m, ws, dx)
    check_gradients(loss, {"x": dx}, {"x": x}, rtol=1e-6)


@pytest.mark.parametrize("m", [2, 4])
def test_filter_transforms(m):
    """U = G g G^T and the flipped filter's transform, against NumPy."""
    rng = np.random.default_rng(7)
    k = rng.standard_normal((3, 3, 3, 4))
    _, g, _ = transform_matrices(m, np.float64)
    a = m + 2
    u = np.empty((a * a, 3, 4))
    winograd_filter(k, g, u)
    want = np.einsum("xi,ijcf,yj->xycf", g, k, g).reshape(a * a, 3, 4)
    assert_close(u, want, rtol=1e-14)
    du = np.empty((a * a, 4, 3))
    winograd_filter_flipped(k, g, du)
    flipped = k[::-1, ::-1].transpose(0, 1, 3, 2)
    want = np.einsum("xi,ijfc,yj->xyfc", g, flipped, g).reshape(a * a, 4, 3)
    assert_close(du, want, rtol=1e-14)


def test_transform_matrices_rejects_other_tiles():
    with pytest.raises(ValueError, match="tile"):
        transform_matrices(3, np.float32)


@pytest.mark.parametrize("block", [None, 1, 5])
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_weight_gradient_matches_direct(case, dtype, m, block):
    n, h, w, c, f, pad = case
    ho, wo, pt, pl = conv2d_geometry(h, w, 3, 3, 1, 1, pad)
    x, k, _ = _problem(case, 8, dtype)
    dz = np.random.default_rng(9).standard_normal((n, ho, wo, f)).astype(dtype)
    ws = _workspaces(case, m, dtype, block)
    a = m + 2
    bt, g, at = transform_matrices(m, dtype)
    du = np.full((a * a, c, f), np.nan, dtype)
    dw = np.full(k.shape, np.nan, dtype)
    winograd_backward_filter(x, dz, pt, pl, bt, g, at, ws["V"], ws["M"], du, ws["scratch"],
                             dw)
    _, ref, _ = ref_conv_grad(x, k, dz, 1, 1, pt, pl, ho, wo)
    assert_close(dw, ref, rtol=TOL[dtype, m])


@pytest.mark.parametrize("skip_dx", [False, True])
@pytest.mark.parametrize("m", [2, 4])
def test_backward_all_gradients_from_a_strided_output(m, skip_dx):
    """dz, db, dw and dx in one call, from y and dy in a concatenation's slice."""
    case = (2, 7, 5, 3, 4, "same")
    n, h, w, c, f, pad = case
    ho, wo, pt, pl = conv2d_geometry(h, w, 3, 3, 1, 1, pad)
    x, k, b = _problem(case, 10, np.float64)
    z = ref_conv_z(x, k, b, 1, 1, pt, pl, ho, wo)
    big_y = np.full((n * ho * wo, f + 5), SENTINEL)
    big_dy = np.full((n * ho * wo, f + 5), SENTINEL)
    y, dy = big_y[:, 2:2 + f], big_dy[:, 2:2 + f]
    y[...] = np.tanh(z).reshape(-1, f)
    dy[...] = np.random.default_rng(11).standard_normal(y.shape)
    ws = _workspaces(case, m, np.float64, block=3)
    a = m + 2
    bt, g, at = transform_matrices(m, np.float64)
    winograd_filter_flipped(k, g, ws["dU"])
    dz = np.full((n * ho * wo, f), np.nan)
    db, dw = np.full(f, np.nan), np.full(k.shape, np.nan)
    dx = np.full((0 if skip_dx else n, h, w, c), np.nan)
    winograd_backward(x, y, dy, TANH, pt, pl, ho, wo, bt, g, at, dz, db, ws["V"], ws["M"],
                      np.full((a * a, c, f), np.nan), ws["scratch"],
                      dw, ws["dU"], ws["dV"], ws["dM"], ws["dY"], ws["dscratch"], dx)
    dz_ref = (dy * (1 - y * y)).reshape(n, ho, wo, f)
    dx_ref, dw_ref, db_ref = ref_conv_grad(x, k, dz_ref, 1, 1, pt, pl, ho, wo)
    assert_close(dz.reshape(dz_ref.shape), dz_ref, rtol=1e-12)
    assert_close(db, db_ref, rtol=1e-12)
    assert_close(dw, dw_ref, rtol=1e-11)
    if not skip_dx:
        assert_close(dx, dx_ref, rtol=1e-11)


@pytest.mark.parametrize("m", [2, 4])
def test_a_scratch_too_small_for_a_row_of_tiles_is_refused(m):
    """The input transform keeps one row of tiles in the scratch: one element short is an
    error, not a write past the workspace."""
    case = (1, 9, 7, 8, 16, "same")
    x, k, b = _problem(case, 5, np.float32)
    ws = _workspaces(case, m, np.float32)
    ws["scratch"] = ws["scratch"][:-1]
    out = np.full((9 * 7, 16), np.nan, np.float32)
    with pytest.raises(ValueError, match="scratch"):
        _forward(x, k, b, case, m, LINEAR, ws, out)
