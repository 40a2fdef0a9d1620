"""Fully connected layer kernels: BLAS GEMM plus one fused bias/activation pass.

The matrix products go to BLAS with no temporaries: the forward GEMM writes straight into
``out``, even a row-strided slice of a concatenation (:func:`.blas.gemm`), and
:func:`epilogue_in_place` finishes it there; everything elementwise around the products
(bias, activation, activation derivative, bias gradient) is done in a single pass over each
row, using the helpers of :mod:`.activation`.
"""
from __future__ import annotations

from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.cpu.activation import (
    _bias_relu_rows,
    _softmax_row_inplace,
    activate_row_inplace,
    epilogue_grad_rows_add,
    epilogue_rows,
    epilogue_softmax_rows,
    fast_sigmoid,
    fast_tanh,
)
from nexec.kernels.cpu.blas import as_c_layout, gemm, unit_row
from nexec.kernels.cpu.opaque import one_like
from nexec.kernels.jit import constant_arguments, inline_switch_kernel, kernel, switch_kernel

__all__ = ["dense_forward", "dense_backward", "epilogue_in_place", "linear_rows",
           "linear_rows_grad"]

_BLOCK = 256  # rows per cache-resident block of the strided epilogue


# One kernel per activation's rows, the switch inline (see activation._activate_rows).

@kernel
def _relu_unit_rows(out, r0, r1):
    n = out.shape[1]
    keep = one_like(out)  # an ordinary store, not a masked one (.opaque)
    for i in range(r0, r1):
        o = unit_row(out, i)
        for j in range(n):
            v = o[j]
            o[j] = v * keep if v > 0 else 0


@kernel
def _sigmoid_unit_rows(out, r0, r1):
    n = out.shape[1]
    for i in range(r0, r1):
        o = unit_row(out, i)
        for j in range(n):
            o[j] = fast_sigmoid(o[j])


@kernel
def _tanh_unit_rows(out, r0, r1):
    n = out.shape[1]
    for i in range(r0, r1):
        o = unit_row(out, i)
        for j in range(n):
            o[j] = fast_tanh(o[j])


@kernel
def _softmax_unit_rows(out, r0, r1):
    for i in range(r0, r1):
        _softmax_row_inplace(unit_row(out, i))


@kernel
def _each_unit_row(out, act, r0, r1):
    for i in range(r0, r1):
        activate_row_inplace(unit_row(out, i), act)


@switch_kernel
def _activate_unit_rows(out, act, r0, r1):
    """out[i] = act(out[i]) for rows r0..r1-1 of a unit-column-stride ``out``, each row typed
    contiguous; the activation switch is outside the row loops (per-row dispatch costs 2-5x
    on rows of 24-64 channels), the element formulas are :mod:`.activation`'s. Each
    activation is a kernel of its own, the switch inline (see ``_activate_rows``)."""
    if act == LINEAR:
        pass
    elif act == RELU:
        _relu_unit_rows(out, r0, r1)
    elif act == SIGMOID:
        _sigmoid_unit_rows(out, r0, r1)
    elif act == TANH:
        _tanh_unit_rows(out, r0, r1)
    elif act == SOFTMAX:
        _softmax_unit_rows(out, r0, r1)
    else:
        _each_unit_row(out, act, r0, r1)


@switch_kernel
def epilogue_in_place(out, b, act):
    """out = act(out + b) in place, after a GEMM straight into ``out``; the bits of
    ``epilogue_rows`` whatever the layout.

    A C-contiguous ``out`` takes :mod:`.activation`'s block helpers. A row-strided one (a
    concatenation's slice) is walked in blocks of rows, each row typed contiguous
    (:func:`.blas.unit_row`) so that its loops vectorize: loops over a row of a strided
    array do not (a sigmoid 5x slower).

    Args:
        out: (rows, channels), C-contiguous or with unit column stride and any row stride.
        b: (channels,) bias, or shape (0,) for no bias.
        act: Activation code (``nexec.kernels.activations``); softmax is row-wise.
    """
    rows = out.shape[0]
    cols = out.shape[1]
    if b.shape[0] != 0 and b.shape[0] != cols:
        raise ValueError("epilogue: bias length differs from the output width")
    unit = cols <= 1 or out.strides[1] == out.itemsize
    if unit and (rows <= 1 or out.strides[0] == cols * out.itemsize):  # C-contiguous
        c = as_c_layout(out)
        if act == SOFTMAX:
            epilogue_softmax_rows(c, b, c)
        else:
            epilogue_rows(c, b, act, c)
        return
    if not unit:
        raise ValueError("epilogue: out needs a unit column stride")
    has_bias = b.shape[0] != 0
    if has_bias and act == RELU:  # the commonest pair in one pass, as for contiguous rows
        _bias_relu_rows(out, b, out)
        return
    for r0 in range(0, rows, _BLOCK):
        r1 = min(rows, r0 + _BLOCK)
        if has_bias:
            for i in range(r0, r1):
                o = unit_row(out, i)
                for j in range(cols):
                    o[j] += b[j]
        _activate_unit_rows(out, act, r0, r1)


