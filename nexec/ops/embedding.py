"""Embedding on each device: a gather of rows, and a scatter-add into the table's gradient."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from nexec.ops.base import BoundCall, Call, rows, view_2d
from nexec.ops.builtin import BuiltinKernel

__all__ = ["OP_KERNEL_CLASSES", "EmbeddingKernel"]


def _id_column(ids: Any) -> Any:
    """Every id of the batch as a ``(rows, 1)`` column, in order."""
    return view_2d(ids, int(np.prod(tuple(ids.shape))), 1)


def _naming(fn: Callable[..., Any], layer: Any) -> Callable[..., Any]:
    """``fn``, with a kernel's ValueError (a bad id) re-raised naming the layer."""
    def run(*args: Any) -> None:
        try:
            fn(*args)
        except ValueError as e:
            raise ValueError(f"Layer '{layer.name}' (Embedding, input_dim={layer.input_dim}): "
                             f"{e}; ids must be in [0, {layer.input_dim}).") from None
    run.__wrapped__ = fn  # type: ignore[attr-defined]  # what runtime/wholestep.py compiles
    return run


class EmbeddingKernel(BuiltinKernel):
    """Gathers rows of ``embeddings``; backward zeroes its gradient and adds rows in.

    Backward reads the ids (``saves_inputs``) but not the output. The ids get no gradient: a
    float id tensor that has a gradient buffer gets zeros.
    """

    layer_type = "Embedding"
    saves_inputs = True
    saves_output = False
    strided_output = True

    def forward(self, call: Call) -> list[BoundCall]:
        fn = _naming(self.k.embedding_forward, call.layer)
        return [(fn, (_id_column(call.inputs[0]), call.params["embeddings"],
                      rows(call.output)))]

    def backward(self, call: Call) -> list[BoundCall]:
        fn = _naming(self.k.embedding_backward, call.layer)
        calls: list[BoundCall] = [(fn, (_id_column(call.inputs[0]), rows(call.d_output),
                                        call.d_params["embeddings"]))]
        if call.d_inputs and call.d_inputs[0] is not None:
            calls.append((self.k.fill_zero, (rows(call.d_inputs[0]),)))
        return calls


OP_KERNEL_CLASSES = (EmbeddingKernel,)
