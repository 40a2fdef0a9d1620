"""Direct Conv2D (:mod:`nexec.kernels.cpu.conv_direct`): which layers it serves, its workspaces.

Plain Python (no Numba, no device), for the planner and the op binder.

The direct kernel does ``KH*KW*Cin`` multiply-adds per output filter with no column matrix;
it pays off where im2col's matrix is thin (``K = KH*KW*Cin`` small next to BLAS's blocking)
and its copy dominates: a stem over RGB, a 5x5 over 8 channels. It serves any kernel size,
stride and padding; :data:`DIRECT_MAX_CIN` bounds the input channels, past which a GEMM
is the faster product anyway.
"""
from __future__ import annotations

from typing import Any

__all__ = ["DIRECT_MAX_CIN", "DCOLS_ROWS", "direct_applies", "direct_workspace_shapes"]

#: Input channels up to which a forced ``"direct"`` (and ``"auto"``'s candidate) applies.
DIRECT_MAX_CIN = 16
#: Rows of the input gradient's column-matrix block (``dcols``): 128 rows of K <= 16*KH*KW
#: stay in cache between their GEMM and col2im.
DCOLS_ROWS = 128


def direct_applies(layer: Any, cin: int) -> bool:
    """Whether the direct kernel serves this Conv2D layer over ``cin`` input channels."""
    return 0 < cin <= DIRECT_MAX_CIN and getattr(layer, "filters", 0) > 0


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
