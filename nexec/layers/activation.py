"""Activation layers with arguments (ReLU, LeakyReLU, PReLU, ELU, Softmax) and the two
arithmetic preprocessing layers (Rescaling, Normalization with ``adapt``).

Keras 3's names, arguments, defaults and weights (PReLU: ``alpha``; Normalization:
``mean``, ``variance``, ``count``). Each acts elementwise (Softmax on the last axis), so any
input rank works.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from nexec.errors import GraphError, ShapeError
from nexec.graph import SymbolicTensor
from nexec.layers.base import Layer, ParamSpec, Shape
from nexec.plugins import registry

__all__ = ["ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Rescaling", "Normalization"]


def _number(value: Any, arg: str, where: str, minimum: float | None = 0.0) -> float:
    """A real number (at least ``minimum``), or a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not math.isfinite(float(value)) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum:g}"
        raise ValueError(f"{where}: {arg} must be a finite number{bound}, got {value!r}.")
    return float(value)


class _Elementwise(Layer):
    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        return input_shapes[0]


class ReLU(_Elementwise):
    """Keras' ReLU: ``min(x, max_value)`` above ``threshold``, ``negative_slope * (x -
    threshold)`` below it.

    Args:
        max_value: Upper bound of the output (``None``: none); >= 0.
        negative_slope: Slope below the threshold; >= 0.
        threshold: Where the slope changes; >= 0.
    """

    supports_masking = True  # does not read the mask; passes it on, as in Keras 3

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0,
                 threshold: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"ReLU '{self.name}'"
        self.max_value = None if max_value is None else _number(max_value, "max_value", where)
        self.negative_slope = _number(negative_slope, "negative_slope", where)
        self.threshold = _number(threshold, "threshold", where)

    def kernel_args(self) -> tuple[float, float, float]:
        """(negative_slope, max_value or inf, threshold) for ``param_activation_*``."""
        top = math.inf if self.max_value is None else self.max_value
        return self.negative_slope, top, self.threshold

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}


class LeakyReLU(_Elementwise):
    """``x`` for ``x >= 0``, ``negative_slope * x`` below (Keras 3's layer default 0.3).

    Args:
        negative_slope: The slope below zero; >= 0.
    """

    supports_masking = True  # does not read the mask; passes it on, as in Keras 3

    def __init__(self, negative_slope: float = 0.3, **kwargs: Any) -> None:
        if "alpha" in kwargs:  # Keras 2's name, still accepted by Keras 3
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        self.negative_slope = _number(negative_slope, "negative_slope",
                                      f"LeakyReLU '{self.name}'")

    def kernel_args(self) -> tuple[float, float, float]:
        return self.negative_slope, math.inf, 0.0

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(_Elementwise):
    """``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` below.

    Args:
        alpha: Scale of the negative part.
    """

    supports_masking = True  # does not read the mask; passes it on, as in Keras 3

    def __init__(self, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = _number(alpha, "alpha", f"ELU '{self.name}'", minimum=None)

    def kernel_args(self) -> tuple[float, float, float]:
        return self.alpha, 0.0, 0.0

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha}


