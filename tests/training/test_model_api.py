"""Model semantics as Keras 3: calling on arrays, dict outputs, deferred Sequential,
fit(steps_per_epoch=, validation_freq=), test_on_batch, clone_model, dtype, summary, names."""
import warnings

import numpy as np
import pytest

import nexec
from nexec import Input, Model, Sequential, layers
from nexec.callbacks import LambdaCallback
from nexec.models import clone_model


def data(n=12, d=3, k=2):
    rng = np.random.default_rng(0)
    return rng.random((n, d)), rng.random((n, k))


def tiny(lr=0.1):
    x = Input(shape=(3,))
    model = Model(x, layers.Dense(2)(x))
    model.compile(optimizer=nexec.optimizers.SGD(lr), loss="mse")
    return model


def test_calling_a_model_on_arrays_returns_its_outputs():
    model = tiny()
    x, _ = data()
    out = model(x)
    k, b = model.layers[1].get_weights()
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, x.astype(np.float32) @ k + b, rtol=1e-6)
    with pytest.raises(ValueError, match="training=True"):
        model(x, training=True)


def test_predict_of_dict_outputs_is_a_dict_keyed_as_given():
    i = Input(shape=(3,))
    model = Model(i, {"score": layers.Dense(1)(i),
                      "probs": layers.Dense(2, activation="softmax")(i)})
    x, _ = data()
    out = model.predict(x)
    assert list(out) == ["score", "probs"]
    assert out["score"].shape == (12, 1) and out["probs"].shape == (12, 2)
    np.testing.assert_allclose(out["probs"].sum(1), 1, rtol=1e-6)
    assert set(model(x)) == {"score", "probs"}


def test_sequential_without_input_shape_builds_at_first_fit():
    seq = Sequential([layers.Dense(8, activation="relu"), layers.Dense(2)])
    seq.compile(optimizer="adam", loss="mse")  # Keras: no error; builds at the first fit
    x, y = data()
    h = seq.fit(x, y, epochs=2, verbose=0)
    assert len(h.history["loss"]) == 2 and seq.count_params() == 3 * 8 + 8 + 8 * 2 + 2
    assert seq.predict(x).shape == (12, 2) and seq.predict(x).dtype == np.float32
    late = Sequential([layers.Dense(2)])
    late.compile(optimizer="sgd", loss="mse")
    assert late.predict(x).shape == (12, 2)  # predict builds it (and compiles) too
    assert np.isfinite(late.evaluate(x, y, verbose=0))


def test_layer_dtype_is_honoured_or_refused_clearly():
    seq = Sequential([layers.Dense(4, dtype="float64", input_shape=(3,)), layers.Dense(2)])
    seq.compile(optimizer="sgd", loss="mse")
    x, y = data()
    seq.fit(x, y, verbose=0)
    assert seq.predict(x).dtype == np.float64 and seq.layers[1].kernel.dtype == np.float64
    assert layers.Dense(2, dtype=np.float64).dtype == "float64"
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'.*float16"):
        layers.Dense(2, dtype="float16")
    i = Input(shape=(3,))
    with pytest.raises(TypeError, match=r"dtype float64 but its input is float32.*Input\(dtype"):
        layers.Dense(2, dtype="float64")(i)


def test_summary_print_fn_is_called_once_per_line():
    model = tiny()
    lines = []
    model.summary(print_fn=lines.append)
    assert len(lines) > 5 and all("\n" not in line for line in lines)
    assert lines[0] == 'Model: "functional"'


def test_default_names_are_keras_3s():
    i = Input(shape=(3,))
    names = [Model(i, layers.Dense(1)(i)).name for _ in range(2)]
    assert names == ["functional", "functional_1"]
    assert [Sequential().name for _ in range(2)] == ["sequential", "sequential_1"]


