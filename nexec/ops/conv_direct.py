"""Direct Conv2D (:mod:`nexec.kernels.cpu.conv_direct`): which layers it serves, its workspaces.

Plain Python (no Numba, no device), for the planner and the op binder.

The direct kernel does ``KH*KW*Cin`` multiply-adds per output filter with no column matrix;
it pays off where im2col's matrix is thin (``K = KH*KW*Cin`` small next to BLAS's blocking)
and its copy dominates: a stem over RGB, a 5x5 over 8 channels, and (its forward, float32,
with filters in blocks of 32) a 3x3 over 24 or 32. It serves any kernel size, stride and
padding; :func:`direct_limit` bounds the input channels, past which a GEMM is the faster
product anyway: :data:`DIRECT_MAX_CIN`, or :data:`DIRECT_MAX_CIN_POINTWISE` for a 1x1
kernel, which im2col runs as a plain GEMM with no column matrix to save.
"""
from __future__ import annotations

from typing import Any

__all__ = ["DIRECT_MAX_CIN", "DIRECT_MAX_CIN_POINTWISE", "DCOLS_ROWS", "direct_limit",
           "direct_applies", "direct_workspace_shapes"]

#: Input channels up to which a forced ``"direct"`` (and ``"auto"``'s candidate) applies to
#: a kernel larger than 1x1 (the benchmark CNN's 3x3 24 -> 32, float32, one thread: forward
#: about 10% faster than im2col, backward the same).
DIRECT_MAX_CIN = 32
#: The same for a 1x1 kernel: past 16 channels its plain GEMM was measured 1.5x (32 -> 32)
#: to over 10x (32 -> 24, 32 -> 8) faster.
DIRECT_MAX_CIN_POINTWISE = 16
#: Rows of the input gradient's column-matrix block (``dcols``): 128 rows of
#: K <= 32*KH*KW (144 KiB float32 for a 3x3 over 32, in L2) stay in cache between their
#: GEMM and col2im.
DCOLS_ROWS = 128


def direct_limit(layer: Any) -> int:
    """The most input channels the direct kernel serves for this Conv2D layer."""
    pointwise = tuple(getattr(layer, "kernel_size", (0, 0))) == (1, 1)
    return DIRECT_MAX_CIN_POINTWISE if pointwise else DIRECT_MAX_CIN


def direct_applies(layer: Any, cin: int) -> bool:
    """Whether the direct kernel serves this Conv2D layer over ``cin`` input channels."""
    return 0 < cin <= direct_limit(layer) and getattr(layer, "filters", 0) > 0


def direct_workspace_shapes(batch: int, h: int, w: int, cin: int, kh: int, kw: int, f: int,
                            ho: int, wo: int, sh: int, sw: int, shards: int,
                            training: bool) -> dict[str, tuple[int, ...]]:
    """Workspace shapes of a direct Conv2D whose batch is split into ``shards``.

    * ``xpad`` ``(shards, Hp, Wp, Cin)``: each shard's zero-bordered image,
      ``Hp = (Ho-1)*sh + KH``, ``Wp = (Wo-1)*sw + KW``.
    * training: ``dz`` ``(N*Ho*Wo, F)`` (pre-activation gradient) and ``dcols``
      ``(shards, R, KH*KW*Cin)``, R = min(:data:`DCOLS_ROWS`, Ho*Wo): each shard's block of
      the input gradient's column matrix.
    """
    del h, w  # the padded window depends on the output size only
    shapes: dict[str, tuple[int, ...]] = {
        "xpad": (shards, (ho - 1) * sh + kh, (wo - 1) * sw + kw, cin)}
    if training:
        shapes["dz"] = (batch * ho * wo, f)
        shapes["dcols"] = (shards, min(DCOLS_ROWS, ho * wo), kh * kw * cin)
    return shapes
