"""Keras 3-D pooling layers for nexec, as a plugin: ``MaxPooling3D``, ``AveragePooling3D``,
``GlobalMaxPooling3D`` and ``GlobalAveragePooling3D`` (NDHWC), with fused Numba CPU kernels.

An example of nexec's plugin API for third parties (nexec itself ships the 1-D and 2-D
poolings). Installed, the layers appear as ``nexec.layers.MaxPooling3D`` etc. with no import.
"""
from nexec_pooling.layers import (
                                  AveragePooling3D,
                                  GlobalAveragePooling3D,
                                  GlobalMaxPooling3D,
                                  MaxPooling3D,
)

__version__ = "0.1.0"
__all__ = ["MaxPooling3D", "AveragePooling3D", "GlobalMaxPooling3D", "GlobalAveragePooling3D"]
