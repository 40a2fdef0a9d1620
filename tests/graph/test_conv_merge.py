"""Inception-style branches (Concatenate) and a residual block (Add): shapes and params."""
import math

import pytest

from nexec import Input, Model, ShapeError, layers

from tests.graph.helpers import conv_params, summary_rows, summary_text, totals


def same_len(n, s):
    return math.ceil(n / s)


def valid_len(n, k, s):
    return math.floor((n - k) / s) + 1


@pytest.mark.parametrize("n,k,s", [(32, 3, 1), (32, 3, 2), (31, 3, 2), (7, 3, 2), (7, 5, 3),
                                   (28, 1, 2), (9, 9, 1), (10, 4, 4)])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv2d_output_length_is_keras(n, k, s, padding):
    x = Input(shape=(n, n + 1, 3))
    y = layers.Conv2D(5, k, strides=s, padding=padding)(x)
    if padding == "same":
        expected = (None, same_len(n, s), same_len(n + 1, s), 5)
    else:
        expected = (None, valid_len(n, k, s), valid_len(n + 1, k, s), 5)
    assert y.shape == expected


def test_conv2d_rectangular_kernel_and_strides():
    x = Input(shape=(20, 11, 6))
    y = layers.Conv2D(7, (3, 1), strides=(2, 1), padding="valid")(x)
    # h: floor((20-3)/2)+1 = 9; w: floor((11-1)/1)+1 = 11
    assert y.shape == (None, 9, 11, 7)
    conv = y.node.layer
    assert [w.shape for w in conv.weights] == [(3, 1, 6, 7), (7,)]
    assert conv.count_params() == 3 * 1 * 6 * 7 + 7 == 133


def test_conv2d_without_bias():
    x = Input(shape=(8, 8, 4))
    conv = layers.Conv2D(6, 3, use_bias=False)
    conv(x)
    assert conv.count_params() == 3 * 3 * 4 * 6 == 216


def inception_module(x, prefix=""):
    """Four parallel branches over x (16x16x10), stride 2, joined on channels."""
    b1 = layers.Conv2D(8, 1, strides=2, padding="same", activation="relu", name=prefix + "b1")(x)
    b2 = layers.Conv2D(4, 1, padding="same", name=prefix + "b2_reduce")(x)
    b2 = layers.Conv2D(12, 3, strides=2, padding="same", activation="relu",
                       name=prefix + "b2")(b2)
    b3 = layers.Conv2D(2, 1, padding="valid", name=prefix + "b3_reduce")(x)
    b3 = layers.Conv2D(6, 5, strides=2, padding="same", name=prefix + "b3")(b3)
    b4 = layers.Conv2D(3, 2, strides=2, padding="valid", name=prefix + "b4")(x)
    return layers.Concatenate(axis=-1, name=prefix + "mix")([b1, b2, b3, b4])


def test_inception_branches_concatenate_on_channels():
    x = Input(shape=(16, 16, 10), name="img")
    mix = inception_module(x)
    # same, stride 2: ceil(16/2) = 8; valid k=2 stride 2: floor((16-2)/2)+1 = 8
    assert mix.shape == (None, 8, 8, 8 + 12 + 6 + 3)
    model = Model(x, mix, name="inception")
    expected = {
        "img": 0,
        "b1": 1 * 1 * 10 * 8 + 8,            # 88
        "b2_reduce": 1 * 1 * 10 * 4 + 4,     # 44
        "b2": 3 * 3 * 4 * 12 + 12,           # 444
        "b3_reduce": 1 * 1 * 10 * 2 + 2,     # 22
        "b3": 5 * 5 * 2 * 6 + 6,             # 306
        "b4": 2 * 2 * 10 * 3 + 3,            # 123
        "mix": 0,
    }
    assert expected["b2"] == conv_params(3, 3, 4, 12) == 444
    assert {l.name: l.count_params() for l in model.layers} == expected
    total = sum(expected.values())
    assert total == 1027
    text = summary_text(model)
    rows = {r["name"]: r for r in summary_rows(text)}
    assert rows["mix"]["shape"] == "(None, 8, 8, 29)"
    assert rows["b2"]["shape"] == "(None, 8, 8, 12)"
    assert rows["b3_reduce"]["shape"] == "(None, 16, 16, 2)"
    assert rows["mix"]["connected"] == ["b1[0][0]", "b2[0][0]", "b3[0][0]", "b4[0][0]"]
    assert {n: r["params"] for n, r in rows.items()} == expected
    assert totals(text) == (total, total, 0)


