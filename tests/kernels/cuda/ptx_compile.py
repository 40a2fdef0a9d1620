"""Compiles every CUDA kernel of nexec to PTX for the real CUDA target, without a GPU.

The simulator runs kernels as Python, so it cannot catch what only the CUDA compiler
rejects (a builtin that does not type on the CUDA target, a non-constant shared-array
shape, ...). This script type-checks and lowers every kernel for float32 and float64 and
asks NVVM for PTX. It needs libNVVM (a CUDA toolkit) but no GPU and no driver, and must
run WITHOUT ``NUMBA_ENABLE_CUDASIM`` (``test_ptx.py`` starts it in a subprocess).

Output: one line ``SKIP <reason>`` or ``OK <count>``, or ``FAIL <kernel> <message>`` lines;
the exit status is 1 when a kernel fails to compile.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

CC = (8, 0)


def main() -> int:
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        print("SKIP the simulator is enabled in this process")
        return 0
    import importlib

    from nexec.kernels.cuda.backend import cuda

    if cuda is None:
        print("SKIP numba.cuda cannot be imported")
        return 0
    base = cuda.__name__  # whatever module the backend imported
    try:
        importlib.import_module(base + ".cudadrv.nvvm").NVVM()
    except Exception as exc:  # noqa: BLE001 - any failure means "no toolkit here"
        print(f"SKIP libNVVM not usable: {str(exc).splitlines()[0] if str(exc) else exc!r}")
        return 0
    try:
        # Device functions are compiled for the current device's compute capability;
        # without a GPU, pretend to have one (a private hook of Numba's CUDA dispatcher).
        dispatcher = importlib.import_module(base + ".dispatcher")

        class _Device:
            compute_capability = CC

        if not hasattr(dispatcher, "get_current_device"):
            print("SKIP this numba.cuda has no dispatcher.get_current_device to stand in for")
            return 0
        dispatcher.get_current_device = lambda: _Device()
    except Exception as exc:  # noqa: BLE001
        print(f"SKIP cannot prepare the CUDA dispatcher: {exc!r}")
        return 0

    import numpy as np
    from numba import types as T

    from nexec.kernels.cuda import activation as A
    from nexec.kernels.cuda import conv as Co
    from nexec.kernels.cuda import dense as De
    from nexec.kernels.cuda import elementwise as E
    from nexec.kernels.cuda import loss as L
    from nexec.kernels.cuda import merge as M
    from nexec.kernels.cuda import optimizer as O

    # Kernels generated from the plugin-style scalar functions the tests use (abs, branches,
    # powers, math functions); a launcher's ``kernel`` is the CUDA kernel it launches.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from scalar_functions import ACTIVATIONS, LOSSES, METRICS

    generated = []
    for name, (forward, derivative, _, _) in ACTIVATIONS.items():
        fwd, bwd = E.activation_kernels(forward, derivative)
        generated += [(f"elementwise {name} forward", fwd.kernel, "fwd"),
                      (f"elementwise {name} backward", bwd.kernel, "bwd")]
    for name, (fn, grad, _) in LOSSES.items():
        value, grad_kernel = E.loss_kernels(fn, grad)
        generated += [(f"elementwise {name} value", value.kernel, "sum"),
                      (f"elementwise {name} grad", grad_kernel.kernel, "grad")]
        generated.append((f"elementwise {name} weighted value",
                          E.weighted_loss_kernel(fn).kernel, "wsum"))
    for name, (fn, _) in METRICS.items():
        generated.append((f"elementwise {name} metric", E.metric_kernel(fn).kernel, "sum"))

    jobs = []
    i64, f64, b = T.int64, T.float64, T.boolean
    o64, oi, lab = T.float64[:], T.int64[:], T.int32[:]
    for dt in (T.float32, T.float64):
        a2, a1 = dt[:, :], dt[:]
        s2 = T.Array(dt, 2, "A")  # a row-strided view
        a4 = T.Array(dt, 4, "C")
        jobs += [
            ("activation._act_elementwise", A._act_elementwise, (a2, i64, s2)),
            ("activation._softmax_rows", A._softmax_rows, (a2, s2)),
            ("activation._act_grad_elementwise", A._act_grad_elementwise, (a2, s2, i64, a2)),
            ("activation._softmax_grad_rows", A._softmax_grad_rows, (s2, a2, a2)),
            ("activation._act_grad_db", A._act_grad_db, (s2, s2, i64, a2, a1, b)),
            ("activation._zero_1d", A._zero_1d, (a1,)),
            ("dense.gemm_kernel", De._gemm_kernel(np.dtype(dt.name)), (a2, a2, b, b, a1, i64, s2)),
            ("conv._im2col", Co._im2col, (a4,) + (i64,) * 8 + (a2,)),
            ("conv._col2im", Co._col2im, (a2,) + (i64,) * 8 + (a4,)),
            ("merge._add", M._add, (s2, a2, i64, s2)),
            ("merge._copy", M._copy, (s2, s2)),
            ("merge._accumulate", M._accumulate, (s2, a2)),
            ("merge._fill_zero", M._fill_zero, (s2,)),
            ("loss._cce_value", L._cce_value, (a2, a2, f64, f64, o64)),
            ("loss._sparse_cce_value", L._sparse_cce_value, (a2, lab, f64, f64, o64)),
            ("loss._bce_value", L._bce_value, (a2, a2, f64, f64, o64)),
            ("loss._mse_value", L._mse_value, (a2, a2, o64)),
            ("loss._cce_grad", L._cce_grad, (a2, a2, f64, f64, f64, a2)),
            ("loss._softmax_ce_grad", L._softmax_ce_grad, (a2, a2, f64, a2)),
            ("loss._sparse_cce_grad", L._sparse_cce_grad, (a2, lab, f64, f64, f64, a2)),
            ("loss._sparse_softmax_ce_grad", L._sparse_softmax_ce_grad, (a2, lab, f64, a2)),
            ("loss._bce_grad", L._bce_grad, (a2, a2, f64, f64, f64, a2)),
            ("loss._diff_grad", L._diff_grad, (a2, a2, f64, a2)),
            ("loss._cat_acc", L._cat_acc, (a2, a2, oi)),
            ("loss._sparse_cat_acc", L._sparse_cat_acc, (a2, lab, oi)),
            ("loss._bin_acc", L._bin_acc, (a2, a2, f64, oi)),
            ("loss._clear_if_not_finite", L._clear_if_not_finite, (a1, oi)),
            # sample weights: weighted values (weights in the model dtype) and row scaling
            ("loss._cce_value_w", L._cce_value_w, (a2, a2, f64, f64, a1, o64)),
            ("loss._sparse_cce_value_w", L._sparse_cce_value_w, (a2, lab, f64, f64, a1, o64)),
            ("loss._bce_value_w", L._bce_value_w, (a2, a2, f64, f64, a1, o64)),
            ("loss._mse_value_w", L._mse_value_w, (a2, a2, a1, o64)),
            ("loss._scale_rows", L._scale_rows, (s2, a1)),
            # the Keras losses of loss_rows.py (no builtin min/max: CUDA does not type them)
            ("loss._row_loss_value", L._row_loss_value, (a2, a2, i64, f64, f64, o64)),
            ("loss._row_loss_value_w", L._row_loss_value_w, (a2, a2, i64, f64, f64, a1, o64)),
            ("loss._row_loss_grad", L._row_loss_grad, (a2, a2, i64, f64, f64, f64, a2)),
            ("loss._sparse_logits_value", L._sparse_logits_value, (a2, lab, o64)),
            ("loss._sparse_logits_value_w", L._sparse_logits_value_w, (a2, lab, a1, o64)),
        ]
        sigs = {"fwd": (s2, s2), "bwd": (s2, s2, s2), "sum": (s2, a2, b, o64),
                "grad": (s2, a2, f64, s2), "wsum": (s2, a2, a1, o64)}
        jobs += [(name, kernel, sigs[kind]) for name, kernel, kind in generated]
        jobs += [
            ("optimizer._sgd", O._sgd, (a1, a1, a1, o64)),
            ("optimizer._rmsprop", O._rmsprop, (a1, a1, a1, o64)),
            ("optimizer._adam", O._adam, (a1, a1, a1, a1, o64)),
        ]
    jobs += [
        ("loss._store_first", L._store_first, (oi, i64)),
        ("optimizer._count_step", O._count_step, (o64,)),
        ("loss._clear_if_not_finite[int32]", L._clear_if_not_finite, (T.int32[:], oi)),
        ("loss._sparse_cce_value[int64 labels]", L._sparse_cce_value,
         (T.float32[:, :], T.int64[:], f64, f64, o64)),
    ]
    failed = 0
    for name, kernel, sig in jobs:
        try:
            cuda.compile_ptx(kernel.py_func, sig, cc=CC)
        except Exception as exc:  # noqa: BLE001 - report every failure, then exit 1
            failed += 1
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), repr(exc))
            print(f"FAIL {name} {sig}: {first}")
    if not failed:
        print(f"OK {len(jobs)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
