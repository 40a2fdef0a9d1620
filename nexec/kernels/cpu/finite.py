"""Whether a float array holds only finite numbers: the data check of every fit/predict call.

``np.isfinite(a).all()`` makes a boolean temporary as large as the data; here one native pass
over the flat array, vectorised: ``x - x`` is exactly 0 for every finite ``x`` and NaN for
NaN and the infinities (no fast-math, so the subtraction is kept).
"""
from __future__ import annotations

from nexec.kernels.jit import kernel

__all__ = ["all_finite_flat"]


@kernel
def all_finite_flat(a):
    """True when every element of the 1-D float32/float64 array ``a`` is finite."""
    bad = False
    for i in range(a.size):
        bad |= (a[i] - a[i]) != 0
    return not bad
