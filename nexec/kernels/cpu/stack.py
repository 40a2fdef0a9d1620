"""Scratch arrays on a kernel's stack: no heap allocation, and registers where LLVM can.

Numba's arrays live on the heap, which LLVM must assume any other array may alias, so
accumulators kept in one go through memory at every use; an entry-block ``alloca`` of a fixed
size is promoted to (vector) registers once the loops over it are unrolled or vectorised. A
compiled step also allocates nothing this way (``tests/training/test_no_allocation.py``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array, populate_array

__all__ = ["stack_array"]


def stack_array(like: Any, count: int) -> np.ndarray:
    """A C-contiguous 1-D scratch array of ``count`` (a constant) elements of ``like``'s
    dtype (``like``: a float array or a float scalar); compiled, on the calling kernel's
    stack and valid until it returns. In Python (``NUMBA_DISABLE_JIT``), a NumPy array."""
    return np.empty(count, np.asarray(like).dtype)


@intrinsic
def _alloca(typingctx, like, count):
    dtype = like.dtype if isinstance(like, types.Array) else like
    if not isinstance(dtype, types.Float) or not isinstance(count, types.IntegerLiteral):
        return None
    size = count.literal_value
    arrty = types.Array(dtype, 1, "C")

    def codegen(context, builder, signature, args):
        lty = context.get_data_type(dtype)
        itemsize = context.get_abi_sizeof(lty)
        ptr = cgutils.alloca_once(builder, lty, size=size)
        ary = make_array(arrty)(context, builder)
        intp = context.get_value_type(types.intp)
        populate_array(ary, data=ptr, shape=[intp(size)], strides=[intp(itemsize)],
                       itemsize=intp(itemsize), meminfo=None)
        return impl_ret_borrowed(context, builder, arrty, ary._getvalue())

    return arrty(like, count), codegen


@overload(stack_array, jit_options={"nogil": True})
def _stack_array_jit(like, count):
    def impl(like, count):
        return _alloca(like, count)
    return impl
