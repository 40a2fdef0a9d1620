"""BatchNormalization and LayerNormalization: NumPy references and finite differences for
the kernels, PyTorch float64 with copied weights for forward and gradients (to 1e-10),
moving statistics after ``fit`` checked by hand, no allocation per step."""
import numpy as np
import pytest
import torch

from nexec import Input, Model, ShapeError, layers, optimizers
from nexec.models import model_from_json
from nexec.testing import (
    array_arguments,
    assert_close,
    check_gradients,
    count_allocations,
    model_gradients,
    numerical_gradient,
    weights_by_name,
)

from nexec.kernels.cpu import normalization as K

EMPTY = np.empty(0)


def np_batchnorm(x, gamma, beta, eps):
    mean, var = x.mean(axis=0), x.var(axis=0)  # biased, as Keras
    return gamma * (x - mean) / np.sqrt(var + eps) + beta, mean, var


def _train_forward(x, gamma, beta, mm, mv, momentum=0.9, eps=1e-3):
    stats = np.full((2, x.shape[1]), np.nan, x.dtype)
    out = np.full(x.shape, np.nan, x.dtype)
    K.batchnorm_forward_train(x, gamma, beta, momentum, eps, mm, mv, stats, out)
    return out, stats


# ----- kernels -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("affine", [True, False])
def test_training_forward_and_moving_update_match_numpy(dtype, affine):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(12, 5)) * 3 + 1).astype(dtype)
    gamma = rng.normal(size=5).astype(dtype) if affine else EMPTY.astype(dtype)
    beta = rng.normal(size=5).astype(dtype) if affine else EMPTY.astype(dtype)
    mm, mv = rng.normal(size=5).astype(dtype), rng.random(5).astype(dtype) + 0.5
    mm0, mv0 = mm.astype(np.float64), mv.astype(np.float64)
    out, stats = _train_forward(x, gamma, beta, mm, mv, momentum=0.9, eps=1e-3)
    x64 = x.astype(np.float64)
    ref, mean, var = np_batchnorm(x64, gamma if affine else 1.0, beta if affine else 0.0, 1e-3)
    assert_close(out, ref, what="output")
    assert_close(stats[0], mean, what="saved mean")
    assert_close(stats[1], 1 / np.sqrt(var + 1e-3), what="saved 1/std")
    assert_close(mm, 0.9 * mm0 + 0.1 * mean, what="moving mean")
    assert_close(mv, 0.9 * mv0 + 0.1 * var, what="moving variance")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("affine", [True, False])
def test_inference_forward_uses_moving_statistics(dtype, affine):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 4)).astype(dtype)
    gamma = rng.normal(size=4).astype(dtype) if affine else EMPTY.astype(dtype)
    beta = rng.normal(size=4).astype(dtype) if affine else EMPTY.astype(dtype)
    mm, mv = rng.normal(size=4).astype(dtype), rng.random(4).astype(dtype) + 0.5
    out = np.full(x.shape, np.nan, dtype)
    K.batchnorm_forward_infer(x, gamma, beta, 1e-3, mm, mv, np.empty((2, 4), dtype), out)
    g, b = (gamma, beta) if affine else (1.0, 0.0)
    assert_close(out, g * (x.astype(np.float64) - mm) / np.sqrt(mv.astype(np.float64) + 1e-3)
                 + b)


