"""One seeded random stream for weight initialisation and shuffling.

``set_random_seed`` makes runs reproducible: the same seed gives bit-identical weights
after ``fit``, run after run.
"""
from __future__ import annotations

import numpy as np

__all__ = ["set_random_seed", "generator"]

_generator = np.random.default_rng()


def set_random_seed(seed: int) -> None:
    """Seeds every random choice nexec makes (initialisers, shuffling).

    Example:
        >>> import nexec
        >>> nexec.set_random_seed(0)
    """
    global _generator
    _generator = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The current stream; draw from it rather than from global NumPy state."""
    return _generator
