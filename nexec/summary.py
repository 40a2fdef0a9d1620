"""``model.summary()``: the Keras table of layers, output shapes and parameter counts."""
from __future__ import annotations

from typing import TYPE_CHECKING

from nexec.layers.core import InputLayer

if TYPE_CHECKING:  # pragma: no cover
    from nexec.model import Model

__all__ = ["summary_text", "is_sequential_like"]


def is_sequential_like(model: Model) -> bool:
    """True for chains (each node one input, one node per layer): no 'Connected to' column."""
    nodes = [n for n in model._graph_nodes if n.inputs]
    if len({id(n.layer) for n in nodes}) != len(nodes):
        return False
    consumed: set[int] = set()
    for n in nodes:
        if len(n.inputs) != 1 or n.inputs[0].id in consumed:
            return False
        consumed.add(n.inputs[0].id)
    return len(model.inputs) == 1 and len(model.outputs) == 1


def _shape(layer, model: Model) -> str:  # noqa: ANN001
    nodes = [n for n in model._graph_nodes if n.layer is layer]
    shapes = {tuple(tuple(t.shape) for t in n.outputs) for n in nodes}
    if len(shapes) != 1:
        return "multiple"
    (outs,) = shapes
    return str(outs[0]) if len(outs) == 1 else ", ".join(str(s) for s in outs)


def _connections(layer, model: Model) -> list[str]:  # noqa: ANN001
    out = []
    for n in model._graph_nodes:
        if n.layer is layer:
            for t in n.inputs:
                out.append(f"{t.node.layer.name}[{t.node.index}][{t.index}]")
    return out or ["-"]


def summary_text(model: Model, line_length: int | None = None) -> str:
    """The summary as text, with Keras' columns and thousands separators."""
    from nexec.model import Sequential

    chain = is_sequential_like(model)
    layers = model.layers
    if not isinstance(model, Sequential):
        inputs = [t.node.layer for t in model.inputs]
        layers = inputs + [l for l in layers if l not in inputs]
    else:
        layers = [l for l in layers if not isinstance(l, InputLayer)]
    headers = ["Layer (type)", "Output Shape", "Param #"] + ([] if chain else ["Connected to"])
    rows = []
    for layer in layers:
        conn = [] if chain else _connections(layer, model)
        rows.append([f"{layer.name} ({type(layer).__name__})", _shape(layer, model),
                     f"{layer.count_params():,}"] + (conn[:1] if conn else []))
        for extra in conn[1:]:
            rows.append(["", "", "", extra])
    widths = [max(len(h), *(len(r[i]) for r in rows)) + 3 if rows else len(h) + 3
              for i, h in enumerate(headers)]
    width = line_length or sum(widths)
    if line_length:
        widths[0] += max(0, line_length - sum(widths))

    def fmt(cells: list[str]) -> str:
        return "".join(f" {c:<{w - 1}}" for c, w in zip(cells, widths)).rstrip()

    trainable = sum(w.size for w in model.trainable_weights)
    total = model.count_params()
    lines = [f'Model: "{model.name}"', "_" * width, fmt(headers), "=" * width]
    for i, r in enumerate(rows):
        lines.append(fmt(r))
        if not chain and i + 1 < len(rows) and rows[i + 1][0]:
            lines.append("_" * width)
    lines += ["=" * width, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}", "_" * width]
    return "\n".join(lines)
