"""Shape inference over the flat graph, checked against what graph capture recorded."""
from __future__ import annotations

from nexec.errors import ShapeError
from nexec.planner.lowering import Graph

__all__ = ["infer_shapes"]


def infer_shapes(g: Graph) -> dict[str, dict[str, tuple]]:
    """Re-derives every tensor's shape in op order and every parameter's shape.

    Returns the parameter shapes per layer name. Raises :class:`ShapeError` naming the layer
    when a derived shape disagrees with the graph (e.g. weights were replaced by arrays of
    another shape, or a layer's description is inconsistent).
    """
    params: dict[str, dict[str, tuple]] = {}
    for op in g.ops:
        in_shapes = [g.tensors[i].shape for i in op.inputs]
        several = getattr(op.layer, "compute_output_shapes", None)
        outs = [tuple(s) for s in several(in_shapes)] if several is not None \
            else [tuple(op.layer.compute_output_shape(in_shapes))]
        if len(outs) != len(op.outputs):
            raise ShapeError(f"Layer '{op.layer.name}': inferred {len(outs)} output(s) but the "
                             f"graph recorded {len(op.outputs)}.")
        for out, tid in zip(outs, op.outputs):
            if out != g.tensors[tid].shape:
                raise ShapeError(f"Layer '{op.layer.name}': inferred output shape "
                                 f"{(None, *out)} but the graph recorded "
                                 f"{(None, *g.tensors[tid].shape)}.")
        specs = {s.name: tuple(s.shape) for s in op.layer.param_specs(in_shapes)}
        actual = {n: p.shape for n, p in op.layer._params.items()}
        if specs != actual:
            raise ShapeError(f"Layer '{op.layer.name}': parameters should have shapes {specs}, "
                             f"found {actual}.")
        params[op.layer.name] = specs
    return params