def test_concatenate_on_a_spatial_axis():
    a = Input(shape=(4, 6, 3))
    b = Input(shape=(5, 6, 3))
    assert layers.Concatenate(axis=1)([a, b]).shape == (None, 9, 6, 3)
    assert layers.Concatenate(axis=-3)([a, b]).shape == (None, 9, 6, 3)


def test_same_and_valid_branches_do_not_concatenate():
    x = Input(shape=(16, 16, 3))
    same = layers.Conv2D(4, 3, strides=2, padding="same")(x)     # 8x8
    valid = layers.Conv2D(4, 3, strides=2, padding="valid")(x)   # floor(13/2)+1 = 7
    assert same.shape == (None, 8, 8, 4) and valid.shape == (None, 7, 7, 4)
    cat = layers.Concatenate(name="bad_mix")
    with pytest.raises(ShapeError) as e:
        cat([same, valid])
    msg = str(e.value)
    assert "bad_mix" in msg and "(None, 8, 8, 4)" in msg and "(None, 7, 7, 4)" in msg


def residual_block(x, filters, prefix):
    y = layers.Conv2D(filters, 3, padding="same", activation="relu", name=prefix + "conv1")(x)
    y = layers.Conv2D(filters, 3, padding="same", name=prefix + "conv2")(y)
    y = layers.Add(name=prefix + "add")([y, x])
    return layers.Activation("relu", name=prefix + "relu")(y)


def test_residual_block_shapes_and_params():
    x = Input(shape=(12, 12, 8), name="feat")
    y = residual_block(x, 8, "r_")
    assert y.shape == (None, 12, 12, 8)
    model = Model(x, y)
    per_conv = 3 * 3 * 8 * 8 + 8  # 584
    assert model.get_layer("r_conv1").count_params() == per_conv
    assert model.get_layer("r_conv2").count_params() == per_conv
    assert model.count_params() == 2 * per_conv == 1168
    rows = {r["name"]: r for r in summary_rows(summary_text(model))}
    assert rows["r_add"]["connected"] == ["r_conv2[0][0]", "feat[0][0]"]
    assert rows["r_add"]["shape"] == "(None, 12, 12, 8)"
    assert rows["r_relu"]["params"] == 0


def test_residual_with_projection_after_strided_inception():
    x = Input(shape=(16, 16, 10), name="img")
    mix = inception_module(x, "i_")                           # (8, 8, 29)
    shortcut = layers.Conv2D(29, 1, strides=2, padding="same", name="proj")(x)   # (8, 8, 29)
    y = layers.Add(name="join")([mix, shortcut])
    y = residual_block(y, 29, "r_")
    model = Model(x, y)
    assert y.shape == (None, 8, 8, 29)
    expected = (1027                       # the inception module above
                + 1 * 1 * 10 * 29 + 29     # proj: 319
                + 2 * (3 * 3 * 29 * 29 + 29))  # two 3x3 convs: 2 * 7598
    assert expected == 1027 + 319 + 15196
    assert model.count_params() == expected
    assert totals(summary_text(model)) == (expected, expected, 0)


def test_add_of_three_tensors():
    a, b, c = (Input(shape=(5, 5, 2)) for _ in range(3))
    assert layers.Add()([a, b, c]).shape == (None, 5, 5, 2)
