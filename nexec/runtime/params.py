"""All parameters of a model in one flat buffer, so one kernel call updates them all.

The layers' parameter arrays become views of the buffer: ``layer.kernel``, ``get_weights``
and ``set_weights`` keep working and the executor sees every change at the next step.
Trainable parameters come first, so the optimizer updates one contiguous prefix.

Models may share layers (an encoder and the autoencoder built on it, a GAN's generator and
the combined model), as Keras models share variables. Each model has its own store, and the
layers' arrays are views of the store that ran last: a store takes them back, values
included, at the start of each call (:meth:`ParamStore.take`), so every model sees what
any other did to the layers they share.
"""
from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import numpy as np

__all__ = ["ParamStore"]

_stores: weakref.WeakSet[ParamStore] = weakref.WeakSet()


def _fresh_locks_in_child() -> None:
    """A forked child gets new step locks: the parent's may be held by a thread (a ``fit``
    between two steps) that the child does not have."""
    for store in list(_stores):
        store.lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_locks_in_child)


def _trainable(layers: list[Any]) -> set[tuple[int, str]]:
    """``(id(layer), name)`` of the parameters that train now."""
    return {(id(layer), n) for layer in layers for n in layer._params
            if layer.trainable and layer._param_specs[n].trainable}


class ParamStore:
    """Flat parameters, flat gradients and the per-layer views of both."""

    def __init__(self, layers: list[Any], dtype: str) -> None:
        entries = [(layer, n) for layer in layers for n in layer._params]
        #: Which parameters train, as the layers said when the store was made (``compile``).
        self.trainable = _trainable(layers)
        trainable = [(layer, n) for layer, n in entries if (id(layer), n) in self.trainable]
        frozen = [(layer, n) for layer, n in entries if (id(layer), n) not in self.trainable]
        self.layers = layers
        self.order = trainable + frozen
        sizes = [layer._params[n].size for layer, n in self.order]
        self.size = int(sum(sizes))
        self.trainable_size = int(sum(layer._params[n].size for layer, n in trainable))
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

        self._mirrors: dict[str, DeviceParams] = {}
        #: Counts the changes of the values that nexec can see (:meth:`changed`): programs
        #: remake the weights they derive (``Kernel.prepare``) when it moved.
        self.version = 0
        #: Held around each step of every executor over these parameters (see
        #: ``Executor.lock``): a training step writes them while a predict reads them.
        self.lock = threading.RLock()
        _stores.add(self)

    def on(self, device: Any) -> ParamStore | DeviceParams:
        """The arrays kernels of ``device`` use: this store itself where the device's arrays
        are host memory, a mirror elsewhere."""
        if device.host_memory:
            return self
        if device.name not in self._mirrors:
            self._mirrors[device.name] = DeviceParams(self, device)
        return self._mirrors[device.name]

    def changed(self) -> None:
        """Says the values may have changed: a training update, or the start of a call
        (``fit``, ``evaluate``, ``predict``) after which the user may have written them."""
        self.version += 1

    def take(self) -> None:
        """Makes the layers' arrays this store's views again, copying in their current
        values, where another model's store took them since (a model sharing layers with
        this one ran in between)."""
        for layer, name in self.order:
            view = self.views[(id(layer), name)]
            current = layer._params[name]
            if current is not view:
                view[...] = current
                layer._params[name] = view

    def to_device(self) -> None:
        """Takes the layers' arrays (:meth:`take`) and copies the host values to every
        device mirror (after ``set_weights``, loading); called at the start of every
        ``fit``/``evaluate``/``predict``, it also counts as a change (:meth:`changed`): the
        user may have written the layers' arrays in place."""
        self.take()
        self.changed()
        for mirror in self._mirrors.values():
            mirror.device.copy_to_device(mirror.values, self.values)

    def from_device(self, device: Any) -> None:
        """Copies a device's values back, so layers' arrays show what training did there."""
        if device.name in self._mirrors:
            device.read(self.values, self._mirrors[device.name].values)

    def covers(self, layers: list[Any]) -> bool:
        """Whether this store holds exactly these layers' parameters, names and shapes, and
        the same of them train (a layer frozen or unfrozen since needs a new store)."""
        shapes = {(id(layer), n): p.shape for layer in layers for n, p in layer._params.items()}
        return shapes.keys() == self.views.keys() and _trainable(layers) == self.trainable \
            and all(self.views[k].shape == s for k, s in shapes.items())

    def params_of(self, layer: Any) -> dict[str, np.ndarray]:
        return {n: self.views[(id(layer), n)] for n in layer._params}

    def grads_of(self, layer: Any) -> dict[str, np.ndarray]:
        return {n: self.grad_views[(id(layer), n)] for n in layer._params}


class DeviceParams:
    """A device copy of a store: flat values and gradients, and per-layer views of both.

    Weights stay on the device between steps; the trainer copies them in before and out
    after each ``fit``/``evaluate``/``predict`` call (``ParamStore.to_device``/``from_device``).
    """

    def __init__(self, store: ParamStore, device: Any) -> None:
        self.store = store
        self.device = device
        self.values = device.to_device(store.values)
        self.grads = device.zeros(store.grads.shape, store.grads.dtype)
        self.views: dict[tuple[int, str], Any] = {}
        self.grad_views: dict[tuple[int, str], Any] = {}
        at = 0
        for layer, name in store.order:
            shape = layer._params[name].shape
            size = int(np.prod(shape))
            self.views[(id(layer), name)] = self.values[at:at + size].reshape(shape)
            self.grad_views[(id(layer), name)] = self.grads[at:at + size].reshape(shape)
            at += size

    def params_of(self, layer: Any) -> dict[str, Any]:
        return {n: self.views[(id(layer), n)] for n in layer._params}

    def grads_of(self, layer: Any) -> dict[str, Any]:
        return {n: self.grad_views[(id(layer), n)] for n in layer._params}
