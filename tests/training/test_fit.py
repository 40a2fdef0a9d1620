"""compile/fit/evaluate/predict behave as in Keras."""
import re

import numpy as np
import pytest

import nexec
from nexec import Input, Model, Sequential, layers
from nexec.errors import DataError, NotCompiledError
from nexec.callbacks import EarlyStopping


def seed_model():
    x_in = Input(shape=(64,))
    x = layers.Dense(32, activation="relu")(x_in)
    x = layers.Dense(32, activation="relu")(x)
    return Model(x_in, layers.Dense(10, activation="softmax")(x))


def test_seed_example_trains_and_reports_like_keras(capsys):
    model = seed_model()
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    history = model.fit(rng.random((1000, 64)), rng.random((1000, 10)), epochs=10,
                        batch_size=128)
    losses = history.history["loss"]
    assert len(losses) == 10 and all(isinstance(v, float) for v in losses)
    assert losses[-1] < losses[0]  # the exact softmax-crossentropy gradient: loss falls
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/10" and out[18] == "Epoch 10/10"
    line = re.compile(r"^8/8 \[={30}\] - \d+s \d+(us|ms|s)/step - loss: \d+\.\d{4}$")
    assert all(line.match(l) for l in out[1::2]), out[:4]


def test_learns_a_separable_task_to_high_accuracy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8))
    w = rng.normal(size=(8, 3))
    labels = np.argmax(x @ w, axis=1)
    x_in = Input(shape=(8,))
    out = layers.Dense(3, activation="softmax")(layers.Dense(16, activation="relu")(x_in))
    model = Model(x_in, out)
    model.compile(optimizer=nexec.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, labels, epochs=30, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.95
    loss, acc = model.evaluate(x, labels, verbose=0)
    assert acc > 0.95
    assert np.mean(np.argmax(model.predict(x), 1) == labels) == pytest.approx(acc)


def test_predict_matches_numpy_forward_and_set_weights_takes_effect():
    model = seed_model()
    x = np.random.default_rng(0).random((50, 64)).astype(np.float32)

    def reference():
        h = x
        for layer in model.layers[1:]:
            k, b = layer.get_weights()
            h = h @ k + b
            if layer.activation == "relu":
                h = np.maximum(h, 0)
        e = np.exp(h - h.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    np.testing.assert_allclose(model.predict(x, batch_size=16), reference(), rtol=1e-5, atol=1e-6)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    first = model.layers[1]
    first.set_weights([np.zeros((64, 32)), np.ones(32)])
    np.testing.assert_allclose(model.predict(x), reference(), rtol=1e-5, atol=1e-6)
    assert np.all(first.kernel == 0) and np.all(first.bias == 1)


def test_same_seed_gives_bit_identical_weights():
    def run():
        nexec.clear_session()
        nexec.set_random_seed(7)
        model = seed_model()
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        rng = np.random.default_rng(0)
        model.fit(rng.random((300, 64)), rng.random((300, 10)), epochs=2, batch_size=64,
                  verbose=0)
        return model.get_weights()

    for a, b in zip(run(), run()):
        assert np.array_equal(a, b)


def test_multi_input_multi_output_with_dicts_and_loss_weights():
    a = Input(shape=(6,), name="a")
    b = Input(shape=(3,), name="b")
    h = layers.Concatenate()([layers.Dense(8, activation="relu")(a), b])
    cls = layers.Dense(4, activation="softmax", name="cls")(h)
    reg = layers.Dense(1, name="reg")(h)
    model = Model({"a": a, "b": b}, {"cls": cls, "reg": reg})
    model.compile(optimizer="adam", loss={"cls": "categorical_crossentropy", "reg": "mse"},
                  loss_weights={"cls": 1.0, "reg": 0.25}, metrics={"cls": ["accuracy"]})
    rng = np.random.default_rng(0)
    n = 64
    x = {"a": rng.random((n, 6)), "b": rng.random((n, 3))}
    y = {"cls": np.eye(4)[rng.integers(0, 4, n)], "reg": rng.random((n, 1))}
    h = model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_split=0.25)
    logs = h.history
    assert set(logs) >= {"loss", "cls_loss", "reg_loss", "cls_accuracy", "val_loss"}
    for total, c, r in zip(logs["loss"], logs["cls_loss"], logs["reg_loss"]):
        assert total == pytest.approx(c + 0.25 * r, rel=1e-6)
    preds = model.predict(x)  # outputs given as a dict: a dict, as Keras
    assert {k: p.shape for k, p in preds.items()} == {"cls": (n, 4), "reg": (n, 1)}


def test_early_stopping_stops_and_history_is_returned():
    model = seed_model()
    model.compile(optimizer=nexec.optimizers.SGD(0.0), loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    stop = EarlyStopping(monitor="loss", patience=1)
    # Unshuffled: each epoch the same batches, so the same loss (shuffled, a row's GEMM
    # result may depend on its place in the batch by a last bit, as with OpenBLAS's AVX2
    # kernels, and a loss an ulp lower counts as an improvement, as in Keras).
    h = model.fit(rng.random((64, 64)), rng.random((64, 10)), epochs=20, verbose=0,
                  callbacks=[stop], shuffle=False)
    assert len(h.history["loss"]) == 2  # no change with lr 0: stops after patience


def test_sequential_fit_and_train_on_batch():
    seq = Sequential([layers.Dense(8, activation="relu", input_shape=(4,)),
                      layers.Dense(1, activation="sigmoid")])
    seq.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4))
    y = (x[:, :1] > 0).astype(float)
    loss, acc = seq.train_on_batch(x, y)
    assert np.isfinite(loss) and 0 <= acc <= 1


