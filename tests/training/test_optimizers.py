"""Optimizer objects as Keras 3: argument checks, ``model.optimizer``, a settable learning
rate, ``iterations``, configs, saving, schedules' values, and the same fits on CUDA."""
from __future__ import annotations

import math

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers, optimizers
from nexec.kernels.cuda import backend
from nexec.optimizers import schedules

ALL = ["SGD", "RMSprop", "Adam", "AdamW", "Nadam", "Adamax", "Adagrad", "Adadelta", "Lion"]


def _model(dtype="float32"):
    x_in = Input(shape=(3,), dtype=dtype)
    return Model(x_in, layers.Dense(2)(layers.Dense(4, activation="tanh")(x_in)))


def _data():
    rng = np.random.default_rng(1)
    return rng.standard_normal((12, 3)).astype(np.float32), \
        rng.standard_normal((12, 2)).astype(np.float32)


# ----------------------------------------------------------------- defaults and checks
def test_keras_defaults():
    assert optimizers.AdamW().weight_decay == 0.004
    assert optimizers.Adadelta().learning_rate == 0.001
    assert optimizers.Adadelta().rho == 0.95
    assert optimizers.Adagrad().initial_accumulator_value == 0.1
    assert (optimizers.Lion().beta_1, optimizers.Lion().beta_2) == (0.9, 0.99)
    assert optimizers.Nadam().epsilon == 1e-7
    for name in ALL:
        assert optimizers.get(name.lower()).__class__.__name__ == name


