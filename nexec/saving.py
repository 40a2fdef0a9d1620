"""Architecture as JSON; weights, or a whole model, as ``.npz``; every write is atomic.

A model's config lists its layers (class name + ``get_config()``) and its nodes in
topological order, each naming the (layer, call, output) it reads; rebuilding replays those
calls, so names, graph and parameter shapes round-trip exactly. Files are written to a
temporary name in the same folder and renamed, so a crash never leaves a half-written file
where a good one was.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np

from nexec.errors import GraphError, SavedModelError

if TYPE_CHECKING:  # pragma: no cover
    from nexec.model import Model

__all__ = ["model_config", "model_from_config", "to_json", "model_from_json", "save_model",
           "load_model", "save_weights", "load_weights", "layer_class",
           "MODEL_FILE_VERSION", "atomic_write", "is_zip_file"]

FORMAT = "nexec-model-1"


def layer_class(name: str) -> type:
    """The class registered under ``name`` (built-in or plugin), or ``Model``/``Sequential``."""
    from nexec.model import Model, Sequential
    from nexec.plugins import registry

    if name in ("Model", "Functional"):
        return Model
    if name == "Sequential":
        return Sequential
    return registry().layer(name)


def _class_name(layer: Any) -> str:
    from nexec.model import Model, Sequential

    if isinstance(layer, Sequential):
        return "Sequential"
    if isinstance(layer, Model):
        return "Model"
    return type(layer).__name__


def model_config(model: Model) -> dict[str, Any]:
    """The config dict of a ``Model`` or ``Sequential`` (see module docstring)."""
    from nexec.model import Sequential

    if isinstance(model, Sequential):
        layers = [{"class_name": _class_name(l), "config": l.get_config()} for l in model.layers]
        cfg: dict[str, Any] = {"name": model.name, "trainable": model.trainable, "layers": layers}
        if model._input is not None:
            cfg["input"] = model._input.node.layer.get_config()
        return cfg
    nodes = [n for n in model._graph_nodes if n.inputs]
    local: dict[int, tuple[str, int]] = {}  # node id -> (layer name, call index in this model)
    counts: dict[str, int] = {}
    for n in model._graph_nodes:
        i = counts.get(n.layer.name, 0)
        counts[n.layer.name] = i + 1
        local[n.id] = (n.layer.name, i)

    def ref(t: Any) -> list:
        name, i = local[t.node.id]
        return [name, i, t.index]

    input_names = {t.node.layer.name for t in model.inputs}
    return {
        "name": model.name,
        "trainable": model.trainable,
        "layers": [{"class_name": _class_name(l), "config": l.get_config()}
                   for l in model.layers if l.name not in input_names]
                  + [{"class_name": "InputLayer", "config": t.node.layer.get_config()}
                     for t in model.inputs],
        "nodes": [[n.layer.name, [ref(t) for t in n.inputs]] for n in nodes],
        "input_layers": [ref(t) for t in model.inputs],
        "output_layers": [ref(t) for t in model.outputs],
        "input_keys": model._input_keys,
        "output_keys": model._output_keys,
    }


def model_from_config(config: dict[str, Any], cls: type | None = None) -> Model:
    """Rebuilds a model from :func:`model_config` output (fresh weights)."""
    from nexec.graph import Input
    from nexec.model import Model, Sequential

    if cls is Sequential or (cls is None and "nodes" not in config):
        seq = Sequential(name=config["name"])
        if "input" in config:
            seq.add(Input(**config["input"]))
        for entry in config["layers"]:
            seq.add(_layer_from(entry))
        seq._trainable = config.get("trainable", True)  # the layers keep their own flags
        return seq
    layers: dict[str, Any] = {}
    outputs: dict[str, list[list[Any]]] = {}  # layer name -> per call, its output tensors
    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer":
            t = Input(**entry["config"])
            layers[t.node.layer.name] = t.node.layer
            outputs[t.node.layer.name] = [[t]]
        else:
            layer = _layer_from(entry)
            layers[layer.name] = layer
            outputs[layer.name] = []

    def tensor(ref: list) -> Any:
        name, call, index = ref
        try:
            return outputs[name][call][index]
        except (KeyError, IndexError):
            raise GraphError(f"Model config refers to {name}[{call}][{index}], which no "
                             "earlier node produced.") from None

    for name, refs in config["nodes"]:
        ins = [tensor(r) for r in refs]
        out = layers[name](ins if len(ins) > 1 else ins[0])
        outputs[name].append(out if isinstance(out, list) else [out])
    ins = [tensor(r) for r in config["input_layers"]]
    outs = [tensor(r) for r in config["output_layers"]]
    if config.get("input_keys"):
        ins = dict(zip(config["input_keys"], ins))
    if config.get("output_keys"):
        outs = dict(zip(config["output_keys"], outs))
    model = Model(ins, outs, name=config["name"])
    model._trainable = config.get("trainable", True)  # the layers keep their own flags
    return model


def _layer_from(entry: dict[str, Any]) -> Any:
    cls = layer_class(entry["class_name"])
    if entry["class_name"] in ("Model", "Functional", "Sequential"):
        return model_from_config(entry["config"], cls)
    return cls.from_config(dict(entry["config"]))


def to_json(model: Model, **kwargs: Any) -> str:
    """The model's architecture as JSON (``nexec.models.model_from_json`` reads it back)."""
    return json.dumps({"class_name": _class_name(model), "config": model.get_config(),
                       "format": FORMAT}, **kwargs)


