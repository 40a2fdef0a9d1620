"""Every graph error is raised by the call that causes it and names layer and shapes."""
import numpy as np
import pytest

from nexec import GraphError, Input, Model, NexecError, Sequential, ShapeError, layers


def test_add_of_different_shapes():
    a, b = Input(shape=(32,)), Input(shape=(16,))
    add = layers.Add(name="merge_ab")           # building the layer is fine...
    with pytest.raises(ShapeError) as e:
        add([a, b])                             # ...the call raises
    msg = str(e.value)
    assert "merge_ab" in msg and "(None, 32)" in msg and "(None, 16)" in msg
    assert isinstance(e.value, ValueError) and isinstance(e.value, NexecError)


def test_concatenate_mismatch_off_the_concat_axis():
    a, b = Input(shape=(8, 8, 3)), Input(shape=(4, 8, 5))
    cat = layers.Concatenate(axis=-1, name="join")
    with pytest.raises(ShapeError) as e:
        cat([a, b])
    msg = str(e.value)
    assert "join" in msg and "(None, 8, 8, 3)" in msg and "(None, 4, 8, 5)" in msg


def test_concatenate_mismatch_on_the_concat_axis_is_fine():
    a, b = Input(shape=(8, 8, 3)), Input(shape=(8, 8, 5))
    assert layers.Concatenate(axis=-1)([a, b]).shape == (None, 8, 8, 8)


def test_concatenate_of_different_ranks():
    a, b = Input(shape=(8, 8, 3)), Input(shape=(3,))
    with pytest.raises(ShapeError) as e:
        layers.Concatenate(name="ranks")([a, b])
    assert "ranks" in str(e.value) and "(None, 8, 8, 3)" in str(e.value) \
        and "(None, 3)" in str(e.value)


def test_merge_layer_needs_two_tensors():
    with pytest.raises(ShapeError, match="lone_add"):
        layers.Add(name="lone_add")([Input(shape=(3,))])


def test_conv2d_on_rank_2_tensor():
    x = Input(shape=(32,))
    conv = layers.Conv2D(8, 3, name="conv_on_flat")
    with pytest.raises(ShapeError) as e:
        conv(x)
    assert "conv_on_flat" in str(e.value) and "(None, 32)" in str(e.value)


def test_conv2d_kernel_larger_than_input():
    with pytest.raises(ShapeError) as e:
        layers.Conv2D(2, 5, name="too_big")(Input(shape=(4, 4, 1)))
    assert "too_big" in str(e.value) and "(None, 4, 4, 1)" in str(e.value)


def _unknown_width():
    # Input refuses None dimensions; a plugin layer's output may still have one.
    from nexec.graph import SymbolicTensor
    return SymbolicTensor((None,), "float32")


def test_dense_on_unknown_last_dimension():
    x = _unknown_width()
    assert x.shape == (None, None)
    dense = layers.Dense(4, name="needs_width")
    with pytest.raises(ShapeError) as e:
        dense(x)
    assert "needs_width" in str(e.value) and "(None, None)" in str(e.value)


def test_dense_on_image_tensor_acts_on_the_last_axis():
    assert layers.Dense(4)(Input(shape=(5, 5, 2))).shape == (None, 5, 5, 4)


def test_failed_call_leaves_layer_unbuilt_and_uncalled():
    dense = layers.Dense(4, name="d")
    with pytest.raises(ShapeError):
        dense(_unknown_width())
    assert dense.count_params() == 0
    # it can still be used on a good tensor
    assert dense(Input(shape=(3,))).shape == (None, 4)
    assert dense.count_params() == 3 * 4 + 4


def test_output_needs_input_not_given():
    x1 = Input(shape=(4,), name="x1")
    x2 = Input(shape=(8,), name="x2")
    out = layers.Concatenate(name="both")([x1, x2])
    with pytest.raises(GraphError) as e:
        Model(x1, out)
    msg = str(e.value)
    assert "x2" in msg and "(None, 8)" in msg and "both" in msg


def test_given_input_not_used_names_it():
    x1 = Input(shape=(4,), name="x1")
    x2 = Input(shape=(8,), name="x2")
    out = layers.Dense(3, name="only_x1")(x1)
    with pytest.raises(GraphError, match="x2"):
        Model([x1, x2], out)


def test_given_input_not_used_shows_its_shape():
    x1 = Input(shape=(4,), name="x1")
    x2 = Input(shape=(8,), name="x2")
    out = layers.Dense(3, name="only_x1")(x1)
    with pytest.raises(GraphError) as e:
        Model([x1, x2], out)
    assert "x2" in str(e.value) and "(None, 8)" in str(e.value)


