"""Deterministic topological order of the nodes that produce some tensors."""
from __future__ import annotations

from nexec.graph import Node, SymbolicTensor

__all__ = ["topological_order"]


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
