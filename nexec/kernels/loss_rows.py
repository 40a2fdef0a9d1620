"""Per-row math of Keras' regression, hinge, probabilistic and logits losses.

Plain Python on purpose: ``nexec.kernels.cpu.loss`` compiles these functions with Numba for
the CPU and ``nexec.kernels.cuda.loss`` as CUDA device functions, so both devices run the
same formulas (Keras 3.15, ``keras/src/losses/losses.py``). One value and one gradient
kernel per device serve every loss here: ``code`` picks the formula (a constant per loss,
so the branch is perfectly predicted), and one compilation covers them all.

Arguments shared by both functions: ``p`` predictions and ``y`` dense targets (2-D), row
``i``; ``a`` a loss parameter (Huber's delta, the label smoothing); ``eps`` Keras' epsilon;
``hinge_pm`` 1.0 when hinge targets are 0/1 and must become -1/+1 (Keras converts them only
when *every* target of the batch is 0 or 1; the kernel checks that first).

No builtin ``min``/``max``: Numba's CUDA target does not type them for two floats, so they
are written as the conditional expressions Numba's CPU builtins are (``max(a, b)`` is
``b if b > a else a``), which keeps the CPU's bits and NaN behaviour.

Elementwise losses are means over the last axis; ``categorical_hinge``, ``kl_divergence``,
``cosine_similarity`` and the crossentropies are row sums, as in Keras.
"""
from __future__ import annotations

import math

__all__ = ["CODES", "ELEMENTWISE_CODES", "row_value", "row_grad", "hinge_targets_pm"]

MAE, MAPE, MSLE, HUBER, LOG_COSH, POISSON, HINGE, SQUARED_HINGE = 0, 1, 2, 3, 4, 5, 6, 7
CATEGORICAL_HINGE, KLD, COSINE, CCE_LOGITS, BCE_LOGITS, CCE_SMOOTH, BCE_SMOOTH = (
    8, 9, 10, 11, 12, 13, 14)

CODES = {
    "mean_absolute_error": MAE, "mean_absolute_percentage_error": MAPE,
    "mean_squared_logarithmic_error": MSLE, "huber": HUBER, "log_cosh": LOG_COSH,
    "poisson": POISSON, "hinge": HINGE, "squared_hinge": SQUARED_HINGE,
    "categorical_hinge": CATEGORICAL_HINGE, "kl_divergence": KLD,
    "cosine_similarity": COSINE, "categorical_crossentropy_logits": CCE_LOGITS,
    "binary_crossentropy_logits": BCE_LOGITS, "categorical_crossentropy_smoothed": CCE_SMOOTH,
    "binary_crossentropy_smoothed": BCE_SMOOTH,
}
"""Loss name -> ``code`` of :func:`row_value` / :func:`row_grad`."""

ELEMENTWISE_CODES = (MAE, MAPE, MSLE, HUBER, LOG_COSH, POISSON, HINGE, SQUARED_HINGE,
                     BCE_LOGITS, BCE_SMOOTH)

LOG2 = math.log(2.0)


