"""Metrics by Keras name, computed from per-batch sums that kernels write into a slot.

A metric's kernel adds up something per batch (correct predictions, an elementwise score)
into a slot of ``size`` sums; the trainer adds the slots up over the epoch and the metric's
``result(sums, total)`` gives the logged value (by default the one sum divided by the
epoch's rows or elements; AUC, precision and recall keep several counts and apply Keras'
formula, RMSE takes a square root). Like losses, a metric names
kernels in the device's namespace (nexec's own), gives kernels per device, or gives a
scalar ``fn(p, t)`` that every device compiles (``elementwise``). Plugins contribute metrics
through the ``nexec_metrics`` hook.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from nexec.errors import PluginError
from nexec.ops.base import BoundCall
from nexec.plugins import registry

__all__ = ["Metric", "MeanAbsoluteError", "MeanSquaredError", "RootMeanSquaredError",
           "CategoricalAccuracy", "SparseCategoricalAccuracy", "BinaryAccuracy",
           "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "Precision", "Recall",
           "AUC", "BUILTIN_METRICS", "ALIASES", "resolve_metric"]


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
        size: How many sums the count kernel writes (``out[0:size]``).
        formula: ``formula(sums, total) -> float`` of the epoch's summed slot and the epoch's
            rows or elements, for metrics that are not one sum divided by the total.

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
    size: int = 1
    formula: Callable[[np.ndarray, int], float] | None = None

    def __post_init__(self) -> None:
        if self.elementwise is not None:
            object.__setattr__(self, "denominator", "elements")
            object.__setattr__(self, "dtype", "float64")
        if self.denominator not in ("rows", "elements"):
            raise ValueError(f"Metric {self.name!r}: denominator must be 'rows' or 'elements', "
                             f"got {self.denominator!r}.")
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"Metric {self.name!r}: size must be a positive int, "
                             f"got {self.size!r}.")

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

    def result(self, sums: np.ndarray, total: int) -> float:
        """The logged value from the epoch's summed slot and its rows or elements.

        Args:
            sums: The ``size`` sums added up over the epoch's batches.
            total: The epoch's rows or elements (per ``denominator``).
        """
        if self.formula is not None:
            return float(self.formula(sums, total))
        return float(sums[0]) / max(total, 1)


def _div(a: float, b: float) -> float:
    """``a / b``, 0 when ``b`` is 0 (Keras' ``divide_no_nan``)."""
    return float(a) / float(b) if b else 0.0


def _keyword(owner: str, **given: Any) -> None:
    """Refuses Keras arguments nexec does not implement, naming them."""
    for key, (value, default) in given.items():
        if value is not default and value != default:
            raise ValueError(f"{owner}: {key}={value!r} is not supported by nexec (only the "
                             f"default {key}={default!r}); see docs/keras.md, Metrics.")


class _Keras(Metric):
    """A Keras-named metric class: a :class:`Metric` built from Keras' arguments.

    ``dtype`` is accepted for Keras compatibility; results are float64 on the host.
    """

    def __init__(self, name: str, count: str, denominator: str = "rows", extra: tuple = (),
                 dtype: str = "int64", sparse: bool = False, size: int = 1) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{type(self).__name__}: name must be a non-empty string, got "
                             f"{name!r}.")
        super().__init__(name, count, denominator, extra, dtype, sparse=sparse, size=size)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


class MeanAbsoluteError(_Keras):
    """Keras ``MeanAbsoluteError``: mean of ``|y_pred - y_true|`` (``"mae"``)."""

    def __init__(self, name: str = "mean_absolute_error", dtype: Any = None) -> None:
        super().__init__(name, "absolute_error_sum", "elements", dtype="float64")


class MeanSquaredError(_Keras):
    """Keras ``MeanSquaredError``: mean of ``(y_pred - y_true)^2`` (``"mse"``)."""

    def __init__(self, name: str = "mean_squared_error", dtype: Any = None) -> None:
        super().__init__(name, "squared_error_sum", "elements", dtype="float64")


class RootMeanSquaredError(_Keras):
    """Keras ``RootMeanSquaredError``: ``sqrt`` of the epoch's mean squared error."""

    def __init__(self, name: str = "root_mean_squared_error", dtype: Any = None) -> None:
        super().__init__(name, "squared_error_sum", "elements", dtype="float64")

    def result(self, sums: np.ndarray, total: int) -> float:
        return float(np.sqrt(float(sums[0]) / max(total, 1)))


