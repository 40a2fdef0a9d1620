"""model.save / nexec.load_model: one file with architecture, weights, compile settings and
optimizer state; bitwise round trips, training that continues, and bad files rejected."""
import os
import zipfile

import numpy as np
import pytest

import nexec
from nexec import Input, Model, SavedModelError, layers, optimizers
from nexec.saving import MODEL_FILE_VERSION


def cnn():
    x = Input(shape=(6, 6, 2), name="img")
    a = layers.Conv2D(4, 1, activation="relu")(x)
    b = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    m = layers.Concatenate()([a, b])
    r = layers.Activation("relu")(layers.Add()([layers.Conv2D(8, 3, padding="same")(m), m]))
    return Model(x, layers.Dense(3, activation="softmax")(layers.Flatten()(r)), name="cnn")


def two_headed():
    a = Input(shape=(5,), name="a")
    b = Input(shape=(3,), name="b")
    h = layers.Concatenate()([layers.Dense(6, activation="tanh")(a), b])
    return Model([a, b], [layers.Dense(3, activation="softmax", name="cls")(h),
                          layers.Dense(1, name="reg")(h)], name="two_headed")


def data(model, n=24, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.random((n, *t.feature_shape)).astype(np.float32) for t in model.inputs]
    ys = []
    for t in model.outputs:
        if t.feature_shape[-1] == 1:
            ys.append(rng.random((n, 1)).astype(np.float32))
        else:
            ys.append(np.eye(t.feature_shape[-1], dtype=np.float32)[rng.integers(0, 3, n)])
    return xs, ys


COMPILES = {  # compile arguments made fresh per test: optimizers carry state
    "cnn": (cnn, lambda: dict(optimizer=optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                      loss="categorical_crossentropy", metrics=["accuracy"])),
    "two_headed": (two_headed, lambda: dict(optimizer=optimizers.Adam(3e-3),
                                    loss={"cls": "categorical_crossentropy",
                                          "reg": "mean_squared_error"},
                                    loss_weights={"cls": 1.0, "reg": 0.25},
                                    metrics={"cls": ["accuracy"]})),
    "rmsprop": (cnn, lambda: dict(optimizer="rmsprop", loss="categorical_crossentropy")),
}


@pytest.fixture(params=sorted(COMPILES))
def trained(request, tmp_path):
    build, compile_args = COMPILES[request.param]
    model = build()
    model.compile(**compile_args())
    xs, ys = data(model)
    model.fit(xs, ys, batch_size=8, epochs=1, shuffle=False, verbose=0)
    path = tmp_path / "model.nexec"
    model.save(str(path))
    return model, path, xs, ys


def predictions(model, xs):
    out = model.predict(xs)
    return out if isinstance(out, list) else [out]


