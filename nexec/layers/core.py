"""Core layers: Input and InputLayer, Dense, Activation, Flatten."""
from __future__ import annotations

from typing import Any

import numpy as np

from nexec.checks import positive_int
from nexec.errors import ShapeError
from nexec.graph import FLOAT_DTYPES, INTEGER_DTYPES, Node, SymbolicTensor
from nexec.layers.base import Layer, ParamSpec, Shape, _as_shape
from nexec.plugins import registry

__all__ = ["Input", "InputLayer", "Dense", "Activation", "Flatten", "check_activation"]


def check_activation(name: Any, layer: str = "") -> str:
    """Normalises an activation argument (None means linear) and rejects unknown names."""
    name = "linear" if name is None else name
    if not isinstance(name, str) or name not in registry().activations:
        known = ", ".join(sorted(registry().activations))
        where = f"Layer '{layer}': " if layer else ""
        raise ValueError(f"{where}unknown activation {name!r}; known: {known}.")
    return name


class InputLayer(Layer):
    """The layer behind :func:`nexec.Input`; it makes one tensor and takes none.

    Args:
        shape: Sample shape without the batch axis; every dimension known (no ``None``).
        name: Layer name (``input_layer``, ``input_layer_1``... when omitted).
        dtype: ``float32`` or ``float64`` (features), or ``int32``/``int64`` (token ids, for
            the layers that take ids: ``Embedding``).
    """

    num_inputs = 0

    def __init__(self, shape: Any = None, name: str | None = None, dtype: Any = "float32",
                 input_shape: Any = None, **kwargs: Any) -> None:
        dtype = _input_dtype(dtype, name)
        super().__init__(name=name, dtype=dtype if dtype in FLOAT_DTYPES else None, **kwargs)
        self.dtype = dtype
        shape = shape if shape is not None else input_shape
        if shape is None:
            raise ValueError("InputLayer needs a shape, e.g. Input(shape=(64,)).")
        self.shape = _checked_shape(shape, f"Input '{self.name}'")
        if None in self.shape:
            raise ShapeError(
                f"Input '{self.name}': shape {(None, *self.shape)} has an unknown dimension "
                f"(None) besides the batch axis; nexec plans every buffer for fixed shapes, so "
                "each dimension of a sample must be known. Give a fixed length, e.g. "
                "Input(shape=(100,)), and pad (or truncate) the data to it (for sequences: "
                "pad with 0 and use Embedding(mask_zero=True) where the padding must be "
                "ignored).")
        self.built = True
        self._input_shapes = []
        self._nodes.append(Node(self, [], [SymbolicTensor(self.shape, dtype)]))

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        return self.shape

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def _input_dtype(dtype: Any, name: str | None) -> str:
    """An ``Input`` dtype as its name: a float dtype, or an integer one for token ids."""
    try:
        as_name = np.dtype(dtype).name
    except TypeError:
        as_name = str(dtype)
    accepted = FLOAT_DTYPES + INTEGER_DTYPES
    if as_name not in accepted:
        raise ValueError(f"Input '{name or 'input_layer'}': dtype must be one of "
                         f"{', '.join(accepted)}, got {dtype!r}.")
    return as_name


def _checked_shape(shape: Any, where: str) -> Shape:
    """A sample shape of positive ints (``None`` for an unknown axis), or a clear error."""
    dims = (shape,) if not isinstance(shape, (tuple, list)) else tuple(shape)
    for d in dims:
        if d is not None:
            try:
                positive_int(d, "shape", where)
            except (TypeError, ValueError):
                raise ShapeError(f"{where}: shape must be a tuple of positive ints (or None), "
                                 f"got {shape!r}.") from None
    return _as_shape(dims)


def Input(shape: tuple | int, name: str | None = None, dtype: str = "float32",
          batch_size: int | None = None) -> SymbolicTensor:
    """Creates a model input, as ``keras.Input``.

    Args:
        shape: Shape of one sample, without the batch axis, e.g. ``(64,)``.
        name: Name of the input (and of its ``InputLayer``).
        dtype: ``"float32"`` (default) or ``"float64"``; ``"int32"`` or ``"int64"`` for
            token ids fed to an ``Embedding``.
        batch_size: Accepted for Keras compatibility; the batch axis stays flexible.

    Raises:
        ShapeError: ``shape`` has ``None`` in it (variable length is not supported: pad).

    Example:
        >>> from nexec import Input
        >>> Input(shape=(64,)).shape
        (None, 64)
    """
    return InputLayer(shape=shape, name=name, dtype=dtype).output


class Dense(Layer):
    """Densely connected layer: ``activation(x @ kernel + bias)`` on the last axis.

    On an input of rank 3 or more it acts on the last axis of every position, as Keras'.

    Args:
        units: Output size.
        activation: Activation name (``None`` means linear).
        use_bias: Whether to add a bias.
        kernel_initializer: Initialiser of the ``(in, units)`` kernel.
        bias_initializer: Initialiser of the ``(units,)`` bias.

    Example:
        >>> from nexec import Input, layers
        >>> layers.Dense(32, activation="relu")(Input(shape=(64,))).shape
        (None, 32)
    """

    supports_masking = True  # per position: a mask passes on, as in Keras

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", bias_initializer: str = "zeros",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = positive_int(units, "units", f"Dense '{self.name}'")
        self.activation = check_activation(activation, self.name)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        if len(shape) < 1:
            raise ShapeError(f"expects an input of rank 2 or more (batch, ..., features), "
                             f"got {(None, *shape)}.")
        if shape[-1] is None:
            raise ShapeError(f"the last dimension of its input {(None, *shape)} must be known.")
        return (*shape[:-1], self.units)

    def param_specs(self, input_shapes: list[Shape]) -> list[ParamSpec]:
        specs = [ParamSpec("kernel", (input_shapes[0][-1], self.units), self.kernel_initializer)]
        if self.use_bias:
            specs.append(ParamSpec("bias", (self.units,), self.bias_initializer))
        return specs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}


class Activation(Layer):
    """Applies an activation function; fused into its producer by the planner when it can.

    Args:
        activation: ``relu``, ``sigmoid``, ``tanh``, ``softmax`` or ``linear``.
    """

    supports_masking = True  # elementwise: a mask passes on, as in Keras

    def __init__(self, activation: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = check_activation(activation, self.name)

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        return input_shapes[0]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self.activation}


class Flatten(Layer):
    """Flattens each sample, of any rank, to one axis; free at run time (a view of its
    input). A ``(batch,)`` input becomes ``(batch, 1)``, as Keras.

    Args:
        data_format: Only ``"channels_last"`` (or None): values keep their memory order.
    """

    def __init__(self, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Flatten '{self.name}': data_format must be 'channels_last' "
                             f"(or None), got {data_format!r}; nexec lays images out as NHWC "
                             "only.")
        self.data_format = "channels_last"

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        if any(d is None for d in shape):
            raise ShapeError(f"needs a fully known input shape, got {(None, *shape)}.")
        size = 1
        for d in shape:
            size *= d
        return (size,)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}
