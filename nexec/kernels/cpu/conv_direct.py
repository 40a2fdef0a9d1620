"""Direct 2-D convolution for few input channels (NHWC, Keras weights), vectorised over filters.

im2col + GEMM spends most of a few-channel convolution (a stem over 3 channels: K = KH*KW*Cin
of 27 or 147) building the column matrix and in a GEMM too thin to reach BLAS speed. Here
each output pixel is accumulated straight into its row of ``out``::

    out[p, :] += x_padded[iy, ix, c] * w[ky, kx, c, :]

whose inner loop runs over the F contiguous filters of both ``out`` and ``w`` (vectorised).
Each image is first copied into a zero-bordered workspace ``xpad``, so every pixel has all
its taps and, for one kernel row ``ky``, they are one contiguous run of ``KW*Cin`` values
facing the contiguous ``(KW*Cin, F)`` block ``w[ky]``. Four pixels share each weight row
and their sums for a block of filters stay in registers over all taps (:func:`_forward_row`;
in float32 with F a multiple of 32 on a CPU with 512-bit vectors, blocks of 32 filters:
:func:`_forward_row_wide`).
The bias and activation are Dense's epilogue (:func:`.dense.epilogue_in_place`) over each
image's rows while they are in cache.

Backward: ``dz``/``db`` by the blocked backward epilogue, the weight gradient by the same
loops with the roles of ``out`` and ``w`` swapped (``dw[ky, kx, c, :] += x * dz[p, :]``; four
taps share each gradient row, blocks of 32 filters where the forward takes them), and
the input gradient as GEMMs ``dz @ w.T`` into a small column-matrix block (``dcols``, about
128 rows: measured faster than an image's worth) scattered back by im2col's
:func:`.conv._col2im` (a direct input gradient needs dot products over F, which do not
vectorise without reassociation).

Array conventions are :mod:`.conv`'s: ``x`` (N, H, W, Cin) and ``w`` (KH, KW, Cin, F)
C-contiguous, ``out``/``y``/``dy`` 2-D (N*Ho*Wo, F) with unit column stride and any row stride.
Workspace shapes: :func:`nexec.ops.conv_direct.direct_workspace_shapes` (one shard's slice).
"""
from __future__ import annotations

from nexec.kernels.cpu.activation import epilogue_grad_rows_add
from nexec.kernels.cpu.blas import gemm, unit_row
from nexec.kernels.cpu.conv import _col2im
from nexec.kernels.cpu.dense import epilogue_in_place
from nexec.kernels.cpu.stack import stack_array
from nexec.kernels.jit import constant_arguments, fma_kernel, inline_kernel, kernel
from nexec.kernels.vector_width import native_vector_bits

__all__ = ["conv2d_direct_forward", "conv2d_direct_backward"]


@kernel
def _zero(a):
    """a[...] = 0 for a C-contiguous array of any rank."""
    af = a.reshape(a.size)
    for i in range(af.shape[0]):
        af[i] = 0


@kernel
def _pad_image(x, img, pt, pl, xpad):
    """Copies image ``img`` of ``x`` into ``xpad``'s interior, at offset (pt, pl).

    ``xpad``'s border is never written here: zero it once before the first image.
    """
    h = x.shape[1]
    w = x.shape[2]
    c = x.shape[3]
    hp = xpad.shape[0]
    wp = xpad.shape[1]
    x0 = max(0, -pl)  # valid padding may leave image columns/rows unused
    x1 = min(w, wp - pl)
    if x1 <= x0:
        return
    run = (x1 - x0) * c
    for iy in range(max(0, -pt), min(h, hp - pt)):
        s = x[img, iy].reshape(w * c)[x0 * c:]
        d = xpad[iy + pt].reshape(wp * c)[(x0 + pl) * c:]
        for j in range(run):
            d[j] = s[j]


@kernel
def _check(x, w, xpad, sh, sw, ho, wo, rows_needed, rows_given):
    kh = w.shape[0]
    kw = w.shape[1]
    if w.shape[2] != x.shape[3] or xpad.shape[2] != x.shape[3]:
        raise ValueError("conv2d_direct: channel counts of x, w and xpad differ")
    if xpad.shape[0] < (ho - 1) * sh + kh or xpad.shape[1] < (wo - 1) * sw + kw:
        raise ValueError("conv2d_direct: xpad is smaller than the padded window")
    if rows_given != rows_needed:
        raise ValueError("conv2d_direct: output rows differ from N*Ho*Wo")