def test_round_trip_predicts_bitwise_the_same(trained):
    model, path, xs, _ = trained
    loaded = nexec.load_model(str(path))
    for a, b in zip(predictions(model, xs), predictions(loaded, xs), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_training_continues_from_the_saved_optimizer_state(trained):
    """Loaded and original take identical steps: weights, slots and step count all came back."""
    model, path, xs, ys = trained
    loaded = nexec.load_model(str(path))
    assert loaded._trainer.optimizer.iterations == model._trainer.optimizer.iterations == 3
    assert type(loaded._trainer.optimizer) is type(model._trainer.optimizer)
    assert loaded._trainer.optimizer.get_config() == model._trainer.optimizer.get_config()
    h1 = model.fit(xs, ys, batch_size=8, epochs=2, shuffle=False, verbose=0)
    h2 = loaded.fit(xs, ys, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert h1.history == h2.history  # same losses and metrics, same names
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_fresh_optimizer_would_not_match(tmp_path):
    """The test above can fail: without the saved slots the next steps differ."""
    build, compile_args = COMPILES["cnn"]
    model = build()
    model.compile(**compile_args())
    xs, ys = data(model)
    model.fit(xs, ys, batch_size=8, epochs=1, shuffle=False, verbose=0)
    model.save(str(tmp_path / "m.nexec"))
    loaded = nexec.load_model(str(tmp_path / "m.nexec"), compile=False)
    assert loaded._trainer is None
    loaded.compile(optimizer=optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                   loss="categorical_crossentropy")
    model.fit(xs, ys, batch_size=8, epochs=1, shuffle=False, verbose=0)
    loaded.fit(xs, ys, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(model.get_weights(),
                                                        loaded.get_weights()))


def test_uncompiled_model_round_trips_without_compile_settings(tmp_path):
    model = two_headed()
    model.save(str(tmp_path / "m.nexec"))
    with zipfile.ZipFile(tmp_path / "m.nexec") as z:
        names = set(z.namelist())
    assert "__format__.npy" in names and "__config__.npy" in names
    assert not any(n.startswith(("__compile__", "__optimizer__")) for n in names)
    loaded = nexec.load_model(str(tmp_path / "m.nexec"))
    assert loaded._trainer is None
    xs, _ = data(model)
    for a, b in zip(predictions(model, xs), predictions(loaded, xs), strict=True):
        np.testing.assert_array_equal(a, b)


# ----- files that are not good model files ---------------------------------------------------
def saved(tmp_path):
    model = cnn()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    path = tmp_path / "good.nexec"
    model.save(str(path))
    return path


def test_truncated_file_is_rejected(tmp_path):
    raw = saved(tmp_path).read_bytes()
    for cut in (10, len(raw) // 2, len(raw) - 10):
        bad = tmp_path / f"cut{cut}.nexec"
        bad.write_bytes(raw[:cut])
        with pytest.raises(SavedModelError, match="truncated, corrupted"):
            nexec.load_model(str(bad))


def test_corrupted_bytes_are_rejected(tmp_path):
    path = saved(tmp_path)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("conv2d/kernel.npy")
    # flip a byte inside the stored array data: the zip's CRC check catches it
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + 140
    raw[at] ^= 0xFF
    bad = tmp_path / "flipped.nexec"
    bad.write_bytes(bytes(raw))
    with pytest.raises(SavedModelError, match="flipped.nexec"):
        nexec.load_model(str(bad))


@pytest.mark.parametrize("content", [b"hello, not a model\n", b"", b"\x93NUMPY\x01\x00"])
def test_foreign_file_is_rejected(tmp_path, content):
    path = tmp_path / "foreign.nexec"
    path.write_bytes(content)
    with pytest.raises(SavedModelError, match="not a nexec model file"):
        nexec.load_model(str(path))


def test_a_plain_npz_is_not_a_model_file(tmp_path):
    path = tmp_path / "arrays.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(SavedModelError, match="no format marker"):
        nexec.load_model(str(path))


def test_newer_format_version_is_refused(tmp_path):
    path = saved(tmp_path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["__format__"] = np.array([MODEL_FILE_VERSION + 1])
    np.savez(tmp_path / "newer.nexec", **arrays)
    os.replace(tmp_path / "newer.nexec.npz", tmp_path / "newer.nexec")
    with pytest.raises(SavedModelError, match=f"format {MODEL_FILE_VERSION + 1}.*Upgrade"):
        nexec.load_model(str(tmp_path / "newer.nexec"))


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        nexec.load_model(str(tmp_path / "nothing-here.nexec"))


def test_interrupted_save_leaves_the_original_untouched(tmp_path, monkeypatch):
    path = saved(tmp_path)
    before = path.read_bytes()
    mode = os.stat(path).st_mode

    def half_then_fail(f, **arrays):
        f.write(before[: len(before) // 2])  # half a file is on disk when the "disk fills"
        raise OSError("No space left on device")

    model = two_headed()
    monkeypatch.setattr("nexec.saving.np.savez", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        model.save(str(path))
    assert path.read_bytes() == before
    assert os.stat(path).st_mode == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.nexec"]  # no temporary left
    monkeypatch.undo()
    assert nexec.load_model(str(path)).name == "cnn"


def test_saved_files_get_ordinary_permissions(tmp_path):
    path = saved(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
