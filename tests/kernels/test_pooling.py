"""The pooling kernels, called directly, against NumPy references and finite differences.

The references pad with NaN (TensorFlow's 'same' rule, computed here independently of
nexec) and reduce each sliding window with ``nanmax`` / ``nanmean``, so padded positions
never count, as in TensorFlow. 1-D and global poolings run through the same kernels on
``(N, 1, L, C)`` views and whole-image windows, as the op kernels call them.
"""
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from nexec.kernels.cpu import pooling as K
from nexec.ops.geometry import window_geometry_2d
from nexec.testing import assert_close, numerical_gradient

CASES = [  # (input shape NHWC, pool, strides, padding)
    ((2, 4, 4, 3), (2, 2), (2, 2), "valid"),
    ((2, 5, 5, 2), (2, 2), (2, 2), "valid"),      # the last row and column are dropped
    ((1, 7, 6, 2), (3, 3), (2, 2), "valid"),      # overlapping windows
    ((2, 7, 6, 2), (3, 3), (2, 2), "same"),
    ((1, 3, 3, 1), (2, 2), (2, 2), "same"),       # padding only at the bottom/right
    ((2, 5, 4, 3), (1, 3), (2, 1), "same"),       # asymmetric pool and strides
    ((1, 4, 5, 2), (3, 2), (1, 1), "same"),       # stride 1: padding on both sides
    ((1, 6, 6, 1), (2, 2), (3, 3), "valid"),      # strides larger than the pool
    ((2, 1, 9, 3), (1, 3), (1, 2), "same"),       # a 1-D pooling as the op runs it
    ((2, 3, 4, 2), (3, 4), (3, 4), "valid"),      # a global pooling: one whole window
]


def _same_pads(size, pool, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + pool - size, 0)
    return total // 2, total - total // 2


def _pads(shape, pool, strides, padding):
    if padding == "valid":
        return (0, 0), (0, 0)
    return _same_pads(shape[1], pool[0], strides[0]), _same_pads(shape[2], pool[1], strides[1])


def _windows(x, pool, strides, padding):
    """(N, Ho, Wo, C, ph, pw) windows of the NaN-padded input, and the pads."""
    (t, b), (l, r) = _pads(x.shape, pool, strides, padding)
    xp = np.pad(x.astype(np.float64), ((0, 0), (t, b), (l, r), (0, 0)),
                constant_values=np.nan)
    win = sliding_window_view(xp, pool, axis=(1, 2))[:, ::strides[0], ::strides[1]]
    return win, t, l


def ref_forward(x, pool, strides, padding, kind):
    win, _, _ = _windows(x, pool, strides, padding)
    return np.nanmax(win, axis=(-2, -1)) if kind == "max" else np.nanmean(win, axis=(-2, -1))


def ref_backward(x, dy, pool, strides, padding, kind):
    """dx by walking the windows: to the first maximum, or evenly over the real inputs."""
    win, t, l = _windows(x, pool, strides, padding)
    n, ho, wo, c, ph, pw = win.shape
    dxp = np.zeros((n, x.shape[1] + ph + t, x.shape[2] + pw + l, c))
    for i in range(ho):
        for j in range(wo):
            w = win[:, i, j].reshape(n, c, ph * pw)
            y0, x0 = i * strides[0], j * strides[1]
            if kind == "max":
                best = np.nanargmax(np.where(np.isnan(w), -np.inf, w), axis=-1)
                for b_ in range(n):
                    for k in range(c):
                        dy_, dx_ = divmod(int(best[b_, k]), pw)
                        dxp[b_, y0 + dy_, x0 + dx_, k] += dy[b_, i, j, k]
            else:
                real = ~np.isnan(w)  # (n, c, ph*pw)
                share = dy[:, i, j, :, None] * real / real.sum(-1, keepdims=True)
                dxp[:, y0:y0 + ph, x0:x0 + pw, :] += share.reshape(n, c, ph, pw) \
                    .transpose(0, 2, 3, 1)
    return dxp[:, t:t + x.shape[1], l:l + x.shape[2], :]


def _window(shape, pool, strides, padding):
    ho, wo, pt, pl = window_geometry_2d(shape[1], shape[2], *pool, *strides, padding)
    return (ho, wo), (*pool, *strides, pt, pl)


def _run_forward(x, pool, strides, padding, kind, training=True):
    (ho, wo), window = _window(x.shape, pool, strides, padding)
    out = np.full((x.shape[0], ho, wo, x.shape[3]), np.nan, x.dtype)
    if kind == "max":
        argmax = np.full(out.shape, -1, np.int32) if training else \
            np.empty((0, 0, 0, 0), np.int32)
        K.max_pool_forward(x, *window, out, argmax)
        return out, argmax
    K.avg_pool_forward(x, *window, out)
    return out, None


def _run_backward(x, dy, pool, strides, padding, kind, argmax):
    _, window = _window(x.shape, pool, strides, padding)
    dx = np.full(x.shape, np.nan, x.dtype)  # backward must overwrite, never accumulate
    if kind == "max":
        K.max_pool_backward(dy, argmax, *window, dx)
    else:
        K.avg_pool_backward(dy, *window, dx)
    return dx


def test_geometry_matches_tensorflow_rule():
    for shape, pool, strides, padding in CASES:
        (ho, wo), (_, _, _, _, pt, pl) = _window(shape, pool, strides, padding)
        (t, _), (l, _) = _pads(shape, pool, strides, padding)
        assert (pt, pl) == (t, l)
        win, _, _ = _windows(np.zeros(shape), pool, strides, padding)
        assert win.shape[1:3] == (ho, wo)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape,pool,strides,padding", CASES)