@pytest.mark.parametrize("affine", [True, False])
def test_training_backward_matches_finite_differences(affine):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(7, 3)) * 2
    gamma = rng.normal(size=3) if affine else EMPTY
    beta = rng.normal(size=3) if affine else EMPTY
    weights = rng.normal(size=x.shape)

    def loss():
        out, _ = _train_forward(x, gamma, beta, np.zeros(3), np.ones(3))
        return float((np.tanh(out) * weights).sum())

    out, stats = _train_forward(x, gamma, beta, np.zeros(3), np.ones(3))
    dy = weights * (1 - np.tanh(out) ** 2)
    dgamma, dbeta = (np.full(3, np.nan), np.full(3, np.nan)) if affine else (EMPTY, EMPTY)
    dx = np.full(x.shape, np.nan)
    K.batchnorm_backward(x, dy, gamma, stats, np.empty((2, 3)), dgamma, dbeta, dx)
    assert_close(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-8, what="dx")
    if affine:
        assert_close(dgamma, numerical_gradient(loss, gamma), rtol=1e-6, what="dgamma")
        assert_close(dbeta, numerical_gradient(loss, beta), rtol=1e-6, what="dbeta")
    # the input gradient may be skipped (a model input), parameter gradients still come
    if affine:
        again = np.empty(3)
        K.batchnorm_backward(x, dy, gamma, stats, np.empty((2, 3)), again, np.empty(3),
                             np.empty((0, 3)))
        assert_close(again, dgamma)


def test_frozen_backward_is_the_inference_form():
    rng = np.random.default_rng(3)
    x, weights = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    mm, mv = rng.normal(size=3), rng.random(3) + 0.5
    coef = np.empty((2, 3))

    def loss():
        out = np.empty_like(x)
        K.batchnorm_forward_infer(x, gamma, beta, 1e-3, mm, mv, coef, out)
        return float((out * weights).sum())

    loss()  # fills coef as the forward step does
    dgamma, dbeta, dx = np.empty(3), np.empty(3), np.empty_like(x)
    K.batchnorm_backward_frozen(x, weights, mm, mv, 1e-3, coef, dgamma, dbeta, dx)
    assert_close(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-8, what="dx")
    assert_close(dgamma, numerical_gradient(loss, gamma), rtol=1e-6, what="dgamma")
    assert_close(dbeta, numerical_gradient(loss, beta), rtol=1e-6, what="dbeta")


# ----- layer ---------------------------------------------------------------------------------
def test_keras_defaults_weights_and_config():
    assert layers.BatchNormalization.__module__ == "nexec.layers.normalization"
    bn = layers.BatchNormalization(name="bn")
    assert (bn.axis, bn.momentum, bn.epsilon, bn.center, bn.scale) == (-1, 0.99, 1e-3, True,
                                                                       True)
    bn(Input(shape=(4, 4, 3)))
    assert list(bn._params) == ["gamma", "beta", "moving_mean", "moving_variance"]
    np.testing.assert_array_equal(bn.gamma, np.ones(3))
    np.testing.assert_array_equal(bn.beta, np.zeros(3))
    np.testing.assert_array_equal(bn.moving_mean, np.zeros(3))
    np.testing.assert_array_equal(bn.moving_variance, np.ones(3))
    assert [w.shape for w in bn.trainable_weights] == [(3,), (3,)]
    assert len(bn.non_trainable_weights) == 2 and bn.count_params() == 12
    bare = layers.BatchNormalization(center=False, scale=False)
    bare(Input(shape=(2,)))
    assert list(bare._params) == ["moving_mean", "moving_variance"]
    cfg = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, center=False, name="b2") \
        .get_config()
    assert cfg["momentum"] == 0.9 and cfg["epsilon"] == 1e-5 and cfg["center"] is False
    assert layers.BatchNormalization.from_config(cfg).get_config() == cfg


def test_only_the_last_axis_is_supported():
    assert layers.BatchNormalization(axis=3)(Input(shape=(4, 4, 2))).shape == (None, 4, 4, 2)
    with pytest.raises(ShapeError, match=r"bn_axis.*only the last axis"):
        layers.BatchNormalization(axis=1, name="bn_axis")(Input(shape=(4, 4, 2)))


