"""Fusion: an op that only applies an activation merges into the op producing its input.

An op folds when its kernel declares ``applies_activation_only`` (the built-in
``Activation``; plugin ops may declare it too). Allowed when the producer's kernel fuses
activations, the producer is linear, and nothing else reads the pre-activation value (no
other consumer, not a model output). The merged op then writes the activated value directly,
and its backward derives the activation gradient from that output, so the pre-activation
tensor disappears from the plan.

That last step needs the activation's derivative as a function of its output, which GELU
and SiLU do not have (``Activation.needs_input``): those never fold, and
:func:`split_input_activations` moves them out of any fusing op that was given one
(``Dense(activation="gelu")``) into an ``Activation`` op of their own, whose kernel keeps its
input for backward.

In inference a second fusion comes first: an op whose kernel ``applies_channel_affine``
(BatchNormalization: ``y = x * scale + shift`` per channel, from its moving statistics) folds
into the weights of its producer when that kernel ``folds_channel_affine`` (Conv2D, Dense),
the producer is linear and nothing else reads its output (:func:`fold_channel_affines`).
Training keeps the affine op: its statistics come from the batch.
"""
from __future__ import annotations

from collections.abc import Callable

from nexec.planner.lowering import FoldedAffine, Graph, Op

__all__ = ["fuse_activations", "fold_channel_affines", "split_input_activations"]


def fuse_activations(g: Graph, can_fuse: Callable[[str], bool],
                     folds: Callable[[str], bool] | None = None) -> Graph:
    """Returns ``g`` with every foldable activation op merged into its producer.

    Args:
        g: The lowered graph (modified in place and returned).
        can_fuse: Whether the kernel of an op kind (layer type name) fuses activations.
        folds: Whether an op kind only applies its activation (its kernel's
            ``applies_activation_only``); by default what the registered kernels declare.
    """
    if folds is None:
        folds = _declared_activation_only
    removed: set[int] = set()
    for op in g.ops:
        if not folds(op.kind):
            continue
        if _needs_input(op.activation):
            continue
        producer = _sole_producer(g, op, removed)
        if producer is None or producer.activation != "linear" \
                or producer.more_outputs or not can_fuse(producer.kind):
            continue
        producer.activation = op.activation
        _merge(g, producer, op, removed)
    if removed:
        _renumber(g, removed)
    return g


def fold_channel_affines(g: Graph, params: dict[str, dict[str, tuple]],
                         folds_into: Callable[[str], tuple[str, str] | None],
                         is_affine: Callable[[str], bool]) -> Graph:
    """Returns the inference graph ``g`` with every per-channel affine op folded into its
    producer, which then writes the affine's output (``Op.affine`` records what to fold).

    Args:
        g: The lowered graph of inference steps (modified in place and returned).
        params: Parameter shapes per layer name (``infer_shapes``).
        folds_into: The ``(weight, bias)`` parameter names an op kind's kernel folds a
            following affine into (``folds_channel_affine``), or None.
        is_affine: Whether an op kind's kernel ``applies_channel_affine``.
    """
    removed: set[int] = set()
    for op in g.ops:
        if not is_affine(op.kind) or op.activation != "linear" or op.more_outputs \
                or len(op.inputs) != 1:
            continue
        producer = _sole_producer(g, op, removed)
        if producer is None or producer.activation != "linear" or producer.more_outputs \
                or producer.affine is not None:
            continue
        names = folds_into(producer.kind)
        shapes = params.get(producer.layer.name, {})
        if names is None or names[0] not in shapes:
            continue
        weight, bias = names
        producer.affine = FoldedAffine(op.layer, weight, tuple(shapes[weight]), bias,
                                       g.tensors[op.output].shape[-1])
        _merge(g, producer, op, removed)
    if removed:
        _renumber(g, removed)
    return g


def _sole_producer(g: Graph, op: Op, removed: set[int]) -> Op | None:
    """The op producing ``op``'s one input, when nothing else reads that value (no other
    consumer, not a model output) and it is still in the graph; else None."""
    (src,) = op.inputs
    t = g.tensors[src]
    if t.producer is None or t.output_index is not None or len(t.consumers) != 1:
        return None
    producer = g.ops[t.producer]
    return None if producer.index in removed else producer


def _merge(g: Graph, producer: Op, op: Op, removed: set[int]) -> None:
    """``op`` merged into ``producer``, which writes ``op``'s output from now on."""
    (src,) = op.inputs
    producer.fused.append(op.layer.name)
    producer.output = op.output
    g.tensors[op.output].producer = producer.index
    del g.tensors[src]
    removed.add(op.index)


def _needs_input(name: str) -> bool:
    from nexec.plugins import registry

    return bool(getattr(registry().activation(name), "needs_input", False))


def split_input_activations(g: Graph, can_fuse: Callable[[str], bool]) -> Graph:
    """Gives every activation whose derivative needs its input an op of its own.

    An op whose kernel fuses activations and whose activation is such (GELU, SiLU) becomes
    linear, followed by an ``Activation`` op (named ``<layer>/<activation>``) that writes
    the original output tensor. Runs before shape inference, like lowering.

    Args:
        g: The lowered graph (modified in place and returned).
        can_fuse: Whether the kernel of an op kind (layer type name) fuses activations.
    """
    from nexec.layers.core import Activation
    from nexec.planner.lowering import Op

    ops = []
    for op in g.ops:
        ops.append(op)
        if op.activation in (None, "linear") or op.more_outputs \
                or not _needs_input(op.activation) or not can_fuse(op.kind):
            continue
        out = g.tensors[op.output]
        pre = g.new_tensor(f"{out.name}/pre", out.shape, out.dtype)
        layer = Activation(op.activation, name=f"{op.layer.name}/{op.activation}")
        ops.append(Op(-1, layer, [pre], op.output, op.activation))
        op.output, op.activation = pre, "linear"
    if len(ops) == len(g.ops):
        return g
    for i, op in enumerate(ops):
        op.index = i
    for t in g.tensors.values():
        t.producer, t.consumers = None, []
    for op in ops:
        for o in op.outputs:
            g.tensors[o].producer = op.index
        for i in op.inputs:
            g.tensors[i].consumers.append(op.index)
    g.ops = ops
    return g


def _declared_activation_only(kind: str) -> bool:
    """Whether the kernels registered for layer type ``kind`` declare
    ``applies_activation_only`` (what an op computes is the same on every device)."""
    from nexec.plugins import registry

    return any(k.applies_activation_only for (t, _), k in registry().kernels.items()
               if t == kind)


def _renumber(g: Graph, removed: set[int]) -> None:
    keep = [op for op in g.ops if op.index not in removed]
    new_index = {op.index: i for i, op in enumerate(keep)}
    for op in keep:
        op.index = new_index[op.index]
    for t in g.tensors.values():
        if t.producer is not None:
            t.producer = new_index[t.producer]
        t.consumers = [new_index[c] for c in t.consumers if c in new_index]
    g.ops = keep
