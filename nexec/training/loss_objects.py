"""Loss objects and loss functions on arrays, as Keras' ``losses`` namespace has them
(``nexec.losses`` re-exports this module).

In ``compile(loss=...)`` give a name (``"mae"``), a loss object
(``CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)``), or a custom
per-element loss wrapped as ``Loss(name, elementwise=(fn, dfn))``; training runs each as
kernels on the model's device. Called on arrays, the functions here return per-sample
values and the objects the batch mean, in NumPy float64 (Keras' formulas, for checks and
small computations; training does not use them).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nexec.plugins import registry as _registry
from nexec.training.losses import ALIASES, EPSILON, Loss, configured

__all__ = [
    "Loss", "EPSILON", "get", "resolve", "saved_form",
    "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError", "Huber", "LogCosh", "KLDivergence", "Poisson", "Hinge",
    "SquaredHinge", "CategoricalHinge", "CosineSimilarity", "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy", "BinaryCrossentropy",
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "huber", "log_cosh", "kl_divergence", "poisson",
    "hinge", "squared_hinge", "categorical_hinge", "cosine_similarity",
    "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
    "mse", "mae", "mape", "msle", "kld",
]


def get(name: str) -> Loss:
    """The registered loss called ``name`` (built-in or from a plugin, Keras aliases too)."""
    return _registry().loss(ALIASES.get(name, name))


# --------------------------------------------------------------------------- references


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _hinge_targets(y: np.ndarray) -> np.ndarray:
    return 2.0 * y - 1.0 if np.all((y == 0) | (y == 1)) else y


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.sqrt(np.sum(x * x, axis=-1, keepdims=True)), EPSILON)


def _per_sample(name: str, y: Any, p: Any, from_logits: bool = False,
                label_smoothing: float = 0.0, delta: float = 1.0) -> np.ndarray:
    """Keras' per-sample loss ``name`` in float64 NumPy (reduced over the last axis)."""
    p = np.asarray(p, np.float64)
    if name == "sparse_categorical_crossentropy":
        labels = np.asarray(y, np.int64)
        return _per_sample("categorical_crossentropy", np.eye(p.shape[-1])[labels], p,
                           from_logits)
    y = np.asarray(y, np.float64)
    eps, s = EPSILON, label_smoothing
    e = p - y
    if name == "mean_squared_error":
        return np.mean(e * e, axis=-1)
    if name == "mean_absolute_error":
        return np.mean(np.abs(e), axis=-1)
    if name == "mean_absolute_percentage_error":
        return 100.0 * np.mean(np.abs(e) / np.maximum(np.abs(y), eps), axis=-1)
    if name == "mean_squared_logarithmic_error":
        d = np.log(np.maximum(p, eps) + 1.0) - np.log(np.maximum(y, eps) + 1.0)
        return np.mean(d * d, axis=-1)
    if name == "huber":
        a = np.abs(e)
        return np.mean(np.where(a <= delta, 0.5 * e * e, delta * a - 0.5 * delta ** 2), axis=-1)
    if name == "log_cosh":
        return np.mean(e + _softplus(-2.0 * e) - np.log(2.0), axis=-1)
    if name == "kl_divergence":
        yc, pc = np.clip(y, eps, 1.0), np.clip(p, eps, 1.0)
        return np.sum(yc * np.log(yc / pc), axis=-1)
    if name == "poisson":
        return np.mean(p - y * np.log(p + eps), axis=-1)
    if name in ("hinge", "squared_hinge"):
        m = np.maximum(1.0 - _hinge_targets(y) * p, 0.0)
        return np.mean(m if name == "hinge" else m * m, axis=-1)
    if name == "categorical_hinge":
        pos = np.sum(y * p, axis=-1)
        neg = np.max((1.0 - y) * p, axis=-1)
        return np.maximum(neg - pos + 1.0, 0.0)
    if name == "cosine_similarity":
        return -np.sum(_l2n(y) * _l2n(p), axis=-1)
    if name == "categorical_crossentropy":
        y = y * (1.0 - s) + s / y.shape[-1]
        if from_logits:
            z = p - p.max(axis=-1, keepdims=True)
            logq = z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
        else:
            logq = np.log(np.clip(p / p.sum(axis=-1, keepdims=True), eps, 1.0 - eps))
        return -np.sum(y * logq, axis=-1)
    if name == "binary_crossentropy":
        y = y * (1.0 - s) + 0.5 * s
        if from_logits:
            return np.mean(y * _softplus(-p) + (1.0 - y) * _softplus(p), axis=-1)
        c = np.clip(p, eps, 1.0 - eps)
        return -np.mean(y * np.log(c) + (1.0 - y) * np.log(1.0 - c), axis=-1)
    raise ValueError(f"No reference implementation of loss {name!r}.")


def _function(name: str) -> Any:
    def fn(y_true: Any, y_pred: Any, **kw: Any) -> np.ndarray:
        return _per_sample(name, y_true, y_pred, **kw)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Keras ``{name}``: per-sample values of ``(y_true, y_pred)`` (NumPy)."
    return fn


