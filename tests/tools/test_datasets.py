"""nexec.datasets.digits and nexec.utils.to_categorical."""
import numpy as np
import pytest

from nexec.datasets import digits
from nexec.utils import to_categorical


def test_digits_split_is_complete_disjoint_and_reproducible():
    (x_tr, y_tr), (x_te, y_te) = digits.load_data()
    assert x_tr.shape == (1438, 8, 8) and x_te.shape == (359, 8, 8)
    assert x_tr.dtype == np.uint8 and y_tr.dtype == np.uint8
    assert x_tr.max() == 16 and x_tr.min() == 0
    all_x = np.concatenate([x_tr, x_te])
    assert len(np.unique(all_x.reshape(len(all_x), -1), axis=0)) >= 1790  # a few duplicates
    counts = np.bincount(np.concatenate([y_tr, y_te]))
    assert len(counts) == 10 and counts.min() >= 170 and counts.sum() == 1797
    (x2, y2), _ = digits.load_data()
    np.testing.assert_array_equal(x_tr, x2)
    (x3, _), _ = digits.load_data(seed=1)
    assert not np.array_equal(x_tr, x3)
    (x4, _), (x5, _) = digits.load_data(test_split=0.5)
    assert len(x4) == 899 and len(x5) == 898
    with pytest.raises(ValueError, match="test_split"):
        digits.load_data(test_split=1.0)


def test_digit_zero_looks_like_a_ring():
    """The data is what it claims: the mean 0 is ink around an empty centre."""
    (x, y), _ = digits.load_data(test_split=0.0)
    zero = x[y == 0].mean(axis=0)
    assert zero[3:5, 3:5].mean() < 3 and zero[2:6, 2].mean() > 10 and zero[2:6, 5].mean() > 8


def test_to_categorical():
    np.testing.assert_array_equal(to_categorical([2, 0, 1]),
                                  np.eye(3, dtype=np.float32)[[2, 0, 1]])
    assert to_categorical(np.array([[1], [0]]), 4).shape == (2, 4)  # trailing 1 dropped
    assert to_categorical(np.array([[1, 2]]), 3).shape == (1, 2, 3)
    assert to_categorical([1.0, 0.0]).dtype == np.float32
    with pytest.raises(ValueError, match="integer"):
        to_categorical([0.5])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        to_categorical([0, 2], num_classes=2)
