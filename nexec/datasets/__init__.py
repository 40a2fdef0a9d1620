"""Small real data sets that ship with nexec, so examples and the demo need no network.

Example:
    >>> from nexec.datasets import digits
    >>> (x_train, y_train), (x_test, y_test) = digits.load_data()
    >>> x_train.shape, x_test.shape
    ((1438, 8, 8), (359, 8, 8))
"""
from __future__ import annotations

from nexec.datasets import digits

__all__ = ["digits"]