#: Filters per accumulator block: four pixels' (or taps') blocks stay in vector registers
#: across the taps. 16 for both dtypes: a loop of 8 or fewer is unrolled into scalar code
#: before the vectoriser sees it (Numba runs no SLP vectoriser), which made float64 4x slower.
_BLOCK = 16
#: Filters per accumulator block of the float32 forward and weight gradient when F is a
#: multiple of it, on CPUs with 512-bit vectors (:data:`_WIDE_REGISTERS`): four pixels (or
#: taps) by 32 filters are 8 of the 32 AVX-512 registers, and each step loads 2 vectors and
#: 4 values for 8 FMAs instead of 1 and 4 for 4; the forward measured 12-14% faster than
#: blocks of 16 (3x3 over 3 to 32 channels into 32 filters, 32x32 images), the weight
#: gradient 0.61-0.81x the time. Not float64: 4 x 32 doubles would be 16.
_WIDE = 32
#: Whether the kernels take :data:`_WIDE` blocks: not with AVX2's 16 256-bit registers, where
#: four pixels by 32 filters are all 16 and spill (the CNN's 3x3 over 24 into 32 filters took
#: 7.2-7.8 ms in wide blocks against 3.2-5.0 ms in blocks of 16 on a Zen 3 core).
_WIDE_REGISTERS = native_vector_bits() >= 512


# fma_kernel: these sums round once per tap (a * b + c as one FMA), not twice.
@inline_kernel
def _forward_row_in(xpf, w2, out, r0, base, step, rowlen, wo, kh, kwc, a0, a1, a2, a3):
    """Rows r0 .. r0+wo-1 of ``out`` (one output row): ``out[r0+ox] = sum_t seg[t] * w2[t]``.

    Four pixels at a time, each block of ``a0.shape[0]`` filters summed in ``a0..a3`` (the
    caller's registers, their size a constant) over all taps and stored once; filters past
    the last whole block and pixels past the last group of four go through
    :func:`_forward_rest`. Inlined as Numba IR, so each caller's block size is a constant
    to LLVM.
    """
    f = w2.shape[1]
    fb = a0.shape[0]
    fw = f - f % fb  # filters in whole blocks
    ox = 0
    while ox + 4 <= wo:
        for j0 in range(0, fw, fb):
            for j in range(fb):
                a0[j] = 0
                a1[j] = 0
                a2[j] = 0
                a3[j] = 0
            for ky in range(kh):
                s0 = xpf[base + ky * rowlen + ox * step:]
                s1 = s0[step:]
                s2 = s0[2 * step:]
                s3 = s0[3 * step:]
                k0 = ky * kwc
                for t in range(kwc):
                    wr = w2[k0 + t, j0:]
                    x0 = s0[t]
                    x1 = s1[t]
                    x2 = s2[t]
                    x3 = s3[t]
                    for j in range(fb):
                        wj = wr[j]
                        a0[j] += x0 * wj
                        a1[j] += x1 * wj
                        a2[j] += x2 * wj
                        a3[j] += x3 * wj
            o0 = unit_row(out, r0 + ox)[j0:]
            o1 = unit_row(out, r0 + ox + 1)[j0:]
            o2 = unit_row(out, r0 + ox + 2)[j0:]
            o3 = unit_row(out, r0 + ox + 3)[j0:]
            for j in range(fb):
                o0[j] = a0[j]
                o1[j] = a1[j]
                o2[j] = a2[j]
                o3[j] = a3[j]
        if fw < f:
            for p in range(4):
                _forward_rest(xpf, w2, out, r0 + ox + p, base + (ox + p) * step, rowlen, kh,
                              kwc, fw)
        ox += 4
    while ox < wo:
        _forward_rest(xpf, w2, out, r0 + ox, base + ox * step, rowlen, kh, kwc, 0)
        ox += 1


@fma_kernel
def _forward_row(xpf, w2, out, r0, base, step, rowlen, wo, kh, kwc):
    """:func:`_forward_row_in` with blocks of :data:`_BLOCK` filters."""
    a0 = stack_array(w2, _BLOCK)
    a1 = stack_array(w2, _BLOCK)
    a2 = stack_array(w2, _BLOCK)
    a3 = stack_array(w2, _BLOCK)
    _forward_row_in(xpf, w2, out, r0, base, step, rowlen, wo, kh, kwc, a0, a1, a2, a3)


@fma_kernel
def _forward_row_wide(xpf, w2, out, r0, base, step, rowlen, wo, kh, kwc):
    """:func:`_forward_row_in` with blocks of :data:`_WIDE` filters (F a multiple of it)."""
    a0 = stack_array(w2, _WIDE)
    a1 = stack_array(w2, _WIDE)
    a2 = stack_array(w2, _WIDE)
    a3 = stack_array(w2, _WIDE)
    _forward_row_in(xpf, w2, out, r0, base, step, rowlen, wo, kh, kwc, a0, a1, a2, a3)


