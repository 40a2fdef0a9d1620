"""Keras' ``metrics`` namespace: metric classes by Keras name, and ``get`` by string.

Example:
    >>> from nexec import metrics
    >>> metrics.AUC(num_thresholds=200).name, metrics.get("mae").name
    ('auc', 'mean_absolute_error')
"""
from nexec.plugins import registry as _registry
from nexec.training.metrics import (
    ALIASES,
    AUC,
    BinaryAccuracy,
    CategoricalAccuracy,
    MeanAbsoluteError,
    MeanSquaredError,
    Metric,
    Precision,
    Recall,
    RootMeanSquaredError,
    SparseCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
)

__all__ = ["Metric", "MeanAbsoluteError", "MeanSquaredError", "RootMeanSquaredError",
           "CategoricalAccuracy", "SparseCategoricalAccuracy", "BinaryAccuracy",
           "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "Precision", "Recall",
           "AUC", "get"]


def get(name: str) -> Metric:
    """The registered metric called ``name`` (a Keras name, short name such as ``"mae"``,
    class name, or a plugin's metric name)."""
    if isinstance(name, Metric):
        return name
    return _registry().metric(ALIASES.get(name, name))
