"""CUDA kernels generated from scalar functions against NumPy float64 references and the
CPU kernels generated from the same functions: row-strided views, in-place forms, losses
(value, and a gradient that matches finite differences), metrics, launcher caching."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.cpu import elementwise as cpu
from nexec.kernels.cuda import elementwise as gpu
from nexec.testing import assert_close, check_gradients
from tests.kernels.scalar_functions import ACTIVATIONS, LOSSES, METRICS, ref_loss, separated

from .helpers import CUDA_MARKS, DTYPES, check, dev, host, rtol, sentinel

pytestmark = CUDA_MARKS

N, C = 6, 5  # 30 elements: two simulator blocks of 32 threads grid-stride over them
WIDE, LEFT = C + 4, 1
WEIGHT = 0.7


def wide_sentinel(dtype):
    """A device (N, WIDE) array of NaN whose [:, LEFT:LEFT+C] is a row-strided view."""
    d = sentinel((N, WIDE), dtype)
    return d, d[:, LEFT:LEFT + C]


def margins_nan(d) -> bool:
    h = host(d)
    return bool(np.isnan(h[:, :LEFT]).all() and np.isnan(h[:, LEFT + C:]).all())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("layout", ["contiguous", "strided", "inplace"])
def test_activation_forward(name, dtype, layout):
    forward, derivative, np_fwd, _ = ACTIVATIONS[name]
    fwd, _ = gpu.activation_kernels(forward, derivative)
    x = (2.0 * np.random.default_rng(0).standard_normal((N, C))).astype(dtype)
    expected = np_fwd(x.astype(np.float64))
    cpu_out = np.empty_like(x)
    cpu.activation_kernels(forward, derivative)[0](x, cpu_out)
    if layout == "contiguous":
        out = sentinel((N, C), dtype)
        fwd(dev(x), out)
        got = host(out)
    else:
        whole, view = wide_sentinel(dtype)
        wx = np.full((N, WIDE), np.nan, dtype)
        wx[:, LEFT:LEFT + C] = x
        if layout == "inplace":
            whole = dev(wx)
            view = whole[:, LEFT:LEFT + C]
            fwd(view, view)
        else:
            fwd(dev(wx)[:, LEFT:LEFT + C], view)
        assert margins_nan(whole)
        got = host(whole)[:, LEFT:LEFT + C]
    assert got.dtype == dtype
    assert_close(got, expected, rtol=rtol(dtype) / 10)
    check(got, cpu_out, dtype, f"{name} forward against the CPU")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("layout", ["contiguous", "strided", "inplace"])
def test_activation_backward(name, dtype, layout):
    forward, derivative, np_fwd, np_deriv = ACTIVATIONS[name]
    _, bwd = gpu.activation_kernels(forward, derivative)
    rng = np.random.default_rng(1)
    y = np_fwd(2.0 * rng.standard_normal((N, C))).astype(dtype)
    dy = rng.standard_normal((N, C)).astype(dtype)
    expected = dy.astype(np.float64) * np_deriv(y.astype(np.float64))
    if layout == "contiguous":
        dz = sentinel((N, C), dtype)
        bwd(dev(y), dev(dy), dz)
        got = host(dz)
    else:
        wdy = np.full((N, WIDE), np.nan, dtype)
        wdy[:, LEFT:LEFT + C] = dy
        whole = dev(wdy)
        view = whole[:, LEFT:LEFT + C]
        if layout == "inplace":
            bwd(dev(y), view, view)
        else:
            wy = np.full((N, WIDE), np.nan, dtype)
            wy[:, LEFT:LEFT + C] = y
            bwd(dev(wy)[:, LEFT:LEFT + C], dev(dy), view)
        assert margins_nan(whole)
        got = host(whole)[:, LEFT:LEFT + C]
    assert_close(got, expected, rtol=rtol(dtype) / 10)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_backward_matches_finite_differences(name):
    forward, derivative, np_fwd, _ = ACTIVATIONS[name]
    fwd, bwd = gpu.activation_kernels(forward, derivative)
    rng = np.random.default_rng(2)
    z = rng.choice([-1.0, 1.0], size=(N, C)) * rng.uniform(0.1, 2.0, size=(N, C))
    w = rng.standard_normal((N, C))
    y = sentinel((N, C), np.float64)
    fwd(dev(z), y)
    dz = sentinel((N, C), np.float64)
    bwd(y, dev(w), dz)
    check_gradients(lambda: float(np.sum(w * np_fwd(z))), {"z": host(dz)}, {"z": z})


def value_of(kernel, *args):
    out = sentinel((1,), np.float64)
    kernel(*args, out)
    return host(out)[0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_value(name, dtype):
    fn, grad, np_fn = LOSSES[name]
    value, _ = gpu.loss_kernels(fn, grad)
    p, t = separated(np.random.default_rng(3), (N, C))
    p, t = p.astype(dtype), t.astype(dtype)
    expected = ref_loss(np_fn, p, t)
    assert abs(value_of(value, dev(p), dev(t)) - expected) <= 1e-12 * abs(expected)
    wp = np.full((N, WIDE), np.nan, dtype)
    wp[:, LEFT:LEFT + C] = p
    strided = value_of(value, dev(wp)[:, LEFT:LEFT + C], dev(t))
    assert abs(strided - expected) <= 1e-12 * abs(expected)
    cpu_out = np.zeros(1)
    cpu.loss_kernels(fn, grad)[0](p, t, cpu_out)
    assert abs(strided - cpu_out[0]) <= 1e-12 * abs(expected)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_grad(name):
    fn, grad, np_fn = LOSSES[name]
    _, grad_kernel = gpu.loss_kernels(fn, grad)
    p, t = separated(np.random.default_rng(4), (N, C))
    dp = sentinel((N, C), np.float64)
    grad_kernel(dev(p), dev(t), WEIGHT / N, dp)
    check_gradients(lambda: WEIGHT * ref_loss(np_fn, p, t), {"p": host(dp)}, {"p": p})
    p32, t32 = p.astype(np.float32), t.astype(np.float32)
    whole, view = wide_sentinel(np.float32)
    grad_kernel(dev(p32), dev(t32), 0.25, view)
    assert margins_nan(whole)
    expected = np.empty((N, C), np.float32)
    cpu.loss_kernels(fn, grad)[1](p32, t32, 0.25, expected)
    check(host(whole)[:, LEFT:LEFT + C], expected, np.float32, f"{name} grad float32")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LOSSES))
def test_weighted_loss_value(name, dtype):
    """``sum_i w_i * mean_j fn / N`` (``fit(sample_weight=...)``), as NumPy and the CPU."""
    fn, _, np_fn = LOSSES[name]
    value = gpu.weighted_loss_kernel(fn)
    p, t = separated(np.random.default_rng(5), (N, C))
    p, t = p.astype(dtype), t.astype(dtype)
    w = np.random.default_rng(6).uniform(0.0, 2.0, N).astype(dtype)
    per = np.mean(np_fn(p.astype(np.float64), t.astype(np.float64)), axis=-1)
    expected = float(np.sum(w.astype(np.float64) * per) / N)
    got = value_of(value, dev(p), dev(t), dev(w))
    assert abs(got - expected) <= 1e-12 * abs(expected)
    cpu_out = np.zeros(1)
    cpu.weighted_loss_kernel(fn)(p, t, w, cpu_out)
    assert abs(got - cpu_out[0]) <= 1e-12 * abs(expected)
    with pytest.raises(ValueError, match="one weight per row"):
        value(dev(p), dev(t), dev(w[:-1]), sentinel((1,), np.float64))


def test_loss_empty_and_errors():
    value, grad_kernel = gpu.loss_kernels(*LOSSES["absolute_error"][:2])
    assert np.isnan(value_of(value, dev(np.zeros((0, 3))), dev(np.zeros((0, 3)))))
    grad_kernel(dev(np.zeros((0, 3))), dev(np.zeros((0, 3))), 1.0, dev(np.zeros((0, 3))))
    with pytest.raises(ValueError):
        value(dev(np.zeros((2, 3))), dev(np.zeros((2, 4))), dev(np.zeros(1)))
    with pytest.raises(ValueError, match="1-element"):
        value(dev(np.zeros((2, 3))), dev(np.zeros((2, 3))), dev(np.zeros(0)))
    fwd, _ = gpu.activation_kernels(*ACTIVATIONS["elu"][:2])
    with pytest.raises(ValueError):
        fwd(dev(np.zeros((2, 3))), dev(np.zeros((3, 2))))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(METRICS))
def test_metric_sum(name, dtype):
    fn, np_fn = METRICS[name]
    count = gpu.metric_kernel(fn)
    rng = np.random.default_rng(6)
    p = rng.standard_normal((N, C)).astype(dtype)
    t = (p + rng.uniform(-1.0, 1.0, (N, C))).astype(dtype)
    expected = float(np.sum(np_fn(p.astype(np.float64), t.astype(np.float64))))
    assert expected > 0
    got = value_of(count, dev(p), dev(t))
    assert abs(got - expected) <= 1e-12 * expected
    wt = np.full((N, WIDE), np.nan, dtype)
    wt[:, LEFT:LEFT + C] = t
    assert abs(value_of(count, dev(p), dev(wt)[:, LEFT:LEFT + C]) - expected) <= \
        1e-12 * expected
    assert value_of(count, dev(np.zeros((0, 2))), dev(np.zeros((0, 2)))) == 0.0


def test_launchers_are_made_once_per_function():
    f, d = ACTIVATIONS["softsign"][:2]
    assert gpu.activation_kernels(f, d) == gpu.activation_kernels(f, d)
    fn, grad = LOSSES["log_cosh"][:2]
    assert gpu.loss_kernels(fn, grad) == gpu.loss_kernels(fn, grad)
    assert gpu.metric_kernel(fn) is gpu.metric_kernel(fn)
    assert gpu.loss_kernels(fn, grad)[0].kernel is gpu.metric_kernel(fn).kernel  # one sum
    assert gpu.activation_kernels(f, d)[0] is not gpu.activation_kernels(d, d)[0]
