"""Losses by Keras name, with kernels for every device.

A loss reaches a device's kernels in one of three ways, checked in this order:

* ``kernels``: per device name (or ``"*"`` for any device) a :class:`LossKernels` whose
  entries are kernel functions, or names looked up in the device's kernel namespace (how
  nexec's own losses are declared: every device with those kernels supports them);
* ``elementwise=(fn, derivative)``: scalar ``fn(p, t)`` and ``d fn / d p``; each device
  compiles them into its own value and gradient kernels (the easy way for a plugin);
* plugin API 1.0: ``value``/``grad``/``fused`` CPU functions, ``value`` returning the
  batch mean; they run on devices whose arrays are host memory.

A loss may also give the gradient with respect to the *pre-activation* of an output whose
activation it knows (softmax + crossentropy, sigmoid + binary crossentropy): the backward of
that output layer then skips its activation gradient.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from nexec.errors import PluginError
from nexec.kernels.loss_rows import CODES
from nexec.ops.base import BoundCall

__all__ = ["Loss", "LossKernels", "BUILTIN_LOSSES", "EPSILON", "ALIASES", "configured"]

EPSILON = 1e-7  # Keras' backend epsilon, used for probability clipping

KernelRef = Any  # a kernel function, or its name in a device's kernel namespace


@dataclass(frozen=True)
class LossKernels:
    """One device's kernels of a loss.

    Args:
        value: ``value(p, y, [eps,] out)`` writes the batch mean into ``out[0]`` (float64).
        grad: ``grad(p, y, [eps,] scale, dp)`` writes ``scale * dloss/dp`` (scale = w / N).
        fused: Activation name -> ``grad(p, y, scale, dz)`` with respect to the logits.
        weighted: ``weighted(p, y, [eps,] w, out)`` writes ``sum_i w_i * loss_i / N`` into
            ``out[0]`` (one weight per row: ``fit(sample_weight=...)``); None: the loss
            cannot be trained with sample weights on this device.
    """

    value: KernelRef
    grad: KernelRef
    fused: Mapping[str, KernelRef] = field(default_factory=dict)
    weighted: KernelRef | None = None

    def resolved(self, device: Any) -> LossKernels:
        def get(k: KernelRef) -> Callable[..., Any]:
            return getattr(device.kernels, k) if isinstance(k, str) else k

        return LossKernels(get(self.value), get(self.grad),
                           {a: get(f) for a, f in self.fused.items()},
                           None if self.weighted is None else get(self.weighted))


@dataclass(frozen=True)
class Loss:
    """A loss: its name, target form, and kernels per device (see the module docstring).

    Args:
        name: Keras name (``"categorical_crossentropy"``).
        value, grad, fused: Plugin API 1.0 CPU kernels (``value`` returns the batch mean).
        sparse: Targets are integer class labels of shape ``(N,)``.
        clipped: Whether value and grad take Keras' epsilon (``eps`` above).
        kernels: Device name (or ``"*"``) -> :class:`LossKernels`.
        elementwise: ``(fn, derivative)`` scalar functions of ``(p, t)``; the loss is the
            mean of ``fn`` over all elements (Keras: over the last axis, then the batch).
        extra: Constant arguments of value and grad kernels after ``y`` (and ``eps``).
        config: Keras arguments of a loss object (``{"from_logits": True}``), recorded by
            ``model.save``; a loss made by a class of :mod:`nexec.losses` has its class name
            under ``"class_name"``.

    Example:
        >>> mae = Loss("my_mae", elementwise=(lambda p, t: abs(p - t),
        ...                                   lambda p, t: 1.0 if p > t else -1.0))
        >>> mae.clipped
        False
    """

    name: str
    value: Callable[..., float] | None = None
    grad: Callable[..., None] | None = None
    fused: Mapping[str, Callable[..., None]] = field(default_factory=dict)
    sparse: bool = False
    clipped: bool = True
    kernels: Mapping[str, LossKernels] = field(default_factory=dict)
    elementwise: tuple[Callable[..., float], Callable[..., float]] | None = None
    extra: tuple = ()
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.elementwise is not None:
            object.__setattr__(self, "clipped", False)

    def on(self, device: Any) -> LossKernels:
        """This loss's kernels on ``device``, or an error naming what it has."""
        for key in (device.name, "*"):
            if key in self.kernels:
                return self.kernels[key].resolved(device)
        if self.elementwise is not None:
            value, grad = device.generated("loss", *self.elementwise)
            return LossKernels(value, grad,
                               weighted=device.generated("weighted loss", self.elementwise[0]))
        if self.value is not None and self.grad is not None and device.host_memory:
            return LossKernels(_into_slot(self.value, self.clipped), self.grad, self.fused)
        have = sorted(self.kernels) + (["host-memory devices"] if self.value else [])
        raise PluginError(f"Loss {self.name!r} has no kernels for device '{device.name}' "
                          f"(it has: {', '.join(have) or 'none'}); give it "
                          "elementwise=(fn, derivative) to run on every device.")

    def fuses(self, activation: str | None) -> bool:
        """Whether the loss has a gradient through ``activation`` (softmax, sigmoid)."""
        if activation is None:
            return False
        fused = set(self.fused)
        for k in self.kernels.values():
            fused |= set(k.fused)
        return activation in fused

    def bind_value(self, device: Any, p: Any, y: Any, slot: Any,
                   weights: Any = None) -> BoundCall:
        """The call writing the batch loss into ``slot[0]``: the mean, or with ``weights``
        (one per row of ``p``) Keras' weighted ``sum_i w_i * loss_i / N``."""
        k = self.on(device)
        head = (p, y, EPSILON) if self.clipped else (p, y)
        if weights is None:
            return (k.value, (*head, *self.extra, slot))
        if k.weighted is None:
            raise PluginError(f"Loss {self.name!r} has no weighted value kernel for device "
                              f"'{device.name}', so it cannot train with sample_weight or "
                              "class_weight; give its LossKernels a weighted=... kernel, or "
                              "define it with elementwise=(fn, derivative).")
        return (k.weighted, (*head, *self.extra, weights, slot))

    def bind_grad(self, device: Any, p: Any, y: Any, scale: float, out: Any,
                  activation: str | None = None) -> BoundCall:
        k = self.on(device)
        if activation is not None and activation in k.fused:
            return (k.fused[activation], (p, y, *self.extra, scale, out))
        head = (p, y, EPSILON) if self.clipped else (p, y)
        return (k.grad, (*head, *self.extra, scale, out))


