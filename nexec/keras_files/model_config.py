"""Whole models as Keras 3 configs: write a functional or Sequential model's config the way
Keras 3 does, and rebuild one from a Keras 3 (or Keras 2 / tf.keras) config.

A functional config lists each layer once, in Keras' own order (``keras_layers``: by depth
from the inputs, ties in first-visit order), with its ``inbound_nodes``: one entry per call,
naming the tensors it read as ``keras_history`` ``[layer, call, output]``. Calls are counted
per layer within the model; in ``input_layers``/``output_layers`` a nested functional
model's calls count from 1 (Keras gives it a built-in first node), in ``inbound_nodes`` from
0. A Sequential config is its layer list, an ``InputLayer`` first when the input is known.

Reading checks the whole config first (``unsupported``) and builds nothing until every
layer and option is known to be supported. Models are known here by duck typing (nexec's
``Model``/``Sequential`` live above this module and hand their classes in).
"""
from __future__ import annotations

import re
from typing import Any, Callable

from nexec.errors import GraphError, SavedModelError
from nexec.graph import Function, Node, float_dtype
from nexec.keras_files.layer_config import (
    dtype_policy,
    from_keras_layer,
    read_dtype,
    to_keras_layer,
)
from nexec.layers.core import Input

__all__ = ["UnsupportedModelError", "keras_layers", "keras_class_name", "keras_snake",
           "model_entry", "model_config", "unsupported", "check_supported", "build_model",
           "is_keras_model_config", "MODEL_CLASS_NAMES"]

#: Class names of whole models in configs (Keras 3, Keras 2 and nexec's own).
MODEL_CLASS_NAMES = ("Functional", "Model", "Sequential")
_INPUT_DTYPES = ("float32", "float64", "int32", "int64")


class UnsupportedModelError(SavedModelError):
    """A Keras model uses layers or options nexec does not support; nothing was built.

    Attributes:
        problems: One line per unsupported layer or option.
    """

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{what} uses {len(problems)} layer(s) or option(s) that nexec does "
                         f"not support, so nothing was built:\n{lines}")


# ----- what Keras calls things ---------------------------------------------------------------
def _is_model(layer: Any) -> bool:
    return isinstance(layer, Function)


def _is_sequential(model: Any) -> bool:
    return getattr(model, "_config_class_name", None) == "Sequential"


def keras_class_name(layer: Any) -> str:
    """The class name Keras gives a layer (``Functional`` for a nexec ``Model``)."""
    if _is_model(layer):
        return "Sequential" if _is_sequential(layer) else "Functional"
    return type(layer).__name__


def keras_snake(name: str) -> str:
    """Keras' ``to_snake_case`` (weights in an archive are filed under it)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def keras_layers(model: Any) -> list[Any]:
    """A model's layers in Keras' order (``model.layers`` of the same model in Keras).

    Sequential: its stack (no InputLayer). Functional: Keras' ``map_graph`` order, input
    layers included: by decreasing depth (distance to the outputs), ties broken by when a
    depth-first walk back from the outputs first met the layer.
    """
    if _is_sequential(model):
        return list(model.layers)
    order: list[Node] = []  # post-order: inputs first
    first_seen: dict[int, int] = {}
    done: set[int] = set()
    for out in model.outputs:
        if out.node is None or out.node.id in done:
            continue
        first_seen.setdefault(id(out.node.layer), len(first_seen))
        stack: list[tuple[Node, int]] = [(out.node, 0)]
        while stack:
            node, i = stack[-1]
            if i < len(node.inputs):
                stack[-1] = (node, i + 1)
                parent = node.inputs[i].node
                if parent is not None and parent.id not in done:
                    first_seen.setdefault(id(parent.layer), len(first_seen))
                    stack.append((parent, 0))
            else:
                stack.pop()
                if node.id not in done:
                    done.add(node.id)
                    order.append(node)
    node_depth: dict[int, int] = {}
    layer_depth: dict[int, int] = {}
    layers: dict[int, Any] = {}
    for node in reversed(order):
        depth = node_depth.setdefault(node.id, 0)
        depth = max(depth, layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth
        layers[id(node.layer)] = node.layer
        node_depth[node.id] = depth
        for t in node.inputs:
            if t.node is not None and t.node.id in done:
                node_depth[t.node.id] = max(depth + 1, node_depth.get(t.node.id, 0))
    return sorted(layers.values(),
                  key=lambda layer: (-layer_depth[id(layer)], first_seen[id(layer)]))


# ----- nexec -> Keras ------------------------------------------------------------------------
def model_entry(model: Any) -> dict[str, Any]:
    """``{"module", "class_name", "config", "registered_name"}`` of a model, as Keras 3's
    ``serialize_keras_object``."""
    if _is_sequential(model):
        return {"module": "keras", "class_name": "Sequential", "config": model_config(model),
                "registered_name": None}
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": model_config(model), "registered_name": "Functional"}


def model_config(model: Any) -> dict[str, Any]:
    """A model's Keras 3 config (``keras.Model.get_config()``)."""
    if _is_sequential(model):
        return _sequential_config(model)
    return _functional_config(model)


