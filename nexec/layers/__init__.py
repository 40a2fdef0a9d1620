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
from nexec.layers.core import Activation, Dense, Flatten, InputLayer
from nexec.layers.merge import Add, Concatenate

__all__ = ["Layer", "ParamSpec", "InputLayer", "Dense", "Conv2D", "Concatenate", "Add",
           "Activation", "Flatten"]


def __getattr__(name: str) -> Any:
    # Layer types contributed by installed plugins, looked up on first use.
    from nexec.plugins import registry

    if name.startswith("_") or name not in registry().layers:
        raise AttributeError(f"module 'nexec.layers' has no layer {name!r}")
    return registry().layers[name]
