"""The seed example of the issue: Sequential and functional forms of one MLP."""
import pytest

import nexec
from nexec import Input, Model, Sequential, layers

from tests.graph.helpers import summary_header, summary_rows, summary_text, totals

# Dense params = in * units + units, worked by hand:
#   64 -> 32: 64*32 + 32 = 2080;  32 -> 32: 32*32 + 32 = 1056;  32 -> 10: 32*10 + 10 = 330
SEED_PARAMS = [2080, 1056, 330]
SEED_TOTAL = 3466


def seed_sequential():
    model = Sequential()
    model.add(layers.Dense(32, activation="relu", input_shape=(64,)))
    model.add(layers.Dense(32, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    return model


def seed_functional():
    input_tensor = Input(shape=(64,))
    x = layers.Dense(32, activation="relu")(input_tensor)
    x = layers.Dense(32, activation="relu")(x)
    output_tensor = layers.Dense(10, activation="softmax")(x)
    return Model(input_tensor, output_tensor)


def test_seed_sequential_summary_rows_and_totals():
    text = summary_text(seed_sequential())
    assert text.splitlines()[0] == 'Model: "sequential"'
    rows = summary_rows(text)
    assert [(r["name"], r["type"], r["shape"], r["params"]) for r in rows] == [
        ("dense", "Dense", "(None, 32)", 2080),
        ("dense_1", "Dense", "(None, 32)", 1056),
        ("dense_2", "Dense", "(None, 10)", 330),
    ]
    assert sum(SEED_PARAMS) == SEED_TOTAL
    assert totals(text) == (SEED_TOTAL, SEED_TOTAL, 0)
    # Keras' thousands separators, exactly as in the issue.
    for needle in ("2,080", "1,056", "330", "Total params: 3,466", "Trainable params: 3,466",
                   "Non-trainable params: 0"):
        assert needle in text
    assert "Connected to" not in text


def test_seed_functional_summary_has_input_row_and_same_counts():
    model = seed_functional()
    text = summary_text(model)
    assert text.splitlines()[0] == 'Model: "functional"'
    rows = summary_rows(text)
    assert [(r["name"], r["type"], r["shape"], r["params"]) for r in rows] == [
        ("input_layer", "InputLayer", "(None, 64)", 0),
        ("dense", "Dense", "(None, 32)", 2080),
        ("dense_1", "Dense", "(None, 32)", 1056),
        ("dense_2", "Dense", "(None, 10)", 330),
    ]
    assert totals(text) == (SEED_TOTAL, SEED_TOTAL, 0)
    # A chain needs no 'Connected to' column, as in Keras.
    assert summary_header(text) == ["Layer (type)", "Output Shape", "Param #"]


def test_seed_counts_agree_with_count_params_and_weights():
    for model in (seed_sequential(), seed_functional()):
        assert model.count_params() == SEED_TOTAL
        assert [w.shape for w in model.weights] == [(64, 32), (32,), (32, 32), (32,), (32, 10),
                                                    (10,)]
        assert [layer.count_params() for layer in model.layers
                if not isinstance(layer, layers.InputLayer)] == SEED_PARAMS


def test_auto_names_restart_after_clear_session():
    first = [l.name for l in seed_sequential().layers]
    nexec.clear_session()
    second = [l.name for l in seed_sequential().layers]
    assert first == second == ["dense", "dense_1", "dense_2"]
    # Without clearing, names keep counting.
    assert [l.name for l in seed_sequential().layers] == ["dense_3", "dense_4", "dense_5"]


def test_summary_prints_through_print_fn_only(capsys):
    received = []
    seed_sequential().summary(print_fn=received.append)
    assert capsys.readouterr().out == ""
    assert received and "Total params: 3,466" in "\n".join(received)


def test_summary_default_prints_to_stdout(capsys):
    seed_functional().summary()
    out = capsys.readouterr().out
    assert "input_layer (InputLayer)" in out and "Total params: 3,466" in out


def test_summary_line_length_sets_rule_width():
    text = summary_text(seed_functional(), line_length=90)
    rules = [l for l in text.splitlines() if l and set(l) in ({"_"}, {"="})]
    assert rules and all(len(l) == 90 for l in rules)


def test_non_trainable_layer_is_counted_apart():
    x = Input(shape=(4,))
    frozen = layers.Dense(3, trainable=False)
    y = layers.Dense(2)(frozen(x))
    model = Model(x, y)
    # frozen: 4*3 + 3 = 15 (non-trainable); head: 3*2 + 2 = 8
    assert totals(summary_text(model)) == (23, 8, 15)
    assert [w.shape for w in model.trainable_weights] == [(3, 2), (2,)]
    assert [w.shape for w in model.non_trainable_weights] == [(4, 3), (3,)]


def test_unbuilt_sequential_summary_says_it_is_not_built():
    model = Sequential([layers.Dense(3)], name="deferred")
    with pytest.raises((ValueError, nexec.NexecError), match="deferred"):
        model.summary(print_fn=lambda _: None)