def test_forward_and_backward_match_numpy(shape, pool, strides, padding, kind, dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(dtype)
    out, argmax = _run_forward(x, pool, strides, padding, kind)
    assert_close(out, ref_forward(x, pool, strides, padding, kind), what=f"{kind} forward")
    dy = rng.normal(size=out.shape).astype(dtype)
    dx = _run_backward(x, dy, pool, strides, padding, kind, argmax)
    assert_close(dx, ref_backward(x, dy, pool, strides, padding, kind),
                 what=f"{kind} backward")


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape,pool,strides,padding", [CASES[2], CASES[3], CASES[6], CASES[9]])
def test_backward_matches_finite_differences(shape, pool, strides, padding, kind):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape)
    out, argmax = _run_forward(x, pool, strides, padding, kind)
    weights = rng.normal(size=out.shape)

    def loss():
        return float((_run_forward(x, pool, strides, padding, kind)[0] * weights).sum())

    dx = _run_backward(x, weights, pool, strides, padding, kind, argmax)
    assert_close(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-8, what="dx")


def test_inference_forward_records_nothing_and_agrees():
    x = np.random.default_rng(2).normal(size=(2, 5, 5, 3))
    train, _ = _run_forward(x, (3, 3), (2, 2), "same", "max", training=True)
    infer, _ = _run_forward(x, (3, 3), (2, 2), "same", "max", training=False)
    np.testing.assert_array_equal(train, infer)


def test_keras_example_values_same_padding():
    x = np.arange(9, dtype=np.float64).reshape(1, 3, 3, 1)
    mx, _ = _run_forward(x, (2, 2), (2, 2), "same", "max")
    av, _ = _run_forward(x, (2, 2), (2, 2), "same", "avg")
    np.testing.assert_array_equal(mx[0, :, :, 0], [[4, 5], [7, 8]])
    # border windows average only their real inputs (TensorFlow), not the zero padding
    np.testing.assert_allclose(av[0, :, :, 0], [[2.0, 3.5], [6.5, 8.0]])


def test_max_ties_go_to_the_first_maximum():
    x = np.ones((1, 4, 4, 2))
    out, argmax = _run_forward(x, (2, 2), (2, 2), "valid", "max")
    dx = _run_backward(x, np.ones_like(out), (2, 2), (2, 2), "valid", "max", argmax)
    expected = np.zeros((4, 4))
    expected[::2, ::2] = 1
    np.testing.assert_array_equal(dx[0, :, :, 0], expected)
    np.testing.assert_array_equal(dx[0, :, :, 1], expected)


def test_kernels_write_into_row_strided_slices():
    """An output written straight into its channel slice of a concatenated buffer."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 4, 3))
    whole = np.zeros((2, 2, 2, 7))
    out = whole[..., 2:5]
    argmax = np.zeros(out.shape, np.int32)
    K.max_pool_forward(x, 2, 2, 2, 2, 0, 0, out, argmax)
    assert_close(out, ref_forward(x, (2, 2), (2, 2), "valid", "max"))
    assert not whole[..., :2].any() and not whole[..., 5:].any()
    dy = rng.normal(size=whole.shape)[..., 2:5]
    dx = np.empty_like(x)
    K.avg_pool_backward(dy, 2, 2, 2, 2, 0, 0, dx)
    assert_close(dx, ref_backward(x, dy, (2, 2), (2, 2), "valid", "avg"))
    g_whole = np.zeros((2, 9))
    g = g_whole[:, 4:7]
    g4 = g.view()
    g4.shape = (2, 1, 1, 3)  # a global pooling's (N, C) slice seen as (N, 1, 1, C)
    K.avg_pool_forward(x, 4, 4, 4, 4, 0, 0, g4)
    assert_close(g, x.mean(axis=(1, 2)))
    assert not g_whole[:, :4].any() and not g_whole[:, 7:].any()


def test_max_backward_into_a_row_strided_gradient():
    """A gradient that is a channel slice of a larger buffer takes the kernel's general path
    (positions split into rows and columns), with the packed path's result."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 5, 4, 3))
    out, argmax = _run_forward(x, (3, 3), (2, 2), "same", "max")
    dy = rng.normal(size=out.shape)
    whole = np.full((2, 5, 4, 8), 7.0)
    dx = whole[..., 3:6]
    K.max_pool_backward(dy, argmax, 3, 3, 2, 2, 1, 1, dx)
    np.testing.assert_array_equal(dx, _run_backward(x, dy, (3, 3), (2, 2), "same", "max",
                                                    argmax))
    assert (whole[..., :3] == 7).all() and (whole[..., 6:] == 7).all()


@pytest.mark.parametrize("training", [True, False])
def test_max_treats_nan_as_pythons_max_does(training):
    """A NaN never replaces the running maximum; a NaN first in its window stays (Python's
    ``max(a, b)``, which the kernel computed before it was vectorised)."""
    x = np.zeros((1, 2, 2, 3))
    x[0, :, :, 0] = [[1.0, np.nan], [3.0, 2.0]]    # NaN later in the window: ignored
    x[0, :, :, 1] = [[np.nan, 5.0], [6.0, 4.0]]    # NaN first: kept
    x[0, :, :, 2] = [[-np.inf, -1.0], [np.inf, 0.0]]
    out, argmax = _run_forward(x, (2, 2), (2, 2), "valid", "max", training=training)
    assert out[0, 0, 0, 0] == 3.0 and np.isnan(out[0, 0, 0, 1]) and out[0, 0, 0, 2] == np.inf
    if training:
        np.testing.assert_array_equal(argmax[0, 0, 0], [2, 0, 2])
