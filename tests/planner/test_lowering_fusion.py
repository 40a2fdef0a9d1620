"""model.plan(): lowering (nested models inlined) and activation fusion."""
from __future__ import annotations

import pytest

import nexec
from nexec import Input, Model, Sequential, layers
from nexec.planner.plan import make_plan


@pytest.fixture(autouse=True)
def fresh_session():
    nexec.clear_session()
    yield
    nexec.clear_session()


def steps(plan):
    return [(op.layer.name, op.kind, op.activation, list(op.fused)) for op in plan.ops]


def dense_then_relu():
    x = Input(shape=(4,), name="x")
    h = layers.Dense(3, name="lin")(x)
    a = layers.Activation("relu", name="act")(h)
    return x, h, a


def test_linear_dense_then_activation_is_one_step():
    x, _, a = dense_then_relu()
    plan = Model(x, a).plan()
    assert steps(plan) == [("lin", "Dense", "relu", ["act"])]
    (op,) = plan.ops
    # the fused step writes the activation's value, which is the model output
    assert plan.graph.outputs == [op.output]
    assert plan.graph.tensors[op.output].shape == (3,)
    assert plan.graph.tensors[op.output].producer == 0
    text = str(plan)
    assert "1 steps" in text and "lin (Dense+relu)" in text and "fused: act" in text


def test_not_fused_when_pre_activation_has_another_consumer():
    x, h, a = dense_then_relu()
    other = layers.Dense(2, name="other")(h)
    plan = Model(x, [a, other]).plan()
    assert steps(plan) == [("lin", "Dense", "linear", []),
                           ("act", "Activation", "relu", []),
                           ("other", "Dense", "linear", [])]
    lin, act, oth = plan.ops
    assert act.inputs == [lin.output] and oth.inputs == [lin.output]


def test_not_fused_when_pre_activation_is_a_model_output():
    x, h, a = dense_then_relu()
    plan = Model(x, [h, a]).plan()
    assert steps(plan) == [("lin", "Dense", "linear", []), ("act", "Activation", "relu", [])]
    lin, act = plan.ops
    assert plan.graph.outputs == [lin.output, act.output]


def test_not_fused_into_a_producer_with_its_own_activation():
    x = Input(shape=(4,), name="x")
    h = layers.Dense(3, activation="tanh", name="d")(x)
    y = layers.Activation("sigmoid", name="s")(h)
    assert steps(Model(x, y).plan()) == [("d", "Dense", "tanh", []),
                                         ("s", "Activation", "sigmoid", [])]


def test_not_fused_into_producer_whose_kernel_cannot():
    x = Input(shape=(4,), name="x")
    c = layers.Concatenate(name="cat")([x, x])
    y = layers.Activation("relu", name="r")(c)
    assert steps(Model(x, y).plan()) == [("cat", "Concatenate", "linear", []),
                                         ("r", "Activation", "relu", [])]


def test_activation_on_model_input_stays_a_step():
    x = Input(shape=(4,), name="x")
    y = layers.Activation("relu", name="r")(x)
    assert steps(Model(x, y).plan()) == [("r", "Activation", "relu", [])]


def test_two_activations_in_a_row_fuse_only_the_first():
    x = Input(shape=(4,), name="x")
    h = layers.Dense(3, name="d")(x)
    h = layers.Activation("relu", name="a1")(h)
    y = layers.Activation("sigmoid", name="a2")(h)
    plan = Model(x, y).plan()
    assert steps(plan) == [("d", "Dense", "relu", ["a1"]), ("a2", "Activation", "sigmoid", [])]
    d, a2 = plan.ops
    assert a2.inputs == [d.output]


def test_conv_and_add_fuse_a_following_relu():
    x = Input(shape=(6, 6, 2), name="x")
    c = layers.Conv2D(2, 3, padding="same", name="conv")(x)
    c = layers.Activation("relu", name="conv_relu")(c)
    s = layers.Add(name="add")([c, x])
    y = layers.Activation("relu", name="add_relu")(s)
    assert steps(Model(x, y).plan()) == [("conv", "Conv2D", "relu", ["conv_relu"]),
                                         ("add", "Add", "relu", ["add_relu"])]


def test_can_fuse_override_turns_fusion_off():
    x, _, a = dense_then_relu()
    plan = make_plan(Model(x, a), can_fuse=lambda kind: False)
    assert steps(plan) == [("lin", "Dense", "linear", []), ("act", "Activation", "relu", [])]


def test_fusion_renumbers_ops_and_consumers():
    x = Input(shape=(4,), name="x")
    h = layers.Activation("relu", name="r1")(layers.Dense(4, name="d1")(x))
    h = layers.Activation("relu", name="r2")(layers.Dense(4, name="d2")(h))
    plan = Model(x, h).plan()
    assert [op.index for op in plan.ops] == [0, 1]
    d1, d2 = plan.ops
    assert d2.inputs == [d1.output]
    assert plan.graph.tensors[d1.output].consumers == [1]
    # the pre-activation values are gone from the plan
    assert {t.name for t in plan.graph.tensors.values()} == {"x", "r1", "r2"}


