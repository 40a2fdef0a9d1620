"""Keras 3 losses of ``row_loss`` and the from-logits kernels: values against NumPy
references of Keras' formulas (``nexec.losses``), gradients against finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from nexec import losses as L
from nexec.kernels.cpu import loss as cpu
from nexec.kernels.loss_rows import CODES
from nexec.testing import assert_close, numerical_gradient

N, C = 4, 3
EPS = 1e-7
SCALE = 0.6 / N


def data(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and targets away from kinks (|p - y| != delta, margins != 0)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, (N, C))
    if name in ("hinge", "squared_hinge", "categorical_hinge", "categorical_crossentropy",
                "binary_crossentropy") or "logits" in name or "smoothed" in name:
        y = np.eye(C)[rng.integers(0, C, N)]
    else:
        y = rng.uniform(0.05, 1.5, (N, C))
    if "logits" in name or name in ("cosine_similarity", "huber"):
        p = rng.normal(0.0, 2.0, (N, C))
    return p, y


CASES = [  # (kernel loss name, reference name, reference arguments, a)
    ("mean_absolute_error", "mean_absolute_error", {}, 0.0),
    ("mean_absolute_percentage_error", "mean_absolute_percentage_error", {}, 0.0),
    ("mean_squared_logarithmic_error", "mean_squared_logarithmic_error", {}, 0.0),
    ("huber", "huber", {"delta": 1.0}, 1.0),
    ("huber", "huber", {"delta": 0.3}, 0.3),
    ("log_cosh", "log_cosh", {}, 0.0),
    ("kl_divergence", "kl_divergence", {}, 0.0),
    ("poisson", "poisson", {}, 0.0),
    ("hinge", "hinge", {}, 0.0),
    ("squared_hinge", "squared_hinge", {}, 0.0),
    ("categorical_hinge", "categorical_hinge", {}, 0.0),
    ("cosine_similarity", "cosine_similarity", {}, 0.0),
    ("categorical_crossentropy_logits", "categorical_crossentropy",
     {"from_logits": True, "label_smoothing": 0.1}, 0.1),
    ("categorical_crossentropy_logits", "categorical_crossentropy", {"from_logits": True}, 0.0),
    ("binary_crossentropy_logits", "binary_crossentropy",
     {"from_logits": True, "label_smoothing": 0.2}, 0.2),
    ("categorical_crossentropy_smoothed", "categorical_crossentropy",
     {"label_smoothing": 0.1}, 0.1),
    ("binary_crossentropy_smoothed", "binary_crossentropy", {"label_smoothing": 0.2}, 0.2),
]


def value(p, y, code, a):
    out = np.full(1, np.nan)
    cpu.row_loss(p, y, code, a, EPS, out)
    return out[0]


@pytest.mark.parametrize("name,ref,kw,a", CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_value_and_gradient(name, ref, kw, a):
    p, y = data(name)
    code = CODES[name]
    expected = np.mean(getattr(L, ref)(y, p, **kw))
    assert_close(value(p, y, code, a), expected, rtol=1e-12, atol=1e-14)
    dp = np.full_like(p, np.nan)
    cpu.row_loss_grad(p, y, code, a, EPS, SCALE, dp)
    numeric = numerical_gradient(lambda: value(p, y, code, a), p) * SCALE * N
    assert_close(dp, numeric, rtol=1e-6, atol=1e-9)


def test_hinge_keeps_targets_that_are_not_all_binary():
    p, _ = data("hinge")
    y = np.where(np.eye(C)[[0, 1, 2, 0]] > 0, 1.0, -1.0)  # already -1/+1: not converted
    assert_close(value(p, y, CODES["hinge"], 0.0), np.mean(L.hinge(y, p)), rtol=1e-12)
    y01 = (y + 1.0) / 2.0  # 0/1: converted to -1/+1, the same loss
    assert_close(value(p, y01, CODES["hinge"], 0.0), value(p, y, CODES["hinge"], 0.0),
                 rtol=1e-12)


def test_float32_matches_float64():
    """float32 inputs: float64 arithmetic, so the result agrees to float32 rounding."""
    p, y = data("log_cosh")
    v32 = value(p.astype(np.float32), y.astype(np.float32), CODES["log_cosh"], 0.0)
    assert_close(v32, value(p.astype(np.float32).astype(np.float64),
                            y.astype(np.float32).astype(np.float64), CODES["log_cosh"], 0.0),
                 rtol=1e-7)  # float32 math would be ~1e-7 worse


def test_sparse_crossentropy_from_logits():
    rng = np.random.default_rng(3)
    z = rng.normal(0.0, 2.0, (N, C))
    labels = np.array([0, 2, 1, 2])
    out = np.zeros(1)
    cpu.sparse_categorical_crossentropy_logits(z, labels, out)
    expected = np.mean(L.sparse_categorical_crossentropy(labels, z, from_logits=True))
    assert_close(out[0], expected, rtol=1e-12)

    def f():
        cpu.sparse_categorical_crossentropy_logits(z, labels, out)
        return out[0]

    dz = np.zeros_like(z)
    cpu.sparse_categorical_crossentropy_logits_grad(z, labels, SCALE, dz)
    assert_close(dz, numerical_gradient(f, z) * SCALE * N, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="label out of range"):
        cpu.sparse_categorical_crossentropy_logits(z, np.array([0, 3, 1, 2]), out)


def test_hand_computed_values():
    """Keras' docstring examples."""
    y = np.array([[0.0, 1.0], [0.0, 0.0]])
    p = np.array([[0.6, 0.4], [0.4, 0.6]])
    assert_close(float(np.mean(L.huber(y, p))), 0.155, rtol=1e-12)
    assert_close(float(np.mean(L.log_cosh(y, np.array([[1.0, 1.0], [0.0, 0.0]])))),
                 np.log(np.cosh(1.0)) / 4, rtol=1e-12)
    assert_close(value(p, y, CODES["huber"], 1.0), 0.155, rtol=1e-12)
    yc = np.array([[0.0, 1.0], [1.0, 1.0]])
    pc = np.array([[1.0, 0.0], [1.0, 1.0]])
    assert_close(L.CosineSimilarity()(yc, pc), -0.5, rtol=1e-7)
    assert_close(value(pc, yc, CODES["cosine_similarity"], 0.0), -0.5, rtol=1e-7)
