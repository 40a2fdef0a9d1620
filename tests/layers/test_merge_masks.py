"""Masks through merges, as Keras 3: the models of tests/keras_reference/merge_mask_models.py
(masked branches joined by Add, Multiply, Concatenate, and a masked tensor concatenated with
an unmasked one), built in nexec with the weights Keras had (record_merge_masks.py), predict
and train as in Keras; merging two different masks, or masked tensors along another axis, is
refused."""
from __future__ import annotations

import os

import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers
from nexec.errors import GraphError
from nexec.optimizers import SGD
from nexec.testing import assert_close
from tests.keras_reference.merge_mask_models import CASES as BUILDERS

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "keras_reference", "merge_masks")
CASES = ["add_branches", "multiply_then_average", "concat_branches", "concat_with_unmasked"]
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
    model.compile(optimizer=SGD(0.1), loss="mse")
    hist = model.fit(feed, data["t"], batch_size=len(xs[0]), epochs=3, shuffle=False,
                     verbose=0)
    assert_close(np.array(hist.history["loss"]), data["losses"], rtol=TOL, what="losses")
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
    x = Input(shape=(4, 2))
    assert layers.Add()([e, layers.Dense(3)(x)]).mask is e.mask  # AND over the masked ones
    assert layers.Concatenate()([e, x]).mask is None  # OR with an all-valid input


def test_two_different_masks_are_refused():
    (a, ea), (b, eb) = _masked("emb_a"), _masked("emb_b")
    with pytest.raises(GraphError, match="different masks"):
        layers.Add()([ea, eb])
    with pytest.raises(GraphError, match="different masks"):
        layers.Concatenate()([ea, eb])


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