class PReLU(Layer):
    """Leaky ReLU with a learned slope ``alpha`` per position: ``x`` if ``x >= 0`` else
    ``alpha * x``.

    Args:
        alpha_initializer: Initialiser of ``alpha`` (Keras' ``"Zeros"`` default).
        alpha_regularizer, alpha_constraint: Not supported (must be None).
        shared_axes: Axes (1 = the first after the batch) along which ``alpha`` is shared,
            e.g. ``[1, 2]`` for one slope per channel of an image. nexec needs them to be the
            leading feature axes (``[1]``, ``[1, 2]``...).
    """

    supports_masking = True  # does not read the mask; passes it on, as in Keras 3

    def __init__(self, alpha_initializer: Any = "Zeros", alpha_regularizer: Any = None,
                 alpha_constraint: Any = None, shared_axes: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"PReLU '{self.name}'"
        for arg, value in (("alpha_regularizer", alpha_regularizer),
                           ("alpha_constraint", alpha_constraint)):
            if value is not None:
                raise ValueError(f"{where}: {arg} is not supported by nexec, got {value!r}.")
        if isinstance(alpha_initializer, str) and \
                alpha_initializer not in registry().initializers:
            alpha_initializer = alpha_initializer.lower()
        self.alpha_initializer = alpha_initializer
        axes = [] if shared_axes is None else (
            [shared_axes] if isinstance(shared_axes, int) else list(shared_axes))
        if any(isinstance(a, bool) or not isinstance(a, int) or a < 1 for a in axes):
            raise ValueError(f"{where}: shared_axes must be axes >= 1 (0 is the batch), got "
                             f"{shared_axes!r}.")
        self.shared_axes = None if shared_axes is None else sorted(set(axes))

    def alpha_shape(self, shape: Shape) -> tuple:
        """Keras' ``alpha`` shape: the feature shape with the shared axes set to 1."""
        shared = self.shared_axes or []
        if any(a > len(shape) for a in shared):
            raise ShapeError(f"shared_axes {self.shared_axes} out of range for an input of "
                             f"rank {len(shape) + 1}.")
        if shared != list(range(1, len(shared) + 1)):
            raise ShapeError(f"nexec's PReLU shares alpha along leading axes only ([1], "
                             f"[1, 2], ...), got shared_axes={self.shared_axes}.")
        if any(d is None for d in shape):
            raise ShapeError(f"needs a fully known input shape, got {(None, *shape)}.")
        return tuple(1 if i + 1 in shared else d for i, d in enumerate(shape))

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        self.alpha_shape(input_shapes[0])
        return input_shapes[0]

    def param_specs(self, input_shapes: list[Shape]) -> list[ParamSpec]:
        return [ParamSpec("alpha", self.alpha_shape(input_shapes[0]), self.alpha_initializer)]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha_initializer": self.alpha_initializer,
                "shared_axes": self.shared_axes}


