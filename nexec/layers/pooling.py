"""Pooling layers (Keras 3, ``channels_last``): windowed max/average pooling in 1-D and 2-D,
and global max/average pooling.

Every one runs as a 2-D window op on ``(N, H, W, C)`` (``nexec.ops.pooling``): each layer
says how its arrays look in that form (:meth:`grid`) and what its window is
(:meth:`window`). Padded positions never take part (TensorFlow's rule, which Keras follows
on every backend): max ignores them and a border window of an average divides by its real
inputs only.

Example:
    >>> from nexec import Input, layers
    >>> layers.MaxPooling2D(3, strides=2, padding="same")(Input(shape=(7, 7, 4))).shape
    (None, 4, 4, 4)
"""
from __future__ import annotations

from typing import Any

from nexec.errors import ShapeError
from nexec.layers.base import Layer, Shape
from nexec.ops.geometry import PADDINGS, window_geometry_2d

__all__ = ["MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
           "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D",
           "GlobalAveragePooling2D", "check_data_format", "int_tuple"]

#: ``(ph, pw, sh, sw, pad_top, pad_left)`` of a pooling seen as a 2-D window op.
Window = tuple[int, int, int, int, int, int]


def int_tuple(value: Any, n: int, what: str, allow_zero: bool = False) -> tuple[int, ...]:
    """``value`` as ``n`` positive (or, with ``allow_zero``, non-negative) ints; an int
    repeats. Raises a ValueError naming ``what`` (the layer and argument) otherwise."""
    items = (value,) * n if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        out = tuple(items)
        ok = len(out) == n and all(isinstance(v, int) and not isinstance(v, bool) for v in out)
    except TypeError:
        ok = False
    least = 0 if allow_zero else 1
    if not ok or any(v < least for v in out):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{what} must be a {kind} int or a tuple of {n} of them, "
                         f"got {value!r}.")
    return out


def check_data_format(value: Any, where: str) -> str:
    """Only ``channels_last`` (Keras' default, also for None) is supported."""
    if value not in (None, "channels_last"):
        raise ValueError(f"{where}: data_format must be 'channels_last' (or None), got "
                         f"{value!r}; nexec lays images out as NHWC only.")
    return "channels_last"


def _known(layer: Layer, shape: Shape, rank: int) -> None:
    """``shape`` is a fully known feature shape of ``rank`` spatial axes plus channels."""
    axes = "(batch, steps, channels)" if rank == 1 else "(batch, height, width, channels)"
    if len(shape) != rank + 1:
        raise ShapeError(f"expects a rank-{rank + 2} input {axes}, got {(None, *shape)}.")
    if any(d is None for d in shape):
        raise ShapeError(f"needs a fully known input shape, got {(None, *shape)}.")


class _Pooling(Layer):
    """Shared arguments and shape rule of the windowed poolings (``rank`` 1 or 2)."""

    rank = 2
    mode = "max"

    def __init__(self, pool_size: Any, strides: Any = None, padding: str = "valid",
                 data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        kind = f"{type(self).__name__} '{self.name}'"
        self.pool_size = int_tuple(pool_size, self.rank, f"{kind}: pool_size")
        self.strides = self.pool_size if strides is None else \
            int_tuple(strides, self.rank, f"{kind}: strides")
        mode = padding.lower() if isinstance(padding, str) else padding
        if mode not in PADDINGS:
            raise ValueError(f"{kind}: padding must be 'valid' or 'same', got {padding!r}.")
        self.padding = mode
        self.data_format = check_data_format(data_format, kind)

    def grid(self, shape: Shape) -> tuple[int, int, int]:
        """The feature shape seen as ``(H, W, C)``."""
        return (1, *shape) if self.rank == 1 else tuple(shape)

    def window(self, in_shape: Shape) -> Window:
        h, w, _ = self.grid(in_shape)
        (ph, pw), (sh, sw) = self.grid_window()
        _, _, pt, pl = window_geometry_2d(h, w, ph, pw, sh, sw, self.padding)
        return ph, pw, sh, sw, pt, pl

    def grid_window(self) -> tuple[tuple[int, int], tuple[int, int]]:
        if self.rank == 1:
            return (1, self.pool_size[0]), (1, self.strides[0])
        return (self.pool_size[0], self.pool_size[1]), (self.strides[0], self.strides[1])

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        _known(self, shape, self.rank)
        h, w, c = self.grid(shape)
        (ph, pw), (sh, sw) = self.grid_window()
        ho, wo, _, _ = window_geometry_2d(h, w, ph, pw, sh, sw, self.padding)
        if ho <= 0 or wo <= 0:
            raise ShapeError(f"pool_size {self.pool_size} does not fit input {(None, *shape)} "
                             f"with padding='{self.padding}'.")
        return (wo, c) if self.rank == 1 else (ho, wo, c)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding,
                "data_format": self.data_format}


