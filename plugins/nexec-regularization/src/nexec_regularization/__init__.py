"""Keras regularization layers for nexec, as a plugin: ``Dropout`` and
``BatchNormalization``, with fused Numba CPU kernels.

Installed, they appear as ``nexec.layers.Dropout`` and ``nexec.layers.BatchNormalization``
with no import.
"""
from nexec_regularization.layers import BatchNormalization, Dropout

__version__ = "0.1.0"
__all__ = ["Dropout", "BatchNormalization"]
