"""Public helpers that check a fast kernel against a slow, obvious reference.

nexec's own tests and plugin authors use the same two checks:

* :func:`assert_close` compares a result with a NumPy reference at explicit tolerances
  (the defaults are the project's: 1e-6 relative in float64, 1e-4 in float32);
* :func:`numerical_gradient` gives central finite differences of a scalar function, to
  compare with an analytic backward pass.

Example:
    >>> import numpy as np
    >>> from nexec.testing import numerical_gradient, assert_close
    >>> x = np.array([1.0, 2.0])
    >>> assert_close(numerical_gradient(lambda: float((x ** 2).sum()), x), 2 * x)
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["assert_close", "numerical_gradient", "check_gradients", "default_rtol",
           "model_gradients", "weights_by_name", "count_allocations", "array_arguments"]


def default_rtol(dtype: np.dtype | type) -> float:
    """The project's forward tolerance for a dtype: 1e-6 for float64, 1e-4 otherwise."""
    return 1e-6 if np.dtype(dtype) == np.float64 else 1e-4


def assert_close(
    actual: np.ndarray,
    expected: np.ndarray,
    rtol: float | None = None,
    atol: float | None = None,
    what: str = "result",
) -> None:
    """Asserts ``actual`` matches ``expected`` with a relative error bound.

    The error is measured as ``max|a - e| / max(max|e|, atol_floor)``, a norm-wise relative
    error that does not blow up on entries that happen to be near zero.

    Args:
        actual: The array under test.
        expected: The reference, usually computed in float64 NumPy.
        rtol: Relative tolerance; defaults to :func:`default_rtol` of ``actual``'s dtype.
        atol: Floor of the scale, for references that are all close to zero.
        what: Name used in the failure message.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape} != expected {expected.shape}")
    rtol = default_rtol(actual.dtype) if rtol is None else rtol
    floor = 1e-12 if atol is None else atol
    scale = max(float(np.max(np.abs(expected), initial=0.0)), floor)
    err = float(np.max(np.abs(actual.astype(np.float64) - expected), initial=0.0)) / scale
    if not np.isfinite(err) or err > rtol:
        raise AssertionError(f"{what}: relative error {err:.3g} > {rtol:.3g}")


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of the scalar ``f()`` with respect to ``x``, in place.

    ``f`` reads ``x`` (a float64 array) each time it is called; each entry is nudged by
    ``±eps`` and restored.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat = x.reshape(-1)
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def check_gradients(
    loss: Callable[[], float],
    analytic: dict[str, np.ndarray],
    wrt: dict[str, np.ndarray],
    rtol: float = 1e-6,
    eps: float = 1e-6,
) -> None:
    """Compares analytic gradients with finite differences for several arrays at once.

    Args:
        loss: Scalar function reading the arrays in ``wrt``.
        analytic: Gradient of ``loss`` per name, from the code under test.
        wrt: The float64 arrays to differentiate with respect to, per name.
        rtol: Relative tolerance (norm-wise, see :func:`assert_close`).
        eps: Finite-difference step.
    """
    for name, x in wrt.items():
        assert_close(analytic[name], numerical_gradient(loss, x, eps), rtol=rtol, atol=1e-8,
                     what=f"gradient of {name}")


def model_gradients(model, x, y, loss, loss_weights=None, training=False,  # noqa: ANN001, ANN201
                    before_forward=None):  # noqa: ANN001
    """Loss and parameter gradients of a whole model on one batch, from the executor.

    Compiles ``model`` with a zero-learning-rate SGD (so the step changes nothing) and runs
    one training step over all of ``x``. Returns ``(loss_fn, grads)``: ``loss_fn()`` evaluates
    the weighted loss on the same batch with the model's *current* weights (for finite
    differences), and ``grads`` maps ``"layer/param"`` to the analytic gradient.

    ``training=True`` evaluates ``loss_fn`` in training mode (Dropout, BatchNormalization);
    ``before_forward`` runs before every forward pass, e.g. to rewind a random stream.

    Example:
        >>> # loss_fn, grads = model_gradients(model, x, y, "mse")
        >>> # check_gradients(loss_fn, grads, {k: w for k, w in weights(model).items()})
    """
    from nexec.training.data import as_inputs, as_targets
    from nexec.training.optimizers import SGD

    model.compile(optimizer=SGD(0.0), loss=loss, loss_weights=loss_weights)
    trainer = model._trainer
    xs = as_inputs(x, model, trainer.dtype)
    ys = as_targets(y, model, trainer.losses, trainer.dtype)
    n = len(xs[0])

    def run(executor, step):  # noqa: ANN001, ANN202
        prog = executor.program(n)
        executor.load(prog, xs + ys, 0, n)
        return step(prog, [0.0] * len(ys), [0] * len(prog.metrics))

    before = before_forward or (lambda: None)
    before()
    run(trainer.train_executor, trainer.train_executor.train_step)
    store = trainer.store
    grads = {f"{layer.name}/{name}": store.grads_of(layer)[name].copy()
             for layer in store.layers for name in layer._params}
    ex = trainer.train_executor if training else trainer.eval_executor

    def loss_fn() -> float:
        before()
        store.changed()  # the weights were written in place: remake what inference derives
        return run(ex, ex.evaluate_step)

    return loss_fn, grads


def weights_by_name(model) -> dict[str, np.ndarray]:  # noqa: ANN001
    """The live parameter arrays of a compiled model, keyed ``"layer/param"``."""
    store = model._trainer.store
    return {f"{layer.name}/{name}": layer._params[name]
            for layer in store.layers for name in layer._params}


def count_allocations(run: Callable[[], object]) -> tuple[int, list]:
    """Runs ``run()`` and reports what it allocated: ``(nrt_allocations, numpy_blocks)``.

    ``nrt_allocations`` counts Numba runtime allocations (calling a jitted function wraps
    each array argument in one, so a step that allocates nothing counts exactly
    :func:`array_arguments` of its bound calls); ``numpy_blocks`` lists the NumPy data
    allocations still alive afterwards (tracemalloc's NumPy domain), empty when none.
    """
    import tracemalloc

    import numba.core.runtime._nrt_python as _nrt_python  # a C extension: the stats switch
    from numba.core.runtime import rtsys

    only_numpy = [tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)]
    _nrt_python.memsys_enable_stats()
    nrt_before = rtsys.get_allocation_stats().alloc
    tracemalloc.start()
    before = tracemalloc.take_snapshot().filter_traces(only_numpy)
    try:
        run()
        after = tracemalloc.take_snapshot().filter_traces(only_numpy)
    finally:
        tracemalloc.stop()
        nrt_after = rtsys.get_allocation_stats().alloc
        _nrt_python.memsys_disable_stats()
    grown = [s for s in after.compare_to(before, "lineno") if s.count_diff > 0]
    return nrt_after - nrt_before, grown


def array_arguments(prog) -> int:  # noqa: ANN001
    """Array arguments of a bound program's kernel calls (forward, loss, metrics, backward,
    optimizer update), i.e. the NRT wrappers one training step makes when nothing else
    allocates. Shards run together (a tuple of ``(fn, args)``) count the arrays they take.
    The ``prepare`` calls (derived weights, remade only when the weights change) are not
    a step's and are not counted."""
    def arrays(value) -> int:  # noqa: ANN001
        if isinstance(value, tuple):
            return sum(arrays(v) for v in value)
        return int(isinstance(value, np.ndarray))

    return sum(arrays(args) for name, phase in prog.calls.items() if name != "prepare"
               for _, args in phase)