def _model_dtype(model: Any) -> str:
    inputs = getattr(model, "inputs", None) or []
    return float_dtype(t.dtype for t in inputs)


def _input_entry(layer: Any) -> dict[str, Any]:
    cfg = layer.get_config()
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": [None, *cfg["shape"]], "dtype": cfg["dtype"],
                       "sparse": False, "ragged": False, "name": cfg["name"],
                       "optional": False},
            "registered_name": None}


def _layer_entry(layer: Any, dtype: str) -> dict[str, Any]:
    if _is_model(layer):
        return model_entry(layer)
    if type(layer).__name__ == "InputLayer":
        return _input_entry(layer)
    return to_keras_layer(layer, dtype)


def _sequential_config(model: Any) -> dict[str, Any]:
    dtype = _model_dtype(model)
    entries = []
    model_input = getattr(model, "_input", None)
    if model_input is not None:
        entries.append(_input_entry(model_input.producer.layer))
    entries += [_layer_entry(layer, dtype) for layer in model.layers]
    cfg: dict[str, Any] = {"name": model.name, "trainable": model.trainable,
                           "dtype": dtype_policy(dtype), "layers": entries}
    if model_input is not None:
        cfg["build_input_shape"] = list(model_input.shape)
    return cfg


def _functional_config(model: Any) -> dict[str, Any]:
    dtype = _model_dtype(model)
    own = {n.id for n in model._graph_nodes}
    call: dict[int, int] = {}  # node id -> call index of its layer within this model
    for layer in {id(n.layer): n.layer for n in model._graph_nodes}.values():
        for i, n in enumerate(n for n in layer._nodes if n.id in own):
            call[n.id] = i

    def history(t: Any) -> list[Any]:
        return [t.producer.layer.name, call[t.producer.id], t.index]

    def tensor(t: Any) -> dict[str, Any]:
        return {"class_name": "__keras_tensor__",
                "config": {"shape": list(t.shape), "dtype": t.dtype,
                           "keras_history": history(t)}}

    def io_ref(t: Any) -> list[Any]:
        name, i, index = history(t)
        nested_functional = _is_model(t.producer.layer) and not _is_sequential(t.producer.layer)
        return [name, i + 1 if nested_functional else i, index]

    entries = []
    for layer in keras_layers(model):
        entry = _layer_entry(layer, dtype)
        entry["name"] = layer.name
        nodes: list[dict[str, Any]] = []
        for n in layer._nodes:
            if n.id in own and n.inputs:
                args = [tensor(t) for t in n.inputs]
                if getattr(layer, "n_states", 0) and len(args) > 1:  # a recurrent layer
                    nodes.append({"args": [args[0]], "kwargs": {"initial_state": args[1:]}})
                    continue
                single = len(args) == 1 and (layer.num_inputs == 1 or _is_model(layer))
                nodes.append({"args": [args[0] if single else args], "kwargs": {}})
        entry["inbound_nodes"] = nodes
        entries.append(entry)

    def refs(tensors: list[Any], keys: list[str] | None) -> Any:
        if keys:
            return {k: io_ref(t) for k, t in zip(keys, tensors)}
        return io_ref(tensors[0]) if len(tensors) == 1 else [io_ref(t) for t in tensors]

    return {"name": model.name, "trainable": model.trainable, "layers": entries,
            "input_layers": refs(model.inputs, model._input_keys),
            "output_layers": refs(model.outputs, model._output_keys)}


# ----- Keras -> nexec: checking --------------------------------------------------------------
def is_keras_model_config(config: dict[str, Any]) -> bool:
    """Whether a model config is Keras' (not nexec's older ``nodes`` format)."""
    return "nodes" not in config


def unsupported(entry: dict[str, Any]) -> list[str]:
    """Every layer or option of a serialised model that nexec cannot honour (empty when the
    whole model is supported); nothing is built."""
    problems: list[str] = []
    _check_model(entry, problems)
    return problems


