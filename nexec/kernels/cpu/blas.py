"""``c = alpha * a @ b + beta * c`` straight into views: BLAS GEMM with ``ld`` and ``beta``.

Why: Numba's ``np.dot(a, b, out)`` needs a C-contiguous ``out`` and always overwrites it,
so a product whose result lands in a row-strided view (a layer writing into its slice of a
channel concatenation) or must be added to what is there (a weight gradient summed over row
blocks) had to go through a temporary and a copy or add pass. BLAS itself takes the leading
dimensions and ``beta``; :func:`gemm` passes them.

How: through ``numba_xxgemm``, the C helper Numba's own ``np.dot`` calls (``_helperlib``).
It looks up ``sgemm``/``dgemm`` in ``scipy.linalg.cython_blas`` when first called in each
process, so compiled code refers to the helper by symbol name only: no address is baked
into ``cache=True`` machine code, the BLAS library is the one ``np.dot`` uses, and
threadpoolctl's limits (``nexec.devices.threads``) apply to it the same way.

Row-major ``C = op(A) op(B)`` is column-major ``C^T = op(B)^T op(A)^T``: Fortran's view of a
row-major matrix is its transpose, so the call passes ``b`` before ``a`` with the same
transpose flags, and ``n``/``m`` swapped.

BLAS does no bounds checks: a shape mismatch would write out of bounds, so :func:`gemm`
checks shapes and strides first and raises ``ValueError``. ``c`` must not overlap ``a`` or
``b`` (not checked). Under ``NUMBA_DISABLE_JIT`` the same function runs with NumPy.

:func:`unit_row` and :func:`as_c_layout` serve the pass after such a GEMM (bias,
activation in place): a row of a row-strided matrix is typed with a runtime stride, and LLVM
does not vectorize loops over it (a sigmoid epilogue ran 5x slower than on a contiguous
matrix); typed as the contiguous row it is, it runs at the contiguous speed. Likewise a
matrix typed 'A' that is contiguous at run time, which Numba would not even ``reshape``.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic, overload

from nexec.kernels.jit import kernel

__all__ = ["gemm", "unit_row", "as_c_layout"]

_F_INT_MAX = 2 ** 31 - 1  # cython_blas takes 32-bit Fortran integers


@intrinsic
def _xxgemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major ``c = alpha * op(a) @ op(b) + beta * c`` through ``numba_xxgemm``.

    ``a``, ``b`` and ``c`` are arrays whose data pointers start their matrices; ``trans_*``
    are ints (nonzero: transpose); ``m, n, k`` and the leading dimensions are Fortran's.
    """
    if not (isinstance(a, types.Array) and isinstance(b, types.Array)
            and isinstance(c, types.Array)):
        return None
    dtype = c.dtype
    if dtype not in (types.float32, types.float64) or a.dtype != dtype or b.dtype != dtype:
        return None
    sig = types.void(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        from numba.np.linalg import check_blas_return, ensure_blas
        ensure_blas()
        (ta, tb, m_, n_, k_, alpha_, a_, lda_, b_, ldb_, beta_, c_, ldc_) = args
        argtys = signature.args
        char = ir.IntType(8)
        voidp = cgutils.voidptr_t
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(ir.IntType(32), [char, char, char, intp, intp, intp, voidp,
                                                voidp, intp, voidp, intp, voidp, voidp, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")

        def flag(value, ty):
            on = builder.icmp_signed("!=", value, context.get_constant(ty, 0))
            return builder.select(on, ir.Constant(char, ord("t")), ir.Constant(char, ord("n")))

        def int_arg(value, ty):
            return context.cast(builder, value, ty, types.intp)

        def scalar_slot(value, ty):
            return builder.bitcast(
                cgutils.alloca_once_value(builder, context.cast(builder, value, ty, dtype)),
                voidp)

        def data(value, ty):
            return builder.bitcast(context.make_array(ty)(context, builder, value).data, voidp)

        kind = ir.Constant(char, ord("s" if dtype == types.float32 else "d"))
        res = builder.call(fn, (
            kind, flag(ta, argtys[0]), flag(tb, argtys[1]),
            int_arg(m_, argtys[2]), int_arg(n_, argtys[3]), int_arg(k_, argtys[4]),
            scalar_slot(alpha_, argtys[5]), data(a_, argtys[6]), int_arg(lda_, argtys[7]),
            data(b_, argtys[8]), int_arg(ldb_, argtys[9]), scalar_slot(beta_, argtys[10]),
            data(c_, argtys[11]), int_arg(ldc_, argtys[12])))
        check_blas_return(context, builder, res)
        return context.get_dummy_value()

    return sig, codegen


def _call_blas(alpha, a, b, beta, c, ta, lda, tb, ldb, ldc):
    """Pure-Python twin of the compiled call (``NUMBA_DISABLE_JIT``): NumPy on the views."""
    product = np.dot(a, b).astype(c.dtype)
    if alpha != 1:
        product *= c.dtype.type(alpha)
    if beta == 0:
        c[...] = product
    else:
        c[...] = c.dtype.type(beta) * c + product


@overload(_call_blas, jit_options={"nogil": True})
def _call_blas_jit(alpha, a, b, beta, c, ta, lda, tb, ldb, ldc):
    def impl(alpha, a, b, beta, c, ta, lda, tb, ldb, ldc):
        # Row-major C (M, N) = A @ B is column-major C^T (N, M) = B^T @ A^T.
        _xxgemm(tb, ta, c.shape[1], c.shape[0], a.shape[1], alpha, b, ldb, a, lda, beta, c,
                ldc)
    return impl


@kernel
def _operand(x, itemsize):
    """(transposed, leading dimension) of a 2-D operand in Fortran's view of row-major data.

    A matrix with unit column stride is row-major (Fortran sees its transpose: flag 0, ld =
    row stride); one with unit row stride (``x.T`` of a row-major array) is column-major
    (flag 1, ld = column stride). A stride of a length-1 axis does not matter. ``(-1, 0)``:
    neither, which BLAS cannot take.
    """
    r, q = x.shape
    s0, s1 = x.strides
    if (q <= 1 or s1 == itemsize) and (r <= 1 or (s0 > 0 and s0 % itemsize == 0
                                                   and s0 // itemsize >= q)):
        return 0, max(1, q, s0 // itemsize if r > 1 else 1)
    if (r <= 1 or s0 == itemsize) and (q <= 1 or (s1 > 0 and s1 % itemsize == 0
                                                   and s1 // itemsize >= r)):
        return 1, max(1, r, s1 // itemsize if q > 1 else 1)
    return -1, 0


@kernel
def gemm(alpha, a, b, beta, c):
    """c = alpha * (a @ b) + beta * c, in place, through BLAS.

    ``beta == 0`` overwrites ``c`` without reading it (NaNs there do not propagate), as BLAS.

    Args:
        alpha: Scale of the product.
        a: (M, K) float32/float64 matrix with a unit stride along either axis: a row-strided
            view (``x[:, 2:5]``) or a transposed one (``x.T``) alike.
        b: (K, N) matrix of ``a``'s dtype, strides as ``a``.
        beta: Scale of ``c``'s current contents; 0 overwrites, 1 accumulates.
        c: (M, N) matrix of ``a``'s dtype with unit column stride and any row stride (a slice
            of a wider matrix); must not overlap ``a`` or ``b``.

    Raises:
        ValueError: shapes that do not match, or a stride BLAS cannot take.
    """
    m, k = a.shape
    n = b.shape[1]
    if b.shape[0] != k or c.shape[0] != m or c.shape[1] != n:
        raise ValueError("gemm: shapes of a (M, K), b (K, N) and c (M, N) do not match")
    if m == 0 or n == 0:
        return
    itemsize = c.itemsize
    tc, ldc = _operand(c, itemsize)
    if tc != 0:
        raise ValueError("gemm: c needs a unit column stride")
    if k == 0:  # an empty sum (BLAS is not called: a and b have no data to point at)
        for i in range(m):
            row = c[i]
            for j in range(n):
                row[j] = 0 if beta == 0 else beta * row[j]
        return
    ta, lda = _operand(a, itemsize)
    tb, ldb = _operand(b, itemsize)
    if ta < 0 or tb < 0:
        raise ValueError("gemm: a and b need a unit stride along one axis")
    if max(m, n, k, lda, ldb, ldc) > _F_INT_MAX:
        raise ValueError("gemm: a dimension or stride exceeds BLAS's 32-bit integers")
    _call_blas(alpha, a, b, beta, c, ta, lda, tb, ldb, ldc)


@intrinsic
def _unit_row(typingctx, a, i):
    """Row ``i`` of a 2-D array as a C-contiguous 1-D view (unit column stride assumed)."""
    if not (isinstance(a, types.Array) and a.ndim == 2 and isinstance(i, types.Integer)):
        return None
    row_type = a.copy(ndim=1, layout="C")

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        shape = cgutils.unpack_tuple(builder, array.shape)
        strides = cgutils.unpack_tuple(builder, array.strides)
        start = builder.gep(builder.bitcast(array.data, cgutils.voidptr_t),
                            [builder.mul(index, strides[0])])
        row = context.make_array(row_type)(context, builder)
        context.populate_array(row, data=builder.bitcast(start, array.data.type),
                               shape=[shape[1]], strides=[array.itemsize],
                               itemsize=array.itemsize, meminfo=array.meminfo,
                               parent=array.parent)
        return impl_ret_borrowed(context, builder, row_type, row._getvalue())

    return row_type(a, i), codegen


def unit_row(a, i):
    """Row ``i`` of a 2-D array whose column stride is one element, typed C-contiguous.

    Unchecked, for kernels' inner loops: the caller ensures ``a.strides[1] == a.itemsize``
    (or ``a.shape[1] <= 1``) and ``0 <= i < a.shape[0]``. In Python, ``a[i]``.
    """
    return a[i]


@overload(unit_row, jit_options={"nogil": True})
def _unit_row_jit(a, i):
    def impl(a, i):
        return _unit_row(a, i)
    return impl


@intrinsic
def _retype_c(typingctx, a):
    """The same array typed C-contiguous (the data model does not depend on the layout)."""
    if not isinstance(a, types.Array):
        return None
    c_type = a.copy(layout="C")

    def codegen(context, builder, signature, args):
        return impl_ret_borrowed(context, builder, c_type, args[0])

    return c_type(a), codegen


def as_c_layout(a):
    """``a`` typed C-contiguous, for an array typed 'A' that the caller has checked is
    C-contiguous at run time (unchecked: indexing would ignore its strides). In Python, ``a``.
    """
    return a


@overload(as_c_layout, jit_options={"nogil": True})
def _as_c_layout_jit(a):
    if isinstance(a, types.Array) and a.layout == "C":
        return lambda a: a
    return lambda a: _retype_c(a)
