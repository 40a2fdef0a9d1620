"""The entry point nexec loads (``[project.entry-points.nexec] regularization = ...``)."""
from __future__ import annotations

from nexec.plugin import hookimpl

#: The nexec plugin API this package is written for.
NEXEC_API_VERSION = "1.0"


@hookimpl
def nexec_layers() -> list[type]:
    from nexec_regularization.layers import AlphaDropout, GaussianDropout

    return [GaussianDropout, AlphaDropout]


@hookimpl
def nexec_kernels() -> list:
    from nexec_regularization.ops import CPU_KERNELS

    return list(CPU_KERNELS)