def check_supported(entry: dict[str, Any], what: str) -> None:
    """Raises :class:`UnsupportedModelError` listing every problem of :func:`unsupported`."""
    problems = unsupported(entry)
    if problems:
        raise UnsupportedModelError(what, problems)


def _check_model(entry: dict[str, Any], problems: list[str]) -> None:
    class_name = entry.get("class_name")
    config = entry.get("config")
    if class_name not in MODEL_CLASS_NAMES or not isinstance(config, dict):
        problems.append(f"{class_name} '{(config or {}).get('name', '?')}': model class not "
                        "supported by nexec (a functional or Sequential model is)")
        return
    if not isinstance(config.get("layers"), list):
        raise SavedModelError("Malformed model config: it has no 'layers' list.")
    for layer_entry in config["layers"]:
        if not isinstance(layer_entry, dict):
            raise SavedModelError(f"Malformed model config: layer entry {layer_entry!r}.")
        cls = layer_entry.get("class_name")
        if cls in MODEL_CLASS_NAMES:
            _check_model(layer_entry, problems)
        elif cls == "InputLayer":
            _input_args(layer_entry.get("config") or {}, problems)
        else:
            from_keras_layer(layer_entry, problems)
        for node in layer_entry.get("inbound_nodes") or []:
            _node_refs(node, layer_entry, problems)


