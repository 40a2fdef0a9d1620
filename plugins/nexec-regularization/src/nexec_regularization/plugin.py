"""The entry point nexec loads (``[project.entry-points.nexec] regularization = ...``)."""
from __future__ import annotations

from nexec.plugin import hookimpl

#: The nexec plugin API this package is written for.
NEXEC_API_VERSION = "1.2"


@hookimpl
def nexec_layers() -> list[type]:
    from nexec_regularization.layers import AlphaDropout, GaussianDropout

    return [GaussianDropout, AlphaDropout]


@hookimpl
def nexec_kernels() -> list:
    from nexec_regularization.ops import CPU_KERNELS

    return list(CPU_KERNELS)


def _identity(builder, layer, inputs: list[str]) -> str:  # noqa: ANN001
    """GaussianDropout and AlphaDropout act only in training: at inference (and in an
    exported ONNX model) they are the identity."""
    return inputs[0]


@hookimpl
def nexec_onnx_exporters() -> dict:
    return {"GaussianDropout": _identity, "AlphaDropout": _identity}