def test_validation_freq_int_and_list():
    model = tiny()
    x, y = data()
    evaluated = []
    cb = LambdaCallback(on_epoch_end=lambda e, logs: evaluated.append("val_loss" in logs))
    model.fit(x, y, epochs=4, verbose=0, validation_data=(x, y), validation_freq=2,
              callbacks=[cb])
    assert evaluated == [False, True, False, True]
    evaluated.clear()
    h = model.fit(x, y, epochs=4, verbose=0, validation_split=0.25, validation_freq=[1, 4],
                  callbacks=[cb])
    assert evaluated == [True, False, False, True] and len(h.history["val_loss"]) == 2
    with pytest.raises(ValueError, match="validation_freq"):
        model.fit(x, y, verbose=0, validation_freq=0)


def test_steps_per_epoch_continues_one_pass_as_keras_3():
    x, y = data(n=12)
    batches = []

    def record(model):
        model.fit(x, y, epochs=3, batch_size=4, steps_per_epoch=2, shuffle=False, verbose=0,
                  callbacks=[LambdaCallback(
                      on_train_batch_end=lambda b, logs: batches.append(round(logs["loss"], 9)))])

    # 3 batches per pass: epoch 1 takes batches 0-1, epoch 2 batch 2 (the pass ends: Keras
    # warns and ends the epoch early), epoch 3 batches 0-1 of a new pass.
    model = tiny(lr=0.0)  # the weights stay put, so each batch always has the same loss
    per_batch = [model.test_on_batch(x[i:i + 4], y[i:i + 4]) for i in (0, 4, 8)]
    with pytest.warns(UserWarning, match="ran out of data"):
        record(model)
    # Keras 3's batch logs are the epoch's mean so far (its loss tracker), not the batch's
    first_two = (per_batch[0] + per_batch[1]) / 2
    expected = [per_batch[0], first_two, per_batch[2], per_batch[0], first_two]
    np.testing.assert_allclose(batches, expected, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a whole number of passes: no warning
        h = tiny().fit(x, y, epochs=3, batch_size=4, steps_per_epoch=3, verbose=0)
    assert len(h.history["loss"]) == 3
    with pytest.raises(ValueError, match="steps_per_epoch"):
        tiny().fit(x, y, steps_per_epoch=0, verbose=0)


def test_test_on_batch_evaluates_without_updating():
    x_in = Input(shape=(3,))
    model = Model(x_in, layers.Dense(2, activation="softmax")(x_in))
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    x, _ = data()
    y = np.eye(2)[np.arange(12) % 2]
    before = model.get_weights()
    loss, acc = model.test_on_batch(x, y)
    p = model.predict(x).astype(np.float64)
    assert loss == pytest.approx(-np.mean(np.sum(y * np.log(p), 1)), rel=1e-5)
    assert acc == pytest.approx(np.mean(p.argmax(1) == y.argmax(1)))
    assert model.test_on_batch(x, y, return_dict=True) == {"loss": loss, "accuracy": acc}
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert set(model.train_on_batch(x, y, return_dict=True)) == {"loss", "accuracy"}


def test_clone_model_same_architecture_fresh_weights():
    i = Input(shape=(3,), name="x")
    h = layers.Dense(4, activation="relu", name="hidden")(i)
    model = Model(i, {"out": layers.Dense(2, name="out")(h)}, name="orig")
    model.compile(optimizer="sgd", loss="mse")
    clone = clone_model(model)
    assert clone is not model and clone.name == "orig"
    assert [la.name for la in clone.layers] == [la.name for la in model.layers]
    assert all(a is not b for a, b in zip(clone.layers, model.layers))
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]
    assert not np.allclose(clone.get_weights()[0], model.get_weights()[0])  # fresh kernel
    assert clone._trainer is None  # not compiled, as Keras
    x, _ = data()
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.predict(x)["out"], model.predict(x)["out"], rtol=1e-6)
    seq = clone_model(Sequential([layers.Dense(3, input_shape=(3,)), layers.Dense(1)]))
    assert isinstance(seq, Sequential) and seq.count_params() == 16
    with pytest.raises(ValueError, match="clone_function"):
        clone_model(model, clone_function=lambda layer: layer)