@inline_switch_kernel
def linear_rows(x, w, b, act, rows, out):
    """out = act(x @ w + b), ``rows`` rows at a time (0: all at once), so that the epilogue
    finds each block's GEMM output still in cache; Dense's forward and a 1x1 convolution's
    (which picks ``rows``: ``nexec.ops.geometry.pointwise_rows``)."""
    n = x.shape[0]
    step = rows if rows > 0 else max(n, 1)
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        gemm(1.0, x[r0:r1], w, 0.0, out[r0:r1])
        epilogue_in_place(out[r0:r1], b, act)


@inline_switch_kernel
def linear_rows_grad(x, w, y, dy, act, rows, dz, dx, dw, db):
    """The gradients of :func:`linear_rows` (the other arguments as :func:`dense_backward`'s),
    block by block: each block's ``dz`` is multiplied into ``dw`` (summed over the blocks by
    the GEMM, ``beta = 1``) and into ``dx`` while it is in cache. ``dz`` has all rows, or one
    block's, reused by every block. With ``rows`` a multiple of 256, ``db`` has the bits of
    one block (the epilogue sums 256 rows at a time)."""
    n = x.shape[0]
    step = rows if rows > 0 else max(n, 1)
    whole = dz.shape[0] == n
    for j in range(db.shape[0]):
        db[j] = 0
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        dzb = dz[r0:r1] if whole else dz[:r1 - r0]
        epilogue_grad_rows_add(y[r0:r1], dy[r0:r1], act, dzb, db)
        gemm(1.0, x[r0:r1].T, dzb, 0.0 if r0 == 0 else 1.0, dw)
        if dx.shape[0] != 0:
            gemm(1.0, dzb, w.T, 0.0, dx[r0:r1])


@constant_arguments("act")
@kernel
def dense_forward(x, w, b, act, out, tmp):
    """out = act(x @ w + b): the GEMM into ``out`` (even a strided one), then the epilogue.

    Args:
        x: (N, I) input, C-contiguous or row-strided (unit column stride).
        w: (I, O) C-contiguous weights.
        b: (O,) bias, or shape (0,) for no bias.
        act: Activation code (``nexec.kernels.activations``).
        out: (N, O) output, may be row-strided.
        tmp: unused (as on CUDA), kept so that one instruction list runs on either device;
            pass ``out``. Its shape is still checked.
    """
    n, o = x.shape[0], w.shape[1]
    if x.shape[1] != w.shape[0] or out.shape != (n, o) or tmp.shape != (n, o):
        raise ValueError("dense_forward: shapes of x, w, out and tmp do not match")
    linear_rows(x, w, b, act, 0, out)  # one block: BLAS threads share it


@constant_arguments("act")
@kernel
def dense_backward(x, w, y, dy, act, dz, dx, dw, db):
    """Gradients of ``y = act(x @ w + b)``; every output is overwritten, not accumulated.

    Args:
        x: (N, I) C-contiguous forward input.
        w: (I, O) C-contiguous weights.
        y: (N, O) forward output, may be row-strided.
        dy: (N, O) gradient with respect to ``y``, may be row-strided.
        act: Activation code.
        dz: (N, O) C-contiguous workspace; receives the pre-activation gradient. It may be
            ``dy`` itself when ``dy`` is C-contiguous (``dy`` is then overwritten).
        dx: (N, I) C-contiguous gradient of ``x``; shape (0, I) skips it.
        dw: (I, O) C-contiguous gradient of ``w``.
        db: (O,) gradient of the bias; shape (0,) skips it.
    """
    n, i, o = x.shape[0], x.shape[1], w.shape[1]
    if (w.shape[0] != i or y.shape != (n, o) or dz.shape != (n, o) or dw.shape != (i, o)
            or (dx.shape[0] != 0 and dx.shape != (n, i))):
        raise ValueError("dense_backward: shapes of x, w, y, dz, dx and dw do not match")
    linear_rows_grad(x, w, y, dy, act, 0, dz, dx, dw, db)