@fma_kernel
def _forward_rest(xpf, w2, out, r, base, rowlen, kh, kwc, j0):
    """Filters j0.. of output row ``r`` (one pixel), accumulated in ``out`` itself."""
    f = w2.shape[1]
    o = unit_row(out, r)
    for j in range(j0, f):
        o[j] = 0
    for ky in range(kh):
        s0 = xpf[base + ky * rowlen:]
        k0 = ky * kwc
        for t in range(kwc):
            wr = w2[k0 + t]
            x0 = s0[t]
            for j in range(j0, f):
                o[j] += x0 * wr[j]


@inline_kernel
def _weight_grad_row_in(xpf, dz, dw2, r0, base, step, rowlen, wo, kh, kwc, a0, a1, a2, a3):
    """dw2[t] += sum over the pixels of one output row of ``seg[t] * dz[pixel]``.

    Four taps at a time, each block of ``a0.shape[0]`` filters summed in ``a0..a3`` (the
    caller's registers, their size a constant) over the row's pixels in pixel order and
    added to ``dw2`` once; the taps past the last group of four one at a time, the filters
    past the last whole block through ``dw2`` itself. Inlined as Numba IR, so each caller's
    block size is a constant to LLVM.
    """
    f = dw2.shape[1]
    fb = a0.shape[0]
    fw = f - f % fb
    k4 = kwc - kwc % 4
    for ky in range(kh):
        srow = xpf[base + ky * rowlen:]
        k0 = ky * kwc
        for j0 in range(0, fw, fb):
            for t0 in range(0, k4, 4):
                d0 = dw2[k0 + t0, j0:]
                d1 = dw2[k0 + t0 + 1, j0:]
                d2 = dw2[k0 + t0 + 2, j0:]
                d3 = dw2[k0 + t0 + 3, j0:]
                for j in range(fb):
                    a0[j] = d0[j]
                    a1[j] = d1[j]
                    a2[j] = d2[j]
                    a3[j] = d3[j]
                for ox in range(wo):
                    g = unit_row(dz, r0 + ox)[j0:]
                    s = srow[ox * step + t0:]
                    x0 = s[0]
                    x1 = s[1]
                    x2 = s[2]
                    x3 = s[3]
                    for j in range(fb):
                        gj = g[j]
                        a0[j] += x0 * gj
                        a1[j] += x1 * gj
                        a2[j] += x2 * gj
                        a3[j] += x3 * gj
                for j in range(fb):
                    d0[j] = a0[j]
                    d1[j] = a1[j]
                    d2[j] = a2[j]
                    d3[j] = a3[j]
            for t in range(k4, kwc):
                d0 = dw2[k0 + t, j0:]
                for j in range(fb):
                    a0[j] = d0[j]
                for ox in range(wo):
                    g = unit_row(dz, r0 + ox)[j0:]
                    x0 = srow[ox * step + t]
                    for j in range(fb):
                        a0[j] += x0 * g[j]
                for j in range(fb):
                    d0[j] = a0[j]
        if fw < f:
            for t in range(kwc):
                d = dw2[k0 + t]
                for ox in range(wo):
                    g = unit_row(dz, r0 + ox)
                    x0 = srow[ox * step + t]
                    for j in range(fw, f):
                        d[j] += x0 * g[j]


@fma_kernel
def _weight_grad_row(xpf, dz, dw2, r0, base, step, rowlen, wo, kh, kwc):
    """:func:`_weight_grad_row_in` with blocks of :data:`_BLOCK` filters."""
    a0 = stack_array(dw2, _BLOCK)
    a1 = stack_array(dw2, _BLOCK)
    a2 = stack_array(dw2, _BLOCK)
    a3 = stack_array(dw2, _BLOCK)
    _weight_grad_row_in(xpf, dz, dw2, r0, base, step, rowlen, wo, kh, kwc, a0, a1, a2, a3)


@fma_kernel
def _weight_grad_row_wide(xpf, dz, dw2, r0, base, step, rowlen, wo, kh, kwc):
    """:func:`_weight_grad_row_in` with blocks of :data:`_WIDE` filters (F a multiple of
    it): four taps by 32 filters, 8 FMAs for each pixel's 2 gradient vectors and 4 input
    values (docs/performance.md, round 15)."""
    a0 = stack_array(dw2, _WIDE)
    a1 = stack_array(dw2, _WIDE)
    a2 = stack_array(dw2, _WIDE)
    a3 = stack_array(dw2, _WIDE)
    _weight_grad_row_in(xpf, dz, dw2, r0, base, step, rowlen, wo, kh, kwc, a0, a1, a2, a3)


