"""Layers: built-ins here; plugin layer types are found by name (``layers.MaxPooling3D``).

Example:
    >>> from nexec import layers
    >>> layers.Dense(4).units
    4
"""
from __future__ import annotations

from typing import Any

from nexec.layers.activation import ELU, LeakyReLU, Normalization, PReLU, ReLU, Rescaling, Softmax
from nexec.layers.base import Layer, ParamSpec
from nexec.layers.conv import Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from nexec.layers.core import Activation, Dense, Flatten, Input, InputLayer
from nexec.layers.embedding import Embedding
from nexec.layers.merge import (
    Add,
    Average,
    Concatenate,
    Dot,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    dot,
    maximum,
    minimum,
    multiply,
    subtract,
)
from nexec.layers.normalization import BatchNormalization, LayerNormalization
from nexec.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from nexec.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN, TimeDistributed
from nexec.layers.regularization import Dropout, GaussianNoise, SpatialDropout1D, SpatialDropout2D
from nexec.layers.reshaping import (
    Cropping2D,
    Permute,
    RepeatVector,
    Reshape,
    UpSampling2D,
    ZeroPadding1D,
    ZeroPadding2D,
)
from nexec.plugins import registry as _registry

__all__ = ["Layer", "ParamSpec", "Input", "InputLayer", "Dense", "Conv2D", "Concatenate", "Add",
           "Activation", "Flatten"]
__all__ += ["Embedding"]
__all__ += ["Conv1D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose"]
__all__ += ["Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise",
            "BatchNormalization", "LayerNormalization"]
__all__ += ["MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
            "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D",
            "GlobalAveragePooling2D", "Reshape", "Permute", "RepeatVector", "UpSampling2D",
            "ZeroPadding1D", "ZeroPadding2D", "Cropping2D"]
__all__ += ["Subtract", "Multiply", "Average", "Maximum", "Minimum", "Dot", "add", "subtract",
            "multiply", "average", "maximum", "minimum", "concatenate", "dot"]
__all__ += ["ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Rescaling", "Normalization"]
__all__ += ["SimpleRNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed"]


def __getattr__(name: str) -> Any:
    # Layer types contributed by installed plugins, looked up on first use.
    if name.startswith("_"):
        raise AttributeError(f"module 'nexec.layers' has no attribute {name!r}")
    known = _registry().layers
    if name not in known:
        raise AttributeError(_no_layer_message(name, sorted(known)))
    return known[name]


def _no_layer_message(name: str, known: list[str]) -> str:
    """Names the closest layers nexec has (by spelling), so a Keras user sees what to use."""
    import difflib

    close = difflib.get_close_matches(name, known, n=4, cutoff=0.5)
    close += [k for k in known if k.lower() == name.lower() and k not in close]
    hint = f"nexec has {', '.join(close)}" if close else \
        f"nexec has {len(known)} layers, e.g. {', '.join(known[:6])}"
    return (f"module 'nexec.layers' has no layer {name!r}; {hint} (docs/keras.md lists what "
            "is supported; a plugin package may provide more)")
