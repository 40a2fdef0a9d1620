"""Activations as values: a name, and either a fused kernel code or scalar math.

nexec's own activations carry a ``code`` that every fused op (Dense, Conv2D, Add, ...) applies
in its epilogue. A plugin activation gives two plain scalar functions instead: ``forward(z)``
and ``derivative(y)`` (the derivative expressed through the *output* ``y``, like the built-in
ones, so no pre-activation value is kept for backward). Each device compiles them once into
an elementwise forward and backward kernel, which runs right after (and before, in backward)
any op's own epilogue, so every op that takes an ``activation=`` argument takes it.

Example:
    >>> import math
    >>> softsign = Activation("softsign2", forward=lambda z: z / (1.0 + abs(z)),
    ...                       derivative=lambda y: (1.0 - abs(y)) ** 2)
    >>> softsign.fused
    False
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from nexec.kernels.activations import CODES, LINEAR, NEEDS_INPUT

__all__ = ["Activation", "BUILTIN_ACTIVATIONS", "LINEAR_ACTIVATION"]


@dataclass(frozen=True)
class Activation:
    """One activation function.

    Args:
        name: The Keras-style name layers take (``activation="relu"``).
        code: The fused-kernel code of a built-in (``nexec.kernels.activations``); -1 for one
            given by scalar functions.
        forward: ``z -> y`` for one float, compilable by Numba (CPU and CUDA device code).
        derivative: ``y -> dy/dz`` for one float, from the output ``y``.
    """

    name: str
    code: int = -1
    forward: Callable[[float], float] | None = None
    derivative: Callable[[float], float] | None = None

    @property
    def fused(self) -> bool:
        """Whether op kernels apply it in their epilogue (a built-in code)."""
        return self.code >= 0

    @property
    def needs_input(self) -> bool:
        """Whether its derivative needs the pre-activation input (GELU, SiLU): the planner
        then keeps it as its own op, never fused into a producer."""
        return self.code in NEEDS_INPUT

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Activation name must be a non-empty string, got {self.name!r}.")
        if self.code < 0 and not (callable(self.forward) and callable(self.derivative)):
            raise ValueError(f"Activation {self.name!r} needs either a built-in code or both "
                             "scalar functions forward(z) and derivative(y).")


LINEAR_ACTIVATION = Activation("linear", LINEAR)

#: Keras 3's activations by name (``swish`` is ``silu``), each with its fused-kernel code.
BUILTIN_ACTIVATIONS: list[Activation] = [
    LINEAR_ACTIVATION,
    *(Activation(name, code) for name, code in CODES.items() if name != "linear"),
]
