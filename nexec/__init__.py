"""nexec: the Keras functional API on a static graph executor with fused Numba kernels.

Example:
    >>> from nexec import Input, Model, layers
    >>> x = Input(shape=(64,))
    >>> y = layers.Dense(10, activation="softmax")(layers.Dense(32, activation="relu")(x))
    >>> Model(x, y).count_params()
    2410
"""
from __future__ import annotations

from nexec import (
    callbacks,
    datasets,
    distribute,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    utils,
)
from nexec._version import __version__
from nexec.devices.threads import get_num_threads, set_adaptive_threads, set_num_threads
from nexec.errors import DataError, GraphError, NexecError, PluginError, SavedModelError, ShapeError
from nexec.graph import SymbolicTensor, clear_session
from nexec.layers.core import Input
from nexec.model import Model, Sequential
from nexec.plugins import plugins_info
from nexec.random import set_random_seed
from nexec.saving import load_model

__all__ = ["Input", "Model", "Sequential", "SymbolicTensor", "layers", "models", "optimizers",
           "losses", "metrics", "callbacks", "utils", "datasets", "distribute",
           "clear_session", "set_random_seed", "load_model", "plugins_info", "devices",
           "set_num_threads", "get_num_threads", "set_adaptive_threads",
           "NexecError", "ShapeError", "GraphError", "PluginError", "DataError",
           "SavedModelError", "warmup", "__version__"]


def devices() -> list[str]:
    """Devices nexec can run on here: ``['cpu']``, plus ``'cuda:N'`` per visible GPU."""
    from nexec.devices import available_devices

    return available_devices()



def warmup(groups: list[str] | None = None, dtypes: tuple[str, ...] = ("float32",),
           verbose: int = 1) -> dict[str, float]:
    """Compiles and caches the kernels of every built-in layer, loss, optimizer and metric
    ahead of time (what ``nexec warmup`` runs); see :func:`nexec.precompile.warmup`."""
    from nexec.precompile import warmup as _warmup

    return _warmup(groups, dtypes, verbose)
