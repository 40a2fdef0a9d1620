"""The entry point nexec loads (``[project.entry-points.nexec] pooling = ...``)."""
from __future__ import annotations

from nexec.plugin import hookimpl

#: The nexec plugin API this package is written for.
NEXEC_API_VERSION = "1.2"


@hookimpl
def nexec_layers() -> list[type]:
    from nexec_pooling.layers import (
        AveragePooling3D,
        GlobalAveragePooling3D,
        GlobalMaxPooling3D,
        MaxPooling3D,
    )

    return [MaxPooling3D, AveragePooling3D, GlobalMaxPooling3D, GlobalAveragePooling3D]


@hookimpl
def nexec_kernels() -> list:
    from nexec_pooling.ops import CPU_KERNELS

    return list(CPU_KERNELS)


@hookimpl
def nexec_onnx_exporters() -> dict:
    from nexec_pooling.onnx import EXPORTERS

    return dict(EXPORTERS)