class _Pooling1D(_Pooling):
    """Keras' 1-D pooling arguments.

    Args:
        pool_size: Window length (default 2).
        strides: Step between windows (default ``pool_size``).
        padding: ``"valid"`` (default) or ``"same"``.
        data_format: Only ``"channels_last"`` (or None).
    """

    rank = 1

    def __init__(self, pool_size: Any = 2, strides: Any = None, padding: str = "valid",
                 data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling1D(_Pooling1D):
    """Maximum over windows of steps of every channel: ``(N, L, C) -> (N, Lo, C)``.

    Backward sends each output gradient to the input that was the maximum (the first one on
    ties); the forward pass records where it was, so the input need not be kept.
    """


class AveragePooling1D(_Pooling1D):
    """Mean over windows of steps of every channel (``"same"``: real inputs only)."""

    mode = "avg"


class _Pooling2D(_Pooling):
    """Keras' 2-D pooling arguments.

    Args:
        pool_size: int or ``(ph, pw)``; default ``(2, 2)``.
        strides: int or ``(sh, sw)``; default ``pool_size``.
        padding: ``"valid"`` (default) or ``"same"``.
        data_format: Only ``"channels_last"`` (or None).
    """

    def __init__(self, pool_size: Any = (2, 2), strides: Any = None, padding: str = "valid",
                 data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling2D(_Pooling2D):
    """Maximum over each ``pool_size`` window of every channel (Keras ``MaxPooling2D``).

    Example:
        >>> from nexec import Input
        >>> MaxPooling2D()(Input(shape=(8, 8, 3))).shape
        (None, 4, 4, 3)
    """


class AveragePooling2D(_Pooling2D):
    """Mean over each ``pool_size`` window of every channel (``"same"``: real inputs only)."""

    mode = "avg"


class _GlobalPooling(Layer):
    """Reduces every spatial axis: ``(N, *spatial, C) -> (N, C)`` (or size-1 axes kept)."""

    rank = 2
    mode = "max"

    def __init__(self, data_format: str | None = None, keepdims: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format, f"{type(self).__name__} "
                                                          f"'{self.name}'")
        if not isinstance(keepdims, bool):
            raise ValueError(f"{type(self).__name__} '{self.name}': keepdims must be True or "
                             f"False, got {keepdims!r}.")
        self.keepdims = keepdims

    def grid(self, shape: Shape) -> tuple[int, int, int]:
        """The feature shape seen as ``(H, W, C)``."""
        return (1, *shape) if self.rank == 1 else tuple(shape)

    def window(self, in_shape: Shape) -> Window:
        h, w, _ = self.grid(in_shape)
        return h, w, h, w, 0, 0

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        _known(self, shape, self.rank)
        return (*(1,) * self.rank, shape[-1]) if self.keepdims else (shape[-1],)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


class GlobalMaxPooling1D(_GlobalPooling):
    """Maximum over the steps of every channel: ``(N, L, C) -> (N, C)``.

    Args:
        data_format: Only ``"channels_last"`` (or None).
        keepdims: Keep the steps axis with size 1: ``(N, 1, C)``.
    """

    rank = 1


class GlobalAveragePooling1D(_GlobalPooling):
    """Mean over the steps of every channel: ``(N, L, C) -> (N, C)``.

    A masked input (``Embedding(mask_zero=True)`` upstream) is averaged over its real steps
    only, as Keras 3 (a sample with no real step gives NaN there, as Keras' ``0 / 0``); the
    output carries no mask.

    Args:
        data_format: Only ``"channels_last"`` (or None).
        keepdims: Keep the steps axis with size 1: ``(N, 1, C)``.
    """

    rank = 1
    mode = "avg"
    supports_masking = True
    consumes_mask = True

    def compute_mask(self, inputs: Any, previous_mask: Any) -> None:
        """The mask is consumed here."""
        return None


class GlobalMaxPooling2D(_GlobalPooling):
    """Maximum over height and width of every channel: ``(N, H, W, C) -> (N, C)``.

    Args:
        data_format: Only ``"channels_last"`` (or None).
        keepdims: Keep the spatial axes with size 1: ``(N, 1, 1, C)``.
    """


class GlobalAveragePooling2D(_GlobalPooling):
    """Mean over height and width of every channel: ``(N, H, W, C) -> (N, C)``.

    Args:
        data_format: Only ``"channels_last"`` (or None).
        keepdims: Keep the spatial axes with size 1: ``(N, 1, 1, C)``.

    Example:
        >>> from nexec import Input
        >>> GlobalAveragePooling2D()(Input(shape=(5, 5, 8))).shape
        (None, 8)
    """

    mode = "avg"
