"""Layers: built-ins here; plugin layer types are found by name (``layers.MaxPooling2D``).

Example:
    >>> from nexec import layers
    >>> layers.Dense(4).units
    4
"""
from __future__ import annotations

from typing import Any

from nexec.layers.base import Layer, ParamSpec
from nexec.layers.conv import Conv2D
from nexec.layers.core import Activation, Dense, Flatten, Input, InputLayer
from nexec.layers.merge import Add, Concatenate
from nexec.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN, TimeDistributed
from nexec.plugins import registry as _registry

__all__ = ["Layer", "ParamSpec", "Input", "InputLayer", "Dense", "Conv2D", "Concatenate", "Add",
           "Activation", "Flatten"]
__all__ += ["SimpleRNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed"]


def __getattr__(name: str) -> Any:
    # Layer types contributed by installed plugins, looked up on first use.
    if name.startswith("_") or name not in _registry().layers:
        raise AttributeError(f"module 'nexec.layers' has no layer {name!r}")
    return _registry().layers[name]
