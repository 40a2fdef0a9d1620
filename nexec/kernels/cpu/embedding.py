"""Kernels for Embedding: a gather of rows in forward, a scatter-add of rows in backward.

Ids arrive as a ``(rows, 1)`` column (every id of the batch, in order) of any integer or
float dtype (whole numbers): Keras takes float ids too. Every id is checked against the
table before anything is written, so a bad id leaves the output untouched.
"""
from __future__ import annotations

from nexec.kernels.jit import kernel

__all__ = ["embedding_forward", "embedding_backward"]


@kernel
def _check_ids(ids, n_ids):
    for r in range(ids.shape[0]):
        v = ids[r, 0]
        if not (v >= 0 and v < n_ids):  # NaN fails too
            raise ValueError("embedding: an id is outside [0, input_dim)")


@kernel
def embedding_forward(ids, table, out):
    """out[r, :] = table[ids[r, 0], :].

    Args:
        ids: 2-D ``(rows, 1)`` ids, integer or whole-number float.
        table: 2-D ``(input_dim, output_dim)`` embeddings.
        out: 2-D ``(rows, output_dim)``, may be row-strided.

    Raises:
        ValueError: An id outside ``[0, input_dim)``; nothing is written then.
    """
    n = ids.shape[0]
    d = table.shape[1]
    if out.shape[0] != n or out.shape[1] != d:
        raise ValueError("embedding_forward: out must be (rows, output_dim)")
    _check_ids(ids, table.shape[0])
    for r in range(n):
        src = table[int(ids[r, 0])]
        o = out[r]
        for j in range(d):
            o[j] = src[j]


@kernel
def embedding_backward(ids, d_out, d_table):
    """d_table = 0, then d_table[ids[r, 0], :] += d_out[r, :] for r in order (deterministic).

    Args:
        ids: 2-D ``(rows, 1)`` ids, as in forward.
        d_out: 2-D ``(rows, output_dim)`` gradient of the output, may be row-strided.
        d_table: 2-D ``(input_dim, output_dim)``, overwritten with the embeddings' gradient.

    Raises:
        ValueError: An id outside ``[0, input_dim)``; nothing is written then.
    """
    n = ids.shape[0]
    d = d_table.shape[1]
    if d_out.shape[0] != n or d_out.shape[1] != d:
        raise ValueError("embedding_backward: d_out must be (rows, output_dim)")
    _check_ids(ids, d_table.shape[0])
    for v in range(d_table.shape[0]):
        row = d_table[v]
        for j in range(d):
            row[j] = 0
    for r in range(n):
        dst = d_table[int(ids[r, 0])]
        g = d_out[r]
        for j in range(d):
            dst[j] += g[j]
