"""Random regularisation layers (Keras arguments): Dropout, SpatialDropout1D/2D,
GaussianNoise. ``nexec/ops/regularization.py`` runs them.

They act only in training (``has_training_mode``: ``fit``, ``train_on_batch``); ``predict``,
``evaluate`` and validation pass their input through. Each layer owns a random stream (one
uint64 of state, ``rng_state``) seeded by ``seed``, or, when ``seed`` is None, drawn from
nexec's stream when the layer is made, so ``nexec.set_random_seed`` makes training
reproducible.

Example:
    >>> from nexec import Input, layers
    >>> layers.SpatialDropout1D(0.2)(Input(shape=(7, 3))).shape
    (None, 7, 3)
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from nexec.checks import ArgumentError, ArgumentTypeError
from nexec.errors import ShapeError
from nexec.layers.base import Layer, Shape
from nexec.random import generator

__all__ = ["Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "unit_float"]


def unit_float(value: Any, name: str, where: str) -> float:
    """``value`` as a float in ``[0, 1]`` (Keras' rule for ``rate`` and ``stddev``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{where}: {name} must be a number between 0 and 1, got "
                                f"{value!r} ({type(value).__name__}).")
    f = float(value)
    if not (math.isfinite(f) and 0.0 <= f <= 1.0):
        raise ArgumentError(f"{where}: {name} must be a number between 0 and 1, got {value!r}.")
    return f


def _seed(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{where}: seed must be an int or None, got {value!r} "
                                f"({type(value).__name__}).")
    return int(value)


class _RandomLayer(Layer):
    """A layer with its own seeded random stream (``rng_state``)."""

    has_training_mode = True

    def _init_stream(self, seed: Any) -> None:
        self.seed = _seed(seed, f"{type(self).__name__} '{self.name}'")
        start = self.seed if self.seed is not None else int(generator().integers(0, 2**63))
        #: The stream's state (one uint64), advanced in place by every training forward.
        self.rng_state = np.array([start % 2**64], np.uint64)

    def reset_seed(self, seed: int) -> None:
        """Restarts the stream: the next draws repeat those of a new layer with ``seed``."""
        self.rng_state[0] = np.uint64(int(seed) % 2**64)

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        return tuple(input_shapes[0])


class Dropout(_RandomLayer):
    """Zeroes each input value with probability ``rate`` in training (Keras ``Dropout``).

    Kept values are scaled by ``1 / (1 - rate)`` (inverted dropout), so inference is the
    identity (free when the planner writes the output over the input). Each training step
    draws a new mask and keeps it for backward.

    Args:
        rate: Fraction of the inputs to drop, in ``[0, 1]`` (1 drops everything).
        noise_shape: None (one draw per value), or Keras' broadcast form with the batch axis
            None and the last axis None or the channel count: either every other axis full
            (the same as None) or every other axis 1 (one draw per sample and channel, as
            ``SpatialDropout``). Other broadcasts are refused when the layer is called.
        seed: Seed of the layer's random stream.

    Example:
        >>> Dropout(0.5, seed=1).get_config()["rate"]
        0.5
    """

    supports_masking = True  # elementwise: a mask passes on, as in Keras

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"{type(self).__name__} '{self.name}'"
        self.rate = unit_float(rate, "rate", where)
        if noise_shape is not None:
            if isinstance(noise_shape, (str, bytes)) or not hasattr(noise_shape, "__iter__"):
                raise ArgumentError(f"{where}: noise_shape must be None or a tuple of ints "
                                    f"(or None), got {noise_shape!r}.")
            noise_shape = tuple(noise_shape)
            for d in noise_shape:
                if d is not None and (isinstance(d, bool) or not isinstance(d, numbers.Integral)
                                      or d < 1):
                    raise ArgumentError(f"{where}: noise_shape must hold positive ints or "
                                        f"None, got {noise_shape!r}.")
            noise_shape = tuple(None if d is None else int(d) for d in noise_shape)
        self.noise_shape = noise_shape
        self._init_stream(seed)

    def span(self, shape: Shape) -> int:
        """Rows of the ``(rows, channels)`` view that share one mask row, for input feature
        ``shape``: 1 (a draw per value) or the spatial size (a draw per sample and channel).
        Raises ShapeError for a noise shape that is neither."""
        ns = self.noise_shape
        if ns is None:
            return 1
        full = (None, *shape)
        bad = ShapeError(f"noise_shape={ns!r} on input {full}: nexec supports None, the "
                         "input shape itself, or (None, 1, ..., 1, channels) (one draw per "
                         "sample and channel, as SpatialDropout).")
        if len(ns) != len(full) or ns[0] is not None or ns[-1] not in (None, shape[-1]):
            raise bad
        middle = [(n, d) for n, d in zip(ns[1:-1], shape[:-1])]
        if all(n is None or n == d for n, d in middle):
            return 1
        if all(n == 1 for n, _ in middle):
            return int(np.prod(shape[:-1], dtype=np.int64))
        raise bad

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        self.span(tuple(input_shapes[0]))
        return tuple(input_shapes[0])

    def get_config(self) -> dict[str, Any]:
        ns = None if self.noise_shape is None else list(self.noise_shape)
        return {**super().get_config(), "rate": self.rate, "noise_shape": ns,
                "seed": self.seed}


