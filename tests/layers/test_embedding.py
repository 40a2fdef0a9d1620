"""Embedding: Keras' arguments and layout, forward against NumPy and PyTorch, gradients by
finite differences and PyTorch (float64), training through fit, bad ids."""
import numpy as np
import pytest
import torch

import nexec
from nexec import Input, Model, layers
from nexec.errors import DataError
from nexec.testing import (
    array_arguments,
    assert_close,
    check_gradients,
    count_allocations,
    model_gradients,
    weights_by_name,
)

V, T, D = 9, 4, 3


def _ids(n, seed=0, dtype=np.int32):
    ids = np.random.default_rng(seed).integers(0, V, (n, T)).astype(dtype)
    ids[0, :] = 5  # one id repeated: its gradient rows add up
    return ids


def _flat_model(dtype="float64", id_dtype="int32", units=2):
    ids = Input(shape=(T,), dtype=id_dtype, name="ids")
    e = layers.Embedding(V, D, dtype=dtype, name="emb")(ids)
    out = layers.Dense(units, activation="tanh", name="head")(layers.Flatten()(e))
    return Model(ids, out)


# ----- description ----------------------------------------------------------------------------
def test_shape_weights_and_config_as_keras():
    emb = layers.Embedding(1000, 8)
    y = emb(Input(shape=(12,), dtype="int64"))
    assert y.shape == (None, 12, 8) and y.dtype == "float32"
    assert [w.shape for w in emb.get_weights()] == [(1000, 8)]
    assert np.abs(emb.embeddings).max() <= 0.05 and emb.embeddings.std() > 0.01  # U(-.05, .05)
    cfg = emb.get_config()
    assert cfg["input_dim"] == 1000 and cfg["output_dim"] == 8
    assert cfg["embeddings_initializer"] == "uniform" and cfg["mask_zero"] is False
    again = layers.Embedding.from_config({**cfg, "name": "copy"})
    assert again(Input(shape=(2, 3), dtype="int32")).shape == (None, 2, 3, 8)


def test_initial_weights_and_input_length_for_a_sequential():
    w = np.arange(V * D, dtype=np.float32).reshape(V, D)
    model = nexec.Sequential([layers.Embedding(V, D, weights=[w], input_length=T),
                              layers.Flatten()])
    assert model.input.shape == (None, T)
    ids = _ids(3)
    assert_close(model.predict(ids, verbose=0), w[ids].reshape(3, -1), rtol=0)


