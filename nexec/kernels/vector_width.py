"""Full-width SIMD for nexec's CPU kernels: a Numba pipeline that asks LLVM for 512-bit vectors.

Why: on Intel CPUs with AVX-512 (Skylake-SP through Emerald Rapids) LLVM's tuning prefers
256-bit vectors, because on the first of them 512-bit instructions lowered the clock of
the whole core; Numba compiles for the host with that default, so its loops ran on half
the vector registers OpenBLAS uses. nexec's kernels are loops over channels and filters:
with 512-bit vectors the direct convolution ran 1.3-1.9x faster on a 2026 Xeon
(docs/performance.md, "Full-width vectors"). The choice is per function (LLVM's
``"prefer-vector-width"`` attribute), so Numba code outside nexec is not touched; on a
CPU without 512-bit vectors the attribute changes nothing.

How: :class:`WideVectorPipeline` is Numba's nopython pipeline with its lowering pass
replaced by one whose lowering marks the function before LLVM optimises it
(``njit(pipeline_class=...)``, a documented Numba extension point). Machine code cached on
disk keeps the width it was compiled with.
"""
from __future__ import annotations

import functools
from typing import Any

from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import register_pass
from numba.core.lowering import Lower
from numba.core.typed_passes import NativeLowering

__all__ = ["VECTOR_WIDTH", "WideVectorPipeline", "native_vector_bits"]

#: Bits of the vectors LLVM is asked to prefer in nexec's kernels.
VECTOR_WIDTH = 512
_ATTRIBUTE = f'"prefer-vector-width"="{VECTOR_WIDTH}"'


class _WideLower(Lower):
    def post_lower(self) -> None:
        super().post_lower()
        # llvmlite's attribute set accepts only keyword attributes; a string attribute is
        # written into the IR as given.
        set.add(self.function.attributes, _ATTRIBUTE)


@register_pass(mutates_CFG=True, analysis_only=False)
class _WideNativeLowering(NativeLowering):
    _name = "nexec_wide_native_lowering"

    @property
    def lowering_class(self) -> Any:
        return _WideLower


class WideVectorPipeline(CompilerBase):
    """Numba's nopython pipeline, lowering each function with :data:`VECTOR_WIDTH`-bit
    vectors preferred."""

    def define_pipelines(self) -> list[Any]:
        pm = DefaultPassBuilder.define_nopython_pipeline(self.state)
        pm.passes = [(_WideNativeLowering if p is NativeLowering else p, d)
                     for p, d in pm.passes]
        pm.finalize()
        return [pm]


@functools.cache
def native_vector_bits() -> int:
    """Bits of the widest float vectors in the machine code Numba generates here: 512 with
    AVX-512F, 256 with AVX, else 128.

    Kernels whose register blocks are sized for 32 vector registers (AVX-512) spill on a CPU
    with 16 (AVX2: Zen 3, most laptops) and read this to pick smaller blocks. It reads the
    features Numba compiles for (``NUMBA_CPU_FEATURES`` if set, else the host's, with
    ``NUMBA_ENABLE_AVX`` applied), so the choice matches the registers the code gets; Numba's
    cache keys machine code by those features too.
    """
    from numba.core import codegen, config

    features = getattr(config, "CPU_FEATURES", None)  # set by Numba from the environment
    if features is None:
        features = codegen.get_host_cpu_features()
    flags = set(str(features).split(","))
    if "+avx512f" in flags:
        return 512
    if "+avx" in flags:
        return 256
    return 128
