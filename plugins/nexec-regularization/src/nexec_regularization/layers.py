"""Dropout and BatchNormalization descriptions (Keras arguments). ``ops.py`` runs them.

Both behave differently in training (``has_training_mode = True``); their op kernels read
``call.training``. ``fit`` and ``train_on_batch`` run them in training mode; ``predict``,
``evaluate`` and validation in inference mode.

Example:
    >>> from nexec import Input
    >>> from nexec_regularization.layers import BatchNormalization
    >>> bn = BatchNormalization()
    >>> _ = bn(Input(shape=(3,)))
    >>> [w.shape for w in bn.weights], len(bn.trainable_weights)
    ([(3,), (3,), (3,), (3,)], 2)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nexec.plugin import Layer, ParamSpec, ShapeError, generator

__all__ = ["Dropout", "BatchNormalization"]


class Dropout(Layer):
    """Zeroes each input value with probability ``rate`` in training (Keras ``Dropout``).

    Kept values are scaled by ``1 / (1 - rate)`` (inverted dropout), so inference is the
    identity. The mask comes from the layer's own random stream (SplitMix64), seeded by
    ``seed``, or, when ``seed`` is None, drawn from nexec's stream when the layer is made
    (so ``nexec.set_random_seed`` makes it reproducible too). Each training step draws a new
    mask and keeps it for backward.

    Args:
        rate: Fraction of the inputs to drop, in ``[0, 1)``.
        noise_shape: Only None (one independent draw per value) is supported.
        seed: Seed of the layer's random stream.

    Example:
        >>> Dropout(0.5, seed=1).get_config()["rate"]
        0.5
    """

    has_training_mode = True

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        rate = float(rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout '{self.name}': rate must be in [0, 1), got {rate}.")
        if noise_shape is not None:
            raise ValueError(f"Dropout '{self.name}': noise_shape is not supported; "
                             "leave it None (one draw per value).")
        self.rate = rate
        self.noise_shape = None
        self.seed = None if seed is None else int(seed)
        start = self.seed if self.seed is not None else int(generator().integers(0, 2**63))
        #: The stream's state (one uint64), advanced in place by every training forward.
        self.rng_state = np.array([start % 2**64], np.uint64)

    def reset_seed(self, seed: int) -> None:
        """Restarts the random stream (masks then repeat those of a new layer with ``seed``)."""
        self.rng_state[0] = np.uint64(int(seed) % 2**64)

    def compute_output_shape(self, input_shapes: list[tuple]) -> tuple:
        return tuple(input_shapes[0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "noise_shape": self.noise_shape,
                "seed": self.seed}


class BatchNormalization(Layer):
    """Normalizes the last axis with batch statistics in training, moving ones in inference.

    Training: ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta`` over the batch (and
    every axis but the last), with the biased batch variance, and the moving statistics are
    updated in the same kernel: ``moving = momentum * moving + (1 - momentum) * batch``.
    Inference uses ``moving_mean`` and ``moving_variance``. As in Keras, a layer with
    ``trainable = False`` runs in inference mode even during ``fit``.

    Weights, in Keras order: ``gamma`` (if ``scale``), ``beta`` (if ``center``), then the
    non-trainable ``moving_mean`` and ``moving_variance``.

    Args:
        axis: The normalized (channel) axis; only the last one (-1, the default) is supported.
        momentum: Of the moving statistics; default 0.99.
        epsilon: Added to the variance; default 1e-3.
        center: Learn an offset ``beta``.
        scale: Learn a factor ``gamma``.
        beta_initializer, gamma_initializer, moving_mean_initializer,
        moving_variance_initializer: Initialiser names (Keras defaults: zeros, ones, zeros,
            ones).
    """

    has_training_mode = True

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer: Any = "zeros",
                 gamma_initializer: Any = "ones", moving_mean_initializer: Any = "zeros",
                 moving_variance_initializer: Any = "ones", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            if len(axis) != 1:
                raise ValueError(f"BatchNormalization '{self.name}': only one axis is "
                                 f"supported, got {axis!r}.")
            axis = axis[0]
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        if self.epsilon <= 0:
            raise ValueError(f"BatchNormalization '{self.name}': epsilon must be positive.")
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = beta_initializer
        self.gamma_initializer = gamma_initializer
        self.moving_mean_initializer = moving_mean_initializer
        self.moving_variance_initializer = moving_variance_initializer

    def compute_output_shape(self, input_shapes: list[tuple]) -> tuple:
        (shape,) = input_shapes
        rank = len(shape) + 1  # with the batch axis, as Keras counts ``axis``
        if rank < 2:
            raise ShapeError("needs an input with at least one feature axis.")
        if self.axis not in (-1, rank - 1):
            raise ShapeError(f"axis={self.axis} on input {(None, *shape)}: only the last axis "
                             "(-1, the channels) is supported.")
        if shape[-1] is None:
            raise ShapeError(f"the last dimension of its input {(None, *shape)} must be known.")
        return tuple(shape)

    def param_specs(self, input_shapes: list[tuple]) -> list[ParamSpec]:
        c = (input_shapes[0][-1],)
        specs = []
        if self.scale:
            specs.append(ParamSpec("gamma", c, self.gamma_initializer))
        if self.center:
            specs.append(ParamSpec("beta", c, self.beta_initializer))
        specs += [ParamSpec("moving_mean", c, self.moving_mean_initializer, trainable=False),
                  ParamSpec("moving_variance", c, self.moving_variance_initializer,
                            trainable=False)]
        return specs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": self.beta_initializer,
                "gamma_initializer": self.gamma_initializer,
                "moving_mean_initializer": self.moving_mean_initializer,
                "moving_variance_initializer": self.moving_variance_initializer}