class Softmax(_Elementwise):
    """Softmax over the last axis; the planner folds it into its producer like
    ``Activation("softmax")``. A masked input is refused (see :meth:`_check_masks`: Keras
    3.15 cannot apply an ``Embedding`` mask here either).

    Args:
        axis: -1 (or the last axis by its positive index); other axes are not supported.
    """

    activation = "softmax"

    def _check_masks(self, tensors: list[SymbolicTensor]) -> None:
        """Refuses a masked input, with Keras 3.15's reason: its Softmax broadcasts the mask
        against the input's *trailing* axes (NumPy rules, ``where(mask, x, -1e9)``), and a
        mask from ``Embedding(mask_zero=True)`` has one axis less than the tensor it masks
        (``(batch, steps)`` against ``(batch, steps, features)``): Keras raises, or, where
        the sizes happen to agree, masks along the wrong axes."""
        t = tensors[0]
        if t.mask is None:
            return
        raise GraphError(
            f"Layer '{self.name}' (Softmax) was called on {t.name!r} {t.shape}, which carries "
            f"a mask ({t.mask.name!r} {t.mask.shape}, from Embedding(mask_zero=True)). Keras "
            "3.15's Softmax broadcasts the mask against the input's trailing axes, so a mask "
            "of one flag per position does not fit the features it would mask: Keras raises "
            "'The `mask` must be broadcastable to `inputs`' (or, when the sizes happen to "
            "agree, masks along the wrong axes), and nexec refuses it. Use mask_zero=False, "
            "or pass the tensor through a layer that does not support masking first (it "
            "drops the mask with Keras' warning).")

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"Softmax '{self.name}': axis must be an int, got {axis!r}.")
        self.axis = axis

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        rank = len(input_shapes[0]) + 1
        if self.axis not in (-1, rank - 1):
            raise ShapeError(f"nexec's Softmax acts on the last axis only (axis=-1), got "
                             f"axis={self.axis} for an input of rank {rank}.")
        return input_shapes[0]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class Rescaling(_Elementwise):
    """``x * scale + offset`` (e.g. ``Rescaling(1 / 255)`` for pixels).

    Args:
        scale: A number (per-channel lists are not supported).
        offset: A number.
    """

    supports_masking = True  # does not read the mask; passes it on, as in Keras 3

    def __init__(self, scale: float, offset: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Rescaling '{self.name}'"
        self.scale = _number(scale, "scale", where, minimum=None)
        self.offset = _number(offset, "offset", where, minimum=None)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class Normalization(_Elementwise):
    """``(x - mean) / max(sqrt(variance), 1e-7)`` per channel of the last axis.

    Either give ``mean`` and ``variance`` (then the layer has no weights, as Keras), or call
    :meth:`adapt` on data (weights ``mean``, ``variance``, ``count``: non-trainable; ``count``
    stays 0, kept by Keras 3 for old saved models).

    Args:
        axis: -1 (the last axis) only.
        mean, variance: A number or one value per channel.
        invert: Undo the normalisation instead: ``mean + x * sqrt(variance)``.
    """

    supports_masking = True  # does not read the mask; passes it on, as in Keras 3

    def __init__(self, axis: int | None = -1, mean: Any = None, variance: Any = None,
                 invert: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Normalization '{self.name}'"
        if axis != -1 and axis != (-1,):
            raise ValueError(f"{where}: nexec supports axis=-1 only, got {axis!r}.")
        if (mean is None) != (variance is None):
            raise ValueError(f"{where}: give both mean and variance or neither, got "
                             f"mean={mean!r}, variance={variance!r}.")
        self.axis = -1
        self.input_mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.input_variance = None if variance is None else np.asarray(variance, np.float64)
        if self.input_mean is not None and (
                self.input_mean.ndim > 1 or self.input_mean.shape != np.shape(variance)):
            raise ValueError(f"{where}: mean and variance must be numbers or 1-D of one "
                             f"shape, got {np.shape(mean)} and {np.shape(variance)}.")
        self.invert = bool(invert)
        self._adapted: tuple[np.ndarray, np.ndarray] | None = None

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        if not shape or shape[-1] is None:
            raise ShapeError(f"needs a known last axis, got {(None, *shape)}.")
        if self.input_mean is not None and self.input_mean.shape not in ((), (shape[-1],)):
            raise ShapeError(f"mean has shape {self.input_mean.shape}, the last axis of the "
                             f"input {(None, *shape)} has {shape[-1]}.")
        return shape

    def param_specs(self, input_shapes: list[Shape]) -> list[ParamSpec]:
        if self.input_mean is not None:
            return []
        c = input_shapes[0][-1]
        return [ParamSpec("mean", (c,), "zeros", trainable=False),
                ParamSpec("variance", (c,), "ones", trainable=False),
                ParamSpec("count", (), "zeros", trainable=False)]

    def build(self, input_shapes: list[Shape], dtype: str = "float32") -> None:
        super().build(input_shapes, dtype)
        if "count" in self._params:  # the base class makes arrays at least 1-D
            self._params["count"] = self._params["count"].reshape(())
        if self._adapted is not None:  # adapt() ran before the layer knew its dtype
            self._set_stats(*self._adapted)
            self._adapted = None

    def constants(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """The given mean and variance as float64 arrays of ``channels`` values."""
        assert self.input_mean is not None and self.input_variance is not None
        return (np.broadcast_to(self.input_mean, (channels,)).copy(),
                np.broadcast_to(self.input_variance, (channels,)).copy())

    def adapt(self, data: Any) -> None:
        """Sets ``mean`` and ``variance`` to those of ``data`` per channel of the last axis.

        Args:
            data: An array ``(samples, ..., channels)`` (or a list of such batches).
        """
        if self.input_mean is not None:
            raise ValueError(f"Normalization '{self.name}' was given mean and variance; "
                             "adapt() is for a layer built without them.")
        batches = data if isinstance(data, (list, tuple)) else [data]
        x = np.concatenate([np.asarray(b, dtype=np.float64) for b in batches])
        if x.ndim < 2:
            raise ValueError(f"Normalization '{self.name}': adapt() needs data of rank 2 or "
                             f"more (samples, ..., channels), got shape {x.shape}.")
        flat = x.reshape(-1, x.shape[-1])
        stats = (flat.mean(axis=0), flat.var(axis=0))
        if not self.built:  # kept until the first call builds the layer in its model's dtype
            self._adapted = stats
            return
        self._set_stats(*stats)

    def _set_stats(self, mean: np.ndarray, variance: np.ndarray) -> None:
        """Writes adapted statistics in place (a compiled model sees them at its next step)."""
        if self._params["mean"].shape != mean.shape:
            raise ShapeError(f"Normalization '{self.name}' has {self._params['mean'].shape[0]} "
                             f"channels; adapt() got data with {mean.shape[0]}.")
        self._params["mean"][...] = mean
        self._params["variance"][...] = variance

    def get_config(self) -> dict[str, Any]:
        mean = None if self.input_mean is None else self.input_mean.tolist()
        var = None if self.input_variance is None else self.input_variance.tolist()
        return {**super().get_config(), "axis": self.axis, "mean": mean, "variance": var,
                "invert": self.invert}