mean_squared_error = mse = _function("mean_squared_error")
mean_absolute_error = mae = _function("mean_absolute_error")
mean_absolute_percentage_error = mape = _function("mean_absolute_percentage_error")
mean_squared_logarithmic_error = msle = _function("mean_squared_logarithmic_error")
huber = _function("huber")
log_cosh = _function("log_cosh")
kl_divergence = kld = _function("kl_divergence")
poisson = _function("poisson")
hinge = _function("hinge")
squared_hinge = _function("squared_hinge")
categorical_hinge = _function("categorical_hinge")
cosine_similarity = _function("cosine_similarity")
categorical_crossentropy = _function("categorical_crossentropy")
sparse_categorical_crossentropy = _function("sparse_categorical_crossentropy")
binary_crossentropy = _function("binary_crossentropy")


# --------------------------------------------------------------------------- objects


class _LossObject:
    """A Keras loss object: its arguments, ``get_config``, and the kernels' :class:`Loss`."""

    fn_name = ""
    defaults: dict[str, Any] = {}

    def __init__(self, **config: Any) -> None:
        name = config.pop("name", None)
        unknown = sorted(set(config) - set(self.defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected argument(s) {unknown}; "
                            f"accepted: {sorted(self.defaults) + ['name']}.")
        self.config = {**self.defaults, **config}
        self.name = name or self.fn_name
        self._loss = configured(self.fn_name, class_name=type(self).__name__, **self.config)

    def to_loss(self) -> Loss:
        """The :class:`Loss` that training runs."""
        return self._loss

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.config}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> _LossObject:
        return cls(**config)

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        """The batch mean of the per-sample losses (Keras' default reduction)."""
        return float(np.mean(_per_sample(self.fn_name, y_true, y_pred, **self.config)))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"


def _cls(class_name: str, fn_name: str, **defaults: Any) -> type:
    return type(class_name, (_LossObject,), {
        "fn_name": fn_name, "defaults": defaults, "__module__": __name__,
        "__doc__": f"Keras ``losses.{class_name}``: the ``{fn_name}`` loss"
                   + (f" (arguments {defaults})." if defaults else ".")})


MeanSquaredError = _cls("MeanSquaredError", "mean_squared_error")
MeanAbsoluteError = _cls("MeanAbsoluteError", "mean_absolute_error")
MeanAbsolutePercentageError = _cls("MeanAbsolutePercentageError",
                                   "mean_absolute_percentage_error")
MeanSquaredLogarithmicError = _cls("MeanSquaredLogarithmicError",
                                   "mean_squared_logarithmic_error")
Huber = _cls("Huber", "huber", delta=1.0)
LogCosh = _cls("LogCosh", "log_cosh")
KLDivergence = _cls("KLDivergence", "kl_divergence")
Poisson = _cls("Poisson", "poisson")
Hinge = _cls("Hinge", "hinge")
SquaredHinge = _cls("SquaredHinge", "squared_hinge")
CategoricalHinge = _cls("CategoricalHinge", "categorical_hinge")
CosineSimilarity = _cls("CosineSimilarity", "cosine_similarity")
CategoricalCrossentropy = _cls("CategoricalCrossentropy", "categorical_crossentropy",
                               from_logits=False, label_smoothing=0.0)
SparseCategoricalCrossentropy = _cls("SparseCategoricalCrossentropy",
                                     "sparse_categorical_crossentropy", from_logits=False)
BinaryCrossentropy = _cls("BinaryCrossentropy", "binary_crossentropy",
                          from_logits=False, label_smoothing=0.0)


def resolve(loss: Any) -> Loss:
    """The :class:`Loss` for an entry of ``compile(loss=...)``.

    Accepts a name (Keras' names and aliases), a :class:`Loss`, a loss object of
    :mod:`nexec.losses` (``CategoricalCrossentropy(from_logits=True)``), or what
    ``model.save`` records for one (``{"class_name": ..., "config": {...}}``).
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        return _registry().loss(ALIASES.get(loss, loss))
    to_loss = getattr(loss, "to_loss", None)
    if callable(to_loss):
        return to_loss()
    if isinstance(loss, Mapping) and "class_name" in loss:
        cls = globals().get(str(loss["class_name"]))
        if not (isinstance(cls, type) and str(loss["class_name"]) in __all__):
            raise ValueError(f"Unknown loss class {loss['class_name']!r} in a saved config.")
        return cls(**dict(loss.get("config", {}))).to_loss()
    what = getattr(loss, "__name__", type(loss).__name__)
    raise TypeError(
        f"loss={what!r} is not accepted: give a loss name ('mae', 'categorical_crossentropy'), "
        "a loss object of nexec.losses (CategoricalCrossentropy(from_logits=True)), or a "
        "custom per-element loss wrapped as nexec.losses.Loss(name, elementwise=(fn, dfn)) "
        "with Numba-compilable scalar fn(p, t) and its derivative dfn(p, t) = d fn / d p. "
        "A Python function of whole arrays cannot run as a kernel; see docs/keras.md#losses.")


def saved_form(loss: Loss) -> Any:
    """What ``model.save`` records for ``loss``: its name, or its class and arguments."""
    if loss.config and "class_name" in loss.config:
        cfg = {k: v for k, v in loss.config.items() if k != "class_name"}
        return {"class_name": loss.config["class_name"], "config": cfg}
    return loss.name
