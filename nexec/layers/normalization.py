"""Normalisation layers (Keras arguments and weight order): BatchNormalization and
LayerNormalization over the last axis. ``nexec/ops/normalization.py`` runs them.

Example:
    >>> from nexec import Input
    >>> bn = BatchNormalization()
    >>> _ = bn(Input(shape=(3,)))
    >>> [w.shape for w in bn.weights], len(bn.trainable_weights)
    ([(3,), (3,), (3,), (3,)], 2)
"""
from __future__ import annotations

import numbers
from typing import Any

from nexec.checks import ArgumentError, ArgumentTypeError, positive_finite_float
from nexec.errors import ShapeError
from nexec.graph import SymbolicTensor
from nexec.layers.base import Layer, ParamSpec, Shape
from nexec.layers.regularization import unit_float

__all__ = ["BatchNormalization", "LayerNormalization"]


def _flag(value: Any, name: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{where}: {name} must be True or False, got {value!r}.")
    return value


def _unsupported(where: str, **given: Any) -> None:
    """Keras arguments nexec accepts only at their default (None / False)."""
    for name, value in given.items():
        if value not in (None, False, {}):
            raise ArgumentError(f"{where}: {name}={value!r} is not supported (only its "
                                f"default, {'False' if value is True else 'None'}).")


def _axis(axis: Any, where: str) -> int:
    """One int axis (a one-element list too, as Keras' LayerNormalization accepts lists)."""
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise ArgumentError(f"{where}: only one axis (the last) is supported, got "
                                f"axis={axis!r}.")
        axis = axis[0]
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise ArgumentTypeError(f"{where}: axis must be an int, got {axis!r}.")
    return int(axis)


def _last_axis(axis: int, shape: Shape) -> Shape:
    """Checks that ``axis`` (counted with the batch axis, as Keras) is the last one."""
    rank = len(shape) + 1
    if rank < 2:
        raise ShapeError("needs an input with at least one feature axis.")
    if axis not in (-1, rank - 1):
        raise ShapeError(f"axis={axis} on input {(None, *shape)}: only the last axis "
                         "(-1, the channels) is supported.")
    if shape[-1] is None:
        raise ShapeError(f"the last dimension of its input {(None, *shape)} must be known.")
    return tuple(shape)


class BatchNormalization(Layer):
    """Normalises the last axis with batch statistics in training, moving ones in inference.

    Training: ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta`` over the batch (and
    every axis but the last), with the biased batch variance, and the same kernel updates the
    moving statistics: ``moving = momentum * moving + (1 - momentum) * batch`` (Keras 3 folds
    the biased variance in too; PyTorch's running variance is the unbiased one). Inference
    uses ``moving_mean`` and ``moving_variance``. As in Keras, a layer with
    ``trainable = False`` runs in inference mode even during ``fit``.

    A masked input (``Embedding(mask_zero=True)``), as Keras 3: in training the batch mean
    and variance are weighted by the mask (the padded rows left out; each sum divided by
    the real rows plus Keras' ``epsilon()``, 1e-7) and update the moving statistics; every
    row, padding included, is normalised, and the mask passes on. Inference ignores it.
    The mask must have one flag per row (every axis but the channels), as Keras requires.

    Weights, in Keras order: ``gamma`` (if ``scale``), ``beta`` (if ``center``), then the
    non-trainable ``moving_mean`` and ``moving_variance``.

    Args:
        axis: The normalised (channel) axis; only the last (-1, the default) is supported.
        momentum: Of the moving statistics, in ``[0, 1]``; default 0.99.
        epsilon: Added to the variance (> 0); default 1e-3.
        center: Learn an offset ``beta``.
        scale: Learn a factor ``gamma``.
        beta_initializer, gamma_initializer, moving_mean_initializer,
        moving_variance_initializer: Initialisers (Keras defaults: zeros, ones, zeros, ones).
        beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint, renorm,
        renorm_clipping, synchronized: Accepted at their defaults only.
    """

    has_training_mode = True
    supports_masking = True  # reads the mask in training (its moments); passes it on
    consumes_mask = True
    mask_in_training_only = True  # inference uses the moving statistics

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer: Any = "zeros",
                 gamma_initializer: Any = "ones", moving_mean_initializer: Any = "zeros",
                 moving_variance_initializer: Any = "ones", beta_regularizer: Any = None,
                 gamma_regularizer: Any = None, beta_constraint: Any = None,
                 gamma_constraint: Any = None, renorm: bool = False,
                 renorm_clipping: Any = None, renorm_momentum: float = 0.99,
                 synchronized: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"BatchNormalization '{self.name}'"
        _unsupported(where, beta_regularizer=beta_regularizer,
                     gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
                     gamma_constraint=gamma_constraint, renorm=renorm,
                     renorm_clipping=renorm_clipping, synchronized=synchronized)
        self.axis = _axis(axis, where)
        self.momentum = unit_float(momentum, "momentum", where)
        self.epsilon = positive_finite_float(epsilon, "epsilon", where)
        self.center = _flag(center, "center", where)
        self.scale = _flag(scale, "scale", where)
        self.beta_initializer = beta_initializer
        self.gamma_initializer = gamma_initializer
        self.moving_mean_initializer = moving_mean_initializer
        self.moving_variance_initializer = moving_variance_initializer

    def _check_masks(self, tensors: list[SymbolicTensor]) -> None:
        """Keras 3's condition: a mask of one axis less than the input, here one flag per row
        (the input's shape without the channel axis)."""
        t = tensors[0]
        mask = t.mask
        if mask is not None and tuple(mask.feature_shape) != tuple(t.feature_shape[:-1]):
            raise ShapeError(
                f"Layer '{self.name}' (BatchNormalization) was called on {t.name!r} {t.shape}, "
                f"whose mask source {mask.name!r} has shape {mask.shape}; the mask must have "
                f"one flag per position, shape {(None, *t.shape[1:-1])} (Keras 3 needs a mask "
                "of one dimension less than the input).")

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        return _last_axis(self.axis, input_shapes[0])

    def param_specs(self, input_shapes: list[Shape]) -> list[ParamSpec]:
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


class LayerNormalization(Layer):
    """Normalises each sample over its last axis: ``y = gamma * (x - mean) / sqrt(var +
    epsilon) + beta`` with the biased variance of that axis; the same in training and
    inference (Keras ``LayerNormalization``).

    Weights, in Keras order: ``gamma`` (if ``scale``), ``beta`` (if ``center``), each of the
    last axis' size.

    Args:
        axis: The normalised axis; only the last (-1, the default, or ``[-1]``) is supported.
        epsilon: Added to the variance (> 0); default 1e-3.
        center: Learn an offset ``beta``.
        scale: Learn a factor ``gamma``.
        beta_initializer, gamma_initializer: Initialisers (Keras defaults: zeros, ones).
        beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint, rms_scaling:
            Accepted at their defaults only (``rms_scaling`` is deprecated in Keras).
    """

    supports_masking = True  # does not read the mask; passes it on, as in Keras 3

    def __init__(self, axis: Any = -1, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer: Any = "zeros",
                 gamma_initializer: Any = "ones", beta_regularizer: Any = None,
                 gamma_regularizer: Any = None, beta_constraint: Any = None,
                 gamma_constraint: Any = None, rms_scaling: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"LayerNormalization '{self.name}'"
        _unsupported(where, beta_regularizer=beta_regularizer,
                     gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
                     gamma_constraint=gamma_constraint, rms_scaling=rms_scaling)
        self.axis = _axis(axis, where)
        self.epsilon = positive_finite_float(epsilon, "epsilon", where)
        self.center = _flag(center, "center", where)
        self.scale = _flag(scale, "scale", where)
        self.beta_initializer = beta_initializer
        self.gamma_initializer = gamma_initializer

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        return _last_axis(self.axis, input_shapes[0])

    def param_specs(self, input_shapes: list[Shape]) -> list[ParamSpec]:
        c = (input_shapes[0][-1],)
        specs = []
        if self.scale:
            specs.append(ParamSpec("gamma", c, self.gamma_initializer))
        if self.center:
            specs.append(ParamSpec("beta", c, self.beta_initializer))
        return specs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": self.beta_initializer,
                "gamma_initializer": self.gamma_initializer}
