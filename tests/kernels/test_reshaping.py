"""The shape kernels (upsampling, padding/cropping shift, permutation), called directly,
against NumPy and finite differences."""
import numpy as np
import pytest

from nexec.kernels.cpu import reshaping as K
from nexec.testing import assert_close, numerical_gradient


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size", [(2, 2), (1, 3), (3, 1)])
def test_upsample_matches_numpy_repeat(size, dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 2, 4)).astype(dtype)
    out = np.full((2, 3 * size[0], 2 * size[1], 4), np.nan, dtype)
    K.upsample_forward(x, *size, out)
    np.testing.assert_array_equal(out, x.repeat(size[0], axis=1).repeat(size[1], axis=2))
    dy = rng.normal(size=out.shape).astype(dtype)
    dx = np.full(x.shape, np.nan, dtype)
    K.upsample_backward(dy, *size, dx)
    expected = dy.reshape(2, 3, size[0], 2, size[1], 4).sum(axis=(2, 4))
    assert_close(dx, expected)


@pytest.mark.parametrize("top,left,out_hw", [
    (1, 2, (5, 7)),     # zero padding (1, 1), (2, 3)
    (0, 0, (3, 4)),     # nothing
    (-1, -1, (1, 2)),   # cropping (1, 1), (1, 1)
    (-2, 0, (1, 3)),    # cropping rows only, asymmetric
])
def test_pad_shift_matches_numpy(top, left, out_hw):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 2))
    out = np.full((2, *out_hw, 2), np.nan)
    K.pad_shift(x, top, left, out)
    big = np.zeros((2, 20, 20, 2))
    big[:, 8:11, 8:12] = x
    expected = big[:, 8 - top:8 - top + out_hw[0], 8 - left:8 - left + out_hw[1]]
    np.testing.assert_array_equal(out, expected)
    # backward is the opposite shift, and it is the adjoint of forward (finite differences)
    weights = rng.normal(size=out.shape)
    dx = np.full(x.shape, np.nan)
    K.pad_shift(weights, -top, -left, dx)

    def loss():
        K.pad_shift(x, top, left, out)
        return float((out * weights).sum())

    assert_close(dx, numerical_gradient(loss, x), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("perm", [(1, 0, 2, 3), (2, 0, 1, 3), (3, 2, 1, 0), (0, 1, 2, 3)])
def test_permute_copy_matches_numpy_transpose(perm):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 4, 2, 5))
    expected = x.transpose(0, *(p + 1 for p in perm))
    q = [perm.index(a) for a in range(4)]  # the axis of dst each axis of src becomes
    out = np.full(expected.shape, np.nan)
    K.permute_copy(x, *q, out)
    np.testing.assert_array_equal(out, expected)
    back = np.full(x.shape, np.nan)
    K.permute_copy(out, *perm, back)  # the inverse permutation restores x
    np.testing.assert_array_equal(back, x)


def test_kernels_write_row_strided_outputs():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 2, 2, 3))
    whole = np.zeros((2, 4, 4, 8))
    K.upsample_forward(x, 2, 2, whole[..., 2:5])
    np.testing.assert_array_equal(whole[..., 2:5], x.repeat(2, 1).repeat(2, 2))
    assert not whole[..., :2].any() and not whole[..., 5:].any()