@constant_arguments("act")
@kernel
def conv2d_direct_forward(x, w, b, sh, sw, pt, pl, ho, wo, act, xpad, out):
    """out = act(conv2d(x, w) + b) by direct accumulation, image by image.

    Args:
        x: (N, H, W, Cin) C-contiguous input.
        w: (KH, KW, Cin, F) C-contiguous weights.
        b: (F,) bias, or shape (0,) for no bias.
        sh, sw: strides.
        pt, pl: top and left zero padding (``nexec.ops.geometry.conv2d_geometry``).
        ho, wo: output height and width.
        act: activation code (``nexec.kernels.activations``); softmax is over channels.
        xpad: (Hp, Wp, Cin) C-contiguous workspace, Hp >= (Ho-1)*sh + KH and
            Wp >= (Wo-1)*sw + KW: one zero-bordered image.
        out: (N*Ho*Wo, F) output with unit column stride, may be row-strided; overwritten.
    """
    n = x.shape[0]
    c = x.shape[3]
    kh = w.shape[0]
    kw = w.shape[1]
    f = w.shape[3]
    wp = xpad.shape[1]
    kwc = kw * c
    _check(x, w, xpad, sh, sw, ho, wo, n * ho * wo, out.shape[0])
    w2 = w.reshape(kh * kwc, f)
    xpf = xpad.reshape(xpad.size)
    wide = _WIDE_REGISTERS and f % _WIDE == 0 and w.itemsize == 4
    _zero(xpad)
    per_image = ho * wo
    for img in range(n):
        _pad_image(x, img, pt, pl, xpad)
        r0 = img * per_image
        for oy in range(ho):
            if wide:
                _forward_row_wide(xpf, w2, out, r0 + oy * wo, oy * sh * wp * c, sw * c,
                                  wp * c, wo, kh, kwc)
            else:
                _forward_row(xpf, w2, out, r0 + oy * wo, oy * sh * wp * c, sw * c, wp * c,
                             wo, kh, kwc)
        epilogue_in_place(out[r0:r0 + per_image], b, act)


@constant_arguments("act")
@kernel
def conv2d_direct_backward(x, w, y, dy, sh, sw, pt, pl, ho, wo, act, xpad, dz, dcols, dx, dw,
                           db):
    """Gradients of ``y = act(conv2d(x, w) + b)``; every output is overwritten.

    Args:
        x, w, sh, sw, pt, pl, ho, wo, act, xpad: as in :func:`conv2d_direct_forward`.
        y: (N*Ho*Wo, F) forward output, may be row-strided.
        dy: (N*Ho*Wo, F) gradient with respect to ``y``, may be row-strided.
        dz: (N*Ho*Wo, F) workspace, unit column stride: the pre-activation gradient (may be
            ``dy`` when that may be overwritten).
        dcols: (R, KH*KW*Cin) C-contiguous workspace, R >= 1: the input gradient's column
            matrix, R rows at a time (unused, may be (0, 0), when ``dx`` is skipped).
        dx: (N, H, W, Cin) C-contiguous input gradient; shape (0, H, W, Cin) skips it.
        dw: (KH, KW, Cin, F) C-contiguous weight gradient.
        db: (F,) bias gradient; shape (0,) skips it.
    """
    n = x.shape[0]
    c = x.shape[3]
    kh = w.shape[0]
    kw = w.shape[1]
    f = w.shape[3]
    wp = xpad.shape[1]
    kwc = kw * c
    _check(x, w, xpad, sh, sw, ho, wo, n * ho * wo, y.shape[0])
    need_dx = dx.shape[0] != 0
    rows = dcols.shape[0]
    if need_dx and (rows == 0 or dcols.shape[1] != kh * kwc):
        raise ValueError("conv2d_direct_backward: dcols must be (R >= 1, KH*KW*Cin)")
    w2 = w.reshape(kh * kwc, f)
    dw2 = dw.reshape(kh * kwc, f)
    xpf = xpad.reshape(xpad.size)
    _zero(dw)
    _zero(db)
    if need_dx:
        _zero(dx)
    _zero(xpad)
    wide = _WIDE_REGISTERS and f % _WIDE == 0 and w.itemsize == 4
    per_image = ho * wo
    for img in range(n):
        r0 = img * per_image
        r1 = r0 + per_image
        epilogue_grad_rows_add(y[r0:r1], dy[r0:r1], act, dz[r0:r1], db)
        _pad_image(x, img, pt, pl, xpad)
        for oy in range(ho):
            if wide:
                _weight_grad_row_wide(xpf, dz, dw2, r0 + oy * wo, oy * sh * wp * c, sw * c,
                                      wp * c, wo, kh, kwc)
            else:
                _weight_grad_row(xpf, dz, dw2, r0 + oy * wo, oy * sh * wp * c, sw * c,
                                 wp * c, wo, kh, kwc)
        if need_dx:
            for c0 in range(r0, r1, rows):
                c1 = min(r1, c0 + rows)
                dc = dcols[:c1 - c0]
                gemm(1.0, dz[c0:c1], w2.T, 0.0, dc)
                _col2im(dc, sh, sw, pt, pl, ho, wo, kh, kw, c0, dx)
