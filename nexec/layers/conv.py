"""Convolution layers (channels_last, Keras layout)."""
from __future__ import annotations

from numbers import Integral
from typing import Any

from nexec.checks import positive_int
from nexec.errors import ShapeError
from nexec.layers.base import Layer, ParamSpec, Shape
from nexec.layers.core import check_activation
from nexec.ops.geometry import (
    PADDINGS,
    conv1d_geometry,
    conv2d_transpose_geometry,
    window_geometry_2d,
)

__all__ = ["Conv2D", "Conv1D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose"]


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


# ----------------------------------------------------------------------------- more convolutions


def _single(v: Any, what: str) -> int:
    t = tuple(v) if isinstance(v, (tuple, list)) else (v,)
    if len(t) != 1 or isinstance(t[0], bool) or not isinstance(t[0], Integral) or t[0] <= 0:
        raise ValueError(f"{what} must be a positive int or a 1-tuple of one, got {v!r}.")
    return int(t[0])


def _padding(padding: Any, where: str, accepted: tuple[str, ...] = PADDINGS) -> str:
    mode = padding.lower() if isinstance(padding, str) else padding
    if mode not in accepted:
        names = " or ".join(repr(a) for a in accepted)
        raise ValueError(f"{where}: padding must be {names}, got {padding!r}.")
    return str(mode)


def _no_dilation(rate: Any, rank: int, where: str) -> None:
    t = tuple(rate) if isinstance(rate, (tuple, list)) else (rate,) * rank
    if any(isinstance(r, bool) or r != 1 for r in t) or len(t) != rank:
        raise ValueError(f"{where}: dilation_rate={rate!r} is not supported; nexec runs "
                         "undilated convolutions only (dilation_rate=1).")


def _channels_last(data_format: Any, where: str) -> None:
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{where}: data_format={data_format!r} is not supported; only "
                         "'channels_last' (or None, which means it) is.")


def _image_shape(shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"expects a rank-4 input (batch, height, width, channels), "
                         f"got {(None, *shape)}.")
    if any(d is None for d in shape):
        raise ShapeError(f"needs known height, width and channels, got {(None, *shape)}.")
    return shape[0], shape[1], shape[2]


class _WindowConv(Layer):
    """Arguments shared by the convolutions below (Keras' names and defaults)."""

    kernel_size: tuple[int, ...]
    strides: tuple[int, ...]

    def _common(self, strides: Any, padding: Any, data_format: Any, dilation_rate: Any,
                activation: Any, use_bias: Any, rank: int = 2,
                paddings: tuple[str, ...] = PADDINGS) -> None:
        where = f"{type(self).__name__} '{self.name}'"
        self.strides = (_pair(strides, f"{where}: strides") if rank == 2
                        else (_single(strides, f"{where}: strides"),))
        self.padding = _padding(padding, where, paddings)
        _channels_last(data_format, where)
        _no_dilation(dilation_rate, rank, where)
        self.activation = check_activation(activation, self.name)
        self.use_bias = bool(use_bias)

    def _fits(self, ho: int, wo: int, shape: Shape) -> None:
        if ho <= 0 or wo <= 0:
            raise ShapeError(f"kernel {self.kernel_size} does not fit input {(None, *shape)} "
                             f"with padding='{self.padding}'.")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding,
                "activation": self.activation, "use_bias": self.use_bias}


class _FilterConv(_WindowConv):
    """A convolution with one kernel of ``filters`` outputs and its bias (Conv1D,
    Conv2DTranspose): their parameters and config differ only in the kernel's layout."""

    filters: int
    kernel_initializer: Any
    bias_initializer: Any

    def _kernel_shape(self, cin: int) -> tuple[int, ...]:
        raise NotImplementedError

    def param_specs(self, input_shapes: list[Shape]) -> list[ParamSpec]:
        specs = [ParamSpec("kernel", self._kernel_shape(input_shapes[0][-1]),
                           self.kernel_initializer)]
        if self.use_bias:
            specs.append(ParamSpec("bias", (self.filters,), self.bias_initializer))
        return specs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters,
                "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}