def row_value(code, p, y, i, a, eps, hinge_pm):  # noqa: ANN001, ANN201
    """Keras' loss of row ``i`` (float64)."""
    k = p.shape[1]
    if code == CATEGORICAL_HINGE:
        pos = 0.0
        neg = -math.inf
        for j in range(k):
            pj = float(p[i, j])
            yj = float(y[i, j])
            pos += yj * pj
            cand = (1.0 - yj) * pj
            neg = cand if cand > neg else neg
        h = neg - pos + 1.0
        return 0.0 if 0.0 > h else h
    if code == COSINE:
        sp = 0.0
        sy = 0.0
        dot = 0.0
        for j in range(k):
            pj = float(p[i, j])
            yj = float(y[i, j])
            sp += pj * pj
            sy += yj * yj
            dot += pj * yj
        # Keras: x * min(rsqrt(sum x^2), 1 / eps)
        norm_p, norm_y = math.sqrt(sp), math.sqrt(sy)
        return -dot / ((eps if eps > norm_p else norm_p) * (eps if eps > norm_y else norm_y))
    if code == CCE_LOGITS or code == CCE_SMOOTH:
        sy = 0.0
        for j in range(k):
            sy += float(y[i, j])
        sy = sy * (1.0 - a) + a  # sum of the smoothed targets
        if code == CCE_LOGITS:
            m = -math.inf
            for j in range(k):
                pj = float(p[i, j])
                m = pj if pj > m else m
            se = 0.0
            for j in range(k):
                se += math.exp(float(p[i, j]) - m)
            lse = m + math.log(se)
            s = sy * lse
            for j in range(k):
                s -= (float(y[i, j]) * (1.0 - a) + a / k) * float(p[i, j])
            return s
        tot = 0.0
        for j in range(k):
            tot += float(p[i, j])
        s = 0.0
        for j in range(k):
            q = float(p[i, j]) / tot
            q = eps if eps > q else q
            q = 1.0 - eps if 1.0 - eps < q else q
            s -= (float(y[i, j]) * (1.0 - a) + a / k) * math.log(q)
        return s
    s = 0.0
    for j in range(k):
        pj = float(p[i, j])
        yj = float(y[i, j])
        if code == KLD:
            yc = eps if eps > yj else yj
            yc = 1.0 if 1.0 < yc else yc
            pc = eps if eps > pj else pj
            pc = 1.0 if 1.0 < pc else pc
            s += yc * math.log(yc / pc)
            continue
        e = pj - yj
        if code == MAE:
            v = abs(e)
        elif code == MAPE:
            ay = abs(yj)
            v = 100.0 * abs(e) / (eps if eps > ay else ay)
        elif code == MSLE:
            d = math.log((eps if eps > pj else pj) + 1.0) - \
                math.log((eps if eps > yj else yj) + 1.0)
            v = d * d
        elif code == HUBER:
            v = 0.5 * e * e if abs(e) <= a else a * abs(e) - 0.5 * a * a
        elif code == LOG_COSH:
            x = -2.0 * e  # e + softplus(-2e) - log 2
            v = e + (0.0 if 0.0 > x else x) + math.log1p(math.exp(-abs(x))) - LOG2
        elif code == POISSON:
            v = pj - yj * math.log(pj + eps)
        elif code == HINGE or code == SQUARED_HINGE:
            t = 2.0 * yj - 1.0 if hinge_pm == 1.0 else yj
            v = 1.0 - t * pj
            v = 0.0 if 0.0 > v else v
            if code == SQUARED_HINGE:
                v = v * v
        elif code == BCE_LOGITS:
            ys = yj * (1.0 - a) + 0.5 * a
            sp = (0.0 if 0.0 > pj else pj) + math.log1p(math.exp(-abs(pj)))  # softplus(p)
            v = ys * (sp - pj) + (1.0 - ys) * sp  # softplus(-p) = softplus(p) - p
        else:  # BCE_SMOOTH
            ys = yj * (1.0 - a) + 0.5 * a
            c = eps if eps > pj else pj
            c = 1.0 - eps if 1.0 - eps < c else c
            v = -(ys * math.log(c) + (1.0 - ys) * math.log(1.0 - c))
        s += v
    return s if code == KLD else s / k