def test_predict_uses_moving_statistics():
    x = Input(shape=(2, 3))
    bn = layers.BatchNormalization(epsilon=1e-3)
    model = Model(x, bn(x))
    rng = np.random.default_rng(4)
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    mm, mv = rng.normal(size=3), rng.random(3) + 0.5
    bn.set_weights([gamma, beta, mm, mv])
    data = rng.normal(size=(5, 2, 3)).astype("float32")
    assert_close(model.predict(data, batch_size=2), gamma * (data - mm) / np.sqrt(mv + 1e-3)
                 + beta)


@pytest.mark.parametrize("batch_size", [12, 5])
def test_moving_statistics_after_fit_match_a_hand_computation(batch_size):
    """No shuffle: the moving statistics fold each batch's mean and biased variance in turn."""
    rng = np.random.default_rng(5)
    data = (rng.normal(size=(12, 3)) * [1.0, 2.0, 0.5] + [0.0, 3.0, -1.0])
    target = rng.normal(size=(12, 1))
    x = Input(shape=(3,), dtype="float64")
    bn = layers.BatchNormalization(momentum=0.9)
    model = Model(x, layers.Dense(1)(bn(x)))  # BN reads the data itself: no weights before it
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    model.fit(data, target, epochs=2, batch_size=batch_size, shuffle=False, verbose=0)
    mm, mv = np.zeros(3), np.ones(3)
    for _ in range(2):
        for lo in range(0, 12, batch_size):
            batch = data[lo:lo + batch_size]
            mm = 0.9 * mm + 0.1 * batch.mean(axis=0)
            mv = 0.9 * mv + 0.1 * batch.var(axis=0)  # biased, as Keras
    assert_close(bn.moving_mean, mm)
    assert_close(bn.moving_variance, mv)
    # gamma/beta were trained; evaluate/predict use the moving statistics, not the batch's
    gamma, beta = bn.gamma, bn.beta
    kernel, bias = model.layers[-1].get_weights()
    expected = (gamma * (data - mm) / np.sqrt(mv + 1e-3) + beta) @ kernel + bias
    assert_close(model.predict(data), expected)


def test_training_mode_gradients_through_the_executor():
    rng = np.random.default_rng(6)
    x = Input(shape=(4,), dtype="float64")
    h = layers.Dense(5, activation="tanh")(x)
    h = layers.BatchNormalization(momentum=0.5)(h)
    out = layers.Dense(2, activation="sigmoid")(h)
    model = Model(x, out)
    model.layers[2].set_weights([rng.normal(size=5), rng.normal(size=5), np.zeros(5),
                                 np.ones(5)])
    loss_fn, grads = model_gradients(model, rng.normal(size=(6, 4)), rng.random((6, 2)),
                                     "binary_crossentropy", training=True)
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_frozen_layer_runs_in_inference_mode_in_fit():
    rng = np.random.default_rng(7)
    x = Input(shape=(3,), dtype="float64")
    bn = layers.BatchNormalization(trainable=False)
    out = layers.Dense(2)(bn(layers.Dense(3)(x)))
    model = Model(x, out)
    bn.set_weights([rng.normal(size=3), rng.normal(size=3), rng.normal(size=3),
                    rng.random(3) + 0.5])
    before = bn.get_weights()
    loss_fn, grads = model_gradients(model, rng.normal(size=(5, 3)), rng.normal(size=(5, 2)),
                                     "mse", training=True)
    # The moving statistics get no gradient (they are state, not parameters), although the
    # inference form depends on them; gamma and beta get theirs, as a frozen Dense does.
    wrt = {k: w for k, w in weights_by_name(model).items() if "/moving_" not in k}
    check_gradients(loss_fn, grads, wrt, rtol=1e-6)
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    model.fit(rng.normal(size=(5, 3)), rng.normal(size=(5, 2)), epochs=2, verbose=0)
    for a, b in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(a, b)  # neither the moving stats nor gamma/beta move