class Conv1D(_FilterConv):
    """1-D convolution over ``(batch, steps, channels)`` inputs.

    Runs as the 2-D convolution of a height-1 image (Conv2D's kernels, no copies).

    Args:
        filters: Number of output channels.
        kernel_size: int or 1-tuple.
        strides: int or 1-tuple; default 1.
        padding: ``"valid"`` (default), ``"same"`` or ``"causal"`` (``kernel_size - 1``
            zeros before the sequence only: output step t sees no input after t).
        data_format: ``None`` or ``"channels_last"``.
        dilation_rate: Only 1.
        groups: Only 1.
        activation: Activation name; ``None`` means linear.
        use_bias: Whether to add a bias.
        kernel_initializer: Initialiser of the ``(kernel_size, cin, filters)`` kernel.
        bias_initializer: Initialiser of the ``(filters,)`` bias.

    Example:
        >>> from nexec import Input, layers
        >>> layers.Conv1D(8, 3, padding="causal")(Input(shape=(10, 4))).shape
        (None, 10, 8)
    """

    def __init__(self, filters: int, kernel_size: Any, strides: Any = 1,
                 padding: str = "valid", data_format: str | None = None,
                 dilation_rate: Any = 1, groups: int = 1, activation: str | None = None,
                 use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Conv1D '{self.name}'"
        self.filters = positive_int(filters, "filters", where)
        self.kernel_size = (_single(kernel_size, f"{where}: kernel_size"),)
        self._common(strides, padding, data_format, dilation_rate, activation, use_bias,
                     rank=1, paddings=(*PADDINGS, "causal"))
        if groups != 1:
            raise ValueError(f"{where}: groups={groups!r} is not supported; only groups=1.")
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        if len(shape) != 2:
            raise ShapeError(f"expects a rank-3 input (batch, steps, channels), "
                             f"got {(None, *shape)}.")
        if shape[0] is None or shape[1] is None:
            raise ShapeError(f"needs known steps and channels, got {(None, *shape)}.")
        (k,), (s,) = self.kernel_size, self.strides
        if self.padding == "valid" and k > shape[0]:
            self._fits(0, 0, shape)
        out, _ = conv1d_geometry(shape[0], k, s, self.padding)
        return (out, self.filters)

    def _kernel_shape(self, cin: int) -> tuple[int, ...]:
        return (self.kernel_size[0], cin, self.filters)


class DepthwiseConv2D(_WindowConv):
    """Depthwise 2-D convolution: each input channel convolved with its own filters.

    Output channel ``c * depth_multiplier + m`` is input channel ``c`` convolved with
    ``kernel[:, :, c, m]`` (Keras/TensorFlow order).

    Args:
        kernel_size: int or ``(kh, kw)``.
        strides: int or ``(sh, sw)``; default 1.
        padding: ``"valid"`` (default) or ``"same"``.
        depth_multiplier: Filters per input channel.
        data_format: ``None`` or ``"channels_last"``.
        dilation_rate: Only 1.
        activation: Activation name; ``None`` means linear.
        use_bias: Whether to add a bias.
        depthwise_initializer: Initialiser of the ``(kh, kw, cin, depth_multiplier)`` kernel.
        bias_initializer: Initialiser of the ``(cin * depth_multiplier,)`` bias.

    Example:
        >>> from nexec import Input, layers
        >>> layers.DepthwiseConv2D(3, depth_multiplier=2)(Input(shape=(8, 8, 3))).shape
        (None, 6, 6, 6)
    """

    def __init__(self, kernel_size: Any, strides: Any = (1, 1), padding: str = "valid",
                 depth_multiplier: int = 1, data_format: str | None = None,
                 dilation_rate: Any = (1, 1), activation: str | None = None,
                 use_bias: bool = True, depthwise_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"DepthwiseConv2D '{self.name}'"
        self.kernel_size = _pair(kernel_size, f"{where}: kernel_size")
        self.depth_multiplier = positive_int(depth_multiplier, "depth_multiplier", where)
        self._common(strides, padding, data_format, dilation_rate, activation, use_bias)
        self.depthwise_initializer = depthwise_initializer
        self.bias_initializer = bias_initializer

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        h, w, c = _image_shape(input_shapes[0])
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        ho, wo, _, _ = window_geometry_2d(h, w, kh, kw, sh, sw, self.padding)
        self._fits(ho, wo, input_shapes[0])
        return (ho, wo, c * self.depth_multiplier)

    def param_specs(self, input_shapes: list[Shape]) -> list[ParamSpec]:
        cin = input_shapes[0][-1]
        specs = [ParamSpec("kernel", (*self.kernel_size, cin, self.depth_multiplier),
                           self.depthwise_initializer)]
        if self.use_bias:
            specs.append(ParamSpec("bias", (cin * self.depth_multiplier,),
                                   self.bias_initializer))
        return specs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "depth_multiplier": self.depth_multiplier,
                "depthwise_initializer": self.depthwise_initializer,
                "bias_initializer": self.bias_initializer}


class SeparableConv2D(_WindowConv):
    """Depthwise 2-D convolution then a 1x1 convolution mixing channels (one layer).

    Args:
        filters: Number of output channels.
        kernel_size: int or ``(kh, kw)`` of the depthwise step.
        strides: int or ``(sh, sw)``; default 1.
        padding: ``"valid"`` (default) or ``"same"``.
        data_format: ``None`` or ``"channels_last"``.
        dilation_rate: Only 1.
        depth_multiplier: Depthwise filters per input channel.
        activation: Activation name (after the pointwise step); ``None`` means linear.
        use_bias: Whether to add a bias (after the pointwise step).
        depthwise_initializer: Of the ``(kh, kw, cin, depth_multiplier)`` kernel.
        pointwise_initializer: Of the ``(1, 1, cin * depth_multiplier, filters)`` kernel.
        bias_initializer: Of the ``(filters,)`` bias.

    Example:
        >>> from nexec import Input, layers
        >>> layers.SeparableConv2D(4, 3, padding="same")(Input(shape=(8, 8, 3))).shape
        (None, 8, 8, 4)
    """

    def __init__(self, filters: int, kernel_size: Any, strides: Any = (1, 1),
                 padding: str = "valid", data_format: str | None = None,
                 dilation_rate: Any = (1, 1), depth_multiplier: int = 1,
                 activation: str | None = None, use_bias: bool = True,
                 depthwise_initializer: Any = "glorot_uniform",
                 pointwise_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"SeparableConv2D '{self.name}'"
        self.filters = positive_int(filters, "filters", where)
        self.kernel_size = _pair(kernel_size, f"{where}: kernel_size")
        self.depth_multiplier = positive_int(depth_multiplier, "depth_multiplier", where)
        self._common(strides, padding, data_format, dilation_rate, activation, use_bias)
        self.depthwise_initializer = depthwise_initializer
        self.pointwise_initializer = pointwise_initializer
        self.bias_initializer = bias_initializer

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        h, w, _ = _image_shape(input_shapes[0])
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        ho, wo, _, _ = window_geometry_2d(h, w, kh, kw, sh, sw, self.padding)
        self._fits(ho, wo, input_shapes[0])
        return (ho, wo, self.filters)

    def param_specs(self, input_shapes: list[Shape]) -> list[ParamSpec]:
        cin = input_shapes[0][-1]
        dm = self.depth_multiplier
        specs = [ParamSpec("depthwise_kernel", (*self.kernel_size, cin, dm),
                           self.depthwise_initializer),
                 ParamSpec("pointwise_kernel", (1, 1, cin * dm, self.filters),
                           self.pointwise_initializer)]
        if self.use_bias:
            specs.append(ParamSpec("bias", (self.filters,), self.bias_initializer))
        return specs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters,
                "depth_multiplier": self.depth_multiplier,
                "depthwise_initializer": self.depthwise_initializer,
                "pointwise_initializer": self.pointwise_initializer,
                "bias_initializer": self.bias_initializer}


class Conv2DTranspose(_FilterConv):
    """Transposed 2-D convolution (the adjoint of Conv2D: upsampling with learnt filters).

    Output size per axis: ``"same"``: ``size * stride``; ``"valid"``:
    ``(size - 1) * stride + max(kernel, stride)`` (Keras).

    Args:
        filters: Number of output channels.
        kernel_size: int or ``(kh, kw)``.
        strides: int or ``(sh, sw)``; default 1.
        padding: ``"valid"`` (default) or ``"same"``.
        output_padding: Only None.
        data_format: ``None`` or ``"channels_last"``.
        dilation_rate: Only 1.
        activation: Activation name; ``None`` means linear.
        use_bias: Whether to add a bias.
        kernel_initializer: Initialiser of the ``(kh, kw, filters, cin)`` kernel.
        bias_initializer: Initialiser of the ``(filters,)`` bias.

    Example:
        >>> from nexec import Input, layers
        >>> layers.Conv2DTranspose(4, 3, strides=2, padding="same")(
        ...     Input(shape=(5, 5, 2))).shape
        (None, 10, 10, 4)
    """

    def __init__(self, filters: int, kernel_size: Any, strides: Any = (1, 1),
                 padding: str = "valid", output_padding: Any = None,
                 data_format: str | None = None, dilation_rate: Any = (1, 1),
                 activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Conv2DTranspose '{self.name}'"
        self.filters = positive_int(filters, "filters", where)
        self.kernel_size = _pair(kernel_size, f"{where}: kernel_size")
        self._common(strides, padding, data_format, dilation_rate, activation, use_bias)
        if output_padding is not None:
            raise ValueError(f"{where}: output_padding={output_padding!r} is not supported; "
                             "only None (Keras' default output size).")
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        h, w, _ = _image_shape(input_shapes[0])
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        ho, wo, _, _ = conv2d_transpose_geometry(h, w, kh, kw, sh, sw, self.padding)
        return (ho, wo, self.filters)

    def _kernel_shape(self, cin: int) -> tuple[int, ...]:
        return (*self.kernel_size, self.filters, cin)  # Keras: (kh, kw, filters, cin)
