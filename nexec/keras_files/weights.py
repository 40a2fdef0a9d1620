"""Where Keras keeps each layer's weights, in a ``.keras`` archive and in a legacy ``.h5``.

A ``.keras`` archive files a layer's variables (in ``get_weights`` order) as datasets ``0``,
``1``... of ``<path>/vars``, where ``<path>`` comes from the object tree, not the layer's
name: ``layers/<snake class name>[_<n>]`` in Keras' layer order, ``layers/<...>/layers/...``
inside a nested model, ``.../cell`` for a recurrent layer's cell, ``.../forward_layer/cell``
and ``.../backward_layer/cell`` for a Bidirectional one and ``.../layer`` for a
TimeDistributed one. A legacy ``.h5`` file lists the weights per top-level layer name
(``model_weights/<name>`` with a ``weight_names`` attribute, in ``get_weights`` order, a
nested model's being all of its layers' in its own Keras order).

nexec's layers hold their weights in Keras' order and shapes, so placing them is only a
matter of finding these paths.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nexec.errors import SavedModelError
from nexec.keras_files.model_config import (
    _is_model,
    keras_class_name,
    keras_layers,
    keras_snake,
)

__all__ = ["archive_groups", "legacy_layer_weights", "leaf_arrays", "copy_checked"]

_RNN = ("SimpleRNN", "LSTM", "GRU")


def _unique(name: str, used: dict[str, int]) -> str:
    """Keras' ``_get_unique_name``: ``dense``, ``dense_1``, ``dense_2``..."""
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def archive_groups(model: Any, prefix: str = "") -> list[tuple[str, str, list[np.ndarray]]]:
    """Every variable group of a model in a ``.keras`` archive's ``model.weights.h5``:
    ``(group path, owner name, arrays)`` with the layer's parameter arrays themselves (not
    copies), in Keras' order. Groups without variables are listed too (Keras writes them).
    """
    out: list[tuple[str, str, list[np.ndarray]]] = [(f"{prefix}vars", model.name, [])]
    used: dict[str, int] = {}
    for layer in keras_layers(model):
        path = f"{prefix}layers/{_unique(keras_snake(keras_class_name(layer)), used)}"
        if _is_model(layer):
            out += archive_groups(layer, prefix=f"{path}/")
            continue
        arrays = list(layer._params.values())
        kind = type(layer).__name__
        out.append((f"{path}/vars", layer.name, [] if kind in _RNN + ("Bidirectional",
                                                                       "TimeDistributed")
                    else arrays))
        if kind in _RNN:
            out.append((f"{path}/cell/vars", layer.name, arrays))
        elif kind == "Bidirectional":
            half = len(arrays) // 2
            out.append((f"{path}/forward_layer/vars", layer.name, []))
            out.append((f"{path}/forward_layer/cell/vars", layer.name, arrays[:half]))
            out.append((f"{path}/backward_layer/vars", layer.name, []))
            out.append((f"{path}/backward_layer/cell/vars", layer.name, arrays[half:]))
        elif kind == "TimeDistributed":
            out.append((f"{path}/layer/vars", layer.name, arrays))
    return out


def leaf_arrays(layer: Any) -> list[np.ndarray]:
    """A layer's parameter arrays as a legacy ``.h5`` lists them: Keras'
    ``trainable_weights + non_trainable_weights`` (a nested model's: every layer's trainable
    ones in Keras' layer order, then every layer's non-trainable ones)."""
    trainable, frozen = _split(layer)
    return trainable + frozen


def _split(layer: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if _is_model(layer):
        parts = [_split(inner) for inner in keras_layers(layer)]
        trainable = [a for t, _ in parts for a in t]
        frozen = [a for _, f in parts for a in f]
        return (trainable, frozen) if layer.trainable else ([], trainable + frozen)
    if not layer.trainable:
        return [], list(layer._params.values())
    specs = layer._param_specs
    return ([p for n, p in layer._params.items() if specs[n].trainable],
            [p for n, p in layer._params.items() if not specs[n].trainable])


def legacy_layer_weights(model: Any) -> list[tuple[str, list[np.ndarray]]]:
    """``(layer name, arrays)`` per top-level layer (input layers included, with none), as
    a legacy ``.h5`` lists them."""
    return [(layer.name, leaf_arrays(layer)) for layer in keras_layers(model)]


def copy_checked(entries: list[tuple[str, str | None, list[np.ndarray], list[np.ndarray]]],
                 path: str) -> None:
    """Copies saved arrays into a model's parameters, all or nothing.

    Args:
        entries: Per layer ``(owner, group, arrays, saved)``: the layer's name, where the
            file keeps its weights (an archive's group path; None for a legacy file, whose
            weights are found by the layer's name), its parameter arrays and the file's.
        path: The file, for messages.

    Raises:
        SavedModelError: A count or shape differs (checked for every layer before any
            array is written).
    """
    plan = []
    for owner, group, arrays, saved in entries:
        at = f" at '{group}'" if group is not None else ""
        if len(saved) != len(arrays):
            raise SavedModelError(f"'{path}': layer '{owner}' has {len(arrays)} weight(s), "
                                  f"the file has {len(saved)}{at}.")
        for i, (a, s) in enumerate(zip(arrays, saved)):
            if a.shape != s.shape:
                at_i = f" at '{group}/{i}'" if group is not None else ""
                raise SavedModelError(f"'{path}': layer '{owner}' weight {i} has shape "
                                      f"{a.shape}, the file has {s.shape}{at_i}.")
            plan.append((a, s))
    for a, s in plan:
        np.copyto(a, s, casting="unsafe")