@pytest.mark.parametrize("cls,kwargs,arg", [
    ("Adam", {"learning_rate": -0.1}, "learning_rate"),
    ("SGD", {"learning_rate": math.nan}, "learning_rate"),
    ("Adam", {"beta_1": 1.0}, "beta_1"),
    ("Nadam", {"beta_2": -0.1}, "beta_2"),
    ("Lion", {"beta_2": 1.5}, "beta_2"),
    ("SGD", {"momentum": 2.0}, "momentum"),
    ("Adadelta", {"rho": 1.0}, "rho"),
    ("Adagrad", {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
    ("Adam", {"clipnorm": 0.0}, "clipnorm"),
    ("SGD", {"clipvalue": -1.0}, "clipvalue"),
    ("RMSprop", {"global_clipnorm": math.nan}, "global_clipnorm"),
    ("Adam", {"weight_decay": -0.01}, "weight_decay"),
    ("Adam", {"epsilon": "small"}, "epsilon"),
])
def test_bad_arguments_name_argument_value_and_accepted(cls, kwargs, arg):
    with pytest.raises((ValueError, TypeError), match=rf"`{arg}` must be a number in .*Received: {arg}="):
        getattr(optimizers, cls)(**kwargs)


def test_refused_and_conflicting_arguments():
    with pytest.raises(ValueError, match="Only one of|only one of"):
        optimizers.SGD(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="use_ema"):
        optimizers.Adam(use_ema=True)
    with pytest.raises(ValueError, match="amsgrad"):
        optimizers.Adam(amsgrad=True)
    with pytest.raises(ValueError, match="weight_decay"):
        optimizers.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="not recognized"):
        optimizers.Adam(beta3=0.5)
    with pytest.warns(UserWarning, match="decay"):
        optimizers.SGD(decay=0.1)


# ----------------------------------------------------------------- model.optimizer
def test_model_optimizer_and_settable_learning_rate_take_effect_next_step():
    x, y = _data()
    m = _model()
    assert m.optimizer is None
    opt = optimizers.SGD(0.1)
    m.compile(optimizer=opt, loss="mse")
    assert m.optimizer is opt
    m.train_on_batch(x, y)
    assert opt.iterations == 1
    before = [w.copy() for w in m.get_weights()]
    m.optimizer.learning_rate = 0.0
    m.train_on_batch(x, y)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert opt.iterations == 2 and opt.learning_rate == 0.0


def test_a_schedule_sets_each_steps_rate_and_is_not_settable_to_a_number():
    x, y = _data()
    sched = schedules.PiecewiseConstantDecay([1], [0.1, 0.0])  # steps 0, 1 move; then frozen
    opt = optimizers.SGD(sched)
    m = _model()
    m.compile(optimizer=opt, loss="mse")
    assert opt.learning_rate == 0.1
    m.train_on_batch(x, y)
    m.train_on_batch(x, y)
    assert opt.learning_rate == 0.0
    frozen = [w.copy() for w in m.get_weights()]
    m.train_on_batch(x, y)
    for a, b in zip(frozen, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="schedule"):
        opt.learning_rate = 0.5


# ----------------------------------------------------------------- configs and saving
@pytest.mark.parametrize("name", ALL)
def test_config_round_trip(name):
    cls = getattr(optimizers, name)
    opt = cls(learning_rate=schedules.CosineDecay(0.1, 5, warmup_target=0.2, warmup_steps=2),
              clipnorm=0.5, weight_decay=0.01)
    again = cls.from_config(opt.get_config())
    assert again.get_config() == opt.get_config()
    assert isinstance(again._schedule, schedules.CosineDecay)


@pytest.mark.parametrize("make", [
    lambda: optimizers.Nadam(0.01, global_clipnorm=0.3),
    lambda: optimizers.Adagrad(0.1, weight_decay=0.05),
    lambda: optimizers.SGD(schedules.ExponentialDecay(0.1, 2, 0.5), momentum=0.9),
])
def test_save_load_continues_as_an_uninterrupted_run(tmp_path, make):
    x, y = _data()
    nexec.clear_session()
    straight = _model()
    start = straight.get_weights()
    straight.compile(optimizer=make(), loss="mse")
    for _ in range(4):
        straight.train_on_batch(x, y)
    resumed = _model()
    resumed.set_weights(start)
    resumed.compile(optimizer=make(), loss="mse")
    resumed.train_on_batch(x, y)
    resumed.train_on_batch(x, y)
    resumed.save(str(tmp_path / "m.npz"))
    loaded = nexec.load_model(str(tmp_path / "m.npz"))
    assert type(loaded.optimizer) is type(straight.optimizer)
    assert loaded.optimizer.get_config() == straight.optimizer.get_config()
    assert loaded.optimizer.iterations == 2
    loaded.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for a, b in zip(straight.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------- schedules
def test_schedule_values_by_hand():
    e = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert e(0) == 0.1 and e(10) == 0.05 and math.isclose(e(5), 0.1 * 0.5 ** 0.5)
    es = schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True)
    assert es(9) == 0.1 and es(10) == 0.05
    p = schedules.PiecewiseConstantDecay([3, 6], [1.0, 0.5, 0.1])
    assert [p(s) for s in (0, 3, 4, 6, 7)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    i = schedules.InverseTimeDecay(0.3, decay_steps=2, decay_rate=0.5)
    assert i(4) == 0.3 / 2.0
    assert schedules.InverseTimeDecay(0.3, 2, 0.5, staircase=True)(3) == 0.3 / 1.5
    poly = schedules.PolynomialDecay(0.1, 10, end_learning_rate=0.01, power=2.0)
    assert math.isclose(poly(5), 0.09 * 0.25 + 0.01) and poly(20) == 0.01
    pc = schedules.PolynomialDecay(0.1, 10, end_learning_rate=0.0, cycle=True)
    assert math.isclose(pc(15), 0.1 * (1 - 15 / 20)) and pc(0) == 0.1
    c = schedules.CosineDecay(0.2, 10, alpha=0.1)
    assert math.isclose(c(5), 0.2 * (0.9 * 0.5 + 0.1)) and math.isclose(c(99), 0.02)
    w = schedules.CosineDecay(0.0, 10, warmup_target=0.4, warmup_steps=4)
    assert math.isclose(w(2), 0.2) and w(4) == 0.4 and math.isclose(w(9), 0.2)
    assert w(100) == 0.0 and w(14) == 0.0


def test_schedule_bad_arguments():
    with pytest.raises(ValueError, match="decay_steps.*> 0.*Received: decay_steps=0"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="one element fewer"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="increasing"):
        schedules.PiecewiseConstantDecay([2, 1], [0.1, 0.2, 0.3])


# ----------------------------------------------------------------- the same on CUDA
@pytest.mark.cudasim
@pytest.mark.skipif(not backend.is_available(), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")
@pytest.mark.parametrize("make", [
    lambda: optimizers.Nadam(schedules.InverseTimeDecay(0.05, 1, 0.5), clipnorm=0.2),
    lambda: optimizers.AdamW(0.02, global_clipnorm=0.3),
    lambda: optimizers.Adagrad(0.1, clipvalue=0.1, weight_decay=0.1),
])
def test_cuda_fit_matches_cpu(make):
    x, y = _data()
    x, y = x.astype(np.float64), y.astype(np.float64)
    runs = []
    for device in ("cpu", "cuda"):
        nexec.clear_session()
        nexec.set_random_seed(5)
        m = _model("float64")
        opt = make()
        m.compile(optimizer=opt, loss="mse", device=device)
        h = m.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        if opt._schedule is None:  # a new rate reaches the device's next step
            opt.learning_rate = 0.01
        m.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        runs.append((h.history["loss"], m.get_weights(), opt.iterations))
    (l_cpu, w_cpu, it_cpu), (l_gpu, w_gpu, it_gpu) = runs
    np.testing.assert_allclose(l_gpu, l_cpu, rtol=1e-10)
    for a, b in zip(w_cpu, w_gpu):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    assert it_cpu == it_gpu == 9
