"""All parameters of a model in one flat buffer, so one kernel call updates them all.

The layers' parameter arrays become views of the buffer: ``layer.kernel``, ``get_weights``
and ``set_weights`` keep working and the executor sees every change at the next step.
Trainable parameters come first, so the optimizer updates one contiguous prefix.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ParamStore"]


class ParamStore:
    """Flat parameters, flat gradients and the per-layer views of both."""

    def __init__(self, layers: list[Any], dtype: str) -> None:
        entries = [(l, n) for l in layers for n in l._params]
        trainable = [(l, n) for l, n in entries if l.trainable and l._param_specs[n].trainable]
        frozen = [(l, n) for l, n in entries if (l, n) not in trainable]
        self.layers = layers
        self.order = trainable + frozen
        sizes = [l._params[n].size for l, n in self.order]
        self.size = int(sum(sizes))
        self.trainable_size = int(sum(l._params[n].size for l, n in trainable))
        self.values = np.zeros(self.size, dtype)
        self.grads = np.zeros(self.size, dtype)
        self.views: dict[tuple[int, str], np.ndarray] = {}
        self.grad_views: dict[tuple[int, str], np.ndarray] = {}
        at = 0
        for (layer, name), size in zip(self.order, sizes):
            shape = layer._params[name].shape
            value = self.values[at:at + size].reshape(shape)
            value[...] = layer._params[name]
            layer._params[name] = value  # the layer now reads and writes the flat buffer
            self.views[(id(layer), name)] = value
            self.grad_views[(id(layer), name)] = self.grads[at:at + size].reshape(shape)
            at += size

    def owns(self, layers: list[Any]) -> bool:
        """Whether this store still backs exactly these layers' parameters."""
        return all(l._params[n] is self.views.get((id(l), n)) for l in layers for n in l._params) \
            and sum(len(l._params) for l in layers) == len(self.views)

    def params_of(self, layer: Any) -> dict[str, np.ndarray]:
        return {n: self.views[(id(layer), n)] for n in layer._params}

    def grads_of(self, layer: Any) -> dict[str, np.ndarray]:
        return {n: self.grad_views[(id(layer), n)] for n in layer._params}