class TestErrorsBeforeAnyKernel:
    def test_fit_before_compile(self):
        with pytest.raises(NotCompiledError, match="compile"):
            seed_model().fit(np.zeros((4, 64)), np.zeros((4, 10)))

    def test_unknown_loss(self):
        with pytest.raises(ValueError, match="categorical_crossentropy"):
            seed_model().compile(optimizer="sgd", loss="categorical_crossentropi")

    def test_wrong_number_of_inputs(self):
        model = seed_model()
        model.compile(optimizer="sgd", loss="mse")
        with pytest.raises(DataError, match="1 input"):
            model.fit([np.zeros((4, 64)), np.zeros((4, 64))], np.zeros((4, 10)), verbose=0)

    def test_length_mismatch(self):
        model = seed_model()
        model.compile(optimizer="sgd", loss="mse")
        with pytest.raises(DataError, match="4 samples but y has 5"):
            model.fit(np.zeros((4, 64)), np.zeros((5, 10)), verbose=0)

    def test_wrong_feature_shape_names_the_input(self):
        model = seed_model()
        model.compile(optimizer="sgd", loss="mse")
        name = model.input_names[0]
        with pytest.raises(DataError, match=rf"{name}.*\(None, 64\).*\(4, 63\)"):
            model.fit(np.zeros((4, 63)), np.zeros((4, 10)), verbose=0)

    def test_non_finite_input(self):
        model = seed_model()
        model.compile(optimizer="sgd", loss="mse")
        x = np.zeros((4, 64))
        x[1, 2] = np.nan
        with pytest.raises(DataError, match="NaN"):
            model.fit(x, np.zeros((4, 10)), verbose=0)

    def test_integer_labels_to_categorical_crossentropy(self):
        model = seed_model()
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        with pytest.raises(DataError, match="sparse_categorical_crossentropy"):
            model.fit(np.zeros((4, 64)), np.array([1, 2, 3, 4]), verbose=0)

    def test_unknown_device(self):
        with pytest.raises(nexec.NexecError, match="cpu"):
            seed_model().compile(optimizer="sgd", loss="mse", device="tpu")


def test_one_value_per_sample_for_a_one_unit_output():
    """Keras takes y of shape (n,) for an output of shape (None, 1); so does nexec."""
    x = Input(shape=(3,))
    m = Model(x, layers.Dense(1, activation="sigmoid")(x))
    m.compile(optimizer="sgd", loss="binary_crossentropy")
    xs = np.random.default_rng(0).random((8, 3)).astype(np.float32)
    flat = (xs[:, 0] > 0.5).astype(np.float32)
    assert m.evaluate(xs, flat, verbose=0) == m.evaluate(xs, flat[:, None], verbose=0)
    with pytest.raises(DataError, match=r"expects targets of shape \(None, 1\), got \(8, 2\)"):
        m.evaluate(xs, np.zeros((8, 2)), verbose=0)
