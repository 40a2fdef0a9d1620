"""nexec's own layers, kernels, activations, losses, optimizers and initialisers.

Registered through the same hooks as any third-party plugin: there is no private back door.
"""
from __future__ import annotations

from typing import Any

from nexec.plugins.hookspecs import hookimpl


@hookimpl
def nexec_layers() -> list[type]:
    from nexec.layers.conv import Conv2D
    from nexec.layers.core import Activation, Dense, Flatten, InputLayer
    from nexec.layers.merge import Add, Concatenate

    return [InputLayer, Dense, Conv2D, Concatenate, Add, Activation, Flatten]


@hookimpl
def nexec_kernels() -> list[Any]:
    from nexec.ops.builtin import BUILTIN_KERNELS

    return list(BUILTIN_KERNELS)


@hookimpl
def nexec_activations() -> dict[str, int]:
    from nexec.kernels.activations import CODES

    return dict(CODES)


@hookimpl
def nexec_losses() -> list[Any]:
    from nexec.training.losses import BUILTIN_LOSSES

    return list(BUILTIN_LOSSES)


@hookimpl
def nexec_optimizers() -> dict[str, type]:
    from nexec.training.optimizers import BUILTIN_OPTIMIZERS

    return dict(BUILTIN_OPTIMIZERS)


@hookimpl
def nexec_initializers() -> dict[str, Any]:
    from nexec.initializers import BUILTIN_INITIALIZERS

    return dict(BUILTIN_INITIALIZERS)