class _SpatialDropout(Dropout):
    """Drops whole channels: one draw per sample and channel, broadcast over space."""

    rank = 0  # the input rank with the batch axis

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        kwargs.pop("noise_shape", None)
        super().__init__(rate, noise_shape=None, seed=seed, **kwargs)
        self.noise_shape = (None, *([1] * (self.rank - 2)), None)

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        if len(shape) + 1 != self.rank:
            raise ShapeError(f"expects a rank-{self.rank} input (batch, "
                             f"{'steps' if self.rank == 3 else 'height, width'}, channels), "
                             f"got {(None, *shape)}.")
        return tuple(shape)

    def span(self, shape: Shape) -> int:
        return int(np.prod(shape[:-1], dtype=np.int64))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        del cfg["noise_shape"]
        return cfg


class SpatialDropout1D(_SpatialDropout):
    """Keras ``SpatialDropout1D``: drops whole channels of a ``(batch, steps, channels)``
    input, each with probability ``rate``, scaling the others by ``1 / (1 - rate)``.

    Args:
        rate: Fraction of the channels to drop, in ``[0, 1]``.
        seed: Seed of the layer's random stream.
    """

    rank = 3


class SpatialDropout2D(_SpatialDropout):
    """Keras ``SpatialDropout2D``: drops whole feature maps of a ``(batch, height, width,
    channels)`` input.

    Args:
        rate: Fraction of the channels to drop, in ``[0, 1]``.
        data_format: ``"channels_last"`` (or None); ``"channels_first"`` is not supported.
        seed: Seed of the layer's random stream.
    """

    rank = 4

    def __init__(self, rate: float, data_format: str | None = None, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(rate, seed=seed, **kwargs)
        if data_format not in (None, "channels_last"):
            raise ArgumentError(f"SpatialDropout2D '{self.name}': only "
                                f"data_format='channels_last' is supported, got "
                                f"{data_format!r}.")
        self.data_format = "channels_last"

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


class GaussianNoise(_RandomLayer):
    """Adds zero-centred Gaussian noise of standard deviation ``stddev`` in training (Keras
    ``GaussianNoise``); the identity at inference. Its gradient is the identity.

    Args:
        stddev: Standard deviation of the noise, in ``[0, 1]`` (Keras' range).
        seed: Seed of the layer's random stream.
    """

    supports_masking = True  # does not read the mask; passes it on, as in Keras 3

    def __init__(self, stddev: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stddev = unit_float(stddev, "stddev", f"GaussianNoise '{self.name}'")
        self._init_stream(seed)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}
