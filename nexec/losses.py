"""Keras' ``losses`` namespace: loss names, loss objects and loss functions on arrays.

In ``compile(loss=...)`` give a name (``"mae"``), a loss object
(``CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)``), or a custom
per-element loss wrapped as ``Loss(name, elementwise=(fn, dfn))``; training runs each as
kernels on the model's device. Called on arrays, the functions here return per-sample
values and the objects the batch mean, in NumPy float64.
"""
from nexec.training.loss_objects import (
    EPSILON,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    CategoricalHinge,
    CosineSimilarity,
    Hinge,
    Huber,
    KLDivergence,
    LogCosh,
    Loss,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    Poisson,
    SparseCategoricalCrossentropy,
    SquaredHinge,
    binary_crossentropy,
    categorical_crossentropy,
    categorical_hinge,
    cosine_similarity,
    get,
    hinge,
    huber,
    kl_divergence,
    kld,
    log_cosh,
    mae,
    mape,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    mean_squared_logarithmic_error,
    mse,
    msle,
    poisson,
    sparse_categorical_crossentropy,
    squared_hinge,
)

__all__ = [
    "Loss", "EPSILON", "get", "MeanSquaredError", "MeanAbsoluteError",
    "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError", "Huber", "LogCosh",
    "KLDivergence", "Poisson", "Hinge", "SquaredHinge", "CategoricalHinge", "CosineSimilarity",
    "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "BinaryCrossentropy",
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "huber", "log_cosh", "kl_divergence", "poisson", "hinge",
    "squared_hinge", "categorical_hinge", "cosine_similarity", "categorical_crossentropy",
    "sparse_categorical_crossentropy", "binary_crossentropy", "mse", "mae", "mape", "msle",
    "kld",
]
