"""The Toeplitz convolution kernels against a float64 NumPy convolution.

The matrix is also checked column by column against the reference convolution of each
basis image (an independent construction: the convolution's own linear map), and the
forward's shards (output pixels, output channels) and a row-strided output against one call.
"""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.activations import LINEAR, RELU, SOFTMAX, TANH
from nexec.kernels.cpu.conv_toeplitz import conv2d_toeplitz_forward, conv2d_toeplitz_matrix
from nexec.ops.geometry import conv2d_geometry
from nexec.testing import assert_close
from tests.kernels.test_conv import ref_conv, ref_conv_z

# (h, w, cin, f, kh, kw, sh, sw, padding): small maps, where the planner uses it, and others.
CASES = [
    (2, 2, 5, 7, 3, 3, 1, 1, "same"),
    (1, 1, 4, 3, 3, 3, 1, 1, "same"),     # the centre tap only
    (2, 3, 3, 4, 3, 3, 1, 1, "same"),
    (3, 3, 2, 5, 3, 3, 2, 2, "same"),     # strided
    (4, 3, 3, 2, 2, 2, 1, 1, "valid"),    # even kernel
    (2, 2, 6, 3, 1, 1, 1, 1, "valid"),    # pointwise: block diagonal
]
IDS = [f"{h}x{w}x{c}-{f}_k{kh}x{kw}_s{sh}_{p}" for (h, w, c, f, kh, kw, sh, _, p) in CASES]


def _geometry(case):
    h, w, _, _, kh, kw, sh, sw, pad = case
    return conv2d_geometry(h, w, kh, kw, sh, sw, pad)


def _matrix(case, wts):
    h, w, c, f, _, _, sh, sw, _ = case
    ho, wo, pt, pl = _geometry(case)
    d = np.full((h * w * c, ho * wo * f), np.nan, wts.dtype)  # garbage: all overwritten
    conv2d_toeplitz_matrix(wts, h, w, sh, sw, pt, pl, ho, wo, d)
    return d


def _problem(case, dtype, n=3, seed=0):
    h, w, c, f, kh, kw, _, _, _ = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    wts = rng.standard_normal((kh, kw, c, f)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    return x, wts, b


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matrix_is_the_convolution_of_each_basis_image(case):
    h, w, c, f, _, _, sh, sw, _ = case
    ho, wo, pt, pl = _geometry(case)
    _, wts, _ = _problem(case, np.float64)
    basis = np.eye(h * w * c).reshape(h * w * c, h, w, c)
    want = ref_conv_z(basis, wts, np.zeros(0), sh, sw, pt, pl, ho, wo)
    np.testing.assert_array_equal(_matrix(case, wts), want.reshape(h * w * c, -1))


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("act", [LINEAR, RELU, TANH, SOFTMAX])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_the_reference(case, act, dtype, tol):
    _, _, _, f, _, _, sh, sw, _ = case
    ho, wo, pt, pl = _geometry(case)
    x, wts, b = _problem(case, dtype)
    n = x.shape[0]
    out = np.full((n, ho * wo, f), np.nan, dtype)
    conv2d_toeplitz_forward(x.reshape(n, -1), _matrix(case, wts), b, 0, ho * wo, 0, f, act,
                            out)
    want = ref_conv(x, wts, b, sh, sw, pt, pl, ho, wo, act)
    assert_close(out.reshape(want.shape), want, tol)
    no_bias = np.full((n, ho * wo, f), np.nan, dtype)
    conv2d_toeplitz_forward(x.reshape(n, -1), _matrix(case, wts), np.zeros(0, dtype), 0,
                            ho * wo, 0, f, act, no_bias)
    assert_close(no_bias.reshape(want.shape),
                 ref_conv(x, wts, np.zeros(0), sh, sw, pt, pl, ho, wo, act), tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shards_and_a_strided_output_give_the_bits_of_one_call(dtype):
    case = (2, 2, 6, 40, 3, 3, 1, 1, "same")
    x, wts, b = _problem(case, dtype, n=5)
    d = _matrix(case, wts)
    x2 = x.reshape(5, -1)
    whole = np.full((5, 4, 40), np.nan, dtype)
    conv2d_toeplitz_forward(x2, d, b, 0, 4, 0, 40, RELU, whole)
    by_pixels = np.full_like(whole, np.nan)
    for p0, p1 in ((0, 1), (1, 4)):
        conv2d_toeplitz_forward(x2, d, b, p0, p1, 0, 40, RELU, by_pixels)
    by_filters = np.full_like(whole, np.nan)
    for f0, f1 in ((0, 16), (16, 40)):
        conv2d_toeplitz_forward(x2, d, b, 0, 4, f0, f1, RELU, by_filters)
    wide = np.full((5 * 4, 50), np.nan, dtype)  # a concatenation's slice: channels 7..46
    sliced = wide[:, 7:47]
    conv2d_toeplitz_forward(x2, d, b, 0, 4, 0, 40, RELU, sliced.reshape(5, 4, 40))
    for got in (by_pixels, by_filters, sliced.reshape(5, 4, 40)):
        np.testing.assert_array_equal(got, whole)
    assert np.isnan(wide[:, :7]).all() and np.isnan(wide[:, 47:]).all()


def test_mismatched_shapes_and_ranges_are_refused():
    case = CASES[0]
    x, wts, b = _problem(case, np.float64)
    d = _matrix(case, wts)
    out = np.empty((3, 4, 7))
    with pytest.raises(ValueError, match="conv2d_toeplitz_forward"):
        conv2d_toeplitz_forward(x.reshape(3, -1), d, b, 0, 5, 0, 7, LINEAR, out)
    with pytest.raises(ValueError, match="conv2d_toeplitz_forward"):
        conv2d_toeplitz_forward(x.reshape(3, -1)[:, 1:].copy(), d, b, 0, 4, 0, 7, LINEAR, out)
    with pytest.raises(ValueError, match="conv2d_toeplitz_matrix"):
        conv2d_toeplitz_matrix(wts, 2, 2, 1, 1, 1, 1, 2, 2, np.empty((20, 27)))
