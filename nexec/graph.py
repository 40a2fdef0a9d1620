"""Graph capture: symbolic tensors, the nodes that connect them, and functions of them.

Calling a layer on :class:`SymbolicTensor` objects computes nothing; it records a
:class:`Node` (one call of one layer) and returns new symbolic tensors. A :class:`Function`
(the graph part of ``Model``) walks these nodes back from its outputs.

This module sits below layers: it knows a layer only as the object a node was made by (its
``name``, and its ``_nodes`` for call indices), so nothing here imports ``nexec.layers``.
"""
from __future__ import annotations

import itertools
from typing import Any

from nexec.errors import GraphError

__all__ = ["SymbolicTensor", "Node", "Function", "is_symbolic", "clear_session", "unique_name",
           "topological_order", "FLOAT_DTYPES", "INTEGER_DTYPES", "is_integer_dtype",
           "float_dtype"]

#: The dtypes of parameters, activations and gradients (one per model).
FLOAT_DTYPES = ("float32", "float64")
#: The dtypes of integer tensors (token ids): they flow to the layers that take ids.
INTEGER_DTYPES = ("int32", "int64")


def is_integer_dtype(dtype: str) -> bool:
    """Whether ``dtype`` (a dtype name) is one of nexec's integer tensor dtypes."""
    return dtype in INTEGER_DTYPES


