"""A value the compiler cannot see through: ordinary stores where LLVM would mask them.

LLVM compiles ``z[j] = v if v > 0 else 0`` over ``z``'s own values (``v = z[j]``: relu in
place) into a masked store of the zeros alone, the other branch writing back what was read.
AVX2's ``vmaskmovps`` store is microcoded on AMD Zen 3: relu in place over 32768 x 32 float32
took 0.58 ms, against 0.12 ms once each kept value is multiplied by a 1 the optimiser cannot
fold (:func:`opaque`), so that both branches store and the loop vectorises to a blend. The
product is exact, so the bits are the same.
"""
from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

__all__ = ["opaque"]


def opaque(x: Any) -> Any:
    """``x`` unchanged, compiled as a value LLVM knows nothing about (an empty inline-assembly
    block that returns its integer operand). In Python (``NUMBA_DISABLE_JIT``), ``x``."""
    return x


@intrinsic
def _opaque_int(typingctx, x):
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ty = context.get_value_type(signature.args[0])
        return builder.asm(ir.FunctionType(ty, [ty]), "", "=r,0", [args[0]],
                           side_effect=False)

    return x(x), codegen


@overload(opaque, jit_options={"nogil": True})
def _opaque_jit(x):
    if isinstance(x, types.Integer):
        return lambda x: _opaque_int(x)
    return None
