"""GaussianDropout and AlphaDropout descriptions (Keras arguments). ``ops.py`` runs them.

Both act only in training (``has_training_mode = True``); their op kernels read
``call.training``. ``fit`` and ``train_on_batch`` run them in training mode; ``predict``,
``evaluate`` and validation pass the input through.

Example:
    >>> from nexec import Input
    >>> from nexec_regularization.layers import AlphaDropout
    >>> AlphaDropout(0.1, seed=3)(Input(shape=(4,))).shape
    (None, 4)
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from nexec.plugin import Layer, generator

__all__ = ["GaussianDropout", "AlphaDropout"]

# SELU's constants (Klambauer et al. 2017), as Keras' AlphaDropout writes them.
ALPHA = 1.6732632423543772848170429916717
SCALE = 1.0507009873554804934193349852946


def _rate(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not (math.isfinite(float(value)) and 0.0 <= float(value) < 1.0):
        raise ValueError(f"{where}: rate must be a number in [0, 1), got {value!r} (Keras "
                         "accepts 1, which makes the output infinite or NaN).")
    return float(value)


class _Seeded(Layer):
    """A layer with its own random stream (``rng_state``), seeded by ``seed`` or, when it is
    None, from nexec's stream when the layer is made (``nexec.set_random_seed``)."""

    has_training_mode = True

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"{type(self).__name__} '{self.name}'"
        self.rate = _rate(rate, where)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"{where}: seed must be an int or None, got {seed!r}.")
        self.seed = None if seed is None else int(seed)
        start = self.seed if self.seed is not None else int(generator().integers(0, 2**63))
        #: The stream's state (one uint64), advanced in place by every training forward.
        self.rng_state = np.array([start % 2**64], np.uint64)

    def reset_seed(self, seed: int) -> None:
        """Restarts the stream: the next draws repeat those of a new layer with ``seed``."""
        self.rng_state[0] = np.uint64(int(seed) % 2**64)

    def compute_output_shape(self, input_shapes: list[tuple]) -> tuple:
        return tuple(input_shapes[0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class GaussianDropout(_Seeded):
    """Multiplies the input by ``1 + N(0, sqrt(rate / (1 - rate)))`` noise in training
    (Keras ``GaussianDropout``); the identity at inference.

    Args:
        rate: Drop probability of the equivalent dropout, in ``[0, 1)``.
        seed: Seed of the layer's random stream.
    """

    @property
    def stddev(self) -> float:
        return math.sqrt(self.rate / (1.0 - self.rate))


class AlphaDropout(_Seeded):
    """Dropout that keeps the mean and variance of SELU activations (Keras ``AlphaDropout``):
    dropped values are set to ``-alpha * scale`` of SELU, then everything goes through the
    affine map ``a * x + b`` that restores them; the identity at inference.

    Args:
        rate: Fraction of the inputs to drop, in ``[0, 1)``.
        noise_shape: Only None (one draw per value) is supported.
        seed: Seed of the layer's random stream.
    """

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(rate, seed=seed, **kwargs)
        if noise_shape is not None:
            raise ValueError(f"AlphaDropout '{self.name}': noise_shape={noise_shape!r} is not "
                             "supported; leave it None (one draw per value).")
        self.noise_shape = None

    def coefficients(self) -> tuple[float, float, float]:
        """``(a, b, alpha_p)`` of Keras' formula for this rate."""
        alpha_p = -ALPHA * SCALE
        a = ((1 - self.rate) * (1 + self.rate * alpha_p ** 2)) ** -0.5
        return a, -a * alpha_p * self.rate, alpha_p

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "noise_shape": None}
