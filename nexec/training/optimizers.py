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

from nexec.checks import positive_finite_float
from nexec.plugins import registry

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "BUILTIN_OPTIMIZERS", "get"]


class Optimizer:
    """Base: ``slots`` flat state arrays the size of the trainable parameters, and the
    hyperparameters in one small array the update kernel reads (``[iterations,
    learning_rate, ...]``), so changing the learning rate needs no re-binding and the
    update is an ordinary instruction of the training step.

    Args:
        learning_rate: Step size.
    """

    slots = 0
    #: The update kernel's name in a device's kernel namespace.
    update_kernel = ""

    def __init__(self, learning_rate: float = 0.001, name: str | None = None) -> None:
        self.name = name or type(self).__name__.lower()
        self.state: list[Any] = []
        self.device: Any = None
        self._host = np.zeros(2 + len(self._extra()), np.float64)
        # 0 is allowed (a frozen step, a warm-up's start); negative, NaN and inf are not.
        self._host[1] = positive_finite_float(learning_rate, "learning_rate",
                                              type(self).__name__, allow_zero=True)
        self.hyper: Any = self._host  # where the kernel reads them (a device copy off-host)

    def _extra(self) -> list[float]:
        """The hyperparameters after ``[iterations, learning_rate]``, in kernel order."""
        return []

    # ----- values users read and set -------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        return float(self._host[1])

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._host[1] = positive_finite_float(value, "learning_rate", type(self).__name__,
                                              allow_zero=True)
        self._push()

    @property
    def iterations(self) -> int:
        """Updates applied so far (the kernels count them)."""
        if self.hyper is not self._host:
            self.device.read(self._host, self.hyper)
        return int(self._host[0])

    @iterations.setter
    def iterations(self, value: int) -> None:
        _ = self.iterations  # bring the device's count over before overwriting the host copy
        self._host[0] = int(value)
        self._push()

    def _push(self) -> None:
        if self.hyper is not self._host:
            self.device.copy_to_device(self.hyper, self._host)

    # ----- binding --------------------------------------------------------------------------
    def build(self, size: int, dtype: str, device: Any) -> None:
        """Allocates the state once on ``device`` (a ``nexec.devices.Device``); keeps it
        when nothing changed (a second ``compile``)."""
        if len(self.state) != self.slots or self.device is not device or any(
                s.size != size or s.dtype != dtype for s in self.state):
            _ = self.iterations if self.device is not None else 0
            self.state = [device.zeros((size,), dtype) for _ in range(self.slots)]
            self.device = device
            self.hyper = device.to_device(self._host)
        self._host[2:] = self._extra()
        self._push()

    def bind(self, w: Any, g: Any) -> tuple:
        """The update of flat parameters ``w`` from gradients ``g``, as one bound call."""
        if not self.update_kernel:  # plugin API 1.0: ``_update(w, g)`` runs in Python
            return (self._python_step, (w, g))
        return (getattr(self.device.kernels, self.update_kernel), (w, g, *self.state, self.hyper))

    def _python_step(self, w: Any, g: Any) -> None:
        self.iterations = self.iterations + 1
        self._update(w, g)

    def _update(self, w: Any, g: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} sets neither update_kernel nor "
                                  "_update(w, g)")

    def kernel(self, name: str) -> Any:
        """Kernel function ``name`` of the device the state lives on (plugin API 1.0)."""
        return getattr(self.device.kernels, name)

    def state_arrays(self) -> list[np.ndarray]:
        """Host copies of the state slots (for saving)."""
        out = []
        for slot in self.state:
            host = np.empty(slot.shape, slot.dtype)
            self.device.read(host, slot)
            out.append(host)
        return out

    def load_state(self, arrays: list[np.ndarray]) -> None:
        """Overwrites the state slots with ``arrays`` (same shapes, from a saved model)."""
        for slot, host in zip(self.state, arrays):
            self.device.copy_to_device(slot, np.asarray(host, slot.dtype))

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
    update_kernel = "sgd_update"

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, name: str | None = None) -> None:
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        super().__init__(learning_rate, name)

    def _extra(self) -> list[float]:
        return [self.momentum, float(self.nesterov)]

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
    update_kernel = "rmsprop_update"

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, epsilon: float = 1e-7,
                 name: str | None = None) -> None:
        self.rho = float(rho)
        self.epsilon = float(epsilon)
        super().__init__(learning_rate, name)

    def _extra(self) -> list[float]:
        return [self.rho, self.epsilon]

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
    update_kernel = "adam_update"

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, name: str | None = None) -> None:
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        super().__init__(learning_rate, name)

    def _extra(self) -> list[float]:
        return [self.beta_1, self.beta_2, self.epsilon]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


BUILTIN_OPTIMIZERS: dict[str, type] = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam}


def get(identifier: Any) -> Optimizer:
    """An optimizer from a name (``"adam"``) or an instance (returned as is)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        return registry().optimizer(identifier.lower())()
    raise ValueError(f"Cannot interpret {identifier!r} as an optimizer; give a name such as "
                     f"'adam' or an instance such as nexec.optimizers.Adam(1e-3).")
