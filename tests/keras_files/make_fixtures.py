"""Makes the Keras model files that tests/keras_files read (not run by CI).

Run with a Keras 3 environment: ``KERAS_BACKEND=jax python make_fixtures.py``. It builds a few
tiny models with real Keras, gives every weight a fixed random value, saves each as a Keras 3
archive (``NAME.keras``) and a legacy HDF5 file (``NAME.h5``), and records Keras' predictions
on fixed inputs in ``NAME.npz`` (``x0``, ``x1``... and ``y0``, ``y1``...).

It then checks the other direction: every ``nexec_written/NAME.keras``, ``NAME.h5`` and
``NAME.json`` (written by nexec, see ``write_nexec_files.py``) is loaded with Keras, which
must predict the same from all three; Keras' predictions go to
``nexec_written/NAME.keras_pred.npz`` and what Keras restored to ``NAME.keras_info.json``,
and the tests compare them with nexec's. ``--check-only`` runs only this second part.
"""
from __future__ import annotations

import glob
import json
import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # noqa: E402
from keras import layers  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
WRITTEN = os.path.join(HERE, "nexec_written")


def randomise(model: keras.Model, seed: int) -> None:
    """Fixed, non-trivial weights (variances kept positive)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.normal(0.0, 0.4, w.shape)
        if "variance" in w.path:
            value = np.abs(value) + 0.5
        w.assign(value.astype(w.dtype))


def sequential_mlp() -> keras.Model:
    model = keras.Sequential([
        keras.Input((6,)),
        layers.Dense(8, activation="relu"),
        layers.Dropout(0.3),
        layers.Dense(3, activation="softmax"),
    ], name="mlp")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def inception_residual() -> keras.Model:
    x = keras.Input((8, 8, 3), name="image")
    a = layers.Conv2D(4, 1, activation="relu", name="branch_1x1")(x)
    b = layers.Conv2D(4, 3, padding="same", activation="relu", name="branch_3x3")(x)
    c = layers.MaxPooling2D(3, strides=1, padding="same", name="branch_pool")(x)
    c = layers.Conv2D(4, 1, name="branch_pool_proj")(c)
    m = layers.Concatenate(name="mixed")([a, b, c])
    m = layers.BatchNormalization(name="bn")(m)
    shortcut = layers.Conv2D(12, 1, use_bias=False, name="shortcut")(x)
    r = layers.Add(name="residual")([m, shortcut])
    r = layers.Activation("relu")(r)
    r = layers.AveragePooling2D(2)(r)
    r = layers.Dropout(0.2)(r)
    r = layers.GlobalAveragePooling2D()(r)
    out = layers.Dense(5, activation="softmax", name="probs")(r)
    model = keras.Model(x, out, name="inception_residual")
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def embedding_lstm() -> keras.Model:
    ids = keras.Input((7,), dtype="int32", name="tokens")
    h = layers.Embedding(20, 4, name="embed")(ids)
    h = layers.LSTM(5, return_sequences=True, name="lstm_seq")(h)
    h = layers.LSTM(3, name="lstm_last")(h)
    out = layers.Dense(1, activation="sigmoid", name="score")(h)
    model = keras.Model(ids, out, name="embedding_lstm")
    model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    return model


def multi_io() -> keras.Model:
    """Two inputs, a shared layer, a nested Sequential, a Conv1D head and two outputs."""
    left = keras.Input((5,), name="left")
    right = keras.Input((5,), name="right")
    seq_in = keras.Input((10, 2), name="sequence")
    shared = layers.Dense(4, activation="tanh", name="shared")
    tower = keras.Sequential([keras.Input((8,)), layers.Dense(6, activation="relu"),
                              layers.Dense(3)], name="tower")
    both = layers.Concatenate(name="join")([shared(left), shared(right)])
    t = tower(both)
    s = layers.Conv1D(3, 3, activation="relu", name="conv1d")(seq_in)
    s = layers.GlobalMaxPooling1D(name="gmp")(s)
    head = layers.Add(name="fuse")([t, s])
    out_a = layers.Dense(2, activation="softmax", name="out_a")(head)
    out_b = layers.Dense(1, name="out_b")(t)
    model = keras.Model([left, right, seq_in], [out_a, out_b], name="multi_io")
    model.compile(optimizer="adam", loss=["categorical_crossentropy", "mse"],
                  metrics=[["accuracy"], ["mae"]])
    return model


def unsupported() -> keras.Model:
    """Layers and options nexec refuses; the error must name every one of them."""
    x = keras.Input((6, 4), name="x")
    h = layers.LSTM(4, dropout=0.25, return_sequences=True, name="dropout_lstm")(x)
    h = layers.UnitNormalization(name="unit_norm")(h)
    h = layers.Flatten()(h)
    out = layers.Dense(2, kernel_regularizer="l2", name="regularised")(h)
    return keras.Model(x, out, name="unsupported")


MODELS = {"sequential_mlp": sequential_mlp, "inception_residual": inception_residual,
          "embedding_lstm": embedding_lstm, "multi_io": multi_io, "unsupported": unsupported}


def inputs_for(model: keras.Model, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        shape = (3, *t.shape[1:])
        if "int" in str(t.dtype):
            out.append(rng.integers(0, 20, shape).astype("int32"))
        else:
            out.append(rng.normal(0.0, 1.0, shape).astype("float32"))
    return out


def as_list(y: object) -> list[np.ndarray]:
    return [np.asarray(v) for v in (y if isinstance(y, (list, tuple)) else [y])]


def write_fixtures() -> None:
    for i, (name, make) in enumerate(MODELS.items()):
        keras.utils.clear_session()
        model = make()
        randomise(model, seed=i)
        xs = inputs_for(model, seed=100 + i)
        ys = as_list(model.predict(xs if len(xs) > 1 else xs[0], verbose=0))
        model.save(os.path.join(HERE, f"{name}.keras"))
        model.save(os.path.join(HERE, f"{name}.h5"))
        np.savez(os.path.join(HERE, f"{name}.npz"),
                 **{f"x{j}": x for j, x in enumerate(xs)},
                 **{f"y{j}": y for j, y in enumerate(ys)})
        print("wrote", name)


def check_nexec_files() -> None:
    """Keras loads what nexec wrote; its predictions are recorded for the tests."""
    for path in sorted(glob.glob(os.path.join(WRITTEN, "*.keras"))):
        name = os.path.basename(path)[:-len(".keras")]
        data = np.load(os.path.join(WRITTEN, f"{name}.inputs.npz"))
        xs = [data[f"x{j}"] for j in range(len(data.files))]
        model = keras.models.load_model(path)
        ys = as_list(model.predict(xs if len(xs) > 1 else xs[0], verbose=0))
        with open(os.path.join(WRITTEN, f"{name}.json")) as f:
            from_json = keras.models.model_from_json(f.read())
        from_json.set_weights(model.get_weights())
        ys_json = as_list(from_json.predict(xs if len(xs) > 1 else xs[0], verbose=0))
        for a, b in zip(ys, ys_json):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
        np.savez(os.path.join(WRITTEN, f"{name}.keras_pred.npz"),
                 **{f"y{j}": y for j, y in enumerate(ys)})
        legacy = keras.models.load_model(os.path.join(WRITTEN, f"{name}.h5"))
        ys_h5 = as_list(legacy.predict(xs if len(xs) > 1 else xs[0], verbose=0))
        for a, b in zip(ys, ys_h5):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
        info = {"keras_version": keras.__version__, "compiled": bool(model.compiled),
                "optimizer": type(model.optimizer).__name__ if model.compiled else None,
                "h5_compiled": bool(legacy.compiled),
                "json_and_h5_predict_as_the_archive": True}
        with open(os.path.join(WRITTEN, f"{name}.keras_info.json"), "w") as f:
            json.dump(info, f, indent=1, sort_keys=True)
        print("Keras loaded nexec's", name)


if __name__ == "__main__":
    import sys

    if "--check-only" not in sys.argv:
        write_fixtures()
    check_nexec_files()
