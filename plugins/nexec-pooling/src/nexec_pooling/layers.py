"""3-D pooling layer descriptions (NDHWC, Keras arguments). They compute nothing: ``ops.py``
binds the kernels of ``kernels.py``.

Example:
    >>> from nexec import Input
    >>> from nexec_pooling.layers import MaxPooling3D
    >>> MaxPooling3D()(Input(shape=(4, 8, 8, 3))).shape
    (None, 2, 4, 4, 3)
"""
from __future__ import annotations

from typing import Any

from nexec.plugin import PADDINGS, Layer, ShapeError, window_geometry_2d

__all__ = ["MaxPooling3D", "AveragePooling3D", "GlobalMaxPooling3D", "GlobalAveragePooling3D",
           "pool_geometry_3d"]

_AXES = "(batch, depth, height, width, channels)"


def _triple(value: Any, what: str) -> tuple[int, int, int]:
    triple = (value,) * 3 if isinstance(value, int) else tuple(value)
    if len(triple) != 3 or any(not isinstance(v, int) or v <= 0 for v in triple):
        raise ValueError(f"{what} must be a positive int or a tuple of 3 of them, "
                         f"got {value!r}.")
    return triple[0], triple[1], triple[2]


def _data_format(value: Any, layer: str) -> str:
    if value not in (None, "channels_last"):
        raise ValueError(f"{layer}: only data_format='channels_last' (NDHWC) is supported, "
                         f"got {value!r}.")
    return "channels_last"


def _check_input(shape: tuple) -> None:
    if len(shape) != 4:
        raise ShapeError(f"expects a rank-5 input {_AXES}, got {(None, *shape)}.")
    if any(d is None for d in shape):
        raise ShapeError(f"needs a fully known input shape, got {(None, *shape)}.")


def pool_geometry_3d(shape: tuple, pool: tuple, strides: tuple, padding: str
                     ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Output size and front/top/left padding of a Keras/TensorFlow 3-D pooling.

    Each axis follows nexec's window arithmetic (``window_geometry_2d``, one axis at a
    time): ``"same"`` gives ``ceil(size / stride)`` outputs with the odd padding at the end.

    Returns:
        ``((do, ho, wo), (pd, pt, pl))``; a size may be <= 0 when the pool does not fit.
    """
    sizes, pads = [], []
    for size, k, s in zip(shape[:3], pool, strides):
        out, _, before, _ = window_geometry_2d(size, 1, k, 1, s, 1, padding)
        sizes.append(out)
        pads.append(before)
    return (sizes[0], sizes[1], sizes[2]), (pads[0], pads[1], pads[2])


class _Pooling3D(Layer):
    """Shared arguments and shape rule of the windowed 3-D poolings.

    Args:
        pool_size: int or ``(kd, kh, kw)``; default ``(2, 2, 2)``.
        strides: int or ``(sd, sh, sw)``; default ``pool_size``.
        padding: ``"valid"`` (default) or ``"same"``.
        data_format: Only ``"channels_last"`` (or None).
    """

    def __init__(self, pool_size: Any = (2, 2, 2), strides: Any = None,
                 padding: str = "valid", data_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        kind = f"{type(self).__name__} '{self.name}'"
        self.pool_size = _triple(pool_size, f"{kind}: pool_size")
        self.strides = self.pool_size if strides is None else _triple(strides,
                                                                      f"{kind}: strides")
        mode = padding.lower() if isinstance(padding, str) else padding
        if mode not in PADDINGS:
            raise ValueError(f"{kind}: padding must be 'valid' or 'same', got {padding!r}.")
        self.padding = mode
        self.data_format = _data_format(data_format, kind)

    def window(self, in_shape: tuple) -> tuple[int, ...]:
        """``(kd, kh, kw, sd, sh, sw, pd, pt, pl)`` for a feature shape ``(d, h, w, c)``."""
        _, pads = pool_geometry_3d(in_shape, self.pool_size, self.strides, self.padding)
        return (*self.pool_size, *self.strides, *pads)

    def compute_output_shape(self, input_shapes: list[tuple]) -> tuple:
        (shape,) = input_shapes
        _check_input(shape)
        sizes, _ = pool_geometry_3d(shape, self.pool_size, self.strides, self.padding)
        if min(sizes) <= 0:
            raise ShapeError(f"pool_size {self.pool_size} does not fit input {(None, *shape)} "
                             f"with padding='{self.padding}'.")
        return (*sizes, shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding,
                "data_format": self.data_format}


class MaxPooling3D(_Pooling3D):
    """Maximum over each ``pool_size`` window of every channel (Keras ``MaxPooling3D``).

    Backward sends each output gradient to the input that was the maximum; the forward pass
    records where it was (int32, one per output value) so the input need not be kept.
    """


class AveragePooling3D(_Pooling3D):
    """Mean over each ``pool_size`` window of every channel (Keras ``AveragePooling3D``).

    With ``padding="same"`` a border window averages only its real inputs, as TensorFlow.
    """


class _GlobalPooling3D(Layer):
    """Reduces depth, height and width: ``(N, D, H, W, C) -> (N, C)``.

    Args:
        data_format: Only ``"channels_last"`` (or None).
        keepdims: Keep the spatial axes with size 1: ``(N, 1, 1, 1, C)``.
    """

    def __init__(self, data_format: str | None = None, keepdims: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format, f"{type(self).__name__} '{self.name}'")
        self.keepdims = bool(keepdims)

    def window(self, in_shape: tuple) -> tuple[int, ...]:
        """One window as large as the volume."""
        d, h, w, _ = in_shape
        return (d, h, w, d, h, w, 0, 0, 0)

    def compute_output_shape(self, input_shapes: list[tuple]) -> tuple:
        (shape,) = input_shapes
        _check_input(shape)
        return (1, 1, 1, shape[3]) if self.keepdims else (shape[3],)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


class GlobalMaxPooling3D(_GlobalPooling3D):
    """Maximum over depth, height and width of every channel."""


class GlobalAveragePooling3D(_GlobalPooling3D):
    """Mean over depth, height and width of every channel."""
