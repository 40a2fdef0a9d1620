"""Elementwise ops split over the intra-op shards (ops/elementwise.py): bit-identical to one
call, deterministic, and really split where the size threshold says so."""
import types

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers
from nexec.devices.threads import run_shards, set_num_threads
from nexec.kernels.activations import GELU, LINEAR, RELU, SOFTMAX
from nexec.ops import builtin, elementwise
from nexec.ops.base import Call
from nexec.ops.builtin import AddKernel
from nexec.ops.elementwise import row_slices, run_in_order, shard_count
from nexec.ops.merge import (
    AverageKernel,
    MaximumKernel,
    MinimumKernel,
    MultiplyKernel,
    SubtractKernel,
)
from nexec.plugins import registry
from tests.runtime.test_threads import restore_threads  # noqa: F401 - autouse

SHAPE = (5, 3, 2, 4)  # 5 images: 2 or 3 shards never divide them evenly


@pytest.fixture
def split_everything(monkeypatch):
    """Every image tensor, however small, is split (tests use tiny shapes)."""
    monkeypatch.setattr(elementwise, "MIN_SHARD_BYTES", 1)


def _cpu():
    return registry().device("cpu")


def _run(calls):
    for fn, args in calls:
        fn(*args)


def _kernels(calls):
    """Every kernel function the bound calls run, shards and in-order runs opened up."""
    out = []
    for fn, args in calls:
        if fn is run_shards or fn is run_in_order:
            out += _kernels(args[0])
        else:
            out.append(fn)
    return out


# --------------------------------------------------------------------------- the split


def test_row_slices_follow_the_convolution_split(split_everything):
    set_num_threads(3)
    a = np.zeros((7, 3, 2, 4))
    got = row_slices(_cpu(), a)
    conv = builtin._shard_slices(7, 3, 3 * 2)  # how Conv2DKernel splits 7 images of 3x2
    assert got == [r for _, r in conv]
    assert got[0].start == 0 and got[-1].stop == 7 * 6


