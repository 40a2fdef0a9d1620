"""Integer codes for the activations that kernels fuse into their epilogues.

Kernels take the code as an argument, so one compiled kernel serves every activation.
Every derivative is expressed through the activation's *output* ``y``, which is why a
fused layer never needs to keep its pre-activation value for backward.
"""
from __future__ import annotations

__all__ = ["LINEAR", "RELU", "SIGMOID", "TANH", "SOFTMAX", "CODES", "code_of"]

LINEAR = 0
RELU = 1
SIGMOID = 2
TANH = 3
SOFTMAX = 4  # row-wise over the last axis

CODES = {"linear": LINEAR, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH, "softmax": SOFTMAX}


def code_of(name: str | None) -> int:
    """Returns the kernel code of an activation name (``None`` means linear)."""
    return CODES["linear" if name is None else name]
