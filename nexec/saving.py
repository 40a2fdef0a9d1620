"""Architecture as JSON; weights, or a whole model, as ``.npz``; every write is atomic.

A model's config lists its layers (class name + ``get_config()``) and its nodes in
topological order, each naming the (layer, call, output) it reads; rebuilding replays those
calls, so names, graph and parameter shapes round-trip exactly. Files are written to a
temporary name in the same folder and renamed (``nexec.io.atomic_write``), so a crash never
leaves a half-written file where a good one was.

This module sits above the model: the writing side is the model's own (``model.get_config()``,
``to_json``, ``save``, ``save_weights``), and the functions here are their Keras-style
function forms plus the reading of a saved model file, which compiles the model again.
"""
from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from nexec.errors import SavedModelError
from nexec.io import atomic_write, is_zip_file
from nexec.keras_files import archive as keras_archive
from nexec.keras_files import legacy_h5
from nexec.keras_files.compile_config import compile_from_keras
from nexec.keras_files.model_config import build_model
from nexec.model import (
    FORMAT,
    MODEL_FILE_VERSION,
    Model,
    Sequential,
    layer_class,
    model_from_config,
    model_from_json,
)
from nexec.plugins import registry

__all__ = ["model_config", "model_from_config", "to_json", "model_from_json", "save_model",
           "load_model", "save_weights", "load_weights", "layer_class",
           "MODEL_FILE_VERSION", "FORMAT", "atomic_write", "is_zip_file", "check_npz_sizes"]

_MAX_DEFLATE_RATIO = 1100  # deflate expands at most ~1032x; a larger claim is a lie


def model_config(model: Model) -> dict[str, Any]:
    """The config dict of a ``Model`` or ``Sequential`` (see module docstring)."""
    return model.get_config()


def to_json(model: Model, **kwargs: Any) -> str:
    """The model's architecture as JSON (:func:`model_from_json` reads it back)."""
    return model.to_json(**kwargs)


def save_weights(model: Model, path: str) -> None:
    """Writes every parameter to ``path`` (``.npz``), keyed ``layer/param``, atomically."""
    model.save_weights(path)


def load_weights(model: Model, path: str) -> None:
    """Loads parameters saved by :func:`save_weights`; validates names and shapes first."""
    model.load_weights(path)


def save_model(model: Model, path: str) -> None:
    """Architecture, weights and (once compiled) compile settings and optimizer state, in one
    file written atomically (the layout is described at ``Model.save``)."""
    model.save(path)


def load_model(path: str, compile: bool = True) -> Model:
    """Reads a model file: nexec's own (``model.save(path)``), a Keras 3 ``.keras`` archive
    or a legacy Keras ``.h5`` file, told apart by content, not by extension.

    A Keras file's model is checked before anything is built: one ``UnsupportedModelError``
    lists every layer or option nexec does not support. Its compile settings are restored
    when nexec supports them (otherwise a warning, and the model loads uncompiled).

    Args:
        path: The file.
        compile: Compile the model as it was when saved (for nexec's own files optimizer
            state included, so ``fit`` continues where it stopped); ignored for a model
            saved uncompiled.

    Raises:
        FileNotFoundError: No such file.
        SavedModelError: A truncated, corrupted or foreign file, or a newer format.
        UnsupportedModelError: A Keras model with layers or options nexec lacks.
    """
    if os.path.isfile(path):
        if is_zip_file(path) and keras_archive.is_keras_archive(path):
            return _load_keras_archive(path, compile)
        if legacy_h5.is_hdf5_file(path):
            return _load_legacy_h5(path, compile)
    arrays = _read_model_file(path)
    model = model_from_json(str(arrays.pop("__config__")))
    compile_json = arrays.pop("__compile__", None)
    optimizer = {k: arrays.pop(k) for k in [k for k in arrays if k.startswith("__optimizer__/")]}
    model._assign_weight_arrays(arrays)
    if compile and compile_json is not None:
        _compile_from(model, json.loads(str(compile_json)), optimizer, path)
    return model


def _load_keras_archive(path: str, compile: bool) -> Model:
    entry, groups = keras_archive.read_archive(path)
    model = build_model(entry, Model, Sequential)
    keras_archive.assign_weights(model, groups, path)
    if compile:
        compile_from_keras(model, entry.get("compile_config"), path)
    return model


