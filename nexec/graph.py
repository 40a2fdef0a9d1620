"""Graph capture: symbolic tensors and the nodes that connect them.

Calling a layer on :class:`SymbolicTensor` objects computes nothing; it records a
:class:`Node` (one call of one layer) and returns new symbolic tensors. ``Model`` later walks
these nodes back from its outputs.
"""
from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from nexec.layers.base import Layer

__all__ = ["SymbolicTensor", "Node", "Input", "is_symbolic", "clear_session", "unique_name"]

_ids = itertools.count()
_name_counts: dict[str, int] = {}


def unique_name(prefix: str) -> str:
    """Keras-style auto names: ``dense``, then ``dense_1``, ``dense_2``, ..."""
    n = _name_counts.get(prefix, 0)
    _name_counts[prefix] = n + 1
    return prefix if n == 0 else f"{prefix}_{n}"


def clear_session() -> None:
    """Restarts auto-naming, as ``keras.backend.clear_session()`` does."""
    _name_counts.clear()


class SymbolicTensor:
    """A tensor of a graph under construction: a shape, a dtype and the node making it.

    ``shape`` follows Keras and includes the unknown batch axis (``(None, 32)``);
    ``feature_shape`` is the same without it, which is what layers reason about.
    """

    def __init__(self, feature_shape: tuple, dtype: str, node: Node | None = None,
                 index: int = 0) -> None:
        self.feature_shape = tuple(feature_shape)
        self.dtype = dtype
        self.node = node
        self.index = index
        self.id = next(_ids)

    @property
    def shape(self) -> tuple:
        return (None, *self.feature_shape)

    @property
    def name(self) -> str:
        if self.node is None:
            return f"tensor_{self.id}"
        suffix = "" if len(self.node.outputs) == 1 else f":{self.index}"
        return f"{self.node.layer.name}{suffix}"

    def __repr__(self) -> str:
        return f"<SymbolicTensor {self.name!r} shape={self.shape} dtype={self.dtype}>"

    # Symbolic tensors are graph handles: identity, not value, decides equality.
    __hash__ = object.__hash__


class Node:
    """One call of a layer: which tensors went in, which came out."""

    def __init__(self, layer: Layer, inputs: list[SymbolicTensor],
                 outputs: list[SymbolicTensor]) -> None:
        self.layer = layer
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.id = next(_ids)
        for i, t in enumerate(self.outputs):
            t.node = self
            t.index = i

    @property
    def index(self) -> int:
        """Which call of its layer this node is (0 for the first)."""
        return self.layer._nodes.index(self)

    def __repr__(self) -> str:
        ins = ", ".join(t.name for t in self.inputs)
        return f"<Node {self.layer.name}({ins})>"


def is_symbolic(x: Any) -> bool:
    return isinstance(x, SymbolicTensor)


def Input(shape: tuple | int, name: str | None = None, dtype: str = "float32",
          batch_size: int | None = None) -> SymbolicTensor:
    """Creates a model input, as ``keras.Input``.

    Args:
        shape: Shape of one sample, without the batch axis, e.g. ``(64,)``.
        name: Name of the input (and of its ``InputLayer``).
        dtype: ``"float32"`` (default) or ``"float64"``.
        batch_size: Accepted for Keras compatibility; the batch axis stays flexible.

    Example:
        >>> from nexec import Input
        >>> Input(shape=(64,)).shape
        (None, 64)
    """
    from nexec.layers.core import InputLayer

    return InputLayer(shape=shape, name=name, dtype=dtype).output
