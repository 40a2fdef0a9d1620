"""Keras pooling layers for nexec, as a plugin: ``MaxPooling2D``, ``AveragePooling2D`` and
``GlobalAveragePooling2D`` (NHWC), with fused Numba CPU kernels.

Installed, they appear as ``nexec.layers.MaxPooling2D`` etc. with no import.
"""
from nexec_pooling.layers import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D

__version__ = "0.1.0"
__all__ = ["MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D"]
