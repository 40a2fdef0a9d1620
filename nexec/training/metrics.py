"""Metrics by Keras name, computed from per-batch sums that kernels write into a slot.

A metric's kernel adds up something per batch (correct predictions, an elementwise score);
the trainer divides the epoch's sum by its rows or elements. Like losses, a metric names
kernels in the device's namespace (nexec's own), gives kernels per device, or gives a
scalar ``fn(p, t)`` that every device compiles (``elementwise``). Plugins contribute metrics
through the ``nexec_metrics`` hook.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from nexec.errors import PluginError
from nexec.ops.base import BoundCall
from nexec.plugins import registry

__all__ = ["Metric", "BUILTIN_METRICS", "resolve_metric"]


@dataclass(frozen=True)
class Metric:
    """A metric: per-batch sum kernels and what the sum is divided by.

    Args:
        name: The name in ``compile(metrics=[...])`` and in the logs.
        count: ``count(p, y, *extra, out)`` adds nothing, it *writes* the batch's sum into
            ``out[0]``; a function, or its name in each device's kernel namespace.
        denominator: ``"rows"`` (per sample) or ``"elements"`` (per output value).
        extra: Constant arguments after ``y`` (a threshold).
        dtype: The result slot's dtype (``"int64"`` for counts).
        kernels: Device name -> count function, for kernels written per device.
        elementwise: Scalar ``fn(p, t) -> float``; the metric is its mean over elements.
        sparse: Targets are integer labels (sparse categorical accuracy).

    Example:
        >>> close = Metric("close", elementwise=lambda p, t: 1.0 if abs(p - t) < 0.1 else 0.0)
        >>> close.denominator
        'elements'
    """

    name: str
    count: Any = None
    denominator: str = "rows"
    extra: tuple = ()
    dtype: str = "int64"
    kernels: Mapping[str, Callable[..., None]] = field(default_factory=dict)
    elementwise: Callable[..., float] | None = None
    sparse: bool = False

    def __post_init__(self) -> None:
        if self.elementwise is not None:
            object.__setattr__(self, "denominator", "elements")
            object.__setattr__(self, "dtype", "float64")
        if self.denominator not in ("rows", "elements"):
            raise ValueError(f"Metric {self.name!r}: denominator must be 'rows' or 'elements', "
                             f"got {self.denominator!r}.")

    def on(self, device: Any) -> Callable[..., None]:
        """The count kernel on ``device``, or an error naming the devices it has."""
        if device.name in self.kernels:
            return self.kernels[device.name]
        if isinstance(self.count, str):
            return getattr(device.kernels, self.count)
        if self.elementwise is not None:
            return device.generated("metric", self.elementwise)
        if callable(self.count) and device.host_memory:
            return self.count
        raise PluginError(f"Metric {self.name!r} has no kernel for device '{device.name}' "
                          f"(it has: {', '.join(sorted(self.kernels)) or 'none'}); give it "
                          "elementwise=fn to run on every device.")

    def bind(self, device: Any, p: Any, y: Any, slot: Any) -> BoundCall:
        return (self.on(device), (p, y, *self.extra, slot))

    def total(self, p: Any) -> int:
        """What one batch's sum is divided by."""
        return int(p.shape[0]) if self.denominator == "rows" else int(p.size)


BUILTIN_METRICS: list[Metric] = [
    Metric("categorical_accuracy", "categorical_accuracy_count"),
    Metric("sparse_categorical_accuracy", "sparse_categorical_accuracy_count", sparse=True),
    Metric("binary_accuracy", "binary_accuracy_count", "elements", (0.5,)),
]


def resolve_metric(name: Any, loss_name: str, units: int | None = None,
                   sparse: bool | None = None) -> tuple[str, Metric]:
    """``(log name, metric)`` for a name in ``compile(metrics=...)`` or a Metric.

    ``"accuracy"`` (``"acc"``) resolves as Keras 3 does, from the shapes: sparse categorical
    accuracy for integer-label targets, binary accuracy when the output has one unit,
    categorical (argmax) accuracy otherwise, whatever the loss (so a multi-unit sigmoid with
    binary crossentropy gets argmax accuracy, as in Keras 3).

    Args:
        name: The entry of ``metrics``.
        loss_name: The output's loss (sparse crossentropy means integer-label targets).
        units: The output's last dimension, when known.
        sparse: Whether targets are integer labels (default: from ``loss_name``).
    """
    if isinstance(name, Metric):
        return name.name, name
    if not isinstance(name, str):
        raise ValueError(f"A metric must be a name such as 'accuracy' or a "
                         f"nexec.plugin.Metric, got {name!r}.")
    key = name
    if name.lower() in ("accuracy", "acc"):
        if sparse is None:
            sparse = loss_name == "sparse_categorical_crossentropy"
        if sparse:
            key = "sparse_categorical_accuracy"
        elif units == 1 or (units is None and loss_name == "binary_crossentropy"):
            key = "binary_accuracy"
        else:
            key = "categorical_accuracy"
    table = registry().metrics
    if key not in table:
        raise ValueError(f"Unknown metric {name!r}; known: accuracy, {', '.join(sorted(table))}.")
    return (name if name.lower() in ("accuracy", "acc") else key), table[key]
