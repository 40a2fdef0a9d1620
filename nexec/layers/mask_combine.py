"""The mask of a merge of tensors masked by different sources, as a tensor of its own.

nexec represents a Keras mask by its source: the integer ids of an
``Embedding(mask_zero=True)``, Keras' mask being ``ids != 0``. A merge of tensors masked by
two different sources has, in Keras 3, the OR of their masks (``Merge.compute_mask``;
``Concatenate`` along the features: ``any`` over the joined masks). That mask has no ids of
its own, so :func:`mask_or` makes one: a :class:`MaskCombine` node whose int32 output is 1
where any source is nonzero, 0 elsewhere; every consumer reads it exactly as it reads ids
(``mask != 0``).

The node is not part of the model's layers (``Model.layers``, saving, the summary list only
the user's layers, as Keras'): the planner lowers it to an op when a consumer of the mask
(a recurrent layer, ``GlobalAveragePooling1D``, a masked loss) first needs it
(``nexec.planner.lowering``).
"""
from __future__ import annotations

from typing import Any

from nexec.errors import GraphError
from nexec.graph import Node, SymbolicTensor
from nexec.layers.base import Layer, Shape

__all__ = ["MaskCombine", "mask_or", "check_mask_shapes", "MASK_DTYPE"]

#: The dtype of a combined mask (any integer dtype reads the same: ``!= 0``).
MASK_DTYPE = "int32"


class MaskCombine(Layer):
    """``out = (m0 != 0) | (m1 != 0) | ...`` as 0/1 int32: the OR of masks of one shape.

    Made by :func:`mask_or` only; it has no parameters and no gradient.
    """

    num_inputs = None
    accepts_ids = True
    #: Its output is only ever a mask: the planner lowers it when a mask reader needs it.
    makes_mask = True
    #: The merge whose output mask this is (for plans and messages).
    merge_name: str = ""

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        first = input_shapes[0]
        if any(tuple(s) != tuple(first) for s in input_shapes[1:]):
            raise GraphError(f"masks of different shapes: {input_shapes}.")
        return tuple(first)


def check_mask_shapes(sources: list[SymbolicTensor], merge: Any) -> None:
    """Raises GraphError unless the masks ``sources`` of ``merge``'s inputs have one shape."""
    if len({tuple(s.feature_shape) for s in sources}) > 1:
        raise GraphError(
            f"Layer '{merge.name}' ({type(merge).__name__}): its inputs' masks have different "
            f"shapes ({', '.join(f'{s.name!r} {s.shape}' for s in sources)}); Keras 3 ORs "
            "them elementwise, which needs one shape.")


def mask_or(sources: list[SymbolicTensor], merge: Any) -> SymbolicTensor:
    """The mask that is True where any of ``sources`` is (each an ids tensor or a combined
    mask): the sole source itself, else a new :class:`MaskCombine` tensor.

    Args:
        sources: The distinct mask sources, in the merge's input order.
        merge: The merge layer whose output gets this mask (named in messages).

    Raises:
        GraphError: The masks have different shapes (Keras could not OR them either).
    """
    if len(sources) == 1:
        return sources[0]
    check_mask_shapes(sources, merge)
    layer = MaskCombine(name=f"{merge.name}_mask")
    layer.merge_name = merge.name
    out = SymbolicTensor(sources[0].feature_shape, MASK_DTYPE)
    layer._nodes.append(Node(layer, list(sources), [out]))
    layer.built = True
    return out
