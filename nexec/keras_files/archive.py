"""Keras 3 ``.keras`` archives: a zip of ``config.json`` (the serialised model, with its
``compile_config``), ``metadata.json`` and ``model.weights.h5`` (weights filed as
``nexec.keras_files.weights`` describes).

Reading returns the parts; the caller (``nexec.saving.load_model``) rebuilds the model from
the config and then places the weights with :func:`assign_weights`, which checks every
group's count and shapes before copying anything. Writing goes through ``nexec.io``'s
atomic write. HDF5 needs ``h5py``: ``pip install 'nexec[keras]'``.
"""
from __future__ import annotations

import datetime
import io
import json
import zipfile
from typing import IO, Any

import numpy as np

from nexec._version import __version__
from nexec.errors import SavedModelError
from nexec.io import atomic_write
from nexec.keras_files.compile_config import keras_compile_config
from nexec.keras_files.model_config import model_entry
from nexec.keras_files.weights import archive_groups, copy_checked

__all__ = ["KERAS_FORMAT_VERSION", "is_keras_archive", "read_archive", "write_archive",
           "assign_weights", "h5py_module"]

#: The Keras version whose archive layout nexec writes (``metadata.json``'s keras_version).
KERAS_FORMAT_VERSION = "3.15.1"
_MEMBERS = ("config.json", "model.weights.h5")


def h5py_module() -> Any:
    """``h5py``, or an error saying how to install it."""
    try:
        import h5py
    except ImportError:
        raise ImportError("Reading or writing Keras model files needs h5py: "
                          "pip install 'nexec[keras]'.") from None
    return h5py


def is_keras_archive(path: str) -> bool:
    """Whether ``path`` is a zip holding a Keras archive's ``config.json``."""
    try:
        with zipfile.ZipFile(path) as zf:
            return "config.json" in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def read_archive(path: str) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """The serialised model (``config.json``) and every variable group of a ``.keras`` file.

    Returns:
        The config entry, and ``{group path: [arrays in order]}`` for groups ending ``vars``.

    Raises:
        SavedModelError: Not a Keras archive, truncated or corrupted, or sharded weights.
    """
    h5py = h5py_module()
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "config.json" not in names:
                raise SavedModelError(f"'{path}' is a zip archive but not a Keras model file "
                                      "(it has no config.json).")
            if "model.weights.h5" not in names:
                extra = " (its weights are sharded or in another format, which nexec does " \
                    "not read)" if "model.weights.json" in names or \
                    "model.weights.npz" in names else ""
                raise SavedModelError(f"'{path}' has no model.weights.h5{extra}.")
            config = json.loads(zf.read("config.json"))
            raw = zf.read("model.weights.h5")
    except SavedModelError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, EOFError) as e:
        raise SavedModelError(f"'{path}' is not a readable Keras model file: it is truncated, "
                              f"corrupted or of another kind ({type(e).__name__}: {e}).") from None
    if not isinstance(config, dict) or "config" not in config:
        raise SavedModelError(f"'{path}': config.json is not a serialised Keras model.")
    groups: dict[str, list[np.ndarray]] = {}
    try:
        with h5py.File(io.BytesIO(raw), "r") as f:
            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Group) and name.split("/")[-1] == "vars":
                    keys = sorted(obj.keys(), key=int)
                    groups[name] = [np.asarray(obj[k]) for k in keys]
            f.visititems(visit)
    except (OSError, ValueError) as e:
        raise SavedModelError(f"'{path}': model.weights.h5 is not readable HDF5 "
                              f"({type(e).__name__}: {e}).") from None
    return config, groups


def assign_weights(model: Any, groups: dict[str, list[np.ndarray]], path: str) -> None:
    """Copies an archive's variable groups into ``model``'s parameters, after checking that
    every group the model needs is there with the right count and shapes."""
    copy_checked([(owner, group, arrays, groups.get(group, []))
                  for group, owner, arrays in archive_groups(model)], path)


def write_archive(model: Any, path: str) -> None:
    """Writes ``model`` as a Keras 3 ``.keras`` archive (atomically): config, compile
    settings when compiled, and weights in Keras' layout."""
    h5py = h5py_module()
    entry = model_entry(model)
    entry["build_config"] = {"input_shape": None}
    trainer = getattr(model, "_trainer", None)
    if trainer is not None:
        entry["compile_config"] = keras_compile_config(trainer)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        for group, owner, arrays in archive_groups(model):
            g = f.require_group(group)
            g.attrs["name"] = owner
            for i, a in enumerate(arrays):
                g.create_dataset(str(i), data=np.asarray(a))
    metadata = {"keras_version": KERAS_FORMAT_VERSION, "written_by": f"nexec {__version__}",
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}

    def write(f: IO[bytes]) -> None:
        with zipfile.ZipFile(f, "w") as zf:
            zf.writestr("metadata.json", json.dumps(metadata))
            zf.writestr("config.json", json.dumps(entry))
            zf.writestr("model.weights.h5", buffer.getvalue())

    atomic_write(path, write)