def model_from_json(text: str) -> Model:
    """Rebuilds a model from :func:`to_json` output."""
    data = json.loads(text)
    return model_from_config(data["config"], layer_class(data["class_name"]))


def atomic_write(path: str, write: Any) -> None:
    """Calls ``write(binary_file)`` on a temporary file next to ``path``, then renames it
    over ``path``: readers see the old file or the new one, never half of one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nexec-", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600; keep what a plain open() gives
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _file_mode(path: str) -> int:
    """The existing file's permissions, or those ``open(path, "w")`` would give."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _weight_arrays(model: Model) -> dict[str, np.ndarray]:
    return {f"{l.name}/{n}": p for l in _all_layers(model) for n, p in l._params.items()}


def _all_layers(model: Model) -> list[Any]:
    from nexec.model import Model as ModelType

    out = []
    for l in model.layers:
        out.extend(_all_layers(l) if isinstance(l, ModelType) else [l])
    return out


def save_weights(model: Model, path: str) -> None:
    """Writes every parameter to ``path`` (``.npz``), keyed ``layer/param``, atomically."""
    arrays = _weight_arrays(model)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_weights(model: Model, path: str) -> None:
    """Loads parameters saved by :func:`save_weights`; validates names and shapes first."""
    with np.load(path, allow_pickle=False) as data:
        _assign(model, {k: data[k] for k in data.files if not k.startswith("__")})


def _assign(model: Model, saved: dict[str, np.ndarray]) -> None:
    own = _weight_arrays(model)
    missing = sorted(set(own) - set(saved))
    extra = sorted(set(saved) - set(own))
    if missing or extra:
        raise ValueError(f"Weights do not match model '{model.name}': missing {missing}, "
                         f"unexpected {extra}.")
    for k, p in own.items():
        if saved[k].shape != p.shape:
            raise ValueError(f"Weight {k}: model has shape {p.shape}, file has {saved[k].shape}.")
    for k, p in own.items():
        np.copyto(p, saved[k], casting="unsafe")


MODEL_FILE_VERSION = 1  # bump when the layout of a saved model file changes


