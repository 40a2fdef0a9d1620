"""Fusion: a separate ``Activation`` merges into the op that produces its input.

Allowed when the producer's kernel fuses activations, the producer is linear, and nothing else
reads the pre-activation value (no other consumer, not a model output). The merged op then
writes the activated value directly, and its backward derives the activation gradient from
that output, so the pre-activation tensor disappears from the plan.
"""
from __future__ import annotations

from typing import Callable

from nexec.planner.lowering import Graph

__all__ = ["fuse_activations"]


def fuse_activations(g: Graph, can_fuse: Callable[[str], bool]) -> Graph:
    """Returns ``g`` with every fusable ``Activation`` op merged into its producer.

    Args:
        g: The lowered graph (modified in place and returned).
        can_fuse: Whether the kernel of an op kind (layer type name) fuses activations.
    """
    removed: set[int] = set()
    for op in g.ops:
        if op.kind != "Activation":
            continue
        (src,) = op.inputs
        t = g.tensors[src]
        if t.producer is None or t.output_index is not None or len(t.consumers) != 1:
            continue
        producer = g.ops[t.producer]
        if producer.index in removed or producer.activation != "linear" \
                or not can_fuse(producer.kind):
            continue
        producer.activation = op.activation
        producer.fused.append(op.layer.name)
        producer.output = op.output
        g.tensors[op.output].producer = producer.index
        del g.tensors[src]
        removed.add(op.index)
    if removed:
        _renumber(g, removed)
    return g


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
