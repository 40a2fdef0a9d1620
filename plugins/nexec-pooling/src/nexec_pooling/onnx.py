"""ONNX exporters of the 3-D poolings (``model.export(path, format="onnx")``).

ONNX's MaxPool and AveragePool are channels first (NCDHW): the builder transposes around them
(and folds the transposes between adjacent channels-first ops). Padding is TensorFlow's
``"same"`` rule, the odd cell at the end, which ONNX's explicit pads express; padded cells
never take part (``count_include_pad=0``), as in the layers' kernels.
"""
from __future__ import annotations

from typing import Any

from nexec_pooling.layers import AveragePooling3D, pool_geometry_3d

__all__ = ["export_pooling3d", "export_global_pooling3d", "EXPORTERS"]


def export_pooling3d(b: Any, layer: Any, inputs: list[str]) -> str:
    """MaxPooling3D / AveragePooling3D as ONNX MaxPool / AveragePool on NCDHW."""
    shape = b.shape(inputs[0])
    sizes, before = pool_geometry_3d(shape, layer.pool_size, layer.strides, layer.padding)
    after = [max((o - 1) * s + k - n - p, 0) for o, s, k, n, p in
             zip(sizes, layer.strides, layer.pool_size, shape[:3], before)]
    attrs = {"kernel_shape": list(layer.pool_size), "strides": list(layer.strides),
             "pads": [*before, *after]}
    if isinstance(layer, AveragePooling3D):
        y = b.op("AveragePool", [b.channels_first(inputs[0], 5)], count_include_pad=0, **attrs)
    else:
        y = b.op("MaxPool", [b.channels_first(inputs[0], 5)], **attrs)
    return b.channels_last(y, 5)


def export_global_pooling3d(b: Any, layer: Any, inputs: list[str]) -> str:
    """GlobalMaxPooling3D / GlobalAveragePooling3D as a reduction over depth, height and
    width (NDHWC, no transpose needed)."""
    op = "ReduceMean" if type(layer).__name__ == "GlobalAveragePooling3D" else "ReduceMax"
    return b.reduce(op, inputs[0], [1, 2, 3], keepdims=layer.keepdims)


EXPORTERS = {"MaxPooling3D": export_pooling3d, "AveragePooling3D": export_pooling3d,
             "GlobalMaxPooling3D": export_global_pooling3d,
             "GlobalAveragePooling3D": export_global_pooling3d}
