"""Toeplitz Conv2D (:mod:`nexec.kernels.cpu.conv_toeplitz`): which layers it serves, its matrix.

Plain Python (no Numba, no device), for the planner and the op binder.

On a map of a few pixels most of a convolution's window lies in the padding: a 3x3 "same"
layer on a 2x2 map reads 4 of its 9 taps at each output pixel, and im2col multiplies the
other 5 by zeros. Written as one matrix from the whole input map to the whole output map,
``(H*W*Cin, Ho*Wo*F)``, whose block ``(input pixel, output pixel)`` is the filter tap that
joins them (or zeros), the layer is one GEMM per output pixel with no column matrix and
only the taps that exist: ``H*W / (KH*KW)`` of im2col's multiply-adds, 4/9 on a 2x2 map.
(For stride 1 the matrix is block-Toeplitz, hence the name; any stride and padding work.)
The matrix is derived from the weights once (``Kernel.prepare``) and kept between
inference steps; training, whose weights change every step, does not use it.
"""
from __future__ import annotations

from typing import Any

from nexec.ops.geometry import conv2d_geometry

__all__ = ["TOEPLITZ_MAX_BYTES", "toeplitz_matrix_shape", "toeplitz_applies", "toeplitz_pays"]

#: The largest Toeplitz matrix a layer may keep (a 2x2 map of 1024 -> 1024 channels).
TOEPLITZ_MAX_BYTES = 64 << 20


def toeplitz_matrix_shape(layer: Any, in_shape: tuple) -> tuple[int, int]:
    """``(H*W*Cin, Ho*Wo*F)``: the layer's Toeplitz matrix over an ``in_shape`` (H, W, Cin)
    input."""
    h, w, cin = in_shape
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    ho, wo, _, _ = conv2d_geometry(h, w, kh, kw, sh, sw, layer.padding)
    return h * w * cin, ho * wo * layer.filters


def toeplitz_applies(layer: Any, in_shape: tuple, itemsize: int = 4) -> bool:
    """Whether the layer's Toeplitz matrix over ``in_shape`` fits :data:`TOEPLITZ_MAX_BYTES`."""
    if getattr(layer, "filters", 0) <= 0:
        return False
    k, n = toeplitz_matrix_shape(layer, in_shape)
    return k * n * itemsize <= TOEPLITZ_MAX_BYTES


def toeplitz_pays(layer: Any, in_shape: tuple) -> bool:
    """Whether the Toeplitz product does at most half of im2col's multiply-adds: every input
    pixel against every output pixel (``H*W``) next to the window's taps (``KH*KW``)."""
    h, w, _ = in_shape
    kh, kw = layer.kernel_size
    return 2 * h * w <= kh * kw