@pytest.mark.parametrize("kwargs,match", [
    ({"input_dim": 0, "output_dim": 3}, "input_dim"),
    ({"input_dim": 3, "output_dim": 2.5}, "output_dim"),
    ({"input_dim": 3, "output_dim": 2, "embeddings_initializer": "nope"}, "nope"),
    ({"input_dim": 3, "output_dim": 2, "mask_zero": "yes"}, "mask_zero"),
    ({"input_dim": 3, "output_dim": 2, "embeddings_regularizer": "l2"}, "embeddings_regularizer"),
    ({"input_dim": 3, "output_dim": 2, "dtype": "int32"}, "dtype"),
])
def test_bad_arguments_are_refused_at_construction(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        layers.Embedding(**kwargs)


# ----- forward and gradients -------------------------------------------------------------------
def test_forward_matches_numpy_gather():
    ids = Input(shape=(T,), dtype="int32")
    emb = layers.Embedding(V, D, dtype="float64")
    model = Model(ids, emb(ids))
    x = _ids(6)
    assert_close(model.predict(x, verbose=0), emb.embeddings[x], rtol=0)
    assert model.predict(x, verbose=0).dtype == np.float64


def test_gradients_match_finite_differences():
    model = _flat_model()
    rng = np.random.default_rng(1)
    x, y = _ids(5), rng.normal(size=(5, 2))
    loss_fn, grads = model_gradients(model, x, y, "mse")
    assert np.count_nonzero(np.abs(grads["emb/embeddings"]).sum(1)) < V  # unused rows: zero
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_shared_embedding_on_two_integer_inputs_matches_finite_differences():
    a = Input(shape=(T,), dtype="int32", name="a")
    b = Input(shape=(2,), dtype="int64", name="b")
    emb = layers.Embedding(V, D, dtype="float64", name="emb")
    fa, fb = layers.Flatten()(emb(a)), layers.Flatten()(emb(b))
    out = layers.Dense(3, activation="softmax")(layers.Concatenate()([fa, fb]))
    model = Model([a, b], out)
    rng = np.random.default_rng(2)
    x = [_ids(6), rng.integers(0, V, (6, 2))]
    loss_fn, grads = model_gradients(model, x, rng.integers(0, 3, 6),
                                     "sparse_categorical_crossentropy")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_forward_and_gradients_match_torch_with_copied_weights():
    model = _flat_model()
    rng = np.random.default_rng(3)
    x, y = _ids(5), rng.normal(size=(5, 2))
    _, grads = model_gradients(model, x, y, "mse")
    emb_w, kernel, bias = model.get_weights()

    t_emb = torch.nn.Embedding(V, D, dtype=torch.float64)
    t_lin = torch.nn.Linear(T * D, 2, dtype=torch.float64)
    with torch.no_grad():
        t_emb.weight.copy_(torch.from_numpy(emb_w))
        t_lin.weight.copy_(torch.from_numpy(kernel.T.copy()))
        t_lin.bias.copy_(torch.from_numpy(bias))
    out = torch.tanh(t_lin(t_emb(torch.from_numpy(x.astype(np.int64))).reshape(5, -1)))
    assert_close(model.predict(x, verbose=0), out.detach().numpy(), rtol=1e-12)
    torch.mean((out - torch.from_numpy(y)) ** 2).backward()
    assert_close(grads["emb/embeddings"], t_emb.weight.grad.numpy(), rtol=1e-10)
    assert_close(grads["head/kernel"], t_lin.weight.grad.numpy().T, rtol=1e-10)


# ----- training through fit ------------------------------------------------------------------
@pytest.mark.parametrize("id_dtype", ["int32", "int64", "float32"])
def test_embedding_flatten_dense_trains(id_dtype):
    ids = Input(shape=(T,), dtype=id_dtype)
    h = layers.Flatten()(layers.Embedding(V, 4)(ids))
    model = Model(ids, layers.Dense(2, activation="softmax")(h))
    model.compile(optimizer=nexec.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = _ids(64, seed=4, dtype=np.int64)
    y = (x[:, 1] >= V // 2).astype(int)  # the class is in the second token
    assert model._trainer.dtype == "float32"
    hist = model.fit(x, y, epochs=25, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < 0.3 * hist.history["loss"][0]
    loss, acc = model.evaluate(x, y, verbose=0)
    assert acc > 0.95
    assert model.predict(x, verbose=0).argmax(1).tolist() == y.tolist()


def test_model_dtype_comes_from_the_layers_when_every_input_is_integer():
    model = _flat_model(dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    assert model._trainer.dtype == "float64" and model._trainer.store.values.dtype == np.float64
    assert model.predict(_ids(2), verbose=0).dtype == np.float64


def test_nested_model_with_embedding_in_a_bigger_model():
    inner_in = Input(shape=(T,), dtype="int32")
    inner = Model(inner_in, layers.Flatten()(layers.Embedding(V, 2, name="inner_emb")(inner_in)))
    ids = Input(shape=(T,), dtype="int32")
    model = Model(ids, layers.Dense(1)(inner(ids)))
    model.compile(optimizer="sgd", loss="mse")
    model.fit(_ids(8), np.zeros(8), epochs=1, verbose=0)
    with pytest.raises(DataError, match="inner_emb"):
        model.predict(_ids(2) + V, verbose=0)


# ----- bad ids ---------------------------------------------------------------------------------
@pytest.mark.parametrize("call", ["fit", "predict", "evaluate"])
def test_out_of_range_ids_are_refused_naming_the_layer(call):
    model = _flat_model()
    model.compile(optimizer="sgd", loss="mse")
    x = _ids(4)
    x[2, 1] = V
    args = (x,) if call == "predict" else (x, np.zeros((4, 2)))
    before = model.get_weights()
    with pytest.raises(DataError, match=r"'emb'.*\[0, 9\)"):
        getattr(model, call)(*args, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_the_cpu_kernel_refuses_a_bad_id_that_skipped_the_data_check():
    model = _flat_model()
    model.compile(optimizer="sgd", loss="mse")
    ex = model._trainer.predictor.executor
    prog = ex.program(2)
    x = _ids(2)
    x[1, 0] = -1
    ex.load(prog, [x], 0, 2)
    with pytest.raises(ValueError, match=r"Layer 'emb' \(Embedding, input_dim=9\).*outside"):
        ex.run_forward(prog)


def test_integer_input_data_checks():
    model = _flat_model()
    with pytest.raises(DataError, match="whole numbers"):
        model.predict(_ids(2) + 0.5, verbose=0)
    assert model.predict(_ids(2).astype(np.float64), verbose=0).shape == (2, 2)  # whole floats
    ids = Input(shape=(T,), dtype="int32")
    big = Model(ids, layers.Flatten()(layers.Embedding(V, 2)(ids)))
    with pytest.raises(DataError, match="int64"):
        big.predict(np.full((1, T), 2 ** 40), verbose=0)
    ids = Input(shape=(T,))  # float ids, as Keras takes them
    floaty = Model(ids, layers.Flatten()(layers.Embedding(V, 2)(ids)))
    with pytest.raises(DataError, match="whole numbers"):
        floaty.predict(np.full((1, T), 1.5), verbose=0)


# ----- the step allocates nothing ----------------------------------------------------------------
def test_training_step_allocates_nothing():
    model = _flat_model(dtype="float32")
    model.compile(optimizer="adam", loss="mse")
    x, y = _ids(32, dtype=np.int32), np.zeros((32, 2), np.float32)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    ex = model._trainer.train_executor
    prog = ex.program(16)
    losses, counts = [0.0], [0] * len(prog.metrics)

    def steps(k):
        for i in range(k):
            for dst, src in zip(prog.inputs + prog.targets, [x, y]):
                np.copyto(dst, src[(i % 2) * 16:(i % 2 + 1) * 16])
            ex.train_step(prog, losses, counts)

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(3))
    assert nrt == 3 * array_arguments(prog), (nrt, array_arguments(prog))
    assert numpy_blocks == []
    assert np.dtype(prog.inputs[0].dtype) == np.int32  # ids keep their dtype in the arena
    assert ex.schedule.buffers["ids"].dtype == "int32" and "grad ids" not in ex.schedule.buffers


# ----- CUDA (simulator) ------------------------------------------------------------------------
def _fit_on(device):
    nexec.clear_session()
    nexec.set_random_seed(5)
    model = _flat_model(dtype="float64", id_dtype="int64")
    model.compile(optimizer="adam", loss="mse", device=device)
    rng = np.random.default_rng(6)
    x, y = _ids(6, dtype=np.int64), rng.normal(size=(6, 2))
    hist = model.fit(x, y, epochs=2, batch_size=4, verbose=0, shuffle=False)
    return model, hist, x


@pytest.mark.cudasim
def test_fit_on_cuda_matches_the_cpu():
    from nexec.kernels.cuda import backend
    if not backend.is_available():
        pytest.fail("CUDA simulator not available: " + backend.unavailable_reason())
    cpu, h_cpu, x = _fit_on("cpu")
    gpu, h_gpu, _ = _fit_on("cuda")
    assert_close(np.array(h_gpu.history["loss"]), np.array(h_cpu.history["loss"]), rtol=1e-10)
    for a, b in zip(gpu.get_weights(), cpu.get_weights()):
        assert_close(a, b, rtol=1e-10)
    assert_close(gpu.predict(x, verbose=0), cpu.predict(x, verbose=0), rtol=1e-10)
