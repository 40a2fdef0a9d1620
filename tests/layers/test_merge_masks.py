"""Masks through merges, as Keras 3: the models of tests/keras_reference/merge_mask_models.py
(masked branches joined by Add, Multiply, Concatenate, a masked tensor concatenated with an
unmasked one, and tensors masked by two or three different Embedding(mask_zero=True) joined
by Add, Concatenate and Average into an LSTM, a pooling and a masked loss and metric), built
in nexec with the weights Keras had (record_merge_masks.py), predict and train as in Keras.
Different sources are ORed by a MaskCombine op; Multiply/Maximum/Minimum of differently
masked inputs, and masked tensors joined along another axis, are refused."""
from __future__ import annotations

import os

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers
from nexec.errors import GraphError
from nexec.layers.mask_combine import MaskCombine
from nexec.optimizers import SGD
from nexec.planner.lowering import lower
from nexec.testing import assert_close
from tests.keras_reference.merge_mask_models import CASES as BUILDERS
from tests.keras_reference.merge_mask_models import METRICS

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "keras_reference", "merge_masks")
CASES = ["add_branches", "multiply_then_average", "concat_branches", "concat_with_unmasked",
         "add_two_sources", "concat_two_sources", "add_two_sources_masked_loss",
         "average_three_sources"]
TOL = 1e-6  # JAX's float64 recurrences differ by ~1e-7 (as in test_masking_keras.py)


@pytest.mark.parametrize("name", CASES)
def test_merged_masks_predict_and_train_as_keras(name):
    nexec.clear_session()
    data = np.load(os.path.join(HERE, f"{name}.npz"))
    xs = [data[f"x{j}"] for j in range(sum(k.startswith("x") for k in data.files))]
    feed = xs if len(xs) > 1 else xs[0]
    model = BUILDERS[name](nexec)
    for layer in model.layers:
        weights = [data[f"w:{layer.name}:{i}"] for i in range(len(layer.get_weights()))]
        if weights:
            layer.set_weights(weights)
    assert_close(model.predict(feed, verbose=0), data["y"], rtol=TOL, atol=1e-12,
                 what="prediction")
    metrics = METRICS.get(name, [])
    model.compile(optimizer=SGD(0.1), loss="mse", metrics=metrics)
    if metrics:  # Keras' evaluate: the loss and metrics weighted by the (ORed) mask
        ev = model.evaluate(feed, data["t"], batch_size=len(xs[0]), verbose=0,
                            return_dict=True)
        for key in ["loss", *metrics]:
            assert_close(np.float64(ev[key]), data[f"eval:{key}"], rtol=TOL, what=key)
    hist = model.fit(feed, data["t"], batch_size=len(xs[0]), epochs=3, shuffle=False,
                     verbose=0)
    assert_close(np.array(hist.history["loss"]), data["losses"], rtol=TOL, what="losses")
    for m in metrics:  # the first epoch's metrics: those of the weights evaluated above
        assert_close(np.float64(hist.history[m][0]), data[f"eval:{m}"], rtol=TOL, what=m)
    assert_close(model.predict(feed, verbose=0), data["trained"], rtol=TOL, atol=1e-12,
                 what="after training")


def _masked(name: str):
    ids = Input(shape=(4,), dtype="int32")
    return ids, layers.Embedding(5, 3, mask_zero=True, name=name)(ids)


def test_the_mask_goes_on_through_merges():
    ids, e = _masked("emb")
    d = layers.Dense(3)(e)
    assert layers.Add()([e, d]).mask is e.mask
    assert layers.Maximum()([e, layers.Dense(3)(d)]).mask is e.mask
    assert layers.Concatenate()([e, d]).mask is e.mask
    x = Input(shape=(4, 3))
    assert layers.Add()([e, x]).mask is None  # Keras: an unmasked input, no mask
    assert layers.Average()([e, d, x]).mask is None
    assert layers.Concatenate()([e, x]).mask is None  # OR with an all-valid input


def test_different_masks_are_ored_by_one_op():
    (a, ea), (b, eb) = _masked("emb_a"), _masked("emb_b")
    s = layers.Add(name="add")([ea, eb])
    assert isinstance(s.mask.node.layer, MaskCombine) and s.mask.dtype == "int32"
    assert s.mask.node.inputs == [a, b] and s.mask.shape == (None, 4)
    assert layers.Subtract()([ea, eb]).mask.node.inputs == [a, b]
    c = layers.Concatenate()([ea, eb, layers.Dense(2)(ea)])
    assert c.mask.node.inputs == [a, b]  # each source once
    model = Model([a, b], layers.LSTM(2)(s))
    assert [layer.name for layer in model.layers if isinstance(layer, MaskCombine)] == []
    kinds = [op.kind for op in lower(model).ops]
    assert kinds.count("MaskCombine") == 1
    assert kinds.index("MaskCombine") < kinds.index("LSTM")


