"""CUDA fully connected kernels: a shared-memory tiled GEMM with a fused epilogue.

Mirrors :mod:`nexec.kernels.cpu.dense` (same launcher signatures, device arrays, plus an
optional keyword-only ``stream``).

GEMM (:func:`gemm`, also used by :mod:`.conv`): ``c = act(op(a) @ op(b) + bias)`` where
``op`` optionally transposes (``trans_a``/``trans_b``), so ``x.T @ dz`` and ``dz @ w.T``
read ``x`` and ``w`` in place. Each block computes one ``TILE x TILE`` (16 x 16) tile of
``c`` with ``TILE x TILE // ROWS_PER_THREAD`` = 16 x 4 threads; each thread accumulates
``ROWS_PER_THREAD`` = 4 outputs of one column in registers (``cuda.local.array``), which
keeps 64 threads per block and reuses every shared ``b`` value four times. Per step of
``K``, the block stages a 16 x 16 tile of ``op(a)`` and of ``op(b)`` in shared memory
(padded by one column against bank conflicts), loading them so that consecutive threads
read consecutive addresses whichever operand is transposed. Sizes need not divide the
tile: loads outside the matrices read zeros, stores are bounds-checked; the tile loops
are grid-stride, so any size fits any grid. The epilogue adds the bias and applies
LINEAR/RELU/SIGMOID/TANH to the accumulator before the single store; softmax needs whole
rows, so its GEMM stores ``op(a) @ op(b) + bias`` and a row kernel finishes in place.
The accumulator has the arrays' dtype (float32 GEMMs accumulate in float32, as sgemm
does). The kernel is compiled once per dtype (shared/local array types are compile-time
constants), cached in :func:`_gemm_kernel`.

Performance: a textbook kernel, far from cuBLAS (no double buffering, no tensor cores,
one output column per thread); the design point is correctness and no dependency beyond
Numba. Calling cuBLAS (e.g. through CuPy) for the products and keeping the epilogue
kernels is the obvious upgrade.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from nexec.kernels.activations import LINEAR, ROW_WISE
from nexec.kernels.cuda.activation import act_value, check_act, epilogue_grad, row_activation
from nexec.kernels.cuda.backend import cdiv, cuda, device_array, jit, max_blocks, numba_dtype

__all__ = ["ROWS_PER_THREAD", "TILE", "dense_backward", "dense_forward", "gemm"]

TILE = 16
ROWS_PER_THREAD = 4
_BY = TILE // ROWS_PER_THREAD  # threads per block along y
_PAD = TILE + 1  # shared tiles get one extra column against bank conflicts


@functools.cache
def _gemm_kernel(dtype: np.dtype) -> Any:
    """The tiled GEMM kernel for one dtype (shared and local arrays are typed statically)."""
    dt = numba_dtype(dtype)

    @jit
    def gemm_kernel(a, b, trans_a, trans_b, bias, act, c):
        sa = cuda.shared.array((TILE, _PAD), dt)  # sa[i, k] of op(a)
        sb = cuda.shared.array((TILE, _PAD), dt)  # sb[k, j] of op(b)
        acc = cuda.local.array(ROWS_PER_THREAD, dt)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        m = c.shape[0]
        n = c.shape[1]
        kdim = a.shape[0] if trans_a else a.shape[1]
        has_bias = bias.shape[0] > 0
        for ti in range(cuda.blockIdx.y, (m + TILE - 1) // TILE, cuda.gridDim.y):
            row0 = ti * TILE
            for tj in range(cuda.blockIdx.x, (n + TILE - 1) // TILE, cuda.gridDim.x):
                col0 = tj * TILE
                for r in range(ROWS_PER_THREAD):
                    acc[r] = 0
                for k0 in range(0, kdim, TILE):
                    for r in range(ROWS_PER_THREAD):
                        u = ty + r * _BY  # 0..TILE-1, the slow index of this load
                        # op(a) tile; tx walks contiguous memory of a in both layouts
                        if trans_a:  # a is (K, M): a[k0 + u, row0 + tx] = op(a)[tx, u]
                            gk = k0 + u
                            gi = row0 + tx
                            if gk < kdim and gi < m:
                                sa[tx, u] = a[gk, gi]
                            else:
                                sa[tx, u] = 0
                        else:  # a is (M, K): a[row0 + u, k0 + tx] = op(a)[u, tx]
                            gi = row0 + u
                            gk = k0 + tx
                            if gi < m and gk < kdim:
                                sa[u, tx] = a[gi, gk]
                            else:
                                sa[u, tx] = 0
                        # op(b) tile
                        if trans_b:  # b is (N, K): b[col0 + u, k0 + tx] = op(b)[tx, u]
                            gj = col0 + u
                            gk = k0 + tx
                            if gj < n and gk < kdim:
                                sb[tx, u] = b[gj, gk]
                            else:
                                sb[tx, u] = 0
                        else:  # b is (K, N): b[k0 + u, col0 + tx] = op(b)[u, tx]
                            gk = k0 + u
                            gj = col0 + tx
                            if gk < kdim and gj < n:
                                sb[u, tx] = b[gk, gj]
                            else:
                                sb[u, tx] = 0
                    cuda.syncthreads()
                    for kk in range(TILE):
                        bv = sb[kk, tx]
                        for r in range(ROWS_PER_THREAD):
                            acc[r] += sa[ty + r * _BY, kk] * bv
                    cuda.syncthreads()
                j = col0 + tx
                if j < n:
                    for r in range(ROWS_PER_THREAD):
                        i = row0 + ty + r * _BY
                        if i < m:
                            v = acc[r]
                            if has_bias:
                                v += bias[j]
                            c[i, j] = act_value(v, act)

    return gemm_kernel


@functools.cache
def _no_bias(dtype: np.dtype) -> Any:
    return device_array((0,), dtype=dtype)


def gemm(a: Any, b: Any, c: Any, trans_a: bool = False, trans_b: bool = False,
         bias: Any = None, act: int = LINEAR, stream: Any = 0) -> None:
    """c = act(op(a) @ op(b) + bias) on device arrays; softmax is applied row-wise.

    Args:
        a: 2-D device array, (M, K), or (K, M) when ``trans_a``.
        b: 2-D device array, (K, N), or (N, K) when ``trans_b``.
        c: 2-D (M, N) device array, overwritten (must not overlap ``a`` or ``b``).
        trans_a, trans_b: use the transpose of ``a`` / ``b``.
        bias: (N,) device array, or None / shape (0,) for no bias.
        act: activation code.
        stream: CUDA stream.
    """
    act = check_act(act, "gemm")
    m, n = c.shape
    ka = a.shape[0] if trans_a else a.shape[1]
    ma = a.shape[1] if trans_a else a.shape[0]
    kb = b.shape[1] if trans_b else b.shape[0]
    nb = b.shape[0] if trans_b else b.shape[1]
    if ma != m or nb != n or ka != kb:
        raise ValueError(f"gemm: shapes {a.shape}{'.T' if trans_a else ''} @ "
                         f"{b.shape}{'.T' if trans_b else ''} -> {c.shape} do not match")
    if not (a.dtype == b.dtype == c.dtype):
        raise ValueError(f"gemm: dtypes differ ({a.dtype}, {b.dtype}, {c.dtype})")
    dtype = np.dtype(c.dtype)
    if bias is None:
        bias = _no_bias(dtype)
    elif bias.shape[0] not in (0, n):
        raise ValueError("gemm: bias length differs from the output channel count")
    elif bias.shape[0] and bias.dtype != c.dtype:
        raise ValueError(f"gemm: bias dtype {bias.dtype} differs from {c.dtype}")
    if m == 0 or n == 0:
        return
    cap = max_blocks(two_d=True)
    grid = (min(cdiv(n, TILE), cap), min(cdiv(m, TILE), cap))
    block = (TILE, _BY)
    epi = LINEAR if act in ROW_WISE else act
    _gemm_kernel(dtype)[grid, block, stream](a, b, bool(trans_a), bool(trans_b), bias, epi, c)
    if act in ROW_WISE:
        row_activation(c, act, c, stream)


def dense_forward(x: Any, w: Any, b: Any, act: int, out: Any, tmp: Any, *,
                  stream: Any = 0) -> None:
    """out = act(x @ w + b), the bias and activation fused into the GEMM epilogue.

    Args:
        x: (N, I) device input.
        w: (I, O) device weights.
        b: (O,) bias, or shape (0,) for no bias.
        act: Activation code (``nexec.kernels.activations``).
        out: (N, O) device output.
        tmp: (N, O) device array, checked for shape and otherwise unused (the GEMM writes
            ``out`` directly); pass ``out`` itself. Kept so the signature matches the CPU.
        stream: CUDA stream (keyword only; CUDA addition).
    """
    n, o = x.shape[0], w.shape[1]
    if x.shape[1] != w.shape[0] or out.shape != (n, o) or tmp.shape != (n, o):
        raise ValueError("dense_forward: shapes of x, w, out and tmp do not match")
    if b.shape[0] not in (0, o):
        raise ValueError("dense_forward: bias length differs from the output width")
    gemm(x, w, out, bias=b, act=act, stream=stream)


def dense_backward(x: Any, w: Any, y: Any, dy: Any, act: int, dz: Any, dx: Any, dw: Any,
                   db: Any, *, stream: Any = 0) -> None:
    """Gradients of ``y = act(x @ w + b)``; every output is overwritten, not accumulated.

    One fused kernel for ``dz = dy * act'(y)`` and ``db``, then ``dw = x.T @ dz`` and
    ``dx = dz @ w.T`` with the tiled GEMM (transposes read in place).

    Args:
        x: (N, I) forward input.  w: (I, O) weights.  y: (N, O) forward output.
        dy: (N, O) gradient with respect to ``y``.
        act: Activation code.
        dz: (N, O) workspace for the pre-activation gradient; may be ``dy`` itself.
        dx: (N, I) gradient of ``x``; shape (0, I) skips it.
        dw: (I, O) gradient of ``w``.
        db: (O,) bias gradient; shape (0,) skips it.
        stream: CUDA stream (keyword only; CUDA addition).
    """
    n, i, o = x.shape[0], x.shape[1], w.shape[1]
    if (w.shape[0] != i or y.shape != (n, o) or dz.shape != (n, o) or dw.shape != (i, o)
            or (dx.shape[0] != 0 and dx.shape != (n, i))):
        raise ValueError("dense_backward: shapes of x, w, y, dz, dx and dw do not match")
    epilogue_grad(y, dy, act, dz, db, stream)
    gemm(x, dz, dw, trans_a=True, stream=stream)
    if dx.shape[0] != 0:
        gemm(dz, w, dx, trans_b=True, stream=stream)
