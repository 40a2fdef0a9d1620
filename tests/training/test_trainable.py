"""``layer.trainable`` takes effect at the next ``compile``, as in Keras (its transfer
learning guide: change ``trainable``, then compile again), also for a model that was
compiled and trained before: the fine-tuning workflow. Checked against SGD in NumPy."""
import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers, optimizers

LR = 0.05


@pytest.fixture
def stack():
    nexec.clear_session()
    nexec.set_random_seed(1)
    i = Input((5,), dtype="float64")
    first, second = layers.Dense(4), layers.Dense(3)
    return Model(i, second(first(i))), first, second


def _sgd_step(first, second, x, y, train_first):
    """One full-batch SGD step of mean squared error through two linear Dense layers."""
    (w1, b1), (w2, b2) = first.get_weights(), second.get_weights()
    h = x @ w1 + b1
    dy = 2 * (h @ w2 + b2 - y) / y.size
    dh = dy @ w2.T
    new_second = [w2 - LR * h.T @ dy, b2 - LR * dy.sum(0)]
    new_first = [w1 - LR * x.T @ dh, b1 - LR * dh.sum(0)] if train_first else [w1, b1]
    return new_first, new_second


def _fit_and_check(model, first, second, x, y, train_first):
    expected = _sgd_step(first, second, x, y, train_first)
    model.compile(optimizers.SGD(LR), "mse")
    model.fit(x, y, epochs=1, batch_size=len(x), verbose=0)
    for layer, weights in zip((first, second), expected):
        for got, want in zip(layer.get_weights(), weights):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_freezing_then_compiling_again_stops_a_trained_layer_and_unfreezing_restarts_it(stack):
    model, first, second = stack
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 5)), rng.normal(size=(8, 3))
    _fit_and_check(model, first, second, x, y, train_first=True)
    first.trainable = False
    frozen = [w.copy() for w in first.get_weights()]
    _fit_and_check(model, first, second, x, y, train_first=False)
    for got, want in zip(first.get_weights(), frozen):
        np.testing.assert_array_equal(got, want)
    assert model.count_params() == 39 and len(model.trainable_weights) == 2
    first.trainable = True
    _fit_and_check(model, first, second, x, y, train_first=True)
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               (x @ first.get_weights()[0] + first.get_weights()[1])
                               @ second.get_weights()[0] + second.get_weights()[1], rtol=1e-12)
