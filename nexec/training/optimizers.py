"""Optimizers with Keras' names and defaults, each one fused in-place kernel call.

All trainable parameters live in one flat buffer (``nexec.runtime.params``), so a step of
any optimizer is a single kernel call over the whole model.

Example:
    >>> from nexec import optimizers
    >>> optimizers.Adam(1e-3).learning_rate
    0.001
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "BUILTIN_OPTIMIZERS", "get"]


class Optimizer:
    """Base: ``slots`` flat state arrays the size of the trainable parameters.

    Args:
        learning_rate: Step size.
    """

    slots = 0

    def __init__(self, learning_rate: float = 0.001, name: str | None = None) -> None:
        self.learning_rate = float(learning_rate)
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self.state: list[np.ndarray] = []
        self.device = "cpu"
        self._fns: dict = {}

    def build(self, size: int, dtype: str, device: str = "cpu") -> None:
        """Allocates the state once on ``device``; keeps it when nothing changed (re-compile)."""
        from nexec.runtime.memory import memory_for

        if len(self.state) != self.slots or self.device != device or any(
                s.size != size or s.dtype != dtype for s in self.state):
            memory = memory_for(device)
            self.state = [memory.zeros((size,), dtype) for _ in range(self.slots)]
        self.device = device

    def kernel(self, name: str):  # noqa: ANN201
        """The update kernel ``name`` for the device the state lives on (looked up once)."""
        from nexec.runtime.memory import kernel_fn

        key = (self.device, name)
        if key not in self._fns:
            self._fns[key] = kernel_fn(self.device, "optimizer", name)
        return self._fns[key]

    def step(self, w: np.ndarray, g: np.ndarray) -> None:
        """Updates ``w`` in place from gradient ``g`` (both flat)."""
        self.iterations += 1
        self._update(w, g)

    def _update(self, w: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "learning_rate": self.learning_rate}


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as Keras.

    Args:
        learning_rate: Default 0.01.
        momentum: Default 0.0.
        nesterov: Default False.
    """

    slots = 1  # the velocity

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, name: str | None = None) -> None:
        super().__init__(learning_rate, name)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _update(self, w: np.ndarray, g: np.ndarray) -> None:
        self.kernel("sgd_update")(w, g, self.state[0], self.learning_rate, self.momentum,
                                  self.nesterov)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class RMSprop(Optimizer):
    """RMSprop, as Keras (non-centered, no momentum).

    Args:
        learning_rate: Default 0.001.
        rho: Decay of the squared-gradient average; default 0.9.
        epsilon: Default 1e-7.
    """

    slots = 1

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, epsilon: float = 1e-7,
                 name: str | None = None) -> None:
        super().__init__(learning_rate, name)
        self.rho = float(rho)
        self.epsilon = float(epsilon)

    def _update(self, w: np.ndarray, g: np.ndarray) -> None:
        self.kernel("rmsprop_update")(w, g, self.state[0], self.learning_rate, self.rho,
                                      self.epsilon)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adam(Optimizer):
    """Adam, as Keras.

    Args:
        learning_rate: Default 0.001.
        beta_1: Default 0.9.
        beta_2: Default 0.999.
        epsilon: Default 1e-7.
    """

    slots = 2

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, name: str | None = None) -> None:
        super().__init__(learning_rate, name)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _update(self, w: np.ndarray, g: np.ndarray) -> None:
        self.kernel("adam_update")(w, g, self.state[0], self.state[1], self.learning_rate,
                                   self.beta_1, self.beta_2, self.epsilon, self.iterations)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


BUILTIN_OPTIMIZERS: dict[str, type] = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam}


def get(identifier: Any) -> Optimizer:
    """An optimizer from a name (``"adam"``) or an instance (returned as is)."""
    from nexec.plugins import registry

    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        return registry().optimizer(identifier.lower())()
    raise ValueError(f"Cannot interpret {identifier!r} as an optimizer; give a name such as "
                     f"'adam' or an instance such as nexec.optimizers.Adam(1e-3).")