def save_model(model: Model, path: str) -> None:
    """Architecture, weights and (once compiled) compile settings and optimizer state, in one
    file written atomically.

    The file is a NumPy ``.npz`` (a zip of ``.npy`` arrays, no pickles): ``__format__`` holds
    ``[MODEL_FILE_VERSION]``, ``__config__`` the :func:`to_json` text, ``__compile__`` the
    compile settings as JSON, ``layer/param`` each weight, ``__optimizer__/N`` each optimizer
    state slot (flat, in the parameter store's order) and ``__optimizer__/iterations``.
    """
    arrays: dict[str, np.ndarray] = {"__format__": np.array([MODEL_FILE_VERSION]),
                                     "__config__": np.array(to_json(model))}
    arrays.update(_weight_arrays(model))
    trainer = model._trainer
    if trainer is not None:
        opt = trainer.optimizer
        compile_config = {**trainer.config, "optimizer": {
            "class_name": type(opt).__name__, "config": opt.get_config()}}
        arrays["__compile__"] = np.array(json.dumps(compile_config))
        arrays["__optimizer__/iterations"] = np.array(opt.iterations, np.int64)
        for i, slot in enumerate(opt.state):
            arrays[f"__optimizer__/{i}"] = _host(slot)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_model(path: str, compile: bool = True) -> Model:
    """Reads a model written by ``model.save(path)``.

    Args:
        path: The file.
        compile: Compile the model as it was when saved, optimizer state included, so
            ``fit`` continues where it stopped (ignored for a model saved uncompiled).

    Raises:
        FileNotFoundError: No such file.
        SavedModelError: A truncated, corrupted or foreign file, or a newer format.
    """
    arrays = _read_model_file(path)
    model = model_from_json(str(arrays.pop("__config__")))
    compile_json = arrays.pop("__compile__", None)
    optimizer = {k: arrays.pop(k) for k in [k for k in arrays if k.startswith("__optimizer__/")]}
    _assign(model, arrays)
    if compile and compile_json is not None:
        _compile_from(model, json.loads(str(compile_json)), optimizer, path)
    return model


def is_zip_file(path: str) -> bool:
    """Whether ``path`` starts as every zip, so every ``.npz`` and saved model, does."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _read_model_file(path: str) -> dict[str, np.ndarray]:
    """Every array of a saved model file, checked; a clear error for anything else."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No saved model at '{path}'.")
    if not is_zip_file(path):
        raise SavedModelError(f"'{path}' is not a nexec model file (not a zip archive); "
                              "write one with model.save(path).")
    try:
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
    from nexec.plugins import registry

    opt_entry = config["optimizer"]
    table = registry().optimizers
    cls = next((c for c in table.values() if c.__name__ == opt_entry["class_name"]), None)
    if cls is None:
        raise SavedModelError(f"'{path}' was compiled with optimizer "
                              f"{opt_entry['class_name']!r}, which no installed plugin provides.")
    opt = cls(**opt_entry["config"])
    names = model.output_names
    model.compile(optimizer=opt, loss=dict(zip(names, config["loss"])),
                  metrics=dict(zip(names, config["metrics"])),
                  loss_weights=dict(zip(names, config["loss_weights"])))
    if len(optimizer) != len(opt.state) + 1:
        raise SavedModelError(f"'{path}': optimizer state has {len(optimizer) - 1} slot(s), "
                              f"{type(opt).__name__} needs {len(opt.state)}.")
    opt.iterations = int(optimizer["__optimizer__/iterations"])
    for i, slot in enumerate(opt.state):
        saved = optimizer[f"__optimizer__/{i}"]
        if saved.shape != slot.shape:
            raise SavedModelError(f"'{path}': optimizer slot {i} has shape {saved.shape}, the "
                                  f"model's parameters need {slot.shape}.")
        np.copyto(slot, saved, casting="unsafe")


def _host(array: Any) -> np.ndarray:
    """A host copy of a CPU or device array."""
    return array.copy_to_host() if hasattr(array, "copy_to_host") else np.asarray(array)
