"""Models with several inputs and outputs; Keras accessors on models and layers."""
import pytest

from nexec import GraphError, Input, Model, layers

from tests.graph.helpers import dense_params, summary_header, summary_rows, summary_text, totals


def two_in_two_out():
    a = Input(shape=(16,), name="a")
    b = Input(shape=(8,), name="b")
    da = layers.Dense(32, activation="relu", name="da")(a)
    db = layers.Dense(32, name="db")(b)
    s = layers.Add(name="add")([da, db])
    c = layers.Concatenate(name="cat")([s, b])
    cls = layers.Dense(4, activation="softmax", name="cls")(c)
    reg = layers.Dense(1, name="reg")(s)
    return (a, b), (da, db, s, c), (cls, reg)


# by hand: da 16*32+32=544, db 8*32+32=288, cls (32+8)*4+4=164, reg 32*1+1=33
EXPECTED_PARAMS = {"a": 0, "b": 0, "da": 544, "db": 288, "add": 0, "cat": 0, "cls": 164,
                   "reg": 33}


def test_list_inputs_and_outputs():
    (a, b), (da, db, s, c), (cls, reg) = two_in_two_out()
    model = Model([a, b], [cls, reg], name="multi")
    assert model.inputs == [a, b]
    assert model.outputs == [cls, reg]
    assert model.input_names == ["a", "b"]
    assert model.output_names == ["cls", "reg"]
    assert sorted(l.name for l in model.layers) == sorted(EXPECTED_PARAMS)
    assert len(model.layers) == len(EXPECTED_PARAMS)
    assert {l.name: l.count_params() for l in model.layers} == EXPECTED_PARAMS
    assert model.count_params() == sum(EXPECTED_PARAMS.values()) == 1029
    assert cls.shape == (None, 4) and reg.shape == (None, 1) and c.shape == (None, 40)


def test_output_order_follows_the_given_list():
    (a, b), _, (cls, reg) = two_in_two_out()
    model = Model([b, a], [reg, cls])
    assert model.input_names == ["b", "a"]
    assert model.output_names == ["reg", "cls"]
    assert model.outputs == [reg, cls]


def test_dict_inputs_and_outputs_keyed_by_name():
    (a, b), _, (cls, reg) = two_in_two_out()
    model = Model({"a": a, "b": b}, {"cls": cls, "reg": reg})
    assert model.inputs == [a, b]
    assert model.outputs == [cls, reg]
    assert model.input_names == ["a", "b"]
    assert model.output_names == ["cls", "reg"]
    assert model.count_params() == 1029


def test_get_layer_by_name_and_index():
    (a, b), _, (cls, reg) = two_in_two_out()
    model = Model([a, b], [cls, reg])
    add = model.get_layer("add")
    assert isinstance(add, layers.Add) and add.name == "add"
    assert model.get_layer("cls").units == 4
    assert model.get_layer(index=0) is model.layers[0]
    with pytest.raises(ValueError, match="nope"):
        model.get_layer("nope")


def test_layer_input_and_output():
    (a, b), (da, db, s, c), (cls, reg) = two_in_two_out()
    model = Model([a, b], [cls, reg])
    assert model.get_layer("da").input is a
    assert model.get_layer("da").output is da
    assert model.get_layer("add").input == [da, db]   # merge layers: the list they took
    assert model.get_layer("add").output is s
    assert model.get_layer("cat").input == [s, b]
    assert model.get_layer("reg").output is reg
    assert model.get_layer("a").output is a


def test_layer_never_called_has_no_output():
    lonely = layers.Dense(3, name="lonely")
    with pytest.raises(GraphError, match="lonely"):
        lonely.output
    with pytest.raises(GraphError, match="lonely"):
        lonely.input


def test_connected_to_column_for_non_sequential_graph():
    (a, b), _, (cls, reg) = two_in_two_out()
    text = summary_text(Model([a, b], [cls, reg]))
    assert summary_header(text) == ["Layer (type)", "Output Shape", "Param #", "Connected to"]
    rows = {r["name"]: r for r in summary_rows(text)}
    assert rows["a"]["connected"] == ["-"] and rows["b"]["connected"] == ["-"]
    assert rows["da"]["connected"] == ["a[0][0]"]
    assert rows["db"]["connected"] == ["b[0][0]"]
    assert rows["add"]["connected"] == ["da[0][0]", "db[0][0]"]
    assert rows["cat"]["connected"] == ["add[0][0]", "b[0][0]"]
    assert rows["cls"]["connected"] == ["cat[0][0]"]
    assert rows["reg"]["connected"] == ["add[0][0]"]
    assert {n: r["params"] for n, r in rows.items()} == EXPECTED_PARAMS
    assert rows["cat"]["shape"] == "(None, 40)"
    assert totals(text) == (1029, 1029, 0)


def test_summary_lists_inputs_first():
    (a, b), _, (cls, reg) = two_in_two_out()
    rows = summary_rows(summary_text(Model([a, b], [cls, reg])))
    assert [r["name"] for r in rows[:2]] == ["a", "b"]
    assert {r["name"] for r in rows} == set(EXPECTED_PARAMS)


def test_single_chain_with_branch_gets_connected_column():
    # one input, one output, but a tensor read twice: not sequential-like
    x = Input(shape=(4,), name="x")
    h = layers.Dense(4, name="h")(x)
    y = layers.Add(name="sum")([h, x])
    text = summary_text(Model(x, y))
    assert "Connected to" in summary_header(text)


def test_single_element_lists_are_accepted():
    x = Input(shape=(4,), name="x")
    y = layers.Dense(2, name="d")(x)
    model = Model([x], [y])
    assert model.inputs == [x] and model.outputs == [y]
    assert model.output_names == ["d"]
    assert model.count_params() == dense_params(4, 2)


def test_model_input_and_output_properties():
    x = Input(shape=(4,), name="x")
    y = layers.Dense(2, name="d")(x)
    model = Model(x, y)
    assert model.inputs == [x] and model.outputs == [y]


def test_keras_model_input_and_output_are_its_own_tensors():
    x = Input(shape=(4,), name="x")
    y = layers.Dense(2, name="d")(x)
    model = Model(x, y)
    assert model.input is x
    assert model.output is y


def test_nested_model_input_output_stay_its_own_after_a_call():
    x = Input(shape=(4,), name="x")
    y = layers.Dense(2, name="d")(x)
    inner = Model(x, y, name="inner")
    inner(Input(shape=(4,), name="outer_in"))
    assert inner.input is x
    assert inner.output is y


def test_calling_dict_input_model_with_dict_matches_by_key():
    a = Input(shape=(4,), name="a")
    b = Input(shape=(4,), name="b")
    inner = Model({"a": a, "b": b},
                  [layers.Dense(2, name="on_a")(a), layers.Dense(3, name="on_b")(b)],
                  name="inner")
    ta = Input(shape=(4,), name="ta")
    tb = Input(shape=(4,), name="tb")
    outs = inner({"b": tb, "a": ta})  # same keys, other order
    outer = Model([ta, tb], outs)
    plan = outer.plan()
    by_name = {op.layer.name: op for op in plan.ops}
    # on_a must read the tensor given for key "a" (outer input 0), on_b the one for "b"
    assert by_name["on_a"].inputs == [plan.graph.inputs[0]]
    assert by_name["on_b"].inputs == [plan.graph.inputs[1]]