def _input_args(config: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """``nexec.Input`` arguments of an InputLayer config (Keras 3, Keras 2 or nexec)."""
    name = config.get("name")
    where = f"InputLayer '{name}'"
    if "shape" in config:  # nexec's own
        shape = config["shape"]
    else:
        batch_shape = config.get("batch_shape", config.get("batch_input_shape"))
        if not isinstance(batch_shape, (list, tuple)) or not batch_shape:
            problems.append(f"{where}: no batch_shape (nexec needs the input shape)")
            return {}
        shape = list(batch_shape)[1:]
    for key in ("sparse", "ragged", "optional"):
        if config.get(key):
            problems.append(f"{where}: {key}=True (not supported by nexec)")
    dtype = config.get("dtype", "float32")
    if isinstance(dtype, dict):
        dtype = read_dtype(dtype) or str(dtype.get("config", {}).get("name"))
    if dtype not in _INPUT_DTYPES:
        problems.append(f"{where}: dtype={dtype!r} (nexec inputs are one of "
                        f"{', '.join(_INPUT_DTYPES)})")
    return {"shape": tuple(shape), "name": name, "dtype": dtype}


def _node_refs(node: Any, entry: dict[str, Any], problems: list[str]) -> tuple[list, bool]:
    """The ``[layer, call, output]`` refs a serialised call reads, and whether they are in
    Keras 2's list format; unsupported call arguments go to ``problems``."""
    name = entry.get("name", (entry.get("config") or {}).get("name"))
    where = f"{entry.get('class_name')} '{name}'"
    if isinstance(node, list):  # Keras 2: [[layer, call, output, kwargs], ...]
        for ref in node:
            if len(ref) > 3 and ref[3]:
                _check_call_kwargs(ref[3], where, problems)
        return [list(ref[:3]) for ref in node], True
    if not isinstance(node, dict):
        raise SavedModelError(f"Malformed model config: node {node!r} of {where}.")
    refs: list[list] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            refs.append(list(value["config"]["keras_history"]))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            problems.append(f"{where}: a call argument {value!r} (not supported by nexec)")

    walk(node.get("args", []))
    kwargs = dict(node.get("kwargs") or {})
    if kwargs.get("initial_state") is not None:  # a recurrent layer's starting states
        walk(kwargs.pop("initial_state"))
    _check_call_kwargs(kwargs, where, problems)
    return refs, False


def _check_call_kwargs(kwargs: dict[str, Any], where: str, problems: list[str]) -> None:
    for key, value in kwargs.items():
        if value is None or (key == "training" and value is False):
            continue
        problems.append(f"{where}: called with {key}={value!r} (not supported by nexec)")


# ----- Keras -> nexec: building --------------------------------------------------------------
def build_model(entry: dict[str, Any], model_cls: Callable[..., Any],
                sequential_cls: Callable[..., Any]) -> Any:
    """A nexec model from a serialised Keras model, fresh weights; checked first.

    Args:
        entry: ``{"class_name": "Functional" | "Sequential" | "Model", "config": {...}}``.
        model_cls: nexec's ``Model``.
        sequential_cls: nexec's ``Sequential``.

    Raises:
        UnsupportedModelError: Layers or options nexec does not support (all listed).
        SavedModelError: A malformed config.
    """
    config = entry.get("config") or {}
    check_supported(entry, f"Model '{config.get('name', '?')}'")
    return _build(entry, model_cls, sequential_cls)


def _build(entry: dict[str, Any], model_cls: Callable[..., Any],
           sequential_cls: Callable[..., Any]) -> Any:
    config = entry["config"]
    if entry["class_name"] == "Sequential":
        return _build_sequential(config, model_cls, sequential_cls)
    return _build_functional(config, model_cls, sequential_cls)


def _make_layer(entry: dict[str, Any], model_cls: Callable[..., Any],
                sequential_cls: Callable[..., Any]) -> Any:
    if entry.get("class_name") in MODEL_CLASS_NAMES:
        if "nodes" in entry["config"]:  # nexec's older functional format
            return getattr(model_cls, "from_config")(entry["config"])
        return _build(entry, model_cls, sequential_cls)
    problems: list[str] = []
    cls, kwargs = from_keras_layer(entry, problems, probe=False)
    assert cls is not None and not problems  # checked before building
    return cls(**kwargs)


def _build_sequential(config: dict[str, Any], model_cls: Callable[..., Any],
                      sequential_cls: Callable[..., Any]) -> Any:
    seq = sequential_cls(name=config.get("name"))
    if "input" in config:  # nexec's own format
        seq.add(Input(**config["input"]))
    for layer_entry in config["layers"]:
        if layer_entry.get("class_name") == "InputLayer":
            seq.add(Input(**_input_args(layer_entry.get("config") or {}, [])))
        else:
            seq.add(_make_layer(layer_entry, model_cls, sequential_cls))
    shape = config.get("build_input_shape")
    if getattr(seq, "_input", None) is None and isinstance(shape, (list, tuple)) and shape:
        seq.build(tuple(shape))
    seq._trainable = config.get("trainable", True)
    return seq


def _build_functional(config: dict[str, Any], model_cls: Callable[..., Any],
                      sequential_cls: Callable[..., Any]) -> Any:
    layers: dict[str, Any] = {}
    outputs: dict[str, list[list[Any]]] = {}
    pending: dict[str, list[Any]] = {}
    order: list[str] = []
    for entry in config["layers"]:
        name = str(entry.get("name") or (entry.get("config") or {}).get("name"))
        if entry["class_name"] == "InputLayer":
            t = Input(**_input_args(entry.get("config") or {}, []))
            layers[name] = t.producer.layer
            outputs[name] = [[t]]
            continue
        layer = _make_layer(entry, model_cls, sequential_cls)
        layers[name] = layer
        outputs[name] = []
        pending[name] = list(entry.get("inbound_nodes") or [])
        order.append(name)
        entry = {**entry, "name": name}
        pending[name] = [(node, entry) for node in pending[name]]

    def tensor(ref: list, legacy: bool) -> Any:
        name, call, index = ref[:3]
        if legacy and _is_model(layers.get(name)):
            call -= 1  # Keras 2 counted a nested model's own node first
        if name not in layers:
            raise SavedModelError(f"Malformed model config: a node reads layer {name!r}, "
                                  "which the config does not list.")
        calls = outputs[name]
        if call >= len(calls):
            raise IndexError(name)
        return calls[call][index]

    while any(pending.values()):
        progressed = False
        for name in order:
            while pending[name]:
                node, entry = pending[name][0]
                refs, legacy = _node_refs(node, entry, [])
                try:
                    ins = [tensor(r, legacy) for r in refs]
                except IndexError:
                    break
                layer = layers[name]
                many = layer.num_inputs != 1 or len(ins) > 1
                out = layer(ins if many else ins[0])
                outputs[name].append(list(out) if isinstance(out, (list, tuple)) else [out])
                pending[name].pop(0)
                progressed = True
        if not progressed:
            stuck = [n for n in order if pending[n]]
            raise SavedModelError(f"Malformed model config: the calls of {stuck} read tensors "
                                  "that no call makes (a cycle or a missing layer).")

    def io(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: io(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
            name, call, index = value[:3]
            layer = layers.get(name)
            if _is_model(layer) and not _is_sequential(layer):
                call -= 1  # Keras counts a nested functional model's calls from 1 here
            try:
                return outputs[name][call][index]
            except (KeyError, IndexError):
                raise GraphError(f"Model config refers to {name}[{call}][{index}], which no "
                                 "call made.") from None
        return [io(v) for v in value]

    ins, outs = io(config["input_layers"]), io(config["output_layers"])
    model = model_cls(ins, outs, name=config.get("name"))
    model._trainable = config.get("trainable", True)
    return model
