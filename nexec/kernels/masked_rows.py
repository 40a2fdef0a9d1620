"""Codes of the masked metric kernels (``masked_metric_sums``, ``masked_sparse_metric_sums``
of every device): which per-row value they add up over the unmasked rows."""
from __future__ import annotations

__all__ = ["CATEGORICAL_ACCURACY", "BINARY_ACCURACY", "ABSOLUTE_ERROR", "SQUARED_ERROR",
           "TOP_K", "SPARSE_ACCURACY", "SPARSE_TOP_K"]

# Dense targets (masked_metric_sums).
CATEGORICAL_ACCURACY = 0
BINARY_ACCURACY = 1  # param: the threshold
ABSOLUTE_ERROR = 2
SQUARED_ERROR = 3
TOP_K = 4  # param: k
# Integer labels (masked_sparse_metric_sums).
SPARSE_ACCURACY = 0
SPARSE_TOP_K = 1  # param: k
