"""Convolution layers (channels_last, Keras layout)."""
from __future__ import annotations

from numbers import Integral
from typing import Any

from nexec.checks import positive_int
from nexec.errors import ShapeError
from nexec.layers.base import Layer, ParamSpec, Shape
from nexec.layers.core import check_activation
from nexec.ops.geometry import PADDINGS, window_geometry_2d

__all__ = ["Conv2D"]


def _pair(v: Any, what: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, Integral) else tuple(v) if isinstance(v, (tuple, list)) else ()
    if len(t) != 2 or any(isinstance(i, bool) or not isinstance(i, Integral) or i <= 0
                          for i in t):
        raise ValueError(f"{what} must be a positive int or a pair of them, got {v!r}.")
    return int(t[0]), int(t[1])


class Conv2D(Layer):
    """2-D convolution over ``(batch, height, width, channels)`` inputs.

    Args:
        filters: Number of output channels.
        kernel_size: int or ``(kh, kw)``.
        strides: int or ``(sh, sw)``; default 1.
        padding: ``"valid"`` (default) or ``"same"``.
        activation: Activation name; ``None`` means linear.
        use_bias: Whether to add a bias.
        kernel_initializer: Initialiser of the ``(kh, kw, cin, filters)`` kernel.
        bias_initializer: Initialiser of the ``(filters,)`` bias.
        data_format: Only ``"channels_last"``.

    Example:
        >>> from nexec import Input, layers
        >>> layers.Conv2D(16, 3, padding="same")(Input(shape=(32, 32, 3))).shape
        (None, 32, 32, 16)
    """

    def __init__(self, filters: int, kernel_size: Any, strides: Any = (1, 1),
                 padding: str = "valid", activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", bias_initializer: str = "zeros",
                 data_format: str = "channels_last", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = positive_int(filters, "filters", f"Conv2D '{self.name}'")
        self.kernel_size = _pair(kernel_size, f"Conv2D '{self.name}': kernel_size")
        self.strides = _pair(strides, f"Conv2D '{self.name}': strides")
        padding = padding.lower()
        if padding not in PADDINGS:
            raise ValueError(f"Conv2D '{self.name}': padding must be 'valid' or 'same', "
                             f"got {padding!r}.")
        if data_format != "channels_last":
            raise ValueError(f"Conv2D '{self.name}': only data_format='channels_last' is "
                             "supported.")
        self.padding = padding
        self.activation = check_activation(activation, self.name)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        if len(shape) != 3:
            raise ShapeError(f"expects a rank-4 input (batch, height, width, channels), "
                             f"got {(None, *shape)}.")
        h, w, c = shape
        if h is None or w is None or c is None:
            raise ShapeError(f"needs known height, width and channels, got {(None, *shape)}.")
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        ho, wo, _, _ = window_geometry_2d(h, w, kh, kw, sh, sw, self.padding)
        if ho <= 0 or wo <= 0:
            raise ShapeError(f"kernel {self.kernel_size} does not fit input {(None, *shape)} "
                             f"with padding='{self.padding}'.")
        return (ho, wo, self.filters)

    def param_specs(self, input_shapes: list[Shape]) -> list[ParamSpec]:
        cin = input_shapes[0][-1]
        specs = [ParamSpec("kernel", (*self.kernel_size, cin, self.filters),
                           self.kernel_initializer)]
        if self.use_bias:
            specs.append(ParamSpec("bias", (self.filters,), self.bias_initializer))
        return specs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "activation": self.activation,
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}
