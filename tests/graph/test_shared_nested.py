"""Shared layers (one layer, several calls) and models used as layers."""
import numpy as np
import pytest

from nexec import GraphError, Input, Model, ShapeError, layers

from tests.graph.helpers import summary_rows, summary_text, totals


def siamese():
    a = Input(shape=(8,), name="left")
    b = Input(shape=(8,), name="right")
    shared = layers.Dense(4, activation="relu", name="shared")
    ea, eb = shared(a), shared(b)
    out = layers.Concatenate(name="cat")([ea, eb])
    return Model([a, b], out, name="siamese"), shared, (ea, eb)


def test_shared_layer_params_counted_once():
    model, shared, (ea, eb) = siamese()
    assert ea is not eb
    # one kernel (8, 4) + bias (4,), not two: 8*4 + 4 = 36
    assert shared.count_params() == 36
    assert model.count_params() == 36
    assert [w.shape for w in model.weights] == [(8, 4), (4,)]
    assert [l.name for l in model.layers].count("shared") == 1
    assert totals(summary_text(model)) == (36, 36, 0)


def test_shared_layer_summary_row_lists_both_calls():
    model, _, _ = siamese()
    rows = {r["name"]: r for r in summary_rows(summary_text(model))}
    assert rows["shared"]["params"] == 36
    assert rows["shared"]["connected"] == ["left[0][0]", "right[0][0]"]
    assert rows["cat"]["connected"] == ["shared[0][0]", "shared[1][0]"]
    assert rows["cat"]["shape"] == "(None, 8)"


def test_shared_layer_output_and_input_are_ambiguous():
    _, shared, _ = siamese()
    with pytest.raises(GraphError, match="shared.*2 times"):
        shared.output
    with pytest.raises(GraphError, match="shared"):
        shared.input


def test_shared_layer_plan_has_two_steps_with_one_weight():
    model, shared, _ = siamese()
    plan = model.plan()
    steps = [op for op in plan.ops if op.layer is shared]
    assert len(steps) == 2
    assert steps[0].inputs != steps[1].inputs
    assert steps[0].output != steps[1].output


def test_shared_layer_needs_same_input_shape():
    shared = layers.Dense(3, name="tied")
    shared(Input(shape=(4,)))
    with pytest.raises(ShapeError) as e:
        shared(Input(shape=(5,)))
    assert "tied" in str(e.value) and "(None, 4)" in str(e.value) and "(None, 5)" in str(e.value)


def test_shared_conv_on_two_sizes_reports_multiple_shapes():
    small = Input(shape=(8, 8, 3), name="small")
    big = Input(shape=(12, 12, 3), name="big")
    conv = layers.Conv2D(2, 3, name="conv")
    ys, yb = conv(small), conv(big)
    assert ys.shape == (None, 6, 6, 2) and yb.shape == (None, 10, 10, 2)
    model = Model([small, big], [ys, yb])
    rows = {r["name"]: r for r in summary_rows(summary_text(model))}
    assert rows["conv"]["shape"] == "multiple"
    assert rows["conv"]["params"] == 3 * 3 * 3 * 2 + 2 == 56
    assert model.count_params() == 56


def encoder(name="encoder"):
    x = Input(shape=(8,), name=name + "_in")
    h = layers.Dense(6, activation="relu", name=name + "_hidden")(x)   # 8*6+6 = 54
    z = layers.Dense(3, name=name + "_code")(h)                       # 6*3+3 = 21
    return Model(x, z, name=name)


def test_nested_model_is_one_summary_row():
    enc = encoder()
    p = Input(shape=(8,), name="p")
    out = layers.Dense(2, name="head")(enc(p))                          # 3*2+2 = 8
    model = Model(p, out, name="outer")
    assert out.shape == (None, 2)
    text = summary_text(model)
    rows = summary_rows(text)
    assert [(r["name"], r["type"], r["shape"], r["params"]) for r in rows] == [
        ("p", "InputLayer", "(None, 8)", 0),
        ("encoder", "Model", "(None, 3)", 54 + 21),
        ("head", "Dense", "(None, 2)", 8),
    ]
    assert "encoder_hidden" not in text
    assert totals(text) == (83, 83, 0)
    assert [l.name for l in model.layers] == ["p", "encoder", "head"]
    assert model.get_layer("encoder") is enc


def test_nested_model_called_twice_counts_once():
    enc = encoder()
    p = Input(shape=(8,), name="p")
    q = Input(shape=(8,), name="q")
    zp, zq = enc(p), enc(q)
    assert zp is not zq and zp.shape == zq.shape == (None, 3)
    model = Model([p, q], layers.Add(name="sum")([zp, zq]))
    assert model.count_params() == 75
    assert len(model.weights) == 4
    text = summary_text(model)
    rows = {r["name"]: r for r in summary_rows(text)}
    assert rows["encoder"]["params"] == 75
    assert rows["encoder"]["connected"] == ["p[0][0]", "q[0][0]"]
    assert rows["sum"]["connected"] == ["encoder[0][0]", "encoder[1][0]"]
    assert totals(text) == (75, 75, 0)


def test_nested_model_weights_are_the_inner_arrays():
    enc = encoder()
    p = Input(shape=(8,))
    model = Model(p, layers.Dense(2)(enc(p)))
    inner = enc.get_layer("encoder_hidden").kernel
    assert any(w is inner for w in model.weights)
    assert enc.count_params() == 75


def test_nested_model_with_two_outputs():
    x = Input(shape=(4,), name="x")
    two = Model(x, [layers.Dense(2, name="o1")(x), layers.Dense(3, name="o2")(x)], name="two")
    y = Input(shape=(4,), name="y")
    r1, r2 = two(y)
    assert r1.shape == (None, 2) and r2.shape == (None, 3)
    model = Model(y, layers.Concatenate(name="c")([r1, r2]))
    rows = {r["name"]: r for r in summary_rows(summary_text(model))}
    assert rows["two"]["params"] == (4 * 2 + 2) + (4 * 3 + 3) == 25
    assert rows["two"]["shape"] == "(None, 2), (None, 3)"
    assert rows["c"]["connected"] == ["two[0][0]", "two[0][1]"]


def test_frozen_nested_model_counts_as_non_trainable():
    enc = encoder()
    enc.trainable = False
    p = Input(shape=(8,))
    model = Model(p, layers.Dense(2)(enc(p)))
    assert totals(summary_text(model)) == (83, 8, 75)


def test_nested_model_call_checks_shapes_and_arity():
    enc = encoder()
    with pytest.raises(ShapeError) as e:
        enc(Input(shape=(7,)))
    assert "encoder" in str(e.value) and "(None, 8)" in str(e.value) and "(None, 7)" in str(e.value)
    with pytest.raises(ShapeError, match="encoder"):
        enc([Input(shape=(8,)), Input(shape=(8,))])
    with pytest.raises(TypeError, match="encoder"):
        enc([Input(shape=(8,)), np.zeros((2, 8))])


def test_layer_shared_by_nested_and_outer_model_counted_once():
    x = Input(shape=(3,), name="x")
    d = layers.Dense(2, name="d")                    # 3*2 + 2 = 8 params
    inner = Model(x, d(x), name="inner")
    p = Input(shape=(3,), name="p")
    outer = Model(p, layers.Add(name="sum")([inner(p), d(p)]))
    assert outer.count_params() == 8
    assert len(outer.weights) == 2
    assert totals(summary_text(outer))[0] == 8