def test_memory_plan_summary_and_json():
    x = Input(shape=(4, 4, 2), name="x")
    bn = layers.BatchNormalization(momentum=0.8, name="bn")
    model = Model(x, layers.Dense(3)(layers.Flatten()(bn(x))))
    plan = model.memory_plan(batch_size=4, training=True)
    plan.verify()
    (stats,) = [b for b in plan.buffers if b.name.endswith(".stats")]
    assert stats.role == "saved"
    model.memory_plan(batch_size=4, training=False).verify()
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "bn (BatchNormalization)" in text and "Non-trainable params: 4" in text
    copy = model_from_json(model.to_json())
    assert copy.get_layer("bn").momentum == 0.8
    copy.set_weights(model.get_weights())
    data = np.random.default_rng(8).normal(size=(3, 4, 4, 2)).astype("float32")
    np.testing.assert_array_equal(copy.predict(data), model.predict(data))


def test_bad_arguments_are_refused_at_construction():
    for make, match in [
        (lambda: layers.BatchNormalization(momentum=1.5), r"momentum must be a number between"),
        (lambda: layers.BatchNormalization(epsilon=0), r"epsilon must be a positive"),
        (lambda: layers.BatchNormalization(center="yes"), r"center must be True or False"),
        (lambda: layers.BatchNormalization(renorm=True), r"renorm=True is not supported"),
        (lambda: layers.BatchNormalization(synchronized=True), r"synchronized=True"),
        (lambda: layers.BatchNormalization(axis=[1, 2]), r"only one axis"),
        (lambda: layers.LayerNormalization(rms_scaling=True), r"rms_scaling=True"),
        (lambda: layers.LayerNormalization(gamma_regularizer="l2"), r"gamma_regularizer"),
        (lambda: layers.LayerNormalization(axis="last"), r"axis must be an int"),
    ]:
        with pytest.raises((ValueError, TypeError), match=match):
            make()


# ----- LayerNormalization --------------------------------------------------------------------
def np_layernorm(x, gamma, beta, eps):
    mean, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("affine", [True, False])
def test_layernorm_kernels_match_numpy_and_finite_differences(dtype, affine):
    rng = np.random.default_rng(9)
    x = (rng.normal(size=(5, 6)) * 2 + 1).astype(dtype)
    gamma = rng.normal(size=6).astype(dtype) if affine else EMPTY.astype(dtype)
    beta = rng.normal(size=6).astype(dtype) if affine else EMPTY.astype(dtype)
    stats, out = np.full((5, 2), np.nan, dtype), np.full(x.shape, np.nan, dtype)
    K.layernorm_forward(x, gamma, beta, 1e-3, stats, out)
    g, b = (gamma, beta) if affine else (1.0, 0.0)
    assert_close(out, np_layernorm(x.astype(np.float64), g, b, 1e-3))
    if dtype == "float32":
        return
    weights = rng.normal(size=x.shape)

    def loss():
        o = np.empty_like(x)
        K.layernorm_forward(x, gamma, beta, 1e-3, np.empty((5, 2)), o)
        return float((np.sin(o) * weights).sum())

    dy = weights * np.cos(out)
    dgamma, dbeta = (np.full(6, np.nan), np.full(6, np.nan)) if affine else (EMPTY, EMPTY)
    dx = np.full(x.shape, np.nan)
    K.layernorm_backward(x, dy, gamma, stats, dgamma, dbeta, dx)
    assert_close(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-8, what="dx")
    if affine:
        assert_close(dgamma, numerical_gradient(loss, gamma), rtol=1e-6, what="dgamma")
        assert_close(dbeta, numerical_gradient(loss, beta), rtol=1e-6, what="dbeta")
        again = np.empty(6)
        K.layernorm_backward(x, dy, gamma, stats, again, np.empty(6), np.empty((0, 6)))
        assert_close(again, dgamma)


