"""Shape layers (Keras 3, ``channels_last``): Reshape, Permute, RepeatVector, UpSampling2D,
ZeroPadding1D/2D and Cropping2D. (Flatten lives with the core layers.)

Reshape is free at run time (its output is a view of its input, as Flatten's); the others
copy (``nexec.ops.reshaping``).

Example:
    >>> from nexec import Input, layers
    >>> layers.Reshape((4, -1))(Input(shape=(2, 6))).shape
    (None, 4, 3)
"""
from __future__ import annotations

import math
from typing import Any

from nexec.checks import positive_int
from nexec.errors import ShapeError
from nexec.layers.base import Layer, Shape
from nexec.layers.pooling import check_data_format, int_tuple

__all__ = ["Reshape", "Permute", "RepeatVector", "UpSampling2D", "ZeroPadding1D",
           "ZeroPadding2D", "Cropping2D"]


def _known(shape: Shape, rank: int, axes: str) -> None:
    if len(shape) != rank:
        raise ShapeError(f"expects a rank-{rank + 1} input {axes}, got {(None, *shape)}.")
    if any(d is None for d in shape):
        raise ShapeError(f"needs a fully known input shape, got {(None, *shape)}.")


_IMAGE = "(batch, height, width, channels)"


class Reshape(Layer):
    """Gives each sample a new shape with the same number of values; free (a view).

    Args:
        target_shape: The new sample shape, without the batch axis; one entry may be -1
            (inferred from the others).

    Example:
        >>> from nexec import Input
        >>> Reshape((3, 4))(Input(shape=(12,))).shape
        (None, 3, 4)
    """

    def __init__(self, target_shape: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Reshape '{self.name}'"
        try:
            dims = tuple(target_shape)
        except TypeError:
            dims = (target_shape,)
        if not dims or any(not isinstance(d, int) or isinstance(d, bool) or d == 0 or d < -1
                           for d in dims) or dims.count(-1) > 1:
            raise ValueError(f"{where}: target_shape must be a non-empty tuple of positive "
                             f"ints with at most one -1, got {target_shape!r}.")
        self.target_shape = dims

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        if any(d is None for d in shape):
            raise ShapeError(f"needs a fully known input shape, got {(None, *shape)}.")
        size = math.prod(shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ShapeError(f"cannot reshape {(None, *shape)} ({size} values a sample) "
                                 f"into {(None, *self.target_shape)}: {size} is not a "
                                 f"multiple of {known}.")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if known != size:
            raise ShapeError(f"cannot reshape {(None, *shape)} ({size} values a sample) into "
                             f"{(None, *self.target_shape)} ({known} values).")
        return self.target_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Permute(Layer):
    """Reorders the feature axes of each sample (``dims`` counts from 1, as Keras).

    Args:
        dims: A permutation of ``1 .. rank``, e.g. ``(2, 1)`` swaps the two axes of a
            ``(batch, steps, features)`` input. At most 4 feature axes.

    Example:
        >>> from nexec import Input
        >>> Permute((2, 1))(Input(shape=(10, 64))).shape
        (None, 64, 10)
    """

    def __init__(self, dims: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Permute '{self.name}'"
        try:
            perm = tuple(dims)
        except TypeError:
            perm = ()
        if not perm or sorted(perm) != list(range(1, len(perm) + 1)) or \
                any(not isinstance(d, int) or isinstance(d, bool) for d in perm):
            raise ValueError(f"{where}: dims must be a permutation of 1..rank (the batch axis "
                             f"is 0 and stays first), got {dims!r}.")
        if len(perm) > 4:
            raise ValueError(f"{where}: at most 4 feature axes can be permuted, got dims="
                             f"{dims!r}.")
        self.dims = perm

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        _known(shape, len(self.dims), f"(dims={self.dims})")
        return tuple(shape[d - 1] for d in self.dims)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dims": list(self.dims)}


class RepeatVector(Layer):
    """Repeats each sample's vector ``n`` times: ``(N, F) -> (N, n, F)``.

    Args:
        n: Number of repeats.
    """

    def __init__(self, n: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n = positive_int(n, "n", f"RepeatVector '{self.name}'")

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        _known(shape, 1, "(batch, features)")
        return (self.n, shape[0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n": self.n}


class UpSampling2D(Layer):
    """Repeats rows and columns: ``(N, H, W, C) -> (N, H * sh, W * sw, C)``.

    Args:
        size: int or ``(sh, sw)``; default ``(2, 2)``.
        data_format: Only ``"channels_last"`` (or None).
        interpolation: Only ``"nearest"`` (Keras' default).
    """

    def __init__(self, size: Any = (2, 2), data_format: str | None = None,
                 interpolation: str = "nearest", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"UpSampling2D '{self.name}'"
        self.size = int_tuple(size, 2, f"{where}: size")
        self.data_format = check_data_format(data_format, where)
        mode = interpolation.lower() if isinstance(interpolation, str) else interpolation
        if mode != "nearest":
            raise ValueError(f"{where}: interpolation must be 'nearest', got "
                             f"{interpolation!r} (bilinear and the others are not supported).")
        self.interpolation = mode

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        _known(shape, 3, _IMAGE)
        return (shape[0] * self.size[0], shape[1] * self.size[1], shape[2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": list(self.size),
                "data_format": self.data_format, "interpolation": self.interpolation}


def _pairs(value: Any, what: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras' 2-D padding/cropping argument: int, ``(h, w)`` or ``((t, b), (l, r))``."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = int_tuple(value, 1, what, allow_zero=True)[0]
        return (n, n), (n, n)
    try:
        first, second = value
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an int, a tuple of 2 ints or a tuple of 2 tuples of "
                         f"2 ints ((top, bottom), (left, right)), got {value!r}.") from None
    h = int_tuple(first, 2, f"{what} (height entry)", allow_zero=True)
    w = int_tuple(second, 2, f"{what} (width entry)", allow_zero=True)
    return (h[0], h[1]), (w[0], w[1])


class ZeroPadding1D(Layer):
    """Adds zero steps at the start and end: ``(N, L, C) -> (N, L + a + b, C)``.

    Args:
        padding: int (both sides) or ``(a, b)``; default 1.
        data_format: Only ``"channels_last"`` (or None).
    """

    def __init__(self, padding: Any = 1, data_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"ZeroPadding1D '{self.name}'"
        a, b = int_tuple(padding, 2, f"{where}: padding", allow_zero=True)
        self.padding = (a, b)
        self.data_format = check_data_format(data_format, where)

    def shift(self) -> tuple[int, int]:
        """``(top, left)`` of the shifted copy, on ``(N, 1, L, C)``."""
        return 0, self.padding[0]

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        _known(shape, 2, "(batch, steps, channels)")
        return (shape[0] + sum(self.padding), shape[1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": list(self.padding),
                "data_format": self.data_format}


class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros around each image.

    Args:
        padding: int, ``(h, w)`` (symmetric) or ``((top, bottom), (left, right))``;
            default ``(1, 1)``.
        data_format: Only ``"channels_last"`` (or None).
    """

    def __init__(self, padding: Any = (1, 1), data_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"ZeroPadding2D '{self.name}'"
        if not isinstance(padding, int) and _flat_pair(padding):
            padding = ((padding[0],) * 2, (padding[1],) * 2)
        self.padding = _pairs(padding, f"{where}: padding")
        self.data_format = check_data_format(data_format, where)

    def shift(self) -> tuple[int, int]:
        return self.padding[0][0], self.padding[1][0]

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        _known(shape, 3, _IMAGE)
        (t, b), (lft, r) = self.padding
        return (shape[0] + t + b, shape[1] + lft + r, shape[2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": [list(p) for p in self.padding],
                "data_format": self.data_format}


def _flat_pair(value: Any) -> bool:
    """``(h, w)`` of two ints (rather than two pairs)."""
    try:
        return len(value) == 2 and all(isinstance(v, int) for v in value)
    except TypeError:
        return False


class Cropping2D(Layer):
    """Removes rows and columns at the borders of each image.

    Args:
        cropping: int, ``(h, w)`` (symmetric) or ``((top, bottom), (left, right))``;
            default ``((0, 0), (0, 0))``.
        data_format: Only ``"channels_last"`` (or None).
    """

    def __init__(self, cropping: Any = ((0, 0), (0, 0)), data_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"Cropping2D '{self.name}'"
        if not isinstance(cropping, int) and _flat_pair(cropping):
            cropping = ((cropping[0],) * 2, (cropping[1],) * 2)
        self.cropping = _pairs(cropping, f"{where}: cropping")
        self.data_format = check_data_format(data_format, where)

    def shift(self) -> tuple[int, int]:
        return -self.cropping[0][0], -self.cropping[1][0]

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        _known(shape, 3, _IMAGE)
        (t, b), (lft, r) = self.cropping
        if t + b >= shape[0] or lft + r >= shape[1]:
            raise ShapeError(f"cropping {self.cropping} leaves nothing of input "
                             f"{(None, *shape)}.")
        return (shape[0] - t - b, shape[1] - lft - r, shape[2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cropping": [list(p) for p in self.cropping],
                "data_format": self.data_format}
