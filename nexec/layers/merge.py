"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum (elementwise over inputs
of one shape, any rank), Concatenate, Dot, and Keras' functional aliases (``add``...)."""
from __future__ import annotations

from typing import Any

from nexec.errors import GraphError, ShapeError
from nexec.graph import SymbolicTensor
from nexec.layers.base import Layer, Shape
from nexec.layers.mask_combine import check_mask_shapes, mask_or

__all__ = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
           "Dot", "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate",
           "dot"]


def _fmt(shapes: list[Shape]) -> str:
    return ", ".join(str((None, *s)) for s in shapes)


class _MergesMasks(Layer):
    """Keras 3's masks through a merge (``Merge.compute_mask``): when every input carries a
    mask, the output's is their OR; when one input carries none, the output has none.

    nexec represents a mask by its source (the ids of an ``Embedding(mask_zero=True)``): the
    inputs' one source when they share it (branches joined again), else the OR computed at
    run time by a :class:`~nexec.layers.mask_combine.MaskCombine` op."""

    supports_masking = True
    #: Keras replaces the values of a masked input at its padded steps (Multiply by 1,
    #: Maximum and Minimum by the other inputs'). nexec computes the plain merge, which
    #: agrees with Keras at every step a reader uses only when all inputs share one mask
    #: source, so other masked inputs are refused.
    substitutes_masked_values = False

    def _check_masks(self, tensors: list[SymbolicTensor]) -> None:
        masks = [t.mask for t in tensors]
        if all(m is not None for m in masks):
            check_mask_shapes([m for m in dict.fromkeys(masks) if m is not None], self)
        if not self.substitutes_masked_values or all(m is None for m in masks):
            return
        sources = {id(m) for m in masks}
        if None in masks or len(sources) > 1:
            kind = type(self).__name__
            how = "by 1" if kind == "Multiply" else "by another input's values"
            what = ("masked and unmasked inputs" if None in masks else
                    "inputs masked by different sources (" + ", ".join(
                        repr(m.name) for m in dict.fromkeys(masks) if m is not None) + ")")
            raise GraphError(
                f"Layer '{self.name}' ({kind}): its inputs are {what}. Keras 3's {kind} "
                f"replaces a masked input's values at its padded steps ({how}) before "
                "merging, which nexec does not implement yet; it supports masked inputs of "
                f"{kind} that all share one mask source. Add, Subtract, Average and "
                "Concatenate take any masks.")

    def compute_mask(self, inputs: Any, previous_mask: Any) -> SymbolicTensor | None:
        """Keras' ``Merge``: the OR of the inputs' masks, none if an input has none."""
        masks = list(previous_mask)
        if any(m is None for m in masks):
            return None
        return mask_or(list(dict.fromkeys(masks)), self)


class Add(_MergesMasks):

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


class _Elementwise(_MergesMasks):
    """An elementwise merge of two or more tensors of one shape (any rank)."""

    num_inputs = None

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        first = input_shapes[0]
        if any(s != first for s in input_shapes[1:]):
            raise ShapeError(f"inputs must all have one shape, got {_fmt(input_shapes)}.")
        return first


class Subtract(_Elementwise):
    """``inputs[0] - inputs[1]``; exactly two tensors of one shape.

    Example:
        >>> from nexec import Input, layers
        >>> a, b = Input(shape=(8,)), Input(shape=(8,))
        >>> layers.Subtract()([a, b]).shape
        (None, 8)
    """

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        if len(input_shapes) != 2:
            raise ShapeError(f"takes exactly 2 inputs, got {len(input_shapes)}.")
        return super().compute_output_shape(input_shapes)


class Multiply(_Elementwise):
    """Elementwise product of two or more tensors of one shape."""

    substitutes_masked_values = True


class Average(_Elementwise):
    """Elementwise mean of two or more tensors of one shape."""


class Maximum(_Elementwise):
    """Elementwise maximum of two or more tensors of one shape.

    At a tie the whole gradient goes to the first input attaining the maximum (TensorFlow's
    rule; JAX and PyTorch split it).
    """

    substitutes_masked_values = True


