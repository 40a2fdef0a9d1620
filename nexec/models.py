"""Keras' ``models`` namespace: building, cloning and loading whole models."""
from __future__ import annotations

from typing import Any

from nexec.model import Model, Sequential, model_from_config
from nexec.saving import load_model, model_from_json

__all__ = ["Model", "Sequential", "model_from_json", "load_model", "clone_model"]


def clone_model(model: Model, input_tensors: Any = None, clone_function: Any = None) -> Model:
    """A new model of the same architecture (and layer names), with new layers and freshly
    initialised weights, as ``keras.models.clone_model``; it is not compiled.

    Args:
        model: A ``Model`` or ``Sequential``.
        input_tensors: Not supported (must be None): the clone makes its own inputs.
        clone_function: Not supported (must be None): every layer is rebuilt from its config.
    """
    if not isinstance(model, Model):
        raise TypeError(f"clone_model takes a nexec Model or Sequential, got "
                        f"{type(model).__name__}.")
    for name, value in (("input_tensors", input_tensors), ("clone_function", clone_function)):
        if value is not None:
            raise ValueError(f"clone_model({name}=...) is not supported by nexec; the clone "
                             "rebuilds every layer from its config on new inputs.")
    return model_from_config(model.get_config(), type(model) if isinstance(model, Sequential)
                             else Model)