def test_an_ored_mask_is_read_as_keras_reads_it():
    """Pooling over the steps valid in either source, and an LSTM that carries its state
    over the steps valid in neither, against the same models fed the OR as one mask."""
    (a, ea), (b, eb) = _masked("emb_a"), _masked("emb_b")
    s = layers.Add()([ea, eb])
    model = Model([a, b], [layers.GlobalAveragePooling1D()(s), layers.LSTM(2, name="l")(s)])
    ia = np.array([[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 0, 1]], np.int32)
    ib = np.array([[2, 2, 0, 0], [0, 0, 3, 0], [0, 4, 0, 0]], np.int32)
    pooled, last = model.predict([ia, ib], verbose=0)
    keep = (ia != 0) | (ib != 0)
    ta, tb = (model.get_layer(n).get_weights()[0] for n in ("emb_a", "emb_b"))
    summed = ta[ia] + tb[ib]
    want = (summed * keep[..., None]).sum(1) / keep.sum(1)[:, None]
    np.testing.assert_allclose(pooled, want, rtol=1e-6)
    # The reference: one Embedding(mask_zero=True) whose ids are 0 where the OR is False and
    # index a table holding the summed vectors elsewhere: one source, the same mask.
    n, t = ia.shape
    ids = np.where(keep, 1 + np.arange(n * t).reshape(n, t), 0).astype(np.int32)
    table = np.concatenate([np.zeros((1, 3)), summed.reshape(n * t, 3)]).astype(np.float32)
    one = Input(shape=(t,), dtype="int32")
    ref = Model(one, layers.LSTM(2, name="r")(
        layers.Embedding(len(table), 3, mask_zero=True, name="table")(one)))
    ref.get_layer("r").set_weights(model.get_layer("l").get_weights())
    ref.get_layer("table").set_weights([table])
    np.testing.assert_allclose(last, ref.predict(ids, verbose=0), rtol=1e-6)


def test_value_substituting_merges_of_different_masks_are_refused():
    (_, ea), (_, eb) = _masked("emb_a"), _masked("emb_b")
    for kind in (layers.Multiply, layers.Maximum, layers.Minimum):
        with pytest.raises(GraphError, match="masked by different sources"):
            kind()([ea, eb])
        with pytest.raises(GraphError, match="masked and unmasked inputs"):
            kind()([ea, Input(shape=(4, 3))])


def test_masked_concatenation_along_time_is_refused():
    _, e = _masked("emb")
    with pytest.raises(GraphError, match="along axis 1"):
        layers.Concatenate(axis=1)([e, layers.Dense(3)(e)])
    model = Model(*_model_with_dot())
    assert model.outputs[0].mask is None


def _model_with_dot():
    ids, e = _masked("emb")
    pooled = layers.GlobalAveragePooling1D()(e)
    return ids, layers.Dot(axes=1)([pooled, pooled])


def _pooled_two_sources(device: str):
    """Two sources added; a per-step Dense output (masked loss and metric) and a pooled one."""
    nexec.clear_session()
    a, b = (Input(shape=(5,), dtype="int32", name=n) for n in ("a", "b"))
    ea = layers.Embedding(7, 3, mask_zero=True, dtype="float64", name="emb_a")(a)
    eb = layers.Embedding(7, 3, mask_zero=True, dtype="float64", name="emb_b")(b)
    s = layers.Add()([ea, eb])
    model = Model([a, b], [layers.Dense(2, name="seq")(s),
                           layers.Dense(2, name="pool")(layers.GlobalAveragePooling1D()(s))])
    rng = np.random.default_rng(5)
    for layer in model.layers:
        layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    model.compile(optimizer=SGD(0.1), loss="mse", metrics=[["mae"], []], device=device)
    return model


@pytest.mark.cudasim
def test_ored_masks_on_cuda_match_the_cpu():
    from nexec.kernels.cuda import backend

    if not backend.is_available():
        pytest.fail("needs a GPU or NUMBA_ENABLE_CUDASIM=1 (tests/conftest.py sets it)")
    rng = np.random.default_rng(6)
    ids = [np.array([[1, 0, 2, 0, 0], [0, 0, 0, 3, 0], [4, 4, 0, 0, 1]], np.int32),
           np.array([[0, 2, 0, 0, 0], [0, 5, 0, 0, 0], [0, 0, 0, 0, 6]], np.int32)]
    ys = [rng.normal(size=(3, 5, 2)), rng.normal(size=(3, 2))]
    results = []
    for device in ("cpu", "cuda"):
        model = _pooled_two_sources(device)
        ev = model.evaluate(ids, ys, batch_size=3, verbose=0, return_dict=True)
        hist = model.fit(ids, ys, epochs=2, batch_size=3, shuffle=False, verbose=0)
        results.append((ev, hist.history, model.get_weights()))
    (ev_c, h_c, w_c), (ev_g, h_g, w_g) = results
    assert "seq_mae" in ev_c
    for key in ev_c:
        assert_close(ev_g[key], ev_c[key], rtol=1e-10, atol=1e-12, what=key)
        assert_close(np.array(h_g[key]), np.array(h_c[key]), rtol=1e-10, atol=1e-12,
                     what=f"fit {key}")
    for x, y in zip(w_c, w_g):
        assert_close(y, x, rtol=1e-10, atol=1e-12, what="weights")


def test_a_model_with_ored_masks_saves_loads_and_plans(tmp_path):
    """Saving writes the user's layers only; loading makes the OR again; the plan lists
    the MaskCombine op."""
    data = np.load(os.path.join(HERE, "add_two_sources.npz"))
    xs = [data["x0"], data["x1"]]
    nexec.clear_session()
    model = BUILDERS["add_two_sources"](nexec)
    for layer in model.layers:
        weights = [data[f"w:{layer.name}:{i}"] for i in range(len(layer.get_weights()))]
        if weights:
            layer.set_weights(weights)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = nexec.models.load_model(path)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert_close(loaded.predict(xs, verbose=0), data["y"], rtol=TOL, atol=1e-12,
                 what="loaded")
    assert "MaskCombine" in [op.kind for op in lower(loaded).ops]