class CategoricalAccuracy(_Keras):
    """Keras ``CategoricalAccuracy``: rows with ``argmax(y_pred) == argmax(y_true)``."""

    def __init__(self, name: str = "categorical_accuracy", dtype: Any = None) -> None:
        super().__init__(name, "categorical_accuracy_count")


class SparseCategoricalAccuracy(_Keras):
    """Keras ``SparseCategoricalAccuracy``: rows with ``argmax(y_pred) == label``."""

    def __init__(self, name: str = "sparse_categorical_accuracy", dtype: Any = None) -> None:
        super().__init__(name, "sparse_categorical_accuracy_count", sparse=True)


class BinaryAccuracy(_Keras):
    """Keras ``BinaryAccuracy``: elements with ``float(y_pred > threshold) == y_true``."""

    def __init__(self, name: str = "binary_accuracy", dtype: Any = None,
                 threshold: float = 0.5) -> None:
        super().__init__(name, "binary_accuracy_count", "elements", (float(threshold),))


def _top_k(owner: str, k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{owner}: k must be a positive int, got {k!r}.")
    return int(k)


class TopKCategoricalAccuracy(_Keras):
    """Keras ``TopKCategoricalAccuracy``: rows whose ``argmax(y_true)`` is among the ``k``
    highest predictions (ties at the boundary count as in, as in Keras)."""

    def __init__(self, k: int = 5, name: str = "top_k_categorical_accuracy",
                 dtype: Any = None) -> None:
        super().__init__(name, "top_k_count", extra=(_top_k("TopKCategoricalAccuracy", k),))


class SparseTopKCategoricalAccuracy(_Keras):
    """Keras ``SparseTopKCategoricalAccuracy``: rows whose integer label is among the ``k``
    highest predictions."""

    def __init__(self, k: int = 5, name: str = "sparse_top_k_categorical_accuracy",
                 dtype: Any = None, from_sorted_ids: bool = False) -> None:
        _keyword("SparseTopKCategoricalAccuracy", from_sorted_ids=(from_sorted_ids, False))
        super().__init__(name, "sparse_top_k_count",
                         extra=(_top_k("SparseTopKCategoricalAccuracy", k),), sparse=True)


def _threshold(owner: str, thresholds: Any) -> float:
    if thresholds is None:
        return 0.5
    if isinstance(thresholds, (list, tuple, np.ndarray)):
        raise ValueError(f"{owner}: thresholds must be one float (nexec logs one value per "
                         f"metric), got {thresholds!r}; use one metric per threshold.")
    t = float(thresholds)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"{owner}: thresholds must lie in [0, 1], got {thresholds!r}.")
    return t


class Precision(_Keras):
    """Keras ``Precision``: ``tp / (tp + fp)`` over all elements, a prediction positive
    above ``thresholds`` (default 0.5) and a target positive when non-zero; 0 when nothing
    was predicted positive (Keras' ``divide_no_nan``)."""

    def __init__(self, thresholds: float | None = None, top_k: Any = None,
                 class_id: Any = None, name: str = "precision", dtype: Any = None) -> None:
        _keyword("Precision", top_k=(top_k, None), class_id=(class_id, None))
        super().__init__(name, "confusion_counts", "elements",
                         (_threshold("Precision", thresholds),), size=4)

    def result(self, sums: np.ndarray, total: int) -> float:
        tp, fp = float(sums[0]), float(sums[1])
        return _div(tp, tp + fp)


class Recall(_Keras):
    """Keras ``Recall``: ``tp / (tp + fn)``, as :class:`Precision` counts them."""

    def __init__(self, thresholds: float | None = None, top_k: Any = None,
                 class_id: Any = None, name: str = "recall", dtype: Any = None) -> None:
        _keyword("Recall", top_k=(top_k, None), class_id=(class_id, None))
        super().__init__(name, "confusion_counts", "elements",
                         (_threshold("Recall", thresholds),), size=4)

    def result(self, sums: np.ndarray, total: int) -> float:
        tp, fn = float(sums[0]), float(sums[3])
        return _div(tp, tp + fn)