def test_layernorm_keras_defaults_weights_and_config():
    ln = layers.LayerNormalization(name="ln")
    assert (ln.axis, ln.epsilon, ln.center, ln.scale) == (-1, 1e-3, True, True)
    assert not ln.has_training_mode
    ln(Input(shape=(3, 4)))
    assert list(ln._params) == ["gamma", "beta"]
    assert [w.shape for w in ln.get_weights()] == [(4,), (4,)]
    np.testing.assert_array_equal(ln.gamma, np.ones(4))
    bare = layers.LayerNormalization(center=False, axis=[-1])
    bare(Input(shape=(2,)))
    assert list(bare._params) == ["gamma"]
    cfg = ln.get_config()
    assert layers.LayerNormalization.from_config(cfg).get_config() == cfg
    assert layers.LayerNormalization(axis=2)(Input(shape=(3, 4))).shape == (None, 3, 4)
    with pytest.raises(ShapeError, match=r"ln1.*only the last axis"):
        layers.LayerNormalization(axis=1, name="ln1")(Input(shape=(3, 4)))


# ----- against PyTorch (float64, copied weights) -----------------------------------------------
def _torch_pair(kind, momentum=0.99, eps=1e-3):
    """Dense(6, tanh) -> the normalisation -> Dense(2), float64, with random gamma/beta."""
    rng = np.random.default_rng(10)
    x = Input(shape=(4,), dtype="float64")
    norm = (layers.BatchNormalization(momentum=momentum, epsilon=eps, name="norm")
            if kind == "bn" else layers.LayerNormalization(epsilon=eps, name="norm"))
    h = layers.Dense(6, activation="tanh", name="d1")(x)
    model = Model(x, layers.Dense(2, name="d2")(norm(h)))
    gamma, beta = rng.normal(size=6), rng.normal(size=6)
    norm.set_weights([gamma, beta] + ([rng.normal(size=6), rng.random(6) + 0.5]
                                      if kind == "bn" else []))
    return model, rng


@pytest.mark.parametrize("kind", ["bn", "ln"])
def test_forward_and_gradients_match_pytorch(kind):
    model, rng = _torch_pair(kind)
    data, target = rng.normal(size=(7, 4)), rng.normal(size=(7, 2))
    (k1, b1), (k2, b2) = model.get_layer("d1").get_weights(), model.get_layer("d2").get_weights()
    gamma, beta = model.get_layer("norm").get_weights()[:2]
    t = {n: torch.tensor(a, requires_grad=True)
         for n, a in dict(k1=k1, b1=b1, k2=k2, b2=b2, gamma=gamma, beta=beta).items()}
    xt = torch.tensor(data, requires_grad=True)
    h = torch.tanh(xt @ t["k1"] + t["b1"])
    if kind == "bn":
        h = torch.nn.functional.batch_norm(h, None, None, t["gamma"], t["beta"], training=True,
                                           eps=1e-3)
    else:
        h = torch.nn.functional.layer_norm(h, (6,), t["gamma"], t["beta"], eps=1e-3)
    out = h @ t["k2"] + t["b2"]
    loss = ((out - torch.tensor(target)) ** 2).mean()
    loss.backward()
    loss_fn, grads = model_gradients(model, data, target, "mse", training=True)
    assert loss_fn() == pytest.approx(loss.item(), rel=1e-10)
    names = {"d1/kernel": "k1", "d1/bias": "b1", "d2/kernel": "k2", "d2/bias": "b2",
             "norm/gamma": "gamma", "norm/beta": "beta"}
    for ours, theirs in names.items():
        assert_close(grads[ours], t[theirs].grad.numpy(), rtol=1e-10, atol=1e-12, what=ours)


