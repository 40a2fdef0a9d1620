"""Models that share layers share their weights, as Keras models share variables.

An encoder and the autoencoder built on it, a GAN's generator, discriminator and combined
model: each model has its own flat parameter store, and whatever one model's ``fit``,
``train_on_batch`` or ``set_weights`` does to a shared layer, the others compute with at
their next call. Every prediction is checked against NumPy on the layers' own weights, and
the GAN's steps against SGD worked out in NumPy.
"""
import numpy as np
import pytest

import nexec
from nexec import Input, Model, callbacks, layers
from nexec.kernels.cuda import backend


@pytest.fixture(autouse=True)
def _fresh():
    nexec.clear_session()
    nexec.set_random_seed(5)


def _data(rows=12, cols=4, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, cols))


def _mlp_forward(model, x):
    """NumPy's forward pass of a Dense(relu) → Dense model, read off its layers."""
    (w1, b1), (w2, b2) = (layer.get_weights() for layer in model.layers[1:])
    return np.maximum(x @ w1 + b1, 0) @ w2 + b2


def _two_models_on_one_stack():
    i = Input((4,), dtype="float64")
    o = layers.Dense(2)(layers.Dense(5, activation="relu")(i))
    return Model(i, o), Model(i, o)


@pytest.mark.parametrize("jit_step", [False, True])
def test_two_models_on_the_same_layers_see_each_others_training(jit_step):
    a, b = _two_models_on_one_stack()
    x, y = _data(), _data(cols=2, seed=1)
    before = a.predict(x, verbose=0)
    np.testing.assert_allclose(b.predict(x, verbose=0), before, rtol=1e-12)
    for trained, other in ((a, b), (b, a)):
        trained.compile("sgd", "mse", jit_step=jit_step)
        trained.fit(x, y, epochs=2, batch_size=4, verbose=0)
        now = _mlp_forward(trained, x)
        assert not np.allclose(now, before)
        np.testing.assert_allclose(other.predict(x, verbose=0), now, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(trained.predict(x, verbose=0), now, rtol=1e-10, atol=1e-12)
        before = now


def test_an_encoder_follows_the_autoencoder_that_trains_it():
    enc_in = Input((4,), dtype="float64")
    encoder = Model(enc_in, layers.Dense(3)(enc_in))
    ae_in = Input((4,), dtype="float64")
    autoencoder = Model(ae_in, layers.Dense(4)(encoder(ae_in)))
    x = _data()
    codes = encoder.predict(x, verbose=0)
    autoencoder.compile("sgd", "mse")
    autoencoder.fit(x, x, epochs=2, batch_size=4, verbose=0)
    w, b = encoder.layers[1].get_weights()
    np.testing.assert_allclose(encoder.predict(x, verbose=0), x @ w + b, rtol=1e-10)
    assert not np.allclose(x @ w + b, codes)


def test_set_weights_through_one_model_reach_the_other():
    a, b = _two_models_on_one_stack()
    x = _data()
    a.predict(x, verbose=0)
    b.predict(x, verbose=0)                      # b's store holds the layers now
    new = [np.full_like(w, 0.1 * (k + 1)) for k, w in enumerate(a.get_weights())]
    a.set_weights(new)
    for model in (b, a):
        np.testing.assert_allclose(model.predict(x, verbose=0), _mlp_forward(a, x), rtol=1e-12)
    for w, expected in zip(b.get_weights(), new):
        np.testing.assert_array_equal(w, expected)


def test_a_callback_may_run_a_model_that_shares_the_layers():
    a, b = _two_models_on_one_stack()
    x, y = _data(), _data(cols=2, seed=1)
    seen = []

    def peek(epoch, logs):
        seen.append((b.predict(x, verbose=0), _mlp_forward(a, x)))

    a.compile("sgd", "mse")
    a.fit(x, y, epochs=3, batch_size=4, verbose=0,
          callbacks=[callbacks.LambdaCallback(on_epoch_end=peek)])
    assert len(seen) == 3 and not np.allclose(seen[0][0], seen[-1][0])
    for got, expected in seen:                   # b saw each epoch's weights
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.predict(x, verbose=0), _mlp_forward(a, x), rtol=1e-10)
    np.testing.assert_allclose(a.predict(x, verbose=0), seen[-1][1], rtol=1e-12)


def _sigmoid(t):
    return 1 / (1 + np.exp(-t))


def test_gan_steps_train_what_each_model_trains():
    """The Keras GAN recipe: the discriminator trains on real and generated rows; the
    combined model, compiled with the discriminator frozen, trains the generator through
    the discriminator's latest weights. Both against SGD on binary cross-entropy in NumPy."""
    lr = 0.1
    g_in = Input((3,), dtype="float64")
    gen = Model(g_in, layers.Dense(4)(g_in), name="gen")
    d_in = Input((4,), dtype="float64")
    disc = Model(d_in, layers.Dense(1, activation="sigmoid")(d_in), name="disc")
    disc.compile(nexec.optimizers.SGD(lr), "binary_crossentropy")
    disc.trainable = False
    z = Input((3,), dtype="float64")
    gan = Model(z, disc(gen(z)))
    gan.compile(nexec.optimizers.SGD(lr), "binary_crossentropy")

    wg, bg = (w.copy() for w in gen.get_weights())
    wd, bd = (w.copy() for w in disc.get_weights())
    real, noise = _data(8, 4, seed=2), _data(8, 3, seed=3)
    labels = np.r_[np.ones(8), np.zeros(8)][:, None]
    for _ in range(3):
        fake = gen.predict(noise, verbose=0)
        np.testing.assert_allclose(fake, noise @ wg + bg, rtol=1e-12)
        rows = np.concatenate([real, fake])
        disc.train_on_batch(rows, labels)
        dlogit = (_sigmoid(rows @ wd + bd) - labels) / len(rows)
        wd, bd = wd - lr * rows.T @ dlogit, bd - lr * dlogit.sum(0)
        gan.train_on_batch(noise, np.ones((8, 1)))
        fake = noise @ wg + bg
        dfake = (_sigmoid(fake @ wd + bd) - 1) / len(noise) @ wd.T
        wg, bg = wg - lr * noise.T @ dfake, bg - lr * dfake.sum(0)
        for got, expected in zip(disc.get_weights() + gen.get_weights(), (wd, bd, wg, bg)):
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.cudasim
@pytest.mark.skipif(not backend.is_available(), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")
def test_a_model_on_cuda_and_one_on_the_cpu_share_layers():
    a, b = _two_models_on_one_stack()
    x, y = _data(), _data(cols=2, seed=1)
    a.compile("sgd", "mse", device="cuda")
    b.compile("sgd", "mse")
    for trained, other in ((a, b), (b, a)):
        trained.fit(x, y, epochs=1, batch_size=6, verbose=0)
        now = _mlp_forward(trained, x)
        np.testing.assert_allclose(other.predict(x, verbose=0), now, rtol=1e-10, atol=1e-12)
