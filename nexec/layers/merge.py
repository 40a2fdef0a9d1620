"""Merge layers: Add (residual connections) and Concatenate (parallel branches)."""
from __future__ import annotations

from typing import Any

from nexec.errors import ShapeError
from nexec.layers.base import Layer, Shape

__all__ = ["Add", "Concatenate"]


def _fmt(shapes: list[Shape]) -> str:
    return ", ".join(str((None, *s)) for s in shapes)


class Add(Layer):
    """Sums two or more tensors of one shape, e.g. a residual connection.

    Example:
        >>> from nexec import Input, layers
        >>> a, b = Input(shape=(8,)), Input(shape=(8,))
        >>> layers.Add()([a, b]).shape
        (None, 8)
    """

    num_inputs = None

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        first = input_shapes[0]
        if any(s != first for s in input_shapes[1:]):
            raise ShapeError(f"inputs must all have one shape, got {_fmt(input_shapes)}.")
        return first


class Concatenate(Layer):
    """Joins tensors along ``axis`` (default the last, the channels).

    Args:
        axis: Axis to join along, counting the batch axis as 0; negative counts from the end.
    """

    num_inputs = None

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = int(axis)

    def feature_axis(self, rank: int) -> int:
        """The axis in feature-shape terms (batch axis removed)."""
        if self.axis == 0 or self.axis == -(rank + 1):
            raise ShapeError("cannot concatenate along the batch axis (axis 0).")
        axis = self.axis if self.axis < 0 else self.axis - 1
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank:
            raise ShapeError(f"axis {self.axis} is out of range for inputs of rank {rank + 1}.")
        return axis

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        rank = len(input_shapes[0])
        if any(len(s) != rank for s in input_shapes):
            raise ShapeError(f"inputs must have one rank, got {_fmt(input_shapes)}.")
        axis = self.feature_axis(rank)
        for d in range(rank):
            if d != axis and len({s[d] for s in input_shapes}) > 1:
                raise ShapeError(f"inputs must match on every axis but the concat axis "
                                 f"{self.axis}, got {_fmt(input_shapes)}.")
        if any(s[axis] is None for s in input_shapes):
            raise ShapeError(f"concat axis sizes must be known, got {_fmt(input_shapes)}.")
        out = list(input_shapes[0])
        out[axis] = sum(s[axis] for s in input_shapes)
        return tuple(out)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}
