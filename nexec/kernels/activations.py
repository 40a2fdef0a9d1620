"""Integer codes for the activations that kernels fuse into their epilogues.

Kernels take the code as an argument, so one compiled kernel serves every activation.
Every derivative but those of :data:`NEEDS_INPUT` is expressed through the activation's
*output* ``y``, which is why a fused layer never needs to keep its pre-activation value for
backward. GELU and SiLU are not monotonic, so their derivative is not a function of their
output: the planner never fuses them into a producer (``nexec.planner.fusion`` splits them
off into their own ``Activation`` op, whose kernel keeps its input for backward).

Formulas and constants are Keras 3's (``keras.activations``): ``elu`` with alpha 1,
``leaky_relu`` with negative slope 0.2, exact (erf) ``gelu``, ``hard_sigmoid`` =
``relu6(x + 3) / 6``; ``softmax`` and ``log_softmax`` act row-wise over the last axis.
"""
from __future__ import annotations

__all__ = ["LINEAR", "RELU", "SIGMOID", "TANH", "SOFTMAX", "ELU", "SELU", "GELU", "SILU",
           "LEAKY_RELU", "RELU6", "SOFTPLUS", "SOFTSIGN", "HARD_SIGMOID", "EXPONENTIAL",
           "LOG_SOFTMAX", "CODES", "ROW_WISE", "NEEDS_INPUT", "code_of"]

LINEAR = 0
RELU = 1
SIGMOID = 2
TANH = 3
SOFTMAX = 4  # row-wise over the last axis
ELU = 5
SELU = 6
GELU = 7  # derivative needs the input
SILU = 8  # derivative needs the input
LEAKY_RELU = 9
RELU6 = 10
SOFTPLUS = 11
SOFTSIGN = 12
HARD_SIGMOID = 13
EXPONENTIAL = 14
LOG_SOFTMAX = 15  # row-wise over the last axis

CODES = {"linear": LINEAR, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH, "softmax": SOFTMAX,
         "elu": ELU, "selu": SELU, "gelu": GELU, "silu": SILU, "swish": SILU,
         "leaky_relu": LEAKY_RELU, "relu6": RELU6, "softplus": SOFTPLUS, "softsign": SOFTSIGN,
         "hard_sigmoid": HARD_SIGMOID, "exponential": EXPONENTIAL, "log_softmax": LOG_SOFTMAX}

#: Codes computed over a whole row (the last axis) rather than element by element.
ROW_WISE = (SOFTMAX, LOG_SOFTMAX)
#: Codes whose derivative needs the pre-activation input (never fused into a producer).
NEEDS_INPUT = (GELU, SILU)

# Keras 3 / JAX / PyTorch constants of SELU.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
LEAKY_SLOPE = 0.2  # keras.activations.leaky_relu's default negative_slope


def code_of(name: str | None) -> int:
    """Returns the kernel code of an activation name (``None`` means linear)."""
    return CODES["linear" if name is None else name]