def test_model_input_must_be_an_input_tensor():
    x = Input(shape=(4,), name="x")
    h = layers.Dense(3, name="hidden")(x)
    with pytest.raises(GraphError, match="hidden"):
        Model(h, layers.Dense(2)(h))


def test_numpy_array_to_layer():
    dense = layers.Dense(3, name="eager")
    with pytest.raises(TypeError) as e:
        dense(np.zeros((2, 4), np.float32))
    assert "eager" in str(e.value) and "ndarray" in str(e.value)


def test_numpy_array_in_list_to_merge_layer():
    with pytest.raises(TypeError) as e:
        layers.Add(name="mixed")([Input(shape=(4,)), np.zeros((2, 4))])
    assert "mixed" in str(e.value) and "ndarray" in str(e.value) and "input 1" in str(e.value)


@pytest.mark.parametrize("where", ["inputs", "outputs"])
def test_numpy_array_to_model(where):
    x = Input(shape=(4,))
    y = layers.Dense(2)(x)
    args = {"inputs": x, "outputs": y}
    args[where] = np.zeros((2, 4))
    with pytest.raises((TypeError, ValueError)) as e:
        Model(**args)
    assert where in str(e.value) and "ndarray" in str(e.value)


def test_numpy_array_to_model_call():
    x = Input(shape=(4,))
    model = Model(x, layers.Dense(2)(x), name="callee")
    with pytest.raises(TypeError) as e:  # arrays mixed with tensors: neither a node nor data
        model([x, np.zeros((2, 4))])
    assert "callee" in str(e.value) and "ndarray" in str(e.value)


def test_duplicate_layer_names_in_one_model():
    x = Input(shape=(4,))
    h = layers.Dense(3, name="twin")(x)
    y = layers.Dense(3, name="twin")(h)      # a second, different layer with the same name
    with pytest.raises(GraphError, match="twin"):
        Model(x, y)


def test_duplicate_layer_names_in_sequential():
    model = Sequential([layers.Dense(3, input_shape=(4,), name="twin")])
    with pytest.raises(GraphError, match="twin"):
        model.add(layers.Dense(3, name="twin"))


def test_unknown_activation_is_rejected_at_construction():
    with pytest.raises(ValueError) as e:
        layers.Dense(3, activation="relux")
    assert "relux" in str(e.value) and "relu" in str(e.value).replace("relux", "")


@pytest.mark.parametrize("make", [
    pytest.param(lambda: layers.Dense(3, activation="relux", name="head"), id="Dense"),
    pytest.param(lambda: layers.Conv2D(3, 3, activation="relux", name="head"), id="Conv2D"),
    pytest.param(lambda: layers.Activation("relux", name="head"), id="Activation"),
])
def test_unknown_activation_names_the_layer(make):
    with pytest.raises(ValueError) as e:
        make()
    assert "head" in str(e.value) and "relux" in str(e.value)


def test_conv2d_bad_padding_names_layer():
    with pytest.raises(ValueError, match="pad_me"):
        layers.Conv2D(3, 3, padding="full", name="pad_me")


def test_concatenate_on_the_batch_axis_is_refused():
    a, b = Input(shape=(3,)), Input(shape=(4,))
    with pytest.raises(ShapeError) as e:
        layers.Concatenate(axis=0, name="batch_cat")([a, b])
    assert "batch_cat" in str(e.value)


def test_concatenate_axis_past_the_batch_axis_is_refused():
    a, b = Input(shape=(3,)), Input(shape=(4,))
    with pytest.raises(ShapeError, match="neg_cat"):
        layers.Concatenate(axis=-2, name="neg_cat")([a, b])   # -2 is the batch axis here
    with pytest.raises(ShapeError, match="far_cat"):
        layers.Concatenate(axis=2, name="far_cat")([a, b])


def test_sequential_add_raises_at_the_add_that_does_not_fit():
    model = Sequential([layers.Dense(3, input_shape=(4,), name="first")])
    with pytest.raises(ShapeError) as e:
        model.add(layers.Conv2D(2, 3, name="bad_conv"))
    assert "bad_conv" in str(e.value) and "(None, 3)" in str(e.value)


def test_sequential_is_unchanged_after_a_failed_add():
    model = Sequential([layers.Dense(3, input_shape=(4,), name="first")])
    with pytest.raises(ShapeError):
        model.add(layers.Conv2D(2, 3, name="bad_conv"))
    assert [l.name for l in model.layers] == ["first"]
    model.add(layers.Dense(2, name="second"))
    assert [l.name for l in model.layers] == ["first", "second"]
    assert model.count_params() == (4 * 3 + 3) + (3 * 2 + 2)
