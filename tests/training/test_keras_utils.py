"""``nexec.utils`` helpers, ``Model.input_shape``/``output_shape`` and
``optimizer.learning_rate.assign`` against Keras 3's recorded results
(tests/keras_reference/record_utils.py wrote ``utils.json``)."""
import json
import pathlib

import numpy as np
import pytest

import nexec
from nexec import Input, Model, Sequential, layers, optimizers, utils

RECORDED = json.loads((pathlib.Path(__file__).parents[1] / "keras_reference" / "utils.json")
                      .read_text())


@pytest.mark.parametrize("case", RECORDED["pad_sequences"], ids=lambda c: str(c["kwargs"]))
def test_pad_sequences_matches_keras(case):
    got = utils.pad_sequences(RECORDED["sequences"], **case["kwargs"])
    assert str(got.dtype) == case["dtype"]
    np.testing.assert_array_equal(got, np.array(case["result"], dtype=case["dtype"]))


def test_pad_sequences_takes_a_numpy_maxlen():
    np.testing.assert_array_equal(utils.pad_sequences([[1, 2, 3]], maxlen=np.int64(2)), [[2, 3]])


def test_pad_sequences_keeps_each_elements_shape():
    got = utils.pad_sequences([np.ones((2, 3)), np.full((4, 3), 2.0)], maxlen=3, dtype="float64")
    expected = np.zeros((2, 3, 3))
    expected[0, 1:] = 1
    expected[1] = 2
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("kwargs, match", [
    ({"padding": "middle"}, 'padding must be "pre" or "post", got \'middle\''),
    ({"truncating": None}, 'truncating must be "pre" or "post", got None'),
    ({"maxlen": 0}, "maxlen must be a positive int or None, got 0"),
    ({"maxlen": 2.5}, "maxlen must be a positive int or None, got 2.5"),
])
def test_pad_sequences_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        utils.pad_sequences([[1, 2], [3]], **kwargs)


def test_pad_sequences_refuses_what_is_not_a_list_of_sequences():
    with pytest.raises(ValueError, match=r"sequences\[1\] is int 3, not a sequence"):
        utils.pad_sequences([[1, 2], 3])
    with pytest.raises(ValueError, match=r"sequences\[1\]'s elements have shape \(2,\), the "
                                         r"others \(3,\)"):
        utils.pad_sequences([np.ones((1, 3)), np.ones((1, 2))])


@pytest.mark.parametrize("case", RECORDED["normalize"], ids=lambda c: str(c["kwargs"]))
def test_normalize_matches_keras(case):
    kwargs = dict(case["kwargs"])
    x = np.array(kwargs.pop("x"))
    got = utils.normalize(x, **kwargs)
    expected = np.array(case["result"])
    if x.ndim == 1:  # Keras' NumPy path returns one row; nexec keeps the shape (keras.md)
        expected = expected[0]
    np.testing.assert_allclose(got, expected, rtol=1e-15)


def test_normalize_along_the_first_axis():
    x = np.array([[3.0, 0.0], [4.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(utils.normalize(x, axis=0), [[0.6, 0], [0.8, 0], [0, 0]])
    with pytest.raises(ValueError, match="axis must be an int in \\[-2, 2\\) for an array of "
                                         "2 dimensions, got 2"):
        utils.normalize(x, axis=2)


def test_utils_set_random_seed_seeds_nexec():
    def weights():
        utils.set_random_seed(7)
        return layers.Dense(3)(Input((4,))).node.layer.get_weights()[0]

    first = weights()
    nexec.set_random_seed(8)
    np.testing.assert_array_equal(weights(), first)


def _models():
    i = Input((8,), name="a")
    j = Input((2, 5), name="b")
    d = layers.Dense(3)
    return {
        "one": Model(i, d(i)),
        "list": Model([i, j], [d(i), layers.Flatten()(j)]),
        "dict": Model({"a": i, "b": j}, {"y": d(i), "z": layers.Flatten()(j)}),
        "sequential": Sequential([Input((4, 4, 3)), layers.Conv2D(2, 3)]),
    }


def _as_json(shapes):
    return [_as_json(s) for s in shapes] if isinstance(shapes, list) else list(shapes)


def test_model_input_and_output_shapes_match_keras():
    for name, model in _models().items():
        assert _as_json(model.input_shape) == RECORDED["models"][name]["input_shape"], name
        assert _as_json(model.output_shape) == RECORDED["models"][name]["output_shape"], name


def test_learning_rate_assign_sets_the_rate_of_the_next_steps():
    opt = optimizers.Adam(0.01)
    opt.learning_rate.assign(0.25)
    assert float(opt.learning_rate) == RECORDED["learning_rate_after_assign"]
    assert opt.learning_rate.numpy() == 0.25

    nexec.set_random_seed(0)
    i = Input((3,), dtype="float64")
    model = Model(i, layers.Dense(2)(i))
    model.compile(optimizers.SGD(0.01), "mse")
    model.optimizer.learning_rate.assign(0.5)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    w, b = model.get_weights()
    dy = 2 * (x @ w + b - y) / y.size
    model.fit(x, y, epochs=1, batch_size=6, verbose=0)
    np.testing.assert_allclose(model.get_weights()[0], w - 0.5 * x.T @ dy, rtol=1e-12)
    np.testing.assert_allclose(model.get_weights()[1], b - 0.5 * dy.sum(0), rtol=1e-12)


def test_a_scheduled_learning_rate_cannot_be_assigned_a_number():
    opt = optimizers.SGD(optimizers.schedules.ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match="created with a learning-rate schedule"):
        opt.learning_rate.assign(0.2)


@pytest.mark.parametrize("attribute", ["input", "output", "input_shape", "output_shape"])
def test_an_unbuilt_sequential_says_it_has_no_shapes_yet(attribute):
    seq = Sequential([layers.Dense(4)], name="stack")
    which = "inputs" if attribute.startswith("input") else "outputs"
    with pytest.raises(ValueError, match=f"Sequential model 'stack' has no defined {which} yet: "
                                         "give its first layer an input shape"):
        getattr(seq, attribute)
    seq.predict(np.ones((2, 3), "float32"), verbose=0)  # built from the data
    assert (seq.input_shape, seq.output_shape) == ((None, 3), (None, 4))
