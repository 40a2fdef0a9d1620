"""Winograd F(m x m, 3 x 3) for Conv2D: its matrices, which layers it serves, its workspaces.

Plain Python (no Numba, no device): the planner sizes workspaces from here and the kernels
in :mod:`nexec.kernels.cpu.winograd` take the matrices as arguments. The matrices are Lavin
& Gray's (2016) with interpolation points 0, +-1 (F(2,3)) and 0, +-1, +-2 (F(4,3)).

Float32 error grows with the tile: F(2x2,3x3)'s matrices hold only 0, +-1 and 1/2, so its
rounding is close to direct convolution's; F(4x4,3x3)'s hold 4, 5, 8, 1/6 and 1/24, and
its error is several times larger (the tolerances in tests/kernels/test_winograd.py).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nexec.ops.conv_direct import direct_applies, direct_limit
from nexec.ops.geometry import block_elements, conv2d_geometry

__all__ = ["ALGORITHMS", "TILES", "algorithm_of", "set_algorithm", "tile_of",
           "transform_matrices", "winograd_applies", "winograd_workspace_shapes"]

#: Output tile sizes ``m`` available: F(2x2,3x3) and F(4x4,3x3).
TILES = (2, 4)
#: What a Conv2D can run as: im2col + GEMM, Winograd F(2x2,3x3), Winograd F(4x4,3x3), the
#: direct kernel for few input channels (:mod:`nexec.ops.conv_direct`), or in inference
#: one (block-Toeplitz) matrix over a map of a few pixels (:mod:`nexec.ops.conv_toeplitz`).
ALGORITHMS = ("im2col", "winograd", "winograd4", "direct", "toeplitz")
_ATTR = "_nexec_conv_algorithm"


def algorithm_of(layer: Any) -> str:
    """The algorithm the plan chose for a Conv2D layer (``"im2col"`` when none was chosen)."""
    return getattr(layer, _ATTR, "im2col")


def set_algorithm(layer: Any, algorithm: str, cin: int | None = None) -> None:
    """Records the plan's choice on the layer, where the op kernel reads it at binding.

    Args:
        layer: The Conv2D layer.
        algorithm: One of :data:`ALGORITHMS`.
        cin: The layer's input channels, when known: checked against ``"direct"``'s limit.

    Raises:
        ValueError: unknown algorithm, or one that cannot run this layer.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"conv algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "direct":
        if cin is not None and not direct_applies(layer, cin):
            raise ValueError(f"Conv2D '{layer.name}': the direct kernel serves at most "
                             f"{direct_limit(layer)} input channels, got {cin}")
    elif algorithm not in ("im2col", "toeplitz") and not winograd_applies(layer):
        raise ValueError(f"Conv2D '{layer.name}': Winograd needs a 3x3 kernel with stride 1, "
                         f"got kernel {tuple(layer.kernel_size)}, strides "
                         f"{tuple(layer.strides)}")
    setattr(layer, _ATTR, algorithm)


def tile_of(algorithm: str) -> int:
    """Output tile size ``m`` of a Winograd algorithm name."""
    return 4 if algorithm == "winograd4" else 2

_BT = {
    2: [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
    4: [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
}
_G = {
    2: [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
    4: [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
}
_AT = {
    2: [[1, 1, 1, 0], [0, 1, -1, -1]],
    4: [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
}


def transform_matrices(m: int, dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(B^T, G, A^T)`` of F(m x m, 3 x 3) as C-contiguous arrays of ``dtype``.

    Raises:
        ValueError: ``m`` not in :data:`TILES`.
    """
    if m not in TILES:
        raise ValueError(f"Winograd tile must be one of {TILES}, got {m!r}")
    bt, g, at = (np.ascontiguousarray(np.array(t[m], dtype=np.float64).astype(dtype))
                 for t in (_BT, _G, _AT))
    return bt, g, at


def winograd_applies(layer: Any) -> bool:
    """Whether Winograd F(m, 3x3) can run this Conv2D layer: 3x3 kernel, stride 1.

    Dilation is always 1 in nexec (the layer refuses others); both paddings work.
    """
    return (tuple(layer.kernel_size) == (3, 3) and tuple(layer.strides) == (1, 1)
            and getattr(layer, "filters", 0) > 0)


def _block_tiles(tiles: int, a: int, cin: int, f: int, shards: int = 1) -> int:
    """Tiles per block: ``V`` and ``M`` together about one shard's column-matrix block of
    elements (:func:`nexec.ops.geometry.block_elements`)."""
    return max(1, min(tiles, max(block_elements(shards) // (a * a * (cin + f)), 16)))


def _scratch(a: int, m: int, tiles_w: int, in_w: int, cin: int, cout: int) -> int:
    """Scratch elements of one Winograd correlation: the input transform's first half for
    one row of tiles (``a`` rows of ``tiles_w * m + a - m`` pixels) and a zero input row, or
    the output transform's ``m x a`` rows, whichever is larger."""
    return max(a * (tiles_w * m + a - m) * cin + in_w * cin, m * a * cout)


def winograd_workspace_shapes(batch: int, h: int, w: int, cin: int, f: int, padding: str,
                              m: int, training: bool, shards: int = 1
                              ) -> dict[str, tuple[int, ...]]:
    """Workspace shapes of a Winograd Conv2D for one batch shard of ``batch`` images, of
    ``shards`` that run at once.

    Forward: ``U`` (a*a, Cin, F), ``V`` (a*a, T, Cin), ``M`` (a*a, T, F), ``Y`` (T*m*m, F),
    ``scratch``. Backward adds ``dU`` (a*a, F, Cin) and the same blocks for the input
    gradient's correlation (``dV``, ``dM``, ``dY``, ``dscratch``), sized over the input's tiles.
    """
    a = m + 2
    ho, wo, _, _ = conv2d_geometry(h, w, 3, 3, 1, 1, padding)
    tiles = batch * (-(-ho // m)) * (-(-wo // m))
    t = _block_tiles(tiles, a, cin, f, shards)
    shapes: dict[str, tuple[int, ...]] = {
        "U": (a * a, cin, f),
        "V": (a * a, t, cin),
        "M": (a * a, t, f),
        "Y": (t * m * m, f),
        "scratch": (_scratch(a, m, -(-wo // m), w, cin, f),),
    }
    if training:
        dtiles = batch * (-(-h // m)) * (-(-w // m))
        dt = _block_tiles(dtiles, a, f, cin, shards)
        shapes.update({
            "dU": (a * a, f, cin),
            "dV": (a * a, dt, f),
            "dM": (a * a, dt, cin),
            "dY": (dt * m * m, cin),
            "dscratch": (_scratch(a, m, -(-w // m), wo, f, cin),),
        })
    return shapes