def row_grad(code, p, y, i, a, eps, hinge_pm, f, dp):  # noqa: ANN001, ANN201
    """Writes ``f * d row_value / d p[i, :]`` into ``dp[i, :]`` (``f`` = scale)."""
    k = p.shape[1]
    if code == CATEGORICAL_HINGE:
        pos = 0.0
        neg = -math.inf
        arg = 0
        for j in range(k):
            pj = float(p[i, j])
            yj = float(y[i, j])
            pos += yj * pj
            v = (1.0 - yj) * pj
            if v > neg:
                neg = v
                arg = j
        active = neg - pos + 1.0 > 0.0
        for j in range(k):
            g = 0.0
            if active:
                g = -float(y[i, j])
                if j == arg:
                    g += 1.0 - float(y[i, j])
            dp[i, j] = f * g
        return
    if code == COSINE:
        sp = 0.0
        sy = 0.0
        dot = 0.0
        for j in range(k):
            pj = float(p[i, j])
            yj = float(y[i, j])
            sp += pj * pj
            sy += yj * yj
            dot += pj * yj
        norm_p = math.sqrt(sp)
        norm_y = math.sqrt(sy)
        inv_p = 1.0 / (eps if eps > norm_p else norm_p)
        inv_y = 1.0 / (eps if eps > norm_y else norm_y)
        for j in range(k):
            if norm_p > eps:  # -(y_hat - (y_hat . u) u) / |p|
                g = -inv_y * (float(y[i, j]) - dot * inv_p * inv_p * float(p[i, j])) * inv_p
            else:
                g = -inv_y * float(y[i, j]) * inv_p
            dp[i, j] = f * g
        return
    if code == CCE_LOGITS or code == CCE_SMOOTH:
        sy = 0.0
        for j in range(k):
            sy += float(y[i, j])
        sy = sy * (1.0 - a) + a
        if code == CCE_LOGITS:
            m = -math.inf
            for j in range(k):
                pj = float(p[i, j])
                m = pj if pj > m else m
            se = 0.0
            for j in range(k):
                se += math.exp(float(p[i, j]) - m)
            for j in range(k):
                q = math.exp(float(p[i, j]) - m) / se
                dp[i, j] = f * (q * sy - (float(y[i, j]) * (1.0 - a) + a / k))
            return
        tot = 0.0
        for j in range(k):
            tot += float(p[i, j])
        gq = 0.0  # sum_j g_j q_j over unclipped entries, g_j = -y'_j / q_j
        for j in range(k):
            q = float(p[i, j]) / tot
            if q >= eps and q <= 1.0 - eps:
                gq -= float(y[i, j]) * (1.0 - a) + a / k
        for j in range(k):
            q = float(p[i, j]) / tot
            g = 0.0
            if q >= eps and q <= 1.0 - eps:
                g = -(float(y[i, j]) * (1.0 - a) + a / k) / q
            dp[i, j] = f / tot * (g - gq)
        return
    fk = f / k
    for j in range(k):
        pj = float(p[i, j])
        yj = float(y[i, j])
        e = pj - yj
        if code == KLD:
            g = 0.0
            if pj >= eps and pj <= 1.0:
                yc = eps if eps > yj else yj
                g = -(1.0 if 1.0 < yc else yc) / pj
            dp[i, j] = f * g
            continue
        if code == MAE:
            g = 1.0 if e > 0.0 else (-1.0 if e < 0.0 else 0.0)
        elif code == MAPE:
            ay = abs(yj)
            g = 100.0 / (eps if eps > ay else ay)
            g = g if e > 0.0 else (-g if e < 0.0 else 0.0)
        elif code == MSLE:
            g = 0.0
            if pj >= eps:
                d = math.log(pj + 1.0) - math.log((eps if eps > yj else yj) + 1.0)
                g = 2.0 * d / (pj + 1.0)
        elif code == HUBER:
            g = e if abs(e) <= a else (a if e > 0.0 else -a)
        elif code == LOG_COSH:
            g = math.tanh(e)
        elif code == POISSON:
            g = 1.0 - yj / (pj + eps)
        elif code == HINGE or code == SQUARED_HINGE:
            t = 2.0 * yj - 1.0 if hinge_pm == 1.0 else yj
            m = 1.0 - t * pj
            g = 0.0
            if m > 0.0:
                g = -t if code == HINGE else -2.0 * t * m
        elif code == BCE_LOGITS:
            ys = yj * (1.0 - a) + 0.5 * a
            if pj >= 0.0:
                sig = 1.0 / (1.0 + math.exp(-pj))
            else:
                ez = math.exp(pj)
                sig = ez / (1.0 + ez)
            g = sig - ys
        else:  # BCE_SMOOTH
            ys = yj * (1.0 - a) + 0.5 * a
            g = 0.0
            if pj >= eps and pj <= 1.0 - eps:
                g = (1.0 - ys) / (1.0 - pj) - ys / pj
        dp[i, j] = fk * g


def hinge_targets_pm(y) -> float:  # noqa: ANN001
    """1.0 when every target is 0 or 1 (Keras then maps them to -1/+1), else 0.0."""
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            v = float(y[i, j])
            if v != 0.0 and v != 1.0:
                return 0.0
    return 1.0