def _load_legacy_h5(path: str, compile: bool) -> Model:
    entry, training_config, weights = legacy_h5.read_legacy_h5(path)
    model = build_model(entry, Model, Sequential)
    legacy_h5.assign_legacy_weights(model, weights, path)
    if compile:
        compile_from_keras(model, training_config, path)
    return model


def _read_model_file(path: str) -> dict[str, np.ndarray]:
    """Every array of a saved model file, checked; a clear error for anything else."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No saved model at '{path}'.")
    if not is_zip_file(path):
        raise SavedModelError(f"'{path}' is not a nexec model file or a Keras one (neither "
                              "a zip archive nor an HDF5 file); write one with "
                              "model.save(path).")
    try:
        check_npz_sizes(path)
        with np.load(path, allow_pickle=False) as data:
            files = data.files
            if "__format__" not in files or "__config__" not in files:
                raise SavedModelError(f"'{path}' is not a nexec model file (it has no "
                                      "format marker); write one with model.save(path).")
            version = int(data["__format__"][0])
            if version > MODEL_FILE_VERSION:
                raise SavedModelError(
                    f"'{path}' was written by a newer nexec (model file format {version}); "
                    f"this nexec reads format {MODEL_FILE_VERSION} and older. Upgrade nexec.")
            return {k: data[k] for k in files if k != "__format__"}
    except SavedModelError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        # np.load raises ValueError/OSError for a file that is not an .npz at all, zipfile
        # BadZipFile for a truncated one (no central directory) or a bad CRC.
        raise SavedModelError(f"'{path}' is not a readable nexec model file: it is truncated, "
                              f"corrupted or of another kind ({type(e).__name__}: {e}).") from None


def _compile_from(model: Model, config: dict[str, Any], optimizer: dict[str, np.ndarray],
                  path: str) -> None:
    opt_entry = config["optimizer"]
    table = registry().optimizers
    cls = next((c for c in table.values() if c.__name__ == opt_entry["class_name"]), None)
    if cls is None:
        raise SavedModelError(f"'{path}' was compiled with optimizer "
                              f"{opt_entry['class_name']!r}, which no installed plugin provides.")
    opt = cls.from_config(opt_entry["config"]) if hasattr(cls, "from_config") else \
        cls(**opt_entry["config"])
    names = model.output_names
    model.compile(optimizer=opt, loss=dict(zip(names, config["loss"])),
                  metrics=dict(zip(names, config["metrics"])),
                  loss_weights=dict(zip(names, config["loss_weights"])),
                  jit_step=config.get("jit_step", False),
                  steps_per_execution=config.get("steps_per_execution", 1))
    if len(optimizer) != len(opt.state) + 1:
        raise SavedModelError(f"'{path}': optimizer state has {len(optimizer) - 1} slot(s), "
                              f"{type(opt).__name__} needs {len(opt.state)}.")
    saved = [optimizer[f"__optimizer__/{i}"] for i in range(len(opt.state))]
    for i, (slot, array) in enumerate(zip(opt.state, saved)):
        if array.shape != tuple(slot.shape):
            raise SavedModelError(f"'{path}': optimizer slot {i} has shape {array.shape}, the "
                                  f"model's parameters need {tuple(slot.shape)}.")
    opt.iterations = int(optimizer["__optimizer__/iterations"])
    opt.load_state(saved)


def check_npz_sizes(path: str) -> None:
    """Refuses an ``.npz`` whose members declare more data than the file can hold, before
    anything is allocated: a header claiming 16 GiB in a 1 KB file is a SavedModelError, not
    a MemoryError.

    Each member's ``.npy`` header (shape, dtype) must fit in the member's uncompressed size,
    which must itself fit in the file (stored members) or in what deflate can expand to.

    Raises:
        SavedModelError: A member declares more than the file holds, or has no valid header.
    """
    size = os.path.getsize(path)
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            limit = size if info.compress_type == zipfile.ZIP_STORED else \
                info.compress_size * _MAX_DEFLATE_RATIO
            if info.file_size > limit:
                raise SavedModelError(
                    f"'{path}': member {info.filename!r} declares {info.file_size} bytes, more "
                    f"than the {size}-byte file can hold; the file is corrupted or hostile.")
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as f:
                try:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(f)
                except ValueError as e:
                    raise SavedModelError(f"'{path}': member {info.filename!r} has no valid "
                                          f"array header ({e}).") from None
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared > info.file_size:
                    raise SavedModelError(
                        f"'{path}': member {info.filename!r} declares an array of shape "
                        f"{shape} ({declared} bytes) in {info.file_size} bytes; the file is "
                        "corrupted or hostile.")