def test_batchnorm_kernels_match_pytorch_including_the_input_gradient():
    rng = np.random.default_rng(11)
    x, dy = rng.normal(size=(8, 3)) * 2 + 1, rng.normal(size=(8, 3))
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    out, stats = _train_forward(x, gamma, beta, np.zeros(3), np.ones(3), eps=1e-3)
    dgamma, dbeta, dx = np.empty(3), np.empty(3), np.empty_like(x)
    K.batchnorm_backward(x, dy, gamma, stats, np.empty((2, 3)), dgamma, dbeta, dx)
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    ot = torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True, eps=1e-3)
    ot.backward(torch.tensor(dy))
    for ours, theirs, what in [(out, ot.detach(), "out"), (dx, xt.grad, "dx"),
                               (dgamma, gt.grad, "dgamma"), (dbeta, bt.grad, "dbeta")]:
        assert_close(ours, theirs.numpy(), rtol=1e-10, atol=1e-12, what=what)


def test_layernorm_kernels_match_pytorch_including_the_input_gradient():
    rng = np.random.default_rng(12)
    x, dy = rng.normal(size=(2, 3, 5)) * 2 + 1, rng.normal(size=(2, 3, 5))
    gamma, beta = rng.normal(size=5), rng.normal(size=5)
    stats, out = np.empty((6, 2)), np.empty((6, 5))
    K.layernorm_forward(x.reshape(6, 5), gamma, beta, 1e-3, stats, out)
    dgamma, dbeta, dx = np.empty(5), np.empty(5), np.empty((6, 5))
    K.layernorm_backward(x.reshape(6, 5), dy.reshape(6, 5), gamma, stats, dgamma, dbeta, dx)
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    ot = torch.nn.functional.layer_norm(xt, (5,), gt, bt, eps=1e-3)
    ot.backward(torch.tensor(dy))
    for ours, theirs, what in [(out, ot.detach().reshape(6, 5), "out"),
                               (dx, xt.grad.reshape(6, 5), "dx"),
                               (dgamma, gt.grad, "dgamma"), (dbeta, bt.grad, "dbeta")]:
        assert_close(ours, theirs.numpy(), rtol=1e-10, atol=1e-12, what=what)


def test_layernorm_model_fits_and_predicts_on_rank3_inputs():
    rng = np.random.default_rng(13)
    x = Input(shape=(3, 4))
    ln = layers.LayerNormalization(name="ln")
    model = Model(x, layers.Dense(1)(layers.Flatten()(ln(x))))
    data = (rng.normal(size=(16, 3, 4)) * 3 + 2).astype("float32")
    target = data[:, :, 0].sum(axis=1, keepdims=True) / 10
    model.compile(optimizer=optimizers.Adam(0.01), loss="mse")
    history = model.fit(data, target, epochs=5, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    gamma, beta = ln.get_weights()
    k, b = model.layers[-1].get_weights()
    ref = np_layernorm(data.astype(np.float64), gamma, beta, 1e-3).reshape(16, -1) @ k + b
    assert_close(model.predict(data), ref)


def test_training_steps_with_every_layer_allocate_nothing():
    x = Input(shape=(4, 4, 3))
    h = layers.Conv2D(4, 1)(x)
    h = layers.BatchNormalization()(h)
    h = layers.SpatialDropout2D(0.2, seed=1)(h)
    h = layers.LayerNormalization()(h)
    h = layers.GaussianNoise(0.1, seed=2)(h)
    h = layers.Dropout(0.3, seed=3)(layers.Flatten()(h))
    model = Model(x, layers.Dense(2)(h))
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    data = rng.random((16, 4, 4, 3)).astype(np.float32)
    target = rng.random((16, 2)).astype(np.float32)
    model.fit(data, target, epochs=1, batch_size=8, verbose=0)
    ex = model._trainer.train_executor
    prog = ex.program(8)
    losses, counts = [0.0], [0] * len(prog.metrics)

    def steps(k):
        for i in range(k):
            for dst, src in zip(prog.inputs + prog.targets, [data, target]):
                dst[...] = src[(i % 2) * 8:(i % 2) * 8 + 8]
            ex.train_step(prog, losses, counts)

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(3))
    assert nrt == 3 * array_arguments(prog), (nrt, array_arguments(prog))
    assert numpy_blocks == []
    assert np.isfinite(losses[0])
