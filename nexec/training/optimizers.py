"""Optimizers with Keras' names and defaults, each one fused in-place kernel call.

All trainable parameters live in one flat buffer (``nexec.runtime.params``), so a step of
any optimizer is a single kernel call over the whole model.

Example:
    >>> from nexec import optimizers
    >>> optimizers.Adam(1e-3).learning_rate
    0.001
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from nexec.checks import ArgumentError, ArgumentTypeError
from nexec.plugins import registry
from nexec.training import schedules as schedules_module
from nexec.training.schedules import LearningRateSchedule

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "Nadam", "Adamax", "Adagrad",
           "Adadelta", "Lion", "BUILTIN_OPTIMIZERS", "get", "split_ranges", "MIN_SPLIT_PARAMS",
           "MIN_SPLIT_PARAMS_ALONE"]

#: In a program that already runs shards, an update of at least this many parameters is
#: split over them (see :func:`split_ranges`).
MIN_SPLIT_PARAMS = 1 << 19
#: In a program without shards: None, never split (see :func:`split_ranges`).
MIN_SPLIT_PARAMS_ALONE: int | None = None

#: ``clip_and_decay``'s modes (``prep[0]``).
_CLIP_MODES = {None: 0.0, "clipnorm": 1.0, "global_clipnorm": 2.0, "clipvalue": 3.0}


def split_ranges(size: int, threads: int, threaded: bool) -> list[tuple[int, int]]:
    """Contiguous ``[lo, hi)`` ranges of a flat update of ``size`` parameters, one per shard;
    one range when splitting does not pay.

    A program that already runs intra-op shards (convolutions) holds BLAS at one thread
    for its whole step, so its update is split from ``MIN_SPLIT_PARAMS`` parameters. A
    program without shards keeps one call whatever its size (``MIN_SPLIT_PARAMS_ALONE``
    is None): a shard there would hold BLAS at one thread for the whole step (a Dense
    model's GEMMs), for at most half of an update that is a few percent of its step.
    Bounds are multiples of 16 elements (whole cache lines); the last range ends at ``size``.

    Measured (float32 SGD with momentum, 2 threads, a shared 2-core machine; alternating
    calls, best of 200, which is what an idle second core gives): 256 Ki parameters
    0.088 -> 0.086 ms, 512 Ki 0.243 -> 0.152 ms, 2 Mi 1.06 -> 0.61 ms, the ResNet-18-style
    model's 11.2 M 7.4 -> 4.4 ms. While other processes hold the second core the medians
    do not move (the caller runs the shard a descheduled worker has not started).
    """
    alone = MIN_SPLIT_PARAMS_ALONE
    if threads < 2 or size < (MIN_SPLIT_PARAMS if threaded else
                              (alone if alone is not None else size + 1)):
        return [(0, size)]
    bounds = [0] + [(size * i // threads) // 16 * 16 for i in range(1, threads)] + [size]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def _checked(cls: str, arg: str, value: Any, *, lo: float = 0.0, hi: float = math.inf,
             lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` as a float when it is a real number in the interval; else a TypeError (not a
    number) or ValueError (outside it) naming the argument, the value and the interval."""
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ArgumentTypeError(f"{cls}: argument `{arg}` must be a number in {interval}. "
                                f"Received: {arg}={value!r} ({type(value).__name__})")
    v = float(value)
    if math.isnan(v) or not ((v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)):
        raise ArgumentError(f"{cls}: argument `{arg}` must be a number in {interval}. "
                            f"Received: {arg}={value!r}")
    return v


class Rate(float):
    """An optimizer's learning rate as read: a float that also answers the calls Keras 3
    code makes on its rate variable, ``assign(value)`` (which sets the optimizer's rate, as
    ``optimizer.learning_rate = value``) and ``numpy()``. **Difference:** a Keras variable
    shows the assigned value afterwards; this float keeps the value it was read with, so
    read ``optimizer.learning_rate`` again."""

    _optimizer: Any

    def __new__(cls, value: float, optimizer: Any) -> Rate:
        rate = super().__new__(cls, value)
        rate._optimizer = optimizer
        return rate

    def assign(self, value: Any) -> None:
        self._optimizer.learning_rate = value

    def numpy(self) -> np.float64:
        return np.float64(self)

    def __reduce__(self) -> tuple:  # pickles and copies as the plain number
        return (float, (float(self),))


class Optimizer:
    """Base: ``slots`` flat state arrays the size of the trainable parameters, and the
    hyperparameters in one small array the update kernel reads (``[iterations,
    learning_rate, ...]``), so changing the learning rate needs no re-binding and the
    update is an ordinary instruction of the training step.

    Keras 3's common arguments are keyword arguments of every optimizer: ``weight_decay``
    (decoupled, ``w -= w * weight_decay * lr`` before the update), ``clipnorm`` (each
    variable's gradient by its own norm), ``global_clipnorm``, ``clipvalue`` (at most one
    of the three); clipping and decay run as one kernel instruction before the update.
    ``use_ema``, ``loss_scale_factor`` and ``gradient_accumulation_steps`` are refused.

    Args:
        learning_rate: Step size (>= 0), or a ``schedules.LearningRateSchedule``.
        name: Default: the class name in lower case.
    """

    slots = 0
    #: The update kernel's name in a device's kernel namespace.
    update_kernel = ""
    #: Whether the update kernel refuses a negative step count (the split path does alike).
    strict_count = True
    #: Initial value of every state slot (Adagrad starts its accumulator above zero).
    slot_initial_value = 0.0

    def __init__(self, learning_rate: Any = 0.001, name: str | None = None, *,
                 weight_decay: float | None = None, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None,
                 use_ema: bool = False, ema_momentum: float = 0.99,
                 ema_overwrite_frequency: int | None = None,
                 loss_scale_factor: float | None = None,
                 gradient_accumulation_steps: int | None = None, **kwargs: Any) -> None:
        cls = type(self).__name__
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.",
                          stacklevel=2)
        if kwargs:
            raise ValueError(f"{cls}: argument(s) not recognized: {kwargs}")
        for arg, value, default in (("use_ema", use_ema, False),
                                    ("loss_scale_factor", loss_scale_factor, None),
                                    ("gradient_accumulation_steps",
                                     gradient_accumulation_steps, None)):
            if value != default:
                raise ValueError(f"{cls}: argument `{arg}` is not supported by nexec "
                                 f"(only {arg}={default!r}). Received: {arg}={value!r}")
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.name = name or cls.lower()
        self.weight_decay = None if weight_decay is None else \
            _checked(cls, "weight_decay", weight_decay)
        clips = {k: v for k, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                                   ("global_clipnorm", global_clipnorm)) if v is not None}
        if len(clips) > 1:
            raise ValueError(f"{cls}: only one of `clipnorm`, `clipvalue` and "
                             f"`global_clipnorm` can be set. Received: clipnorm={clipnorm}, "
                             f"clipvalue={clipvalue}, global_clipnorm={global_clipnorm}")
        for k, v in clips.items():
            clips[k] = _checked(cls, k, v, lo_open=True)
        self.clipnorm = clips.get("clipnorm")
        self.clipvalue = clips.get("clipvalue")
        self.global_clipnorm = clips.get("global_clipnorm")
        self.state: list[Any] = []
        self.device: Any = None
        self._schedule: Any = None
        self._host = np.zeros(2 + len(self._extra()), np.float64)
        self.hyper: Any = self._host  # where the kernel reads them (a device copy off-host)
        self._host_lr = self._host[1:2]
        self._device_lr: Any = self._host_lr
        self._set_rate(learning_rate)

    def _extra(self) -> list[float]:
        """The hyperparameters after ``[iterations, learning_rate]``, in kernel order."""
        return []

    def _set_rate(self, value: Any) -> None:
        if isinstance(value, LearningRateSchedule) or (
                callable(value) and not isinstance(value, (int, float))):
            self._schedule = value
            self._host[1] = self._rate_at(int(self._host[0]))
            return
        self._schedule = None
        # 0 is allowed (a frozen step, a warm-up's start); negative, NaN and inf are not.
        self._host[1] = _checked(type(self).__name__, "learning_rate", value, hi_open=True)

    def _rate_at(self, step: int) -> float:
        s = self._schedule
        rate = s(step) if isinstance(s, LearningRateSchedule) else s()
        return float(rate)

    # ----- values users read and set -------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The rate of the next step (a schedule's value at ``iterations``); settable to a
        number (not when constructed with a schedule, as Keras) or to a schedule, also as
        Keras 3 code sets its rate variable: ``optimizer.learning_rate.assign(1e-4)``."""
        rate = self._rate_at(self.iterations) if self._schedule is not None \
            else float(self._host[1])
        return Rate(rate, self)

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        new_schedule = isinstance(value, LearningRateSchedule) or (
            callable(value) and not isinstance(value, (int, float)))
        if self._schedule is not None and not new_schedule:
            raise TypeError(f"{type(self).__name__} was created with a learning-rate schedule "
                            "as its `learning_rate`, so its learning rate is not settable to "
                            f"a number (received {value!r}); create the optimizer with a float "
                            "`learning_rate` to set it.")
        if new_schedule and self._schedule is None and self.device is not None:
            raise TypeError(f"{type(self).__name__}: a learning-rate schedule can be set only "
                            "before compile() (or compile again after setting it); the "
                            "compiled step has no schedule instruction.")
        self._set_rate(value)
        self._push_rate()

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
        self._host[2:] = self._extra()
        self._push()

    def _push(self) -> None:
        if self.hyper is not self._host:
            self.device.copy_to_device(self.hyper, self._host)

    def _push_rate(self) -> None:
        """Writes only the learning rate (the device's step count stays as it is)."""
        if self._device_lr is not self._host_lr:
            self.device.copy_to_device(self._device_lr, self._host_lr)

    def _schedule_step(self) -> None:
        """Before each update: this step's scheduled rate into ``hyper[1]``. On a device
        the host's ``hyper[0]`` mirrors the count (one schedule step per update)."""
        self._host[1] = self._rate_at(int(self._host[0]))
        if self._device_lr is not self._host_lr:
            self.device.copy_to_device(self._device_lr, self._host_lr)
            self._host[0] += 1.0

    # ----- binding --------------------------------------------------------------------------
    def build(self, size: int, dtype: str, device: Any) -> None:
        """Allocates the state once on ``device`` (a ``nexec.devices.Device``); keeps it
        when nothing changed (a second ``compile``)."""
        if self.device is not None:
            _ = self.iterations  # the device's count (and state) into the host copy
        if len(self.state) != self.slots or self.device is not device or any(
                s.size != size or s.dtype != dtype for s in self.state):
            init = self.slot_initial_value
            self.state = [device.zeros((size,), dtype) if init == 0.0 else
                          device.to_device(np.full((size,), init, dtype))
                          for _ in range(self.slots)]
            self.device = device
            self.hyper = device.to_device(self._host)
            self._device_lr = self._host_lr if self.hyper is self._host else self.hyper[1:2]
        self._host[2:] = self._extra()
        if self._schedule is not None:
            self._host[1] = self._rate_at(int(self._host[0]))
        self._push()

    def _clip_mode(self) -> tuple[str | None, float]:
        for k in ("clipnorm", "global_clipnorm", "clipvalue"):
            if getattr(self, k, None) is not None:
                return k, float(getattr(self, k))
        return None, 0.0

    def calls(self, w: Any, g: Any, store: Any = None, threaded: bool = False) -> list[tuple]:
        """Every bound call of one update, in order: the scheduled rate (when the learning
        rate is a schedule), clipping and weight decay (when asked for, one call: its norms
        are sums), then the update, split over intra-op shards when :func:`split_ranges`
        says so.

        Args:
            w: The flat trainable parameters.
            g: Their gradients (clipping rewrites them in place).
            store: The ``ParamStore`` whose order gives each variable's place in ``w``
                (needed for ``clipnorm``, which clips each variable by its own norm).
            threaded: The rest of the step already runs intra-op shards (BLAS is held at
                one thread for the whole step anyway).
        """
        out: list[tuple] = []
        if self._schedule is not None:
            out.append((self._schedule_step, ()))
        mode, clip = self._clip_mode()
        wd = getattr(self, "weight_decay", None) or 0.0
        if mode is not None or wd:
            offsets = self._offsets(w.shape[0], store)
            dev = self.device
            prep = np.array([_CLIP_MODES[mode], clip, wd], np.float64)
            out.append((dev.kernels.clip_and_decay,
                        (w, g, dev.to_device(offsets),
                         dev.zeros((max(offsets.size - 1, 1),), np.float64), self.hyper,
                         dev.to_device(prep))))
        split = self._split_calls(w, g, threaded)
        out += split if split else [self.bind(w, g)]
        return out

    def _split_calls(self, w: Any, g: Any, threaded: bool) -> list[tuple]:
        """The update as ``advance_step`` then its ranges run as intra-op shards (see
        :func:`split_ranges`), or ``[]`` to keep one call: a plugin's own ``bind``, a device
        without shards or range kernels, or too few parameters."""
        name = self.update_kernel  # "adam_update" splits into "adam_part"
        if self.device is None or not name.endswith("_update") or \
                type(self).bind is not Optimizer.bind:
            return []
        kernels = self.device.kernels
        part = getattr(kernels, f"{name.removesuffix('_update')}_part", None)
        if part is None:
            return []
        ranges = split_ranges(int(w.shape[0]), self.device.threads(), threaded)
        if len(ranges) < 2:
            return []
        size = self._host.size
        first = (kernels.nadam_advance_step, (self.hyper,)) if self.update_kernel == \
            "nadam_update" else (kernels.advance_step, (self.hyper, np.int64(size),
                                                         1.0 if self.strict_count else 0.0))
        shards = [(part, (w[lo:hi], g[lo:hi], *(s[lo:hi] if s.size else s for s in self.state),
                          self.hyper)) for lo, hi in ranges]
        return [first, *self.device.parallel(shards)]

    @staticmethod
    def _offsets(size: int, store: Any) -> np.ndarray:
        """Variable boundaries in the flat trainable buffer (one variable without a store)."""
        bounds = [0]
        if store is not None:
            for layer, name in store.order:
                if bounds[-1] >= size:
                    break
                bounds.append(bounds[-1] + int(layer._params[name].size))
        if bounds[-1] != size:
            bounds = [0, size]
        return np.array(bounds, np.int64)

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
        """The constructor's arguments (JSON-serialisable; a schedule as its config)."""
        rate: Any = self._host[1] if self._schedule is None else self._schedule
        if isinstance(rate, LearningRateSchedule):
            rate = schedules_module.serialize(rate)
        elif callable(rate):
            raise ValueError(f"{type(self).__name__}: a learning rate given as a plain "
                             "callable cannot be saved; use a schedules.LearningRateSchedule.")
        else:
            rate = float(rate)
        config: dict[str, Any] = {"name": self.name, "learning_rate": rate}
        for k in ("weight_decay", "clipnorm", "global_clipnorm", "clipvalue"):
            if getattr(self, k, None) is not None:
                config[k] = getattr(self, k)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        """The optimizer :meth:`get_config` described (a schedule rebuilt from its config)."""
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules_module.deserialize(config["learning_rate"])
        return cls(**config)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as Keras.

    Args:
        learning_rate: Default 0.01.
        momentum: In [0, 1]; default 0.0.
        nesterov: Default False.
        **kwargs: Keras' common optimizer arguments (see :class:`Optimizer`).
    """

    slots = 1  # the velocity
    update_kernel = "sgd_update"
    strict_count = False

    def __init__(self, learning_rate: Any = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, name: str | None = None, **kwargs: Any) -> None:
        self.momentum = _checked("SGD", "momentum", momentum, hi=1.0)
        self.nesterov = bool(nesterov)
        super().__init__(learning_rate, name, **kwargs)

    def _extra(self) -> list[float]:
        return [self.momentum, float(self.nesterov)]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class RMSprop(Optimizer):
    """RMSprop, as Keras (non-centered, no momentum: others are refused).

    Args:
        learning_rate: Default 0.001.
        rho: Decay of the squared-gradient average, in [0, 1); default 0.9.
        momentum: Only 0.0.
        epsilon: Default 1e-7.
        centered: Only False.
        **kwargs: Keras' common optimizer arguments (see :class:`Optimizer`).
    """

    slots = 1
    update_kernel = "rmsprop_update"
    strict_count = False

    def __init__(self, learning_rate: Any = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, name: str | None = None,
                 **kwargs: Any) -> None:
        if momentum != 0.0 or centered:
            raise ValueError("RMSprop: nexec supports momentum=0.0 and centered=False only. "
                             f"Received: momentum={momentum!r}, centered={centered!r}")
        self.rho = _checked("RMSprop", "rho", rho, hi=1.0, hi_open=True)
        self.epsilon = _checked("RMSprop", "epsilon", epsilon)
        super().__init__(learning_rate, name, **kwargs)

    def _extra(self) -> list[float]:
        return [self.rho, self.epsilon]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class _Betas(Optimizer):
    """An optimizer with ``beta_1``, ``beta_2`` (each in [0, 1)) and ``epsilon``."""

    def __init__(self, learning_rate: Any, beta_1: float, beta_2: float, epsilon: float,
                 name: str | None, **kwargs: Any) -> None:
        cls = type(self).__name__
        self.beta_1 = _checked(cls, "beta_1", beta_1, hi=1.0, hi_open=True)
        self.beta_2 = _checked(cls, "beta_2", beta_2, hi=1.0, hi_open=True)
        self.epsilon = _checked(cls, "epsilon", epsilon)
        super().__init__(learning_rate, name, **kwargs)

    def _extra(self) -> list[float]:
        return [self.beta_1, self.beta_2, self.epsilon]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class Adam(_Betas):
    """Adam, as Keras (``amsgrad=True`` is refused).

    Args:
        learning_rate: Default 0.001.
        beta_1: Default 0.9.
        beta_2: Default 0.999.
        epsilon: Default 1e-7.
        amsgrad: Only False.
        **kwargs: Keras' common optimizer arguments (see :class:`Optimizer`).
    """

    slots = 2
    update_kernel = "adam_update"

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, name: str | None = None,
                 **kwargs: Any) -> None:
        if amsgrad:
            raise ValueError(f"{type(self).__name__}: nexec supports amsgrad=False only. "
                             f"Received: amsgrad={amsgrad!r}")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, name, **kwargs)


class AdamW(Adam):
    """Adam with decoupled weight decay, as Keras (``weight_decay`` defaults to 0.004 and
    cannot be None).

    Args:
        learning_rate: Default 0.001.
        weight_decay: Default 0.004.
        beta_1: Default 0.9.
        beta_2: Default 0.999.
        epsilon: Default 1e-7.
        amsgrad: Only False.
        **kwargs: Keras' common optimizer arguments (see :class:`Optimizer`).
    """

    def __init__(self, learning_rate: Any = 0.001, weight_decay: float = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 amsgrad: bool = False, name: str | None = None, **kwargs: Any) -> None:
        if weight_decay is None:
            raise ValueError("AdamW: argument `weight_decay` must be a number >= 0. "
                             "Received: weight_decay=None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, name,
                         weight_decay=weight_decay, **kwargs)


class Nadam(_Betas):
    """Nadam, as Keras 3 (its momentum cache ``u_product`` rides in the hyperparameters and
    is recomputed from ``iterations`` when the count is set).

    Args:
        learning_rate: Default 0.001.
        beta_1: Default 0.9.
        beta_2: Default 0.999.
        epsilon: Default 1e-7.
        **kwargs: Keras' common optimizer arguments (see :class:`Optimizer`).
    """

    slots = 2
    update_kernel = "nadam_update"

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon, name, **kwargs)

    def _extra(self) -> list[float]:
        steps = int(self._host[0]) if hasattr(self, "_host") else 0
        u_product = 1.0
        for t in range(1, steps + 1):  # the kernel's product, factor by factor
            u_product = u_product * (self.beta_1 * (1.0 - 0.5 * 0.96 ** t))
        return [*super()._extra(), u_product]


class Adamax(_Betas):
    """Adamax, as Keras.

    Args:
        learning_rate: Default 0.001.
        beta_1: Default 0.9.
        beta_2: Default 0.999.
        epsilon: Default 1e-7.
        **kwargs: Keras' common optimizer arguments (see :class:`Optimizer`).
    """

    slots = 2
    update_kernel = "adamax_update"

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon, name, **kwargs)


class Adagrad(Optimizer):
    """Adagrad, as Keras.

    Args:
        learning_rate: Default 0.001.
        initial_accumulator_value: The accumulator's start, >= 0; default 0.1.
        epsilon: Default 1e-7.
        **kwargs: Keras' common optimizer arguments (see :class:`Optimizer`).
    """

    slots = 1
    update_kernel = "adagrad_update"

    def __init__(self, learning_rate: Any = 0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, name: str | None = None, **kwargs: Any) -> None:
        self.initial_accumulator_value = _checked("Adagrad", "initial_accumulator_value",
                                                  initial_accumulator_value)
        self.slot_initial_value = self.initial_accumulator_value
        self.epsilon = _checked("Adagrad", "epsilon", epsilon)
        super().__init__(learning_rate, name, **kwargs)

    def _extra(self) -> list[float]:
        return [self.epsilon]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adadelta(Optimizer):
    """Adadelta, as Keras 3 (its default learning rate is 0.001).

    Args:
        learning_rate: Default 0.001.
        rho: Decay of both averages, in [0, 1); default 0.95.
        epsilon: Default 1e-7.
        **kwargs: Keras' common optimizer arguments (see :class:`Optimizer`).
    """

    slots = 2
    update_kernel = "adadelta_update"

    def __init__(self, learning_rate: Any = 0.001, rho: float = 0.95, epsilon: float = 1e-7,
                 name: str | None = None, **kwargs: Any) -> None:
        self.rho = _checked("Adadelta", "rho", rho, hi=1.0, hi_open=True)
        self.epsilon = _checked("Adadelta", "epsilon", epsilon)
        super().__init__(learning_rate, name, **kwargs)

    def _extra(self) -> list[float]:
        return [self.rho, self.epsilon]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Lion(Optimizer):
    """Lion, as Keras.

    Args:
        learning_rate: Default 0.001.
        beta_1: In [0, 1]; default 0.9.
        beta_2: In [0, 1); default 0.99.
        **kwargs: Keras' common optimizer arguments (see :class:`Optimizer`).
    """

    slots = 1
    update_kernel = "lion_update"

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.99,
                 name: str | None = None, **kwargs: Any) -> None:
        self.beta_1 = _checked("Lion", "beta_1", beta_1, hi=1.0)
        self.beta_2 = _checked("Lion", "beta_2", beta_2, hi=1.0, hi_open=True)
        super().__init__(learning_rate, name, **kwargs)

    def _extra(self) -> list[float]:
        return [self.beta_1, self.beta_2]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}


BUILTIN_OPTIMIZERS: dict[str, type] = {
    "sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW, "nadam": Nadam,
    "adamax": Adamax, "adagrad": Adagrad, "adadelta": Adadelta, "lion": Lion}


def get(identifier: Any) -> Optimizer:
    """An optimizer from a name (``"adam"``) or an instance (returned as is)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        return registry().optimizer(identifier.lower())()
    raise ValueError(f"Cannot interpret {identifier!r} as an optimizer; give a name such as "
                     f"'adam' or an instance such as nexec.optimizers.Adam(1e-3).")
