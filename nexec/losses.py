"""Keras' ``losses`` namespace: the registered losses by name."""
from nexec.plugins import registry as _registry
from nexec.training.losses import ALIASES, EPSILON, Loss

__all__ = ["Loss", "EPSILON", "get"]


def get(name: str) -> Loss:
    """The registered loss called ``name`` (built-in or from a plugin)."""
    return _registry().loss(ALIASES.get(name, name))
