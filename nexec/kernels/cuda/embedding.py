"""CUDA kernels for Embedding: mirrors :mod:`nexec.kernels.cpu.embedding` (same launcher
signatures on device arrays, plus a keyword-only ``stream``).

Forward is one thread per output element. Backward zeroes the gradient table, then each
thread adds one element of ``d_out`` into its row with ``cuda.atomic.add``: rows repeated
in a batch are summed in an unspecified order, so float results can differ in the last bits
from run to run (the CPU kernel adds in row order and is deterministic).

A kernel cannot raise: an id outside ``[0, input_dim)`` gives a zero output row and adds
nothing. ``fit``/``predict`` check every id against ``input_dim`` before the first step
(``nexec.training.data``), so such ids do not reach the kernels through them.
"""
from __future__ import annotations

from typing import Any

from nexec.kernels.cuda.backend import config_1d, cuda, jit

__all__ = ["embedding_forward", "embedding_backward"]


@jit
def _gather(ids, table, out):
    rows = out.shape[0]
    cols = out.shape[1]
    n_ids = table.shape[0]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        r = idx // cols
        j = idx - r * cols
        v = ids[r, 0]
        if v >= 0 and v < n_ids:
            out[r, j] = table[int(v), j]
        else:
            out[r, j] = 0


@jit
def _zero(a):
    rows = a.shape[0]
    cols = a.shape[1]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        i = idx // cols
        a[i, idx - i * cols] = 0


@jit
def _scatter_add(ids, d_out, d_table):
    rows = d_out.shape[0]
    cols = d_out.shape[1]
    n_ids = d_table.shape[0]
    for idx in range(cuda.grid(1), rows * cols, cuda.gridsize(1)):
        r = idx // cols
        j = idx - r * cols
        v = ids[r, 0]
        if v >= 0 and v < n_ids:
            cuda.atomic.add(d_table, (int(v), j), d_out[r, j])


def embedding_forward(ids: Any, table: Any, out: Any, *, stream: Any = 0) -> None:
    """out[r, :] = table[ids[r, 0], :] (a zero row for an id outside the table)."""
    if out.shape[0] != ids.shape[0] or out.shape[1] != table.shape[1]:
        raise ValueError("embedding_forward: out must be (rows, output_dim)")
    n = out.shape[0] * out.shape[1]
    if n:
        blocks, threads = config_1d(n)
        _gather[blocks, threads, stream](ids, table, out)


def embedding_backward(ids: Any, d_out: Any, d_table: Any, *, stream: Any = 0) -> None:
    """d_table = 0, then d_table[ids[r, 0], :] += d_out[r, :] (atomic adds)."""
    if d_out.shape[0] != ids.shape[0] or d_out.shape[1] != d_table.shape[1]:
        raise ValueError("embedding_backward: d_out must be (rows, output_dim)")
    n = d_table.shape[0] * d_table.shape[1]
    if n:
        blocks, threads = config_1d(n)
        _zero[blocks, threads, stream](d_table)
    n = d_out.shape[0] * d_out.shape[1]
    if n:
        blocks, threads = config_1d(n)
        _scatter_add[blocks, threads, stream](ids, d_out, d_table)