class Minimum(_Elementwise):
    """Elementwise minimum of two or more tensors; ties as :class:`Maximum`."""

    substitutes_masked_values = True


class Dot(Layer):
    """Dot product of the samples of two 2-D tensors: ``(batch, n), (batch, n) -> (batch, 1)``.

    Args:
        axes: The axis of each input to contract, an int or a pair; for 2-D inputs 1 or -1
            (the only axis besides the batch).
        normalize: L2-normalise each sample first (``x / sqrt(max(sum(x**2), 1e-12))``), so
            the output is the cosine similarity.
    """

    num_inputs = 2
    supports_masking = True  # Keras' Dot drops a mask without a warning (its compute_mask)

    def __init__(self, axes: int | tuple | list, normalize: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pair = tuple(axes) if isinstance(axes, (tuple, list)) else (axes, axes)
        if len(pair) != 2 or not all(isinstance(a, int) and not isinstance(a, bool)
                                     for a in pair):
            raise ValueError(f"Dot '{self.name}': axes must be an int or a pair of ints, "
                             f"got {axes!r}.")
        self.axes = axes if isinstance(axes, int) else list(pair)
        self._pair = pair
        self.normalize = bool(normalize)

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        if len(input_shapes) != 2:
            raise ShapeError(f"takes exactly 2 inputs, got {len(input_shapes)}.")
        a, b = input_shapes
        if len(a) != 1 or len(b) != 1:
            raise ShapeError(f"nexec's Dot takes 2-D inputs (batch, n) only, got "
                             f"{_fmt(input_shapes)}.")
        if any(ax not in (1, -1) for ax in self._pair):
            raise ShapeError(f"axes {self.axes!r} must be 1 or -1 for 2-D inputs.")
        if a[0] != b[0] or a[0] is None:
            raise ShapeError(f"the contracted axes must have one known size, "
                             f"got {_fmt(input_shapes)}.")
        return (1,)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


class Concatenate(_MergesMasks):
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

    def _check_masks(self, tensors: list[SymbolicTensor]) -> None:
        super()._check_masks(tensors)
        if all(t.mask is None for t in tensors):
            return
        rank = len(tensors[0].feature_shape)
        try:
            last = self.feature_axis(rank) == rank - 1
        except ShapeError:
            return  # compute_output_shape reports the axis
        if not last:
            raise GraphError(
                f"Layer '{self.name}' (Concatenate): joining masked tensors along axis "
                f"{self.axis}: Keras 3 joins their masks along it too, nexec supports masked "
                "inputs along the last axis (the features) only.")

    def compute_mask(self, inputs: Any, previous_mask: Any) -> SymbolicTensor | None:
        """Keras 3: along the features, a step is valid where any input's is (``any`` over
        the joined masks), and an unmasked input is valid everywhere: the OR of the masks
        when every input carries one, else none (all steps valid)."""
        masks = list(previous_mask)
        if any(m is None for m in masks):
            return None
        return mask_or(list(dict.fromkeys(masks)), self)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


# --- Keras' functional aliases: ``layers.add([a, b])`` is ``layers.Add()([a, b])``. -----------

def add(inputs: list, **kwargs: Any) -> Any:
    """Functional form of :class:`Add`."""
    return Add(**kwargs)(inputs)


def subtract(inputs: list, **kwargs: Any) -> Any:
    """Functional form of :class:`Subtract`."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs: list, **kwargs: Any) -> Any:
    """Functional form of :class:`Multiply`."""
    return Multiply(**kwargs)(inputs)


def average(inputs: list, **kwargs: Any) -> Any:
    """Functional form of :class:`Average`."""
    return Average(**kwargs)(inputs)


def maximum(inputs: list, **kwargs: Any) -> Any:
    """Functional form of :class:`Maximum`."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs: list, **kwargs: Any) -> Any:
    """Functional form of :class:`Minimum`."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs: list, axis: int = -1, **kwargs: Any) -> Any:
    """Functional form of :class:`Concatenate`."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs: list, axes: int | tuple | list = -1, normalize: bool = False,
        **kwargs: Any) -> Any:
    """Functional form of :class:`Dot`."""
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