class AUC(_Keras):
    """Keras ``AUC``: area under the ROC curve from ``num_thresholds`` evenly spaced
    thresholds, summed with Keras' ``"interpolation"`` (trapezoidal) rule over all elements
    (``multi_label=False``).

    Thresholds are ``[-eps, 1/(T-1), ..., (T-2)/(T-1), 1 + eps]``; with ``tp``, ``fp``,
    ``tn``, ``fn`` per threshold, ``recall = tp / (tp + fn)`` and ``fpr = fp / (fp + tn)``
    (0 where the denominator is 0) and ``AUC = sum((fpr[i] - fpr[i+1]) * (recall[i] +
    recall[i+1]) / 2)``. Other curves, summation methods, explicit thresholds, multi-label
    data, label weights and ``from_logits`` are refused with an error.
    """

    num_thresholds: int  # set in __init__ (not a dataclass field)

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC",
                 summation_method: str = "interpolation", name: str | None = None,
                 dtype: Any = None, thresholds: Any = None, multi_label: bool = False,
                 num_labels: Any = None, label_weights: Any = None,
                 from_logits: bool = False) -> None:
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) \
                or num_thresholds <= 1:
            raise ValueError("AUC: Argument `num_thresholds` must be an integer > 1. "
                             f"Received: num_thresholds={num_thresholds!r}")
        _keyword("AUC", curve=(str(curve).upper(), "ROC"),
                 summation_method=(str(summation_method).lower(), "interpolation"),
                 thresholds=(thresholds, None), multi_label=(multi_label, False),
                 num_labels=(num_labels, None), label_weights=(label_weights, None),
                 from_logits=(from_logits, False))
        t = int(num_thresholds)
        super().__init__(name or "auc", "auc_buckets", "elements", (t,), size=2 * t)
        object.__setattr__(self, "num_thresholds", t)

    @property
    def thresholds(self) -> list[float]:
        """The thresholds, as Keras lists them."""
        t = self.num_thresholds
        eps = 1e-7
        return [0.0 - eps] + [(i + 1) * 1.0 / (t - 1) for i in range(t - 2)] + [1.0 + eps]

    def result(self, sums: np.ndarray, total: int) -> float:
        t = self.num_thresholds
        # Bucket histograms -> counts above each threshold (reverse cumulative sums).
        tp = np.cumsum(np.asarray(sums[:t], np.float64)[::-1])[::-1]
        fp = np.cumsum(np.asarray(sums[t:2 * t], np.float64)[::-1])[::-1]
        tp[-1] = fp[-1] = 0.0  # nothing is above 1 + eps
        fn = tp[0] - tp
        tn = fp[0] - fp
        with np.errstate(divide="ignore", invalid="ignore"):
            recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
            fpr = np.where(fp + tn > 0, fp / (fp + tn), 0.0)
        heights = (recall[:-1] + recall[1:]) / 2.0
        return float(np.sum((fpr[:-1] - fpr[1:]) * heights))


BUILTIN_METRICS: list[Metric] = [
    CategoricalAccuracy(),
    SparseCategoricalAccuracy(),
    BinaryAccuracy(),
    MeanAbsoluteError(),
    MeanSquaredError(),
    RootMeanSquaredError(),
    TopKCategoricalAccuracy(),
    SparseTopKCategoricalAccuracy(),
    Precision(),
    Recall(),
    AUC(),
]

#: Other names Keras 3 accepts in ``compile(metrics=[...])`` for the same metric (its short
#: names and class names); the log shows the name as written, as in Keras. ``"rmse"`` is
#: nexec's own (Keras 3.15 refuses it).
ALIASES: dict[str, str] = {
    "mae": "mean_absolute_error", "MAE": "mean_absolute_error",
    "mse": "mean_squared_error", "MSE": "mean_squared_error",
    "rmse": "root_mean_squared_error",
    "AUC": "auc",
    **{type(m).__name__: m.name for m in BUILTIN_METRICS},
}


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
        what = "a function" if callable(name) else f"a {type(name).__name__}"
        raise ValueError(
            f"compile(metrics=...): got {what}, {name!r:.80}; a metric must be a name such as "
            "'accuracy' or 'mae', or a metric object such as nexec.metrics.AUC() or "
            "nexec.metrics.Metric(name, elementwise=fn) wrapping a Numba-compilable scalar "
            "fn(y_pred, y_true) -> float (its mean over elements is logged).")
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
    key = ALIASES.get(key, key)
    table = registry().metrics
    if key not in table:
        known = sorted(set(table) | set(ALIASES))
        raise ValueError(f"Unknown metric {name!r}; known: accuracy, {', '.join(known)}.")
    return name, table[key]
