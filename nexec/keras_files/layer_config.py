"""One layer's Keras 3 config and nexec's constructor arguments, both ways, from one table.

nexec's layers already take Keras' class names and argument names, so most of a config
passes through unchanged. What differs is the serialised *values*: Keras writes initialisers
as ``{"module": "keras.initializers", "class_name": "GlorotUniform", "config": {...}}`` and
dtypes as ``{"module": "keras", "class_name": "DTypePolicy", ...}`` where nexec keeps names,
and Keras lists options nexec does not have at their inert values (``kernel_regularizer:
None``, ``groups: 1``). Reading collects every option nexec cannot honour instead of stopping
at the first, so a refused file is explained in one error.
"""
from __future__ import annotations

import inspect
import math
import re
from typing import Any

from nexec.plugins import registry

__all__ = ["INITIALIZERS", "to_keras_layer", "from_keras_layer", "dtype_policy", "read_dtype",
           "read_initializer", "write_initializer", "is_keras_builtin"]

#: nexec's initialiser name -> (Keras class name, the Keras config it equals).
INITIALIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "zeros": ("Zeros", {}),
    "ones": ("Ones", {}),
    "glorot_uniform": ("GlorotUniform", {"seed": None}),
    "glorot_normal": ("GlorotNormal", {"seed": None}),
    "he_uniform": ("HeUniform", {"seed": None}),
    "he_normal": ("HeNormal", {"seed": None}),
    "random_normal": ("RandomNormal", {"mean": 0.0, "stddev": 0.05, "seed": None}),
    "random_uniform": ("RandomUniform", {"minval": -0.05, "maxval": 0.05, "seed": None}),
    "orthogonal": ("Orthogonal", {"gain": 1.0, "seed": None}),
}
_BY_KERAS_CLASS = {cls: name for name, (cls, _) in INITIALIZERS.items()}
#: Keras' string shortcuts that are not nexec names.
_INIT_ALIASES = {"uniform": "random_uniform", "normal": "random_normal"}
#: Keys of an initialiser's config that change only the random draw, not the distribution
#: (``seed``) or that Keras 3.15 writes at None (``input_axes``): ignored when reading.
_DRAW_ONLY = {"seed", "input_axes", "output_axes"}

_ANY = object()
#: Keras options nexec has no argument for, and the values at which they do nothing. None
#: and False are inert for every option (a feature switched off).
_INERT: dict[str, Any] = {
    "groups": (1,),
    "dilation_rate": (1, (1,), (1, 1)),
    "data_format": ("channels_last",),
    "renorm_momentum": _ANY,  # only read when renorm=True, itself refused
    "lora_alpha": _ANY,  # only read when lora_rank is set, itself refused
    "implementation": _ANY,  # Keras 2 RNN kernel choice: same result
    "time_major": (False,),
    "optional": (False,),
    "sparse": (False,),
    "ragged": (False,),
}


def is_keras_builtin(cls: type) -> bool:
    """Whether a nexec layer class is one of nexec's own (Keras' namesakes)."""
    return cls.__module__.startswith("nexec.")


# ----- values: dtypes and initialisers ------------------------------------------------------
def dtype_policy(dtype: str) -> dict[str, Any]:
    """Keras 3's serialised ``DTypePolicy`` of a dtype name."""
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype},
            "registered_name": None}


def read_dtype(value: Any) -> str | None:
    """A dtype name from a Keras dtype entry (a name or a policy); None when nexec cannot
    compute in it (mixed precision, quantisation, a per-variable map)."""
    if isinstance(value, dict):
        if value.get("class_name") not in ("DTypePolicy", "Policy"):
            return None
        value = (value.get("config") or {}).get("name")
    return value if value in ("float32", "float64") else None


def write_initializer(value: Any) -> Any:
    """Keras' serialised initialiser for a nexec name (others are left as they are)."""
    if isinstance(value, str):
        name = _INIT_ALIASES.get(value, value)
        if name in INITIALIZERS:
            cls, config = INITIALIZERS[name]
            return {"module": "keras.initializers", "class_name": cls, "config": dict(config),
                    "registered_name": None}
    return value


def read_initializer(value: Any) -> str | None:
    """nexec's initialiser name for a Keras one (a name or a serialised object); None when
    nexec has no initialiser drawing from the same distribution."""
    if isinstance(value, str):
        snake = _snake(value) if value[:1].isupper() else value
        found = _BY_KERAS_CLASS.get(value) or _INIT_ALIASES.get(snake, snake)
        return found if found in registry().initializers else None
    if not isinstance(value, dict):
        return None
    name = _BY_KERAS_CLASS.get(str(value.get("class_name")))
    if name is None:
        return None
    defaults = INITIALIZERS[name][1]
    for key, given in (value.get("config") or {}).items():
        if key in _DRAW_ONLY:
            continue
        if key not in defaults or not _same(given, defaults[key]):
            return None
    return name


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-6)
    return bool(a == b)