def nested_model():
    xi = Input(shape=(5,), name="enc_in")
    h = layers.Dense(4, name="enc_dense")(xi)
    h = layers.Activation("relu", name="enc_relu")(h)
    z = layers.Dense(3, name="enc_code")(h)
    return Model(xi, z, name="encoder")


def test_nested_model_is_inlined_into_leaf_layers():
    enc = nested_model()
    p = Input(shape=(5,), name="p")
    y = layers.Dense(2, name="head")(enc(p))
    plan = Model(p, y).plan()
    assert steps(plan) == [("enc_dense", "Dense", "relu", ["enc_relu"]),
                           ("enc_code", "Dense", "linear", []),
                           ("head", "Dense", "linear", [])]
    assert all(not isinstance(op.layer, Model) for op in plan.ops)
    assert plan.graph.inputs == [0] and plan.ops[0].inputs == [0]
    assert plan.param_shapes == {"enc_dense": {"kernel": (5, 4), "bias": (4,)},
                                 "enc_relu": {},
                                 "enc_code": {"kernel": (4, 3), "bias": (3,)},
                                 "head": {"kernel": (3, 2), "bias": (2,)}}


def test_nested_model_called_twice_gets_its_own_tensors_per_call():
    enc = nested_model()
    p = Input(shape=(5,), name="p")
    q = Input(shape=(5,), name="q")
    y = layers.Add(name="sum")([enc(p), enc(q)])
    plan = Model([p, q], y).plan()
    assert [op.layer.name for op in plan.ops] == ["enc_dense", "enc_code", "enc_dense",
                                                  "enc_code", "sum"]
    tp, tq = plan.graph.inputs
    d_p, c_p, d_q, c_q, add = plan.ops
    assert d_p.inputs == [tp] and d_q.inputs == [tq]
    assert c_p.inputs == [d_p.output] and c_q.inputs == [d_q.output]
    assert add.inputs == [c_p.output, c_q.output]
    assert len({d_p.output, c_p.output, d_q.output, c_q.output, add.output}) == 5


def test_doubly_nested_model_is_flattened():
    enc = nested_model()
    mid_in = Input(shape=(5,), name="mid_in")
    mid = Model(mid_in, layers.Activation("tanh", name="mid_tanh")(enc(mid_in)), name="mid")
    p = Input(shape=(5,), name="p")
    plan = Model(p, mid(p)).plan()
    # the tanh of the middle model fuses into the innermost model's last Dense
    assert steps(plan) == [("enc_dense", "Dense", "relu", ["enc_relu"]),
                           ("enc_code", "Dense", "tanh", ["mid_tanh"])]


def test_activation_after_nested_output_fuses_across_the_boundary():
    enc = nested_model()
    p = Input(shape=(5,), name="p")
    y = layers.Activation("sigmoid", name="outer_sig")(enc(p))
    plan = Model(p, y).plan()
    assert steps(plan)[-1] == ("enc_code", "Dense", "sigmoid", ["outer_sig"])


def test_sequential_with_nested_model_plan():
    enc = nested_model()
    seq = Sequential([Input(shape=(5,), name="s_in"), enc, layers.Dense(2, name="head")])
    assert [op.layer.name for op in seq.plan().ops] == ["enc_dense", "enc_code", "head"]


def test_plan_text_mentions_each_layer():
    a = Input(shape=(6,), name="in_a")
    b = Input(shape=(3,), name="in_b")
    h = layers.Dense(4, name="hid")(a)
    h = layers.Activation("relu", name="hid_relu")(h)
    c = layers.Concatenate(name="joined")([h, b])
    o1 = layers.Dense(2, activation="softmax", name="out_cls")(c)
    o2 = layers.Dense(1, name="out_reg")(h)
    text = str(Model([a, b], [o1, o2], name="planned").plan())
    assert text.startswith('Plan of "planned" on cpu: 4 steps')
    for name in ("in_a", "in_b", "hid", "hid_relu", "joined", "out_cls", "out_reg"):
        assert name in text
    # hid's value is read by hid_relu only, so the relu is fused into it
    assert "hid (Dense+relu)" in text and "fused: hid_relu" in text
    assert "out_cls (Dense+softmax)" in text and "joined (Concatenate)" in text


def test_plan_text_shapes_and_params():
    x = Input(shape=(8, 8, 3), name="img")
    y = layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(x)
    text = str(Model(x, y).plan())
    assert "img(None, 8, 8, 3)" in text
    line = next(l for l in text.splitlines() if "conv (Conv2D)" in l)
    assert "(None, 4, 4, 4)" in line and "kernel(3, 3, 3, 4)" in line and "bias(4,)" in line


def test_plan_is_repeatable_and_on_cpu():
    x, _, a = dense_then_relu()
    model = Model(x, a)
    assert str(model.plan()) == str(model.plan())
    assert model.plan().device == "cpu"