def test_small_non_image_or_one_thread_tensors_are_one_call():
    cpu = _cpu()
    set_num_threads(2)
    big = elementwise.MIN_SHARD_BYTES // 4  # float32 elements of that many bytes
    assert shard_count(cpu, (4, big // 4, 1, 1), 4, arrays=1) == 2
    assert shard_count(cpu, (4, big // 4 - 1, 1, 1), 4, arrays=1) == 1  # below the threshold
    assert shard_count(cpu, (4, big // 8, 1, 1), 8, arrays=1) == 2  # bytes, not elements
    per_image = -(-elementwise.MIN_SHARD_BYTES // (4 * 4 * 3))  # 4 images, 3 arrays
    assert shard_count(cpu, (4, per_image, 1, 1), 4, arrays=3) == 2  # bytes touched
    assert shard_count(cpu, (4, per_image, 1, 1), 4, arrays=2) == 1
    assert shard_count(cpu, (4, big, 1), 4) == 1  # not an image batch (Dense / sequences)
    assert shard_count(cpu, (1, big, 1, 1), 4) == 1  # one image
    costly_n = elementwise.MIN_SHARD_ELEMENTS_COSTLY
    assert shard_count(cpu, (2, costly_n // 2, 1, 1), 4, compute_bound=True) == 2
    assert shard_count(cpu, (2, costly_n // 2 - 1, 1, 1), 4, compute_bound=True) == 1
    assert shard_count(cpu, (2, costly_n // 2, 1, 1), 4) == 1
    assert elementwise.costly(GELU) and elementwise.costly(SOFTMAX)
    assert not elementwise.costly(RELU) and not elementwise.costly(LINEAR)
    set_num_threads(1)
    assert shard_count(cpu, (4, big, 1, 1), 4) == 1
    assert row_slices(cpu, np.empty((2, 1, 1, 1))) == [slice(None)]


MERGES = {
    "add": (AddKernel, lambda xs: np.maximum(sum(xs[1:], xs[0]), 0)),
    "subtract": (SubtractKernel, lambda xs: xs[0] - xs[1]),
    "multiply": (MultiplyKernel, lambda xs: np.prod(xs, axis=0)),
    "average": (AverageKernel, lambda xs: sum(xs[1:], xs[0]) * (1.0 / len(xs))),
    "maximum": (MaximumKernel, lambda xs: np.max(xs, axis=0)),
    "minimum": (MinimumKernel, lambda xs: np.min(xs, axis=0)),
}


def _reference_grads(name, xs, y, dy):
    """NumPy gradients of each input of the merge."""
    n = len(xs)
    if name == "add":
        return [dy * (y > 0)] * n
    if name == "subtract":
        return [dy, -dy]
    if name == "average":
        return [dy * (1.0 / n)] * n
    if name == "multiply":
        return [dy * np.prod([x for j, x in enumerate(xs) if j != i], axis=0)
                for i in range(n)]
    first = np.full(y.shape, -1)  # the first input attaining the extreme takes the gradient
    for i in reversed(range(n)):
        first = np.where(xs[i] == y, i, first)
    return [np.where(first == i, dy, 0) for i in range(n)]


def _merge(name, xs, dy, alias):
    """Forward output and input gradients of one merge, bound and run as the executor does."""
    cls, _ = MERGES[name]
    kernel = cls(_cpu())
    xs = [x.copy() for x in xs]
    alias = alias and cls.overwrites_input  # the planner may write over x0 (never when
    out = xs[0] if alias else np.full_like(xs[0], np.nan)  # backward reads the inputs)
    d_inputs = [np.full_like(x, np.nan) for x in xs]
    ws = {"rest": np.empty_like(xs[0])} if name in ("maximum", "minimum") else {}
    call = Call(layer=types.SimpleNamespace(), activation=RELU if name == "add" else LINEAR,
                inputs=xs, output=out, params={}, workspace=ws, training=True,
                d_output=dy.copy(), d_inputs=d_inputs, device=_cpu())
    fwd = kernel.forward(call)
    _run(fwd)
    bwd = kernel.backward(call)
    _run(bwd)
    return out, d_inputs, fwd, bwd


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,n_inputs", [(name, n) for name in MERGES for n in (2, 3)
                                           if not (name == "subtract" and n == 3)])
@pytest.mark.parametrize("n_threads", [2, 3])
def test_split_merges_are_bit_identical_to_one_call(split_everything, name, n_inputs, dtype,
                                                     n_threads):
    rng = np.random.default_rng(n_inputs)
    # small integers: Maximum/Minimum see ties, which must go to the first input
    xs = [rng.integers(-3, 4, SHAPE).astype(dtype) for _ in range(n_inputs)]
    dy = rng.normal(size=SHAPE).astype(dtype)
    for alias in (False, True):
        set_num_threads(1)
        y1, d1, fwd1, bwd1 = _merge(name, xs, dy, alias)
        set_num_threads(n_threads)
        yn, dn, fwdn, bwdn = _merge(name, xs, dy, alias)
        assert all(fn is not run_shards for fn, _ in fwd1 + bwd1)
        assert [fn for fn, _ in fwdn] == [run_shards] and [fn for fn, _ in bwdn] == [run_shards]
        assert len(fwdn[0][1][0]) == n_threads and len(bwdn[0][1][0]) == n_threads
        np.testing.assert_array_equal(yn, y1)
        for a, b in zip(dn, d1):
            np.testing.assert_array_equal(a, b)
        # and both against NumPy
        tol = dict(rtol=1e-6) if dtype == np.float32 else dict(rtol=1e-13)
        y_ref = MERGES[name][1](xs)
        np.testing.assert_allclose(yn, y_ref, **tol)
        for a, ref in zip(dn, _reference_grads(name, xs, y_ref, dy)):
            np.testing.assert_allclose(a, ref, **tol)


def test_a_merge_without_input_gradients_binds_no_backward(split_everything):
    set_num_threads(2)
    x = np.ones(SHAPE)
    for cls in (AddKernel, SubtractKernel, AverageKernel, MaximumKernel):
        call = Call(layer=None, activation=LINEAR, inputs=[x, x], output=x.copy(), params={},
                    workspace={"rest": x.copy()}, training=True, d_output=x.copy(),
                    d_inputs=[None, None], device=_cpu())
        assert cls(_cpu()).backward(call) == []


# --------------------------------------------------------------------------- in a model


def _model():
    i = Input(shape=(4, 3, 2))
    c = layers.Conv2D(4, 3, padding="same")(i)
    b = layers.BatchNormalization()(c)
    a = layers.Activation("gelu")(b)  # saves its input: copy + activation per shard
    r = layers.LeakyReLU(negative_slope=0.2)(layers.Conv2D(4, 3, padding="same")(a))
    s = layers.Activation("tanh")(layers.Add()([r, c, b]))
    m = layers.Maximum()([s, layers.Multiply()([a, b])])
    v = layers.Average()([m, layers.Subtract()([s, a])])
    return Model(i, layers.Dense(3, activation="softmax")(layers.Flatten()(v)))


def _train(monkeypatch, threshold, build=_model):
    """Weights, predictions and the training program of ``build()`` trained on 7 images
    (its input's shape) with elementwise ops split from ``threshold`` bytes."""
    monkeypatch.setattr(elementwise, "MIN_SHARD_BYTES", threshold)
    monkeypatch.setattr(elementwise, "MIN_SHARD_ELEMENTS_COSTLY", threshold)
    nexec.clear_session()
    nexec.set_random_seed(3)
    set_num_threads(3)
    model = build()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(7, *model.inputs[0].shape[1:]))
    y = np.eye(3)[rng.integers(0, 3, 7)]
    model.fit(x, y, epochs=2, batch_size=5, verbose=0)  # batches of 5 and 2 images
    pred = model.predict(x, batch_size=5)
    return model.get_weights(), pred, model._trainer.train_executor.program(5)


def test_split_model_trains_and_predicts_bit_identically(monkeypatch):
    w1, p1, prog1 = _train(monkeypatch, 10**12)
    wn, pn, progn = _train(monkeypatch, 1)
    k = _cpu().kernels
    whole = _kernels(prog1.forward + prog1.backward)
    split = [fn for fn, args in progn.forward + progn.backward if fn is run_shards
             for fn in _kernels(args[0])]
    for fn in (k.add_forward, k.add_accumulate, k.activation_forward, k.copy_into,
               k.param_activation_forward, k.merge_forward, k.scale_into,
               k.activation_backward_input, k.param_activation_backward, k.extreme_grad):
        assert fn in whole and fn in split, fn
    assert k.add_forward not in [fn for fn, _ in progn.forward]  # never a single call
    np.testing.assert_array_equal(pn, p1)
    for a, b in zip(wn, w1):
        np.testing.assert_array_equal(a, b)


def _bn_predict(monkeypatch, threshold, x, weights):
    monkeypatch.setattr(elementwise, "MIN_SHARD_BYTES", threshold)
    nexec.clear_session()
    i = Input(shape=x.shape[1:])
    bn = layers.BatchNormalization(epsilon=1e-3)
    model = Model(i, bn(i))
    bn.set_weights(weights)
    pred = model.predict(x, batch_size=5)
    from nexec.training.trainer import predictor
    return pred, predictor(model).executor.program(5)


def test_batchnorm_inference_is_split_with_its_own_coefficients(monkeypatch):
    set_num_threads(3)
    rng = np.random.default_rng(6)
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    mean, var = rng.normal(size=4), rng.uniform(0.5, 2.0, 4)
    x = rng.normal(size=(5, 3, 2, 4))
    pn, progn = _bn_predict(monkeypatch, 1, x, [gamma, beta, mean, var])
    p1, prog1 = _bn_predict(monkeypatch, 10**12, x, [gamma, beta, mean, var])
    k = _cpu().kernels
    (shards,) = [args[0] for fn, args in progn.forward if fn is run_shards]
    assert [fn for fn, _ in shards] == [k.batchnorm_forward_infer] * 3
    coefs = [args[6] for _, args in shards]  # each shard folds into its own (2, C)
    assert len({c.ctypes.data for c in coefs}) == 3
    assert k.batchnorm_forward_infer in [fn for fn, _ in prog1.forward]
    np.testing.assert_array_equal(pn, p1)
    np.testing.assert_allclose(pn, (x - mean) / np.sqrt(var + 1e-3) * gamma + beta,
                               rtol=1e-5, atol=1e-6)  # float32 model