def float_dtype(dtypes: Any) -> str:
    """The floating dtype of a group of tensors: the first float one, else float32.

    This is the *model dtype* rule: parameters, activations and gradients take the dtype of
    the float tensors; integer tensors (ids) keep their own and say nothing about it.
    """
    return next((d for d in dtypes if d in FLOAT_DTYPES), "float32")

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

    ``mask`` is Keras' mask of the tensor, kept symbolic: None, or the integer-id tensor
    whose entries equal to 0 are padding (``Embedding(mask_zero=True)`` makes one). The
    mask's shape is that source's feature shape (for ``(T, D)`` embeddings of ``(T,)`` ids:
    one flag per time step), as ``ids != 0`` is in Keras.
    """

    def __init__(self, feature_shape: tuple, dtype: str, node: Node | None = None,
                 index: int = 0, mask: SymbolicTensor | None = None) -> None:
        self.feature_shape = tuple(feature_shape)
        self.dtype = dtype
        self.node = node
        self.index = index
        self.mask = mask
        self.id = next(_ids)

    @property
    def shape(self) -> tuple:
        return (None, *self.feature_shape)

    @property
    def producer(self) -> Node:
        """The node that made this tensor, for code that needs it set (``node`` may be None).

        Raises:
            GraphError: The tensor was not made by a layer call or ``nexec.Input``.
        """
        if self.node is None:
            raise GraphError(f"Tensor {self.name!r} was not made by a layer call or by "
                             "nexec.Input(...), so it belongs to no graph.")
        return self.node

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
    """One call of a layer: which tensors went in, which came out.

    Args:
        layer: The layer called (a ``nexec.layers.Layer``, or a ``Model``).
        inputs: The tensors it was called on; none for an input node.
        outputs: The tensors it made; each gets this node as its ``node``.
    """

    def __init__(self, layer: Any, inputs: list[SymbolicTensor],
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


def topological_order(outputs: list[SymbolicTensor]) -> list[Node]:
    """Nodes reachable from ``outputs``, each after the nodes making its inputs.

    Depth-first post-order, visiting outputs and each node's inputs in their given order, so
    the same graph gives the same order in every run. Iterative, so deep models do not hit
    Python's recursion limit.
    """
    order: list[Node] = []
    done: set[int] = set()
    for out in outputs:
        if out.node is None or out.node.id in done:
            continue
        stack: list[tuple[Node, int]] = [(out.node, 0)]
        on_stack = {out.node.id}
        while stack:
            node, i = stack[-1]
            if i < len(node.inputs):
                stack[-1] = (node, i + 1)
                parent = node.inputs[i].node
                if parent is not None and parent.id not in done and parent.id not in on_stack:
                    stack.append((parent, 0))
                    on_stack.add(parent.id)
            else:
                stack.pop()
                on_stack.discard(node.id)
                done.add(node.id)
                order.append(node)
    return order


def _flatten_io(value: Any, what: str) -> tuple[list[SymbolicTensor], list[str] | None]:
    """Tensors from a tensor, list or dict; dict keys are kept for dict-style data."""
    if isinstance(value, dict):
        keys = list(value)
        tensors = [value[k] for k in keys]
    elif isinstance(value, (list, tuple)):
        keys, tensors = None, list(value)
    else:
        keys, tensors = None, [value]
    for i, t in enumerate(tensors):
        if not is_symbolic(t):
            raise GraphError(f"Model {what}[{i}] is a {type(t).__name__}, not a symbolic tensor "
                             "from nexec.Input(...) or a layer call.")
    return tensors, keys


def _is_input(t: SymbolicTensor) -> bool:
    """Whether ``t`` is a graph input: made by a node that reads nothing (``Input``)."""
    return t.node is not None and not t.node.inputs


class Function:
    """The graph of a model: input tensors, output tensors and the nodes between them.

    ``Model`` extends it with the Keras layer and training methods; the planner needs only
    this part (``inputs``, ``outputs``, ``nodes``, and nested functions among the layers).

    Args:
        inputs: A tensor from ``nexec.Input``, or a list or dict of them.
        outputs: A tensor, or a list or dict of them, computed from ``inputs``.
        **kwargs: Passed on to the next base class (``Layer`` for a ``Model``).

    Raises:
        GraphError: An input not made by ``Input``, an output needing an input not given,
            an input no output uses, or two different layers with one name.
    """

    #: What plans and messages call it; a ``Model`` has its own name.
    name: str = "function"

    def __init__(self, inputs: Any = None, outputs: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if inputs is not None or outputs is not None:
            self._init_graph(inputs, outputs)

    def _init_graph(self, inputs: Any, outputs: Any) -> None:
        ins, self._input_keys = _flatten_io(inputs, "inputs")
        outs, self._output_keys = _flatten_io(outputs, "outputs")
        if len({t.id for t in ins}) != len(ins):
            dup = next(t for i, t in enumerate(ins) if any(u.id == t.id for u in ins[:i]))
            raise GraphError(f"Model inputs list the tensor {dup.name!r} more than once; each "
                             "Input may be passed to Model(inputs=...) only once.")
        for t in ins:
            if not _is_input(t):
                raise GraphError(f"Model input {t.name!r} is not made by nexec.Input(...); "
                                 "models start from Input tensors.")
        order = topological_order(outs)
        given = {t.id for t in ins}
        reached: set[int] = set()
        for node in order:
            if not node.inputs:
                t = node.outputs[0]
                if t.id not in given:
                    needers = [o.name for o in outs if _depends_on(o, t)]
                    raise GraphError(f"Output(s) {', '.join(needers)} need input {t.name!r} "
                                     f"{t.shape}, which was not passed to Model(inputs=...).")
                reached.add(t.id)
        unused = [f"{t.name} {t.shape}" for t in ins if t.id not in reached]
        if unused:
            raise GraphError(f"Model input(s) {', '.join(unused)} are not used by any output.")
        layers: list[Any] = []
        seen: dict[str, Any] = {}
        for node in order:
            layer = node.layer
            if layer.name in seen and seen[layer.name] is not layer:
                raise GraphError(f"Two different layers are named {layer.name!r}; layer names "
                                 "must be unique within a model.")
            if layer.name not in seen:
                seen[layer.name] = layer
                layers.append(layer)
        leaves: dict[str, Any] = {}
        for leaf in leaf_layers(layers):
            other = leaves.setdefault(leaf.name, leaf)
            if other is not leaf:
                raise GraphError(f"Two different layers are named {leaf.name!r} (one inside a "
                                 "nested model); layer names must be unique within a model.")
        self.inputs: list[SymbolicTensor] = ins
        self.outputs: list[SymbolicTensor] = outs
        self._layers = layers
        self._graph_nodes = order

    @property
    def nodes(self) -> list[Node]:
        """Every node from the inputs to the outputs, in topological order."""
        return list(self._graph_nodes)

    @property
    def layers(self) -> list[Any]:
        return list(self._layers)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Any:
        """A layer by name (or by position in ``layers``)."""
        if index is not None:
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No layer named {name!r} in model '{self.name}'; layers: "
                         f"{', '.join(layer.name for layer in self._layers)}.")

    @property
    def input_names(self) -> list[str]:
        return [t.producer.layer.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.producer.layer.name for t in self.outputs]

    def _leaves(self) -> list[Any]:
        """Every layer inside that is not itself a function, each once, nested ones opened."""
        return leaf_layers(self._layers)


def leaf_layers(layers: list[Any]) -> list[Any]:
    """``layers`` with every nested :class:`Function` replaced by its own leaf layers."""
    out: dict[int, Any] = {}
    for layer in layers:
        for leaf in (layer._leaves() if isinstance(layer, Function) else [layer]):
            out.setdefault(id(leaf), leaf)
    return list(out.values())


def _depends_on(out: SymbolicTensor, t: SymbolicTensor) -> bool:
    return any(n.outputs[0] is t for n in topological_order([out]) if not n.inputs)