_slot_adapters: dict[tuple[Any, bool], Callable[..., None]] = {}


def _into_slot(value: Callable[..., float], clipped: bool) -> Callable[..., None]:
    """A 1.0 CPU value kernel (returning the mean) as one that writes it into ``out[0]``."""
    key = (value, clipped)
    if key not in _slot_adapters:
        from numba import njit  # here, so that importing nexec does not import Numba

        def clipped_into(p, y, eps, out):  # noqa: ANN001, ANN202
            out[0] = value(p, y, eps)

        def plain_into(p, y, out):  # noqa: ANN001, ANN202
            out[0] = value(p, y)

        # A closure over the plugin's kernel: compiled per process, not cached on disk.
        _slot_adapters[key] = njit(nogil=True)(clipped_into if clipped else plain_into)
    return _slot_adapters[key]


def _builtin(name: str, value: str, grad: str, fused: dict[str, str] | None = None,
             **kw: Any) -> Loss:
    return Loss(name, kernels={"*": LossKernels(value, grad, fused or {}, f"{value}_weighted")},
                **kw)


def _by_code(name: str, code_name: str | None = None, a: float = 0.0, **kw: Any) -> Loss:
    """A loss computed by the ``row_loss`` kernels (``nexec.kernels.loss_rows``)."""
    code = CODES[code_name or name]
    return Loss(name, kernels={"*": LossKernels("row_loss", "row_loss_grad",
                                                weighted="row_loss_weighted")},
                clipped=False, extra=(code, float(a), EPSILON), **kw)


ALIASES = {
    "mse": "mean_squared_error", "MSE": "mean_squared_error",
    "mae": "mean_absolute_error", "MAE": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error", "MAPE": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error", "MSLE": "mean_squared_logarithmic_error",
    "kld": "kl_divergence", "KLD": "kl_divergence",
    "kullback_leibler_divergence": "kl_divergence", "logcosh": "log_cosh",
    "bce": "binary_crossentropy", "BCE": "binary_crossentropy",
    "crossentropy": "categorical_crossentropy",
}
"""Keras' short and legacy names of losses."""

BUILTIN_LOSSES: list[Loss] = [
    _builtin("categorical_crossentropy", "categorical_crossentropy",
             "categorical_crossentropy_grad", {"softmax": "softmax_crossentropy_grad"}),
    _builtin("sparse_categorical_crossentropy", "sparse_categorical_crossentropy",
             "sparse_categorical_crossentropy_grad",
             {"softmax": "sparse_softmax_crossentropy_grad"}, sparse=True),
    _builtin("binary_crossentropy", "binary_crossentropy", "binary_crossentropy_grad",
             {"sigmoid": "sigmoid_binary_crossentropy_grad"}),
    _builtin("mean_squared_error", "mean_squared_error", "mean_squared_error_grad",
             clipped=False),
    *(_by_code(n) for n in (
        "mean_absolute_error", "mean_absolute_percentage_error",
        "mean_squared_logarithmic_error", "log_cosh", "kl_divergence", "poisson", "hinge",
        "squared_hinge", "categorical_hinge", "cosine_similarity")),
    _by_code("huber", a=1.0),
]


def configured(name: str, **config: Any) -> Loss:
    """The loss ``name`` with Keras arguments (``from_logits``, ``label_smoothing``,
    ``delta``); raises ValueError naming what is accepted.

    Args:
        name: Keras function name (``"categorical_crossentropy"``).
        **config: The loss object's arguments; defaults give the registered loss.
    """
    from nexec.plugins import registry

    logits = bool(config.get("from_logits", False))
    smoothing = float(config.get("label_smoothing", 0.0))
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {smoothing!r}.")
    cfg = dict(config)
    if name == "huber":
        delta = float(config.get("delta", 1.0))
        if delta <= 0:
            raise ValueError(f"Huber: delta must be positive, got {delta!r}.")
        base = _by_code("huber", a=delta)
    elif name == "categorical_crossentropy" and logits:
        base = _by_code(name, "categorical_crossentropy_logits", smoothing)
    elif name == "categorical_crossentropy" and smoothing:
        base = _by_code(name, "categorical_crossentropy_smoothed", smoothing)
    elif name == "binary_crossentropy" and logits:
        base = _by_code(name, "binary_crossentropy_logits", smoothing)
    elif name == "binary_crossentropy" and smoothing:
        base = _by_code(name, "binary_crossentropy_smoothed", smoothing)
    elif name == "sparse_categorical_crossentropy" and logits:
        base = Loss(name, kernels={"*": LossKernels(
            "sparse_categorical_crossentropy_logits",
            "sparse_categorical_crossentropy_logits_grad",
            weighted="sparse_categorical_crossentropy_logits_weighted")}, sparse=True,
            clipped=False)
    else:
        base = registry().loss(name)
    return replace(base, config=cfg)
