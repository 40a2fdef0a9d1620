"""Keras' ``losses`` namespace: the registered losses by name."""
from nexec.training.losses import EPSILON, Loss

__all__ = ["Loss", "EPSILON", "get"]


def get(name: str) -> Loss:
    """The registered loss called ``name`` (built-in or from a plugin)."""
    from nexec.plugins import registry
    from nexec.training.losses import ALIASES

    return registry().loss(ALIASES.get(name, name))
