"""Lowering: a function's nodes become a flat list of ops over numbered tensors.

The planner works on a ``nexec.graph.Function`` (the graph part of a ``Model``), never on the
model itself. Nested functions (models) are inlined (each call of a nested model gets its own
tensors), so later stages see one flat graph whatever the user nested.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from nexec.graph import Function, Node, SymbolicTensor, float_dtype, is_integer_dtype
from nexec.layers.base import Layer

__all__ = ["TensorInfo", "FoldedAffine", "Op", "Graph", "lower"]


@dataclass
class TensorInfo:
    """One value of the flat graph. ``shape`` excludes the batch axis."""

    id: int
    name: str
    shape: tuple
    dtype: str
    producer: int | None = None  # index of the op making it; None for model inputs
    consumers: list[int] = field(default_factory=list)
    is_input: bool = False
    output_index: int | None = None  # position among the model outputs

    @property
    def is_integer(self) -> bool:
        """An integer tensor (token ids): no gradient flows into it."""
        return is_integer_dtype(self.dtype)


@dataclass
class FoldedAffine:
    """A per-channel ``y * scale + shift`` op folded into the weights of its producer:
    in inference the producer writes the affine's output with prepared copies of its
    ``weight`` and ``bias`` parameters, scaled and shifted."""

    layer: Layer  # the folded layer (its parameters give scale and shift)
    weight: str  # the producer's parameter names
    weight_shape: tuple
    bias: str
    channels: int

    @property
    def kind(self) -> str:
        return type(self.layer).__name__


@dataclass
class Op:
    """One forward step: a layer applied to tensors; ``activation`` may be fused in.

    ``output`` is the layer's (first) output; a layer with several outputs (a recurrent
    layer with ``return_state=True``: the output, then its final states) lists the others
    in ``more_outputs``. Fusion and the views of ``nexec.planner.aliasing`` apply to
    single-output ops only; every other stage treats each output as a tensor of its own.
    """

    index: int
    layer: Layer
    inputs: list[int]
    output: int
    activation: str = "linear"
    fused: list[str] = field(default_factory=list)  # names of Activation layers merged in
    #: The tensor whose zeros mark the padding of input 0 (its Keras mask), for a layer that
    #: consumes masks (``consumes_mask``: recurrent layers, GlobalAveragePooling1D,
    #: BatchNormalization; a layer that only passes the mask on needs none); None when the
    #: input carries no mask. Its value stays live until this op's backward (``liveness``).
    mask: int | None = None
    more_outputs: list[int] = field(default_factory=list)
    #: Inference only: the per-channel affine op (BatchNormalization) folded into this op's
    #: weights (``nexec.planner.fusion.fold_channel_affines``); None when there is none.
    affine: FoldedAffine | None = None

    @property
    def outputs(self) -> list[int]:
        """Every output tensor of the op, the layer's order."""
        return [self.output, *self.more_outputs]

    @property
    def kind(self) -> str:
        return type(self.layer).__name__


@dataclass
class Graph:
    """The flat graph: ops in execution order and every tensor they touch."""

    ops: list[Op]
    tensors: dict[int, TensorInfo]
    inputs: list[int]
    outputs: list[int]
    #: Per model output, the tensor whose zeros mark its padding (its Keras mask, one id per
    #: loss row), or None: the loss and metrics of a masked output are weighted by the mask
    #: (``nexec.training.masking``), so the ids stay live until the loss step (``liveness``).
    output_masks: list[int | None] = field(default_factory=list)

    @property
    def dtype(self) -> str:
        """The model dtype (parameters, activations, gradients): that of the float tensors,
        inputs first, float32 when none is float. Integer tensors keep their own dtype."""
        ordered = [self.tensors[i].dtype for i in self.inputs] + \
            [self.tensors[o].dtype for op in self.ops for o in op.outputs]
        return float_dtype(ordered)

    def new_tensor(self, name: str, shape: tuple, dtype: str) -> int:
        tid = len(self.tensors)
        self.tensors[tid] = TensorInfo(tid, name, tuple(shape), dtype)
        return tid


def lower(function: Function) -> Graph:
    """Flattens ``function`` (a ``Model``; nested models inlined) into a :class:`Graph`."""
    g = Graph([], {}, [], [], [])
    env: dict[int, int] = {}
    for t in function.inputs:
        tid = g.new_tensor(t.producer.layer.name, t.feature_shape, t.dtype)
        g.tensors[tid].is_input = True
        env[t.id] = tid
        g.inputs.append(tid)
    _lower_into(g, function, env)
    for i, t in enumerate(function.outputs):
        g.outputs.append(env[t.id])
        if g.tensors[env[t.id]].output_index is None:
            g.tensors[env[t.id]].output_index = i
        g.output_masks.append(_mask_tensor(g, t.mask, env))
    return g


def _mask_tensor(g: Graph, source: SymbolicTensor | None, env: dict[int, int]) -> int | None:
    """The tensor of mask source ``source``, lowered now if it is a mask made only as a mask
    (``nexec.layers.mask_combine``: the OR of a merge's different masks, no model layer reads
    it), its own sources first; None for no mask or one outside this function."""
    if source is None:
        return None
    if source.id not in env:
        node = source.node
        if node is None or not node.inputs or not getattr(node.layer, "makes_mask", False):
            return None
        for s in node.inputs:
            if _mask_tensor(g, s, env) is None:
                return None
        _lower_node(g, node, env)
    return env[source.id]


def _lower_into(g: Graph, function: Function, env: dict[int, int]) -> None:
    for node in function.nodes:
        layer = node.layer
        if not node.inputs:  # InputLayer: bound by the caller
            continue
        ins = [env[t.id] for t in node.inputs]
        if isinstance(layer, Function):
            inner = {t.id: tid for t, tid in zip(layer.inputs, ins)}
            _lower_into(g, layer, inner)
            for outer, inner_t in zip(node.outputs, layer.outputs):
                env[outer.id] = inner[inner_t.id]
            continue
        _lower_node(g, node, env)


def _lower_node(g: Graph, node: Node, env: dict[int, int]) -> None:
    """One op for the call ``node`` of a layer (not a nested function)."""
    layer = node.layer
    ins = [env[t.id] for t in node.inputs]
    outs: list[SymbolicTensor] = node.outputs
    source = node.inputs[0].mask if getattr(layer, "consumes_mask", False) else None
    mask = _mask_tensor(g, source, env)  # lowered before this op, which reads it
    tids = [g.new_tensor(layer.name if k == 0 else f"{layer.name}:{k}", t.feature_shape,
                         t.dtype) for k, t in enumerate(outs)]
    op = Op(len(g.ops), layer, ins, tids[0], getattr(layer, "activation", "linear"),
            more_outputs=tids[1:])
    op.mask = mask
    for out, tid in zip(outs, tids):
        g.tensors[tid].producer = op.index
        env[out.id] = tid
    for i in ins:
        g.tensors[i].consumers.append(op.index)
    g.ops.append(op)
