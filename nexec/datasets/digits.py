"""The UCI handwritten digits: 1,797 grey 8x8 images of the digits 0-9.

Each pixel counts the ink in a 4x4 block of a 32x32 bitmap, so values run 0..16. The data is
the test set of "Optical Recognition of Handwritten Digits" (E. Alpaydin, C. Kaynak, 1998;
UCI Machine Learning Repository, CC BY 4.0, https://doi.org/10.24432/C50P49), stored in
``digits.npz`` next to this module (45 KB) exactly as scikit-learn ships it.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["load_data", "NUM_CLASSES"]

NUM_CLASSES = 10
_FILE = os.path.join(os.path.dirname(__file__), "digits.npz")


def load_data(test_split: float = 0.2, seed: int = 0
              ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The digits as ``(x_train, y_train), (x_test, y_test)``, like ``keras.datasets.mnist``.

    Args:
        test_split: Fraction held out for testing (default 0.2: 1,438 train, 359 test).
        seed: Seed of the shuffle before the split; the same seed gives the same split.

    Returns:
        ``x`` as uint8 arrays of shape ``(n, 8, 8)`` with values 0..16, ``y`` as uint8 labels.
    """
    if not 0 <= test_split < 1:
        raise ValueError(f"test_split must be in [0, 1), got {test_split}.")
    with np.load(_FILE) as data:
        images, labels = data["images"], data["labels"]
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = len(labels) - int(round(len(labels) * test_split))
    train, test = order[:cut], order[cut:]
    return (images[train], labels[train]), (images[test], labels[test])
