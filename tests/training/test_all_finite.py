"""``nexec.training.data.all_finite``: the finiteness check of every fit/predict call on
arrays, a BLAS sum of squares before ``np.isfinite(a).all()``, must agree with NumPy for
every dtype, layout and position of a NaN or an infinity, and for finite values whose
squares overflow."""
import numpy as np
import pytest

from nexec.training.data import all_finite


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_single_nonfinite_value_anywhere_is_found(dtype, bad):
    a = np.random.default_rng(0).normal(size=(37, 5)).astype(dtype) * 1e3
    assert all_finite(a) and np.isfinite(a).all()
    for i in (0, 1, 90, 184):  # first, second, middle, last element
        b = a.copy()
        b.reshape(-1)[i] = bad
        assert not all_finite(b)
        assert not all_finite(b[:, ::2] if i % 5 % 2 == 0 else b.T)  # strided views too


def test_extremes_empty_and_integer_arrays():
    big = np.array([np.finfo(np.float32).max, -np.finfo(np.float32).max, 0.0, -0.0,
                    np.finfo(np.float32).tiny / 4], np.float32)  # finite, subnormal
    assert all_finite(big) and all_finite(big.astype(np.float64))
    huge = np.full((3, 4), 1e200)  # the squares overflow to inf: isfinite decides
    assert all_finite(huge) and not all_finite(np.append(huge, np.nan))
    assert all_finite(np.empty((0, 3), np.float32))
    assert all_finite(np.arange(6, dtype=np.int32).reshape(2, 3))
    assert all_finite(np.ones(4, bool))
