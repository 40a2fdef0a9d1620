"""Pooling layer descriptions (NHWC, Keras arguments). They compute nothing: ``ops.py`` does.

Example:
    >>> from nexec import Input
    >>> from nexec_pooling.layers import MaxPooling2D
    >>> MaxPooling2D()(Input(shape=(8, 8, 3))).shape
    (None, 4, 4, 3)
"""
from __future__ import annotations

from typing import Any

from nexec.plugin import PADDINGS, Layer, ShapeError, window_geometry_2d

__all__ = ["MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "pool_geometry"]


def _pair(value: Any, what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(int(v) <= 0 for v in pair):
        raise ValueError(f"{what} must be a positive int or a pair of them, got {value!r}.")
    return int(pair[0]), int(pair[1])


def _data_format(value: Any, layer: str) -> str:
    if value not in (None, "channels_last"):
        raise ValueError(f"{layer}: only data_format='channels_last' (NHWC) is supported, "
                         f"got {value!r}.")
    return "channels_last"


def pool_geometry(h: int, w: int, ph: int, pw: int, sh: int, sw: int,
                  padding: str) -> tuple[int, int, int, int]:
    """Output size and top/left padding of a Keras/TensorFlow 2-D pooling.

    The window arithmetic of a convolution (``window_geometry_2d``). Padded positions
    never take part: max ignores them, the average divides by the number of real inputs in
    the window (as TensorFlow).

    Returns:
        ``(ho, wo, pad_top, pad_left)``; ``ho``/``wo`` may be <= 0 when the pool does not fit.
    """
    return window_geometry_2d(h, w, ph, pw, sh, sw, padding)


class _Pooling2D(Layer):
    """Shared arguments and shape rule of the windowed poolings.

    Args:
        pool_size: int or ``(ph, pw)``; default ``(2, 2)``.
        strides: int or ``(sh, sw)``; default ``pool_size``.
        padding: ``"valid"`` (default) or ``"same"``.
        data_format: Only ``"channels_last"`` (or None).
    """

    def __init__(self, pool_size: Any = (2, 2), strides: Any = None, padding: str = "valid",
                 data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        kind = f"{type(self).__name__} '{self.name}'"
        self.pool_size = _pair(pool_size, f"{kind}: pool_size")
        self.strides = self.pool_size if strides is None else _pair(strides, f"{kind}: strides")
        padding = str(padding).lower()
        if padding not in PADDINGS:
            raise ValueError(f"{kind}: padding must be 'valid' or 'same', got {padding!r}.")
        self.padding = padding
        self.data_format = _data_format(data_format, kind)

    def geometry(self, in_shape: tuple) -> tuple[int, int, int, int]:
        """``(ho, wo, pad_top, pad_left)`` for a feature shape ``(h, w, c)``."""
        h, w, _ = in_shape
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        return pool_geometry(h, w, ph, pw, sh, sw, self.padding)

    def compute_output_shape(self, input_shapes: list[tuple]) -> tuple:
        (shape,) = input_shapes
        if len(shape) != 3:
            raise ShapeError(f"expects a rank-4 input (batch, height, width, channels), "
                             f"got {(None, *shape)}.")
        if any(d is None for d in shape):
            raise ShapeError(f"needs known height, width and channels, got {(None, *shape)}.")
        ho, wo, _, _ = self.geometry(shape)
        if ho <= 0 or wo <= 0:
            raise ShapeError(f"pool_size {self.pool_size} does not fit input {(None, *shape)} "
                             f"with padding='{self.padding}'.")
        return (ho, wo, shape[2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding,
                "data_format": self.data_format}


class MaxPooling2D(_Pooling2D):
    """Maximum over each ``pool_size`` window of every channel (Keras ``MaxPooling2D``).

    Backward sends each output gradient to the input that was the maximum; the forward pass
    records where it was (int32, one per output value) so the input need not be kept.

    Example:
        >>> from nexec import Input
        >>> MaxPooling2D(3, strides=2, padding="same")(Input(shape=(7, 7, 4))).shape
        (None, 4, 4, 4)
    """


class AveragePooling2D(_Pooling2D):
    """Mean over each ``pool_size`` window of every channel (Keras ``AveragePooling2D``).

    With ``padding="same"`` a border window averages only its real inputs, as TensorFlow.
    """


class GlobalAveragePooling2D(Layer):
    """Mean over height and width of every channel: ``(N, H, W, C) -> (N, C)``.

    Args:
        data_format: Only ``"channels_last"`` (or None).
        keepdims: Keep the spatial axes with size 1: ``(N, 1, 1, C)``.

    Example:
        >>> from nexec import Input
        >>> GlobalAveragePooling2D()(Input(shape=(5, 5, 8))).shape
        (None, 8)
    """

    def __init__(self, data_format: str | None = None, keepdims: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format, f"GlobalAveragePooling2D '{self.name}'")
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shapes: list[tuple]) -> tuple:
        (shape,) = input_shapes
        if len(shape) != 3:
            raise ShapeError(f"expects a rank-4 input (batch, height, width, channels), "
                             f"got {(None, *shape)}.")
        if any(d is None for d in shape):
            raise ShapeError(f"needs known height, width and channels, got {(None, *shape)}.")
        return (1, 1, shape[2]) if self.keepdims else (shape[2],)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}
