"""2-D convolution for maps of a few pixels: one matrix from input map to output map.

:func:`conv2d_toeplitz_matrix` writes the matrix ``d`` of shape ``(H*W*Cin, Ho*Wo*F)``: row
``(iy*W + ix)*Cin + c``, column ``(oy*Wo + ox)*F + f`` holds ``w[ky, kx, c, f]`` for the tap
``(ky, kx)`` that joins input pixel ``(iy, ix)`` to output pixel ``(oy, ox)``, and zeros where
none does. :func:`conv2d_toeplitz_forward` then computes each output pixel as one GEMM of the
flattened images against that pixel's columns, then the bias + activation epilogue.
Why (and when the planner picks it): :mod:`nexec.ops.conv_toeplitz`.

Array conventions are :mod:`.conv`'s: ``w`` (KH, KW, Cin, F) C-contiguous. The images come
flattened, ``(N, H*W*Cin)`` C-contiguous, and the output as ``(N, Ho*Wo, F)`` with unit
channel stride and any other strides (a concatenation's slice).
"""
from __future__ import annotations

from nexec.kernels.cpu.blas import gemm
from nexec.kernels.cpu.dense import epilogue_in_place
from nexec.kernels.jit import constant_arguments, kernel

__all__ = ["conv2d_toeplitz_matrix", "conv2d_toeplitz_forward"]


@kernel
def conv2d_toeplitz_matrix(w, h, wd, sh, sw, pt, pl, ho, wo, d):
    """Writes the Toeplitz matrix of a convolution with weights ``w`` (module docstring).

    Args:
        w: (KH, KW, Cin, F) C-contiguous weights.
        h, wd: input height and width.
        sh, sw: strides.
        pt, pl: top and left zero padding (``nexec.ops.geometry.conv2d_geometry``).
        ho, wo: output height and width.
        d: (H*W*Cin, Ho*Wo*F) C-contiguous, overwritten.
    """
    kh = w.shape[0]
    kw = w.shape[1]
    c = w.shape[2]
    f = w.shape[3]
    if d.shape[0] != h * wd * c or d.shape[1] != ho * wo * f:
        raise ValueError("conv2d_toeplitz_matrix: d is not (H*W*Cin, Ho*Wo*F)")
    d[:] = 0
    for oy in range(ho):
        for ox in range(wo):
            o = (oy * wo + ox) * f
            for ky in range(kh):
                iy = oy * sh - pt + ky
                if iy < 0 or iy >= h:
                    continue
                for kx in range(kw):
                    ix = ox * sw - pl + kx
                    if ix < 0 or ix >= wd:
                        continue
                    i = (iy * wd + ix) * c
                    for ci in range(c):
                        src = w[ky, kx, ci]
                        dst = d[i + ci]
                        for fi in range(f):
                            dst[o + fi] = src[fi]


@constant_arguments("act")
@kernel
def conv2d_toeplitz_forward(x2, d, b, p0, p1, f0, f1, act, out):
    """``out[:, p, f0:f1] = act(x2 @ d[:, p*F + f0 : p*F + f1] + b[f0:f1])`` for the output
    pixels ``p0 .. p1-1``: one GEMM each.

    Args:
        x2: (N, H*W*Cin) C-contiguous images, flattened.
        d: (H*W*Cin, Ho*Wo*F) Toeplitz matrix (:func:`conv2d_toeplitz_matrix`).
        b: (F,) bias, or shape (0,) for no bias.
        p0, p1: the output pixels of this shard, ``0 <= p0 < p1 <= Ho*Wo``.
        f0, f1: its output channels, ``0 <= f0 < f1 <= F`` (all of them for softmax).
        act: activation code (``nexec.kernels.activations``); softmax is over channels.
        out: (N, Ho*Wo, F) output with unit channel stride; the shard's part overwritten.
    """
    f = out.shape[2]
    if x2.shape[1] != d.shape[0] or d.shape[1] != out.shape[1] * f \
            or x2.shape[0] != out.shape[0] or not (0 <= p0 < p1 <= out.shape[1]) \
            or not (0 <= f0 < f1 <= f):
        raise ValueError("conv2d_toeplitz_forward: shapes or ranges do not match")
    for p in range(p0, p1):
        o = out[:, p, f0:f1]
        gemm(1.0, x2, d[:, p * f + f0:p * f + f1], 0.0, o)
        if b.shape[0] != 0:
            epilogue_in_place(o, b[f0:f1], act)
        else:
            epilogue_in_place(o, b, act)
