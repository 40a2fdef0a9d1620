"""Keras noise layers for nexec, as an example plugin: ``GaussianDropout`` and
``AlphaDropout``, with their own Numba CPU kernels and random stream.

Installed, they appear as ``nexec.layers.GaussianDropout`` and ``nexec.layers.AlphaDropout``
with no import. (``Dropout`` and ``BatchNormalization``, which this package used to provide,
are part of nexec itself.)
"""
from nexec_regularization.layers import AlphaDropout, GaussianDropout

__version__ = "0.2.0"
__all__ = ["GaussianDropout", "AlphaDropout"]
