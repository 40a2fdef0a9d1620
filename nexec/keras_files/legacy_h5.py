"""Legacy HDF5 model files (``model.save("m.h5")`` in Keras 2 / tf.keras, and in Keras 3).

The file's root attributes hold ``model_config`` (the serialised model as JSON) and, when it
was compiled, ``training_config``; the group ``model_weights`` has one group per layer
name, listed in its ``layer_names`` attribute, whose ``weight_names`` attribute lists that
layer's datasets (paths inside the group, ``dense/kernel:0`` in Keras 2) in ``get_weights``
order. Weights are matched to nexec's layers by layer name, then by position.
"""
from __future__ import annotations

import io
import json
from typing import IO, Any

import numpy as np

from nexec.errors import SavedModelError
from nexec.io import atomic_write
from nexec.keras_files.archive import KERAS_FORMAT_VERSION, h5py_module
from nexec.keras_files.compile_config import keras_compile_config
from nexec.keras_files.model_config import keras_layers, model_entry
from nexec.keras_files.weights import copy_checked, legacy_layer_weights

__all__ = ["HDF5_SIGNATURE", "is_hdf5_file", "read_legacy_h5", "assign_legacy_weights",
           "write_legacy_h5"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_SIGNATURE_OFFSETS = (0, 512, 1024, 2048)  # after a user block, HDF5 looks at these


def is_hdf5_file(path: str) -> bool:
    """Whether ``path`` carries the HDF5 signature (at 0 or after a user block)."""
    with open(path, "rb") as f:
        for offset in _SIGNATURE_OFFSETS:
            f.seek(offset)
            if f.read(8) == HDF5_SIGNATURE:
                return True
    return False


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _names(group: Any, attr: str) -> list[str]:
    """A list attribute, joined from the chunks ``attr0``, ``attr1``... Keras splits a long
    one into."""
    if attr in group.attrs:
        return [_text(n) for n in group.attrs[attr]]
    out: list[str] = []
    i = 0
    while f"{attr}{i}" in group.attrs:
        out += [_text(n) for n in group.attrs[f"{attr}{i}"]]
        i += 1
    return out


def read_legacy_h5(path: str) -> tuple[dict[str, Any], dict[str, Any] | None,
                                       dict[str, list[np.ndarray]]]:
    """The serialised model, its training config (or None) and ``{layer name: arrays}``.

    Raises:
        SavedModelError: Not a Keras model file (a weights-only file included), or damaged.
    """
    h5py = h5py_module()
    try:
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                raise SavedModelError(
                    f"'{path}' is an HDF5 file without a model config (a weights-only file "
                    "or not a Keras model); build the model and call model.load_weights, or "
                    "save the whole model in Keras.")
            config = json.loads(_text(f.attrs["model_config"]))
            training = f.attrs.get("training_config")
            training_config = json.loads(_text(training)) if training is not None else None
            root = f["model_weights"] if "model_weights" in f else f
            weights: dict[str, list[np.ndarray]] = {}
            for name in _names(root, "layer_names"):
                group = root[name]
                weights[name] = [np.asarray(group[w]) for w in _names(group, "weight_names")]
    except SavedModelError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise SavedModelError(f"'{path}' is not a readable Keras HDF5 model file: it is "
                              f"truncated, corrupted or of another kind "
                              f"({type(e).__name__}: {e}).") from None
    if not isinstance(config, dict) or "config" not in config:
        raise SavedModelError(f"'{path}': model_config is not a serialised Keras model.")
    return config, training_config, weights


def assign_legacy_weights(model: Any, weights: dict[str, list[np.ndarray]], path: str) -> None:
    """Copies a legacy file's weights into ``model`` by layer name, after checking every
    layer's count and shapes."""
    copy_checked([(name, None, arrays, weights.get(name, []))
                  for name, arrays in legacy_layer_weights(model)], path)


def write_legacy_h5(model: Any, path: str) -> None:
    """Writes ``model`` as a legacy Keras HDF5 file (atomically), as Keras 3's
    ``model.save("m.h5")`` does: config, compile settings when compiled, weights by layer."""
    h5py = h5py_module()
    buffer = io.BytesIO()
    trainer = getattr(model, "_trainer", None)
    with h5py.File(buffer, "w") as f:
        f.attrs["keras_version"] = KERAS_FORMAT_VERSION
        f.attrs["model_config"] = json.dumps(model_entry(model))
        if trainer is not None:
            compile_config = keras_compile_config(trainer)
            compile_config["optimizer_config"] = compile_config.pop("optimizer")
            f.attrs["training_config"] = json.dumps(compile_config)
        root = f.create_group("model_weights")
        root.attrs["keras_version"] = KERAS_FORMAT_VERSION
        root.attrs["layer_names"] = [layer.name.encode("utf8") for layer in keras_layers(model)]
        for name, arrays in legacy_layer_weights(model):
            group = root.create_group(name)
            weight_names = [f"{name}/{i}" for i in range(len(arrays))]
            group.attrs["weight_names"] = [w.encode("utf8") for w in weight_names]
            for w, a in zip(weight_names, arrays):
                group.create_dataset(w, data=np.asarray(a))

    def write(f: IO[bytes]) -> None:
        f.write(buffer.getvalue())

    atomic_write(path, write)