def _snake(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def _show(value: Any) -> str:
    if isinstance(value, dict) and "class_name" in value:
        config = {k: v for k, v in (value.get("config") or {}).items() if v is not None}
        inner = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{value['class_name']}({inner})"
    return repr(value)


# ----- nexec -> Keras -----------------------------------------------------------------------
def to_keras_layer(layer: Any, model_dtype: str) -> dict[str, Any]:
    """The Keras 3 serialisation of a (non-model) nexec layer: module, class name, config.

    Args:
        layer: The layer.
        model_dtype: The float dtype of the model, for layers that take their input's.
    """
    cls = type(layer)
    config = _keras_values(layer.get_config(), layer.dtype or model_dtype)
    builtin = is_keras_builtin(cls)
    return {"module": "keras.layers" if builtin else cls.__module__,
            "class_name": cls.__name__, "config": config,
            "registered_name": None if builtin else cls.__name__}


def _keras_values(config: dict[str, Any], dtype: str) -> dict[str, Any]:
    out = dict(config)
    out["dtype"] = dtype_policy(dtype)
    for key, value in config.items():
        if key.endswith("_initializer"):
            out[key] = write_initializer(value)
        elif key in ("layer", "backward_layer") and isinstance(value, dict) \
                and "class_name" in value:
            inner = registry().layers.get(value["class_name"])
            out[key] = {"module": "keras.layers" if inner is None or is_keras_builtin(inner)
                        else inner.__module__, "class_name": value["class_name"],
                        "config": _keras_values(value["config"], dtype),
                        "registered_name": None}
    return out


# ----- Keras -> nexec -----------------------------------------------------------------------
def from_keras_layer(entry: dict[str, Any], problems: list[str],
                     probe: bool = True) -> tuple[type | None, dict[str, Any]]:
    """nexec's layer class and constructor arguments for a Keras layer entry.

    Every option nexec cannot honour is appended to ``problems`` as ``"Class 'name':
    option=value (why)"``; nothing is built (a layer object may be made and dropped to ask
    the constructor, which checks its own arguments).

    Args:
        entry: ``{"class_name": ..., "config": {...}}`` (Keras 3, Keras 2 or nexec's own).
        problems: Where to add what is not supported.
        probe: Ask the constructor too (the top-level call; nested layers are asked through
            their wrapper).

    Returns:
        The class (None when nexec has no such layer) and its keyword arguments.
    """
    class_name = str(entry.get("class_name"))
    config = dict(entry.get("config") or {})
    name = config.get("name", "?")
    where = f"{class_name} '{name}'"
    cls = registry().layers.get(class_name)
    if cls is None:
        problems.append(f"{where}: layer type not supported by nexec")
        return None, {}
    accepted, required = _arguments(cls)
    kwargs: dict[str, Any] = {}
    before = len(problems)
    for key, value in config.items():
        if key == "dtype":
            if value is None:
                continue
            dtype = read_dtype(value)
            if dtype is None:
                problems.append(f"{where}: dtype={_show(value)} (nexec computes in float32 "
                                "or float64 only)")
                continue
            if dtype == "float32":
                continue  # nexec's layers take their input's dtype, float32 by default
            value = dtype
        elif key.endswith("_initializer") and value is not None:
            init = read_initializer(value)
            if init is None:
                problems.append(f"{where}: {key}={_show(value)} (no such initializer in nexec)")
                continue
            value = init
        elif key == "activation" and isinstance(value, dict):
            if value.get("class_name") != "function" or not isinstance(value.get("config"), str):
                problems.append(f"{where}: activation={_show(value)} (a custom activation)")
                continue
            value = value["config"]
        elif key in ("layer", "backward_layer") and isinstance(value, dict):
            if class_name == "Bidirectional":  # Keras sets it on the wrapped layers; nexec's
                value = _without(value, "zero_output_for_mask")  # Bidirectional does it
            inner_cls, inner = from_keras_layer(value, problems, probe=False)
            if inner_cls is None:
                continue
            value = {"class_name": value["class_name"], "config": inner}
        if key not in accepted:
            if not _inert(key, value):
                problems.append(f"{where}: {key}={_show(value)} (not supported by nexec)")
            continue
        kwargs[key] = value
    if probe and len(problems) == before:
        _probe(cls, kwargs, required, where, problems)
    return cls, kwargs


def _without(entry: dict[str, Any], key: str) -> dict[str, Any]:
    """A layer entry whose config lacks ``key``."""
    config = {k: v for k, v in (entry.get("config") or {}).items() if k != key}
    return {**entry, "config": config}


def _inert(key: str, value: Any) -> bool:
    if value is None or value is False:
        return True
    inert = _INERT.get(key)
    if inert is _ANY:
        return True
    if inert is None:
        return False
    as_tuple = tuple(value) if isinstance(value, list) else value
    return as_tuple in inert


def _arguments(cls: type) -> tuple[set[str], list[str]]:
    """The keyword arguments a layer class's constructor chain takes, and the required
    ones (following ``**kwargs`` up to the base class)."""
    accepted: set[str] = set()
    required: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                accepted.add(p.name)
                if p.default is p.empty and p.name not in required:
                    required.append(p.name)
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return accepted, required


def _probe(cls: type, kwargs: dict[str, Any], required: list[str], where: str,
           problems: list[str]) -> None:
    """Asks the constructor; when it refuses, asks again option by option to name each."""
    try:
        cls(**kwargs)
        return
    except Exception as whole:  # noqa: BLE001 - any refusal is reported, not raised
        base = {k: kwargs[k] for k in required if k in kwargs}
        if "name" in kwargs:
            base["name"] = kwargs["name"]
        found = False
        for key, value in kwargs.items():
            if key in base:
                continue
            try:
                cls(**base, **{key: value})
            except Exception as e:  # noqa: BLE001
                shown = f"{key}={_show(value)}"
                reason = _reason(e)
                for prefix in (f"{key}={value!r} ", f"{key}={value} "):
                    reason = reason[len(prefix):] if reason.startswith(prefix) else reason
                reason = reason[3:] if reason.startswith("is ") else reason
                problems.append(f"{where}: {shown} ({reason})")
                found = True
        if not found:
            problems.append(f"{where}: {_reason(whole)}")


def _reason(error: Exception) -> str:
    """The constructor's message without the layer's name (the listing gives it)."""
    return re.sub(r"^Layer '[^']*'(?: \(\w+\))?: ", "", str(error)).rstrip(".")
