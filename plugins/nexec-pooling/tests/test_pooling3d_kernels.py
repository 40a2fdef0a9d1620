"""The 3-D pooling kernels, called directly, against NumPy references and finite
differences. The references pad with NaN (TensorFlow's 'same' rule, computed here
independently of the plugin) and reduce each window with ``nanmax`` / ``nanmean``."""
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from nexec.testing import assert_close, numerical_gradient
from nexec_pooling import kernels as K
from nexec_pooling.layers import pool_geometry_3d

CASES = [  # (input shape NDHWC, pool, strides, padding)
    ((2, 4, 4, 4, 2), (2, 2, 2), (2, 2, 2), "valid"),
    ((1, 5, 4, 3, 2), (3, 2, 2), (2, 1, 2), "valid"),   # overlapping along depth
    ((2, 3, 5, 4, 1), (2, 3, 2), (2, 2, 1), "same"),
    ((1, 2, 3, 3, 3), (2, 3, 3), (2, 3, 3), "valid"),   # a global pooling: one window
]


def _same_pads(size, pool, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + pool - size, 0)
    return total // 2, total - total // 2


def _windows(x, pool, strides, padding):
    pads = [(0, 0)] * 3 if padding == "valid" else \
        [_same_pads(x.shape[1 + a], pool[a], strides[a]) for a in range(3)]
    xp = np.pad(x.astype(np.float64), ((0, 0), *pads, (0, 0)), constant_values=np.nan)
    win = sliding_window_view(xp, pool, axis=(1, 2, 3))
    return win[:, ::strides[0], ::strides[1], ::strides[2]], [p[0] for p in pads]


def ref_forward(x, pool, strides, padding, kind):
    win, _ = _windows(x, pool, strides, padding)
    reduce = np.nanmax if kind == "max" else np.nanmean
    return reduce(win, axis=(-3, -2, -1))


def _run(x, pool, strides, padding, kind):
    sizes, pads = pool_geometry_3d(x.shape[1:], pool, strides, padding)
    window = (*pool, *strides, *pads)
    out = np.full((x.shape[0], *sizes, x.shape[4]), np.nan, x.dtype)
    argmax = np.full(out.shape, -1, np.int32)
    if kind == "max":
        K.max_pool3d_forward(x, window, out, argmax)
    else:
        K.avg_pool3d_forward(x, window, out)
    return out, argmax, window


def _back(x, dy, argmax, window, kind):
    dx = np.full(x.shape, np.nan, x.dtype)  # backward must overwrite, never accumulate
    if kind == "max":
        K.max_pool3d_backward(dy, argmax, dx)
    else:
        K.avg_pool3d_backward(dy, window, dx)
    return dx


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape,pool,strides,padding", CASES)
def test_forward_matches_numpy(shape, pool, strides, padding, kind, dtype):
    x = np.random.default_rng(0).normal(size=shape).astype(dtype)
    out, _, _ = _run(x, pool, strides, padding, kind)
    assert_close(out, ref_forward(x, pool, strides, padding, kind), what=f"{kind} forward")


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape,pool,strides,padding", CASES)
def test_backward_matches_finite_differences(shape, pool, strides, padding, kind):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape)
    out, argmax, window = _run(x, pool, strides, padding, kind)
    weights = rng.normal(size=out.shape)

    def loss():
        return float((_run(x, pool, strides, padding, kind)[0] * weights).sum())

    dx = _back(x, weights, argmax, window, kind)
    assert_close(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-8, what="dx")


def test_inference_forward_records_nothing_and_agrees():
    x = np.random.default_rng(2).normal(size=(2, 3, 3, 3, 2))
    train, _, window = _run(x, (2, 2, 2), (1, 1, 1), "same", "max")
    infer = np.empty_like(train)
    K.max_pool3d_forward(x, window, infer, np.empty((0, 0, 0, 0, 0), np.int32))
    np.testing.assert_array_equal(train, infer)


def test_max_ties_go_to_the_first_maximum():
    x = np.ones((1, 2, 2, 2, 1))
    out, argmax, window = _run(x, (2, 2, 2), (2, 2, 2), "valid", "max")
    dx = _back(x, np.ones_like(out), argmax, window, "max")
    expected = np.zeros((2, 2, 2))
    expected[0, 0, 0] = 1
    np.testing.assert_array_equal(dx[0, ..., 0], expected)
