"""SimpleRNN, LSTM, GRU, Bidirectional and TimeDistributed(Dense) against PyTorch float64 with
copied weights (forward, loss and every gradient to 1e-10), whole-sequence finite differences,
a model that trains, allocation-free steps, and the arguments that are refused."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

import nexec
from nexec import Input, Model, layers
from nexec.errors import NexecError, ShapeError
from nexec.initializers import orthogonal
from nexec.testing import (array_arguments, assert_close, check_gradients, count_allocations,
                           model_gradients, weights_by_name)

B, T, F, H, U = 3, 5, 4, 3, 4  # batch, steps, features, TimeDistributed width, units
KINDS = ["SimpleRNN", "LSTM", "GRU"]
GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}
TOL = 1e-10


def _rand_weights(layer, rng: np.random.Generator, scale: float = 0.5) -> None:
    layer.set_weights([rng.normal(size=w.shape) * scale for w in layer.get_weights()])


def _torch_cell(kind: str, weights: list, bidirectional_weights: list | None = None):
    """A torch.nn.RNN/LSTM/GRU (batch_first, float64) holding Keras-layout weights.

    Keras' LSTM gate order i, f, c, o is torch's i, f, g, o; Keras' GRU z, r, h becomes
    torch's r, z, n, with the two bias rows as torch's input and hidden biases.
    """
    cls = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[kind]
    m = cls(weights[0].shape[0], U, batch_first=True, bidirectional=bidirectional_weights is not None,
            dtype=torch.float64)
    perm = np.r_[U:2 * U, 0:U, 2 * U:3 * U] if kind == "GRU" else np.arange(GATES[kind] * U)
    for suffix, ws in (("", weights), ("_reverse", bidirectional_weights)):
        if ws is None:
            continue
        w, u, b = ws
        getattr(m, f"weight_ih_l0{suffix}").data = torch.tensor(w[:, perm].T.copy())
        getattr(m, f"weight_hh_l0{suffix}").data = torch.tensor(u[:, perm].T.copy())
        bi, bh = (b[0], b[1]) if kind == "GRU" else (b, np.zeros_like(b))
        getattr(m, f"bias_ih_l0{suffix}").data = torch.tensor(bi[perm].copy())
        getattr(m, f"bias_hh_l0{suffix}").data = torch.tensor(bh[perm].copy())
    return m


def _data(seed: int, out_shape: tuple):
    rng = np.random.default_rng(seed)
    return rng, rng.normal(size=(B, T, F)), rng.normal(size=(B, *out_shape))


def _compare(model, x, y, torch_forward, params: dict) -> None:
    """nexec's prediction, MSE loss and gradients against torch's (``params``: nexec weight
    name -> (torch tensor, how to turn its gradient into the Keras layout))."""
    pred = model.predict(x, verbose=0)
    loss_fn, grads = model_gradients(model, x, y, "mse")
    xt = torch.tensor(x)
    out = torch_forward(xt)
    assert_close(pred, out.detach().numpy(), rtol=TOL, what="forward")
    loss = ((out - torch.tensor(y)) ** 2).mean()  # Keras' MSE: the mean over every entry
    loss.backward()
    assert abs(loss_fn() - loss.item()) <= TOL * abs(loss.item())
    for name, (tensor, to_keras) in params.items():
        assert_close(grads[name], to_keras(tensor.grad.numpy()), rtol=TOL, what=name)


def _td_model(kind: str, seed: int, **kwargs):
    """Input -> TimeDistributed(Dense(H, tanh)) -> recurrent layer: the recurrent layer's
    input gradient is checked through the Dense weights' gradients."""
    nexec.clear_session()
    inp = Input(shape=(T, F), dtype="float64")
    td = layers.TimeDistributed(layers.Dense(H, activation="tanh"), name="td")
    rnn = getattr(layers, kind)(U, name="rnn", **kwargs)
    model = Model(inp, rnn(td(inp)))
    rng = np.random.default_rng(seed)
    _rand_weights(td, rng)
    _rand_weights(rnn, rng)
    return model, td, rnn


def _torch_td(td):
    lin = torch.nn.Linear(F, H, dtype=torch.float64)
    kernel, bias = td.get_weights()
    lin.weight.data = torch.tensor(kernel.T.copy())
    lin.bias.data = torch.tensor(bias)
    return lin


def _keras_grads(kind: str, m, suffix: str = "") -> dict:
    """nexec name -> (torch parameter, gradient in Keras layout), one direction."""
    perm = np.r_[U:2 * U, 0:U, 2 * U:3 * U] if kind == "GRU" else np.arange(GATES[kind] * U)
    inv = np.argsort(perm)

    def kern(g):  # torch (G*U, in) in torch gate order -> Keras (in, G*U)
        return g.T[:, inv]

    out = {"kernel": (getattr(m, f"weight_ih_l0{suffix}"), kern),
           "recurrent_kernel": (getattr(m, f"weight_hh_l0{suffix}"), kern)}
    if kind == "GRU":
        bi, bh = getattr(m, f"bias_ih_l0{suffix}"), getattr(m, f"bias_hh_l0{suffix}")
        out["bias"] = (bi, lambda g: np.stack([g[inv], bh.grad.numpy()[inv]]))
    else:  # torch's two biases are one Keras bias: the input one's gradient is the same
        out["bias"] = (getattr(m, f"bias_ih_l0{suffix}"), lambda g: g)
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("return_sequences,go_backwards",
                         [(False, False), (True, False), (False, True), (True, True)])
def test_layer_matches_torch(kind, return_sequences, go_backwards):
    model, td, rnn = _td_model(kind, 1, return_sequences=return_sequences,
                               go_backwards=go_backwards)
    m = _torch_cell(kind, rnn.get_weights())
    lin = _torch_td(td)

    def forward(xt):
        h = torch.tanh(lin(xt))
        if go_backwards:  # Keras reverses the input and returns outputs in that order
            h = torch.flip(h, dims=[1])
        seq, _ = m(h)
        return seq if return_sequences else seq[:, -1]

    out_shape = (T, U) if return_sequences else (U,)
    _, x, y = _data(2, out_shape)
    params = {f"rnn/{k}": v for k, v in _keras_grads(kind, m).items()}
    params["td/kernel"] = (lin.weight, lambda g: g.T)
    params["td/bias"] = (lin.bias, lambda g: g)
    _compare(model, x, y, forward, params)


@pytest.mark.parametrize("kind,return_sequences", [("LSTM", True), ("GRU", False),
                                                   ("SimpleRNN", True)])
def test_bidirectional_concat_matches_torch(kind, return_sequences):
    nexec.clear_session()
    inp = Input(shape=(T, F), dtype="float64")
    bi = layers.Bidirectional(getattr(layers, kind)(U, return_sequences=return_sequences),
                              name="bi")
    model = Model(inp, bi(inp))
    _rand_weights(bi, np.random.default_rng(3))
    w = bi.get_weights()
    k = len(w) // 2
    m = _torch_cell(kind, w[:k], w[k:])

    def forward(xt):
        seq, h_n = m(xt)
        if return_sequences:
            return seq
        h = h_n[0] if kind == "LSTM" else h_n
        return torch.cat([h[0], h[1]], dim=1)  # each direction's last state

    _, x, y = _data(4, (T, 2 * U) if return_sequences else (2 * U,))
    params = {f"bi/forward_{n}": v for n, v in _keras_grads(kind, m).items()}
    params.update({f"bi/backward_{n}": v for n, v in _keras_grads(kind, m, "_reverse").items()})
    _compare(model, x, y, forward, params)


@pytest.mark.parametrize("merge_mode", ["sum", "ave", "mul"])
def test_bidirectional_merge_modes_match_torch(merge_mode):
    nexec.clear_session()
    inp = Input(shape=(T, F), dtype="float64")
    bi = layers.Bidirectional(layers.LSTM(U, return_sequences=True), merge_mode=merge_mode,
                              name="bi")
    model = Model(inp, bi(inp))
    _rand_weights(bi, np.random.default_rng(5))
    w = bi.get_weights()
    m = _torch_cell("LSTM", w[:3], w[3:])

    def forward(xt):
        seq, _ = m(xt)
        a, b = seq[..., :U], seq[..., U:]
        return {"sum": a + b, "ave": (a + b) / 2, "mul": a * b}[merge_mode]

    _, x, y = _data(6, (T, U))
    params = {f"bi/forward_{n}": v for n, v in _keras_grads("LSTM", m).items()}
    params.update({f"bi/backward_{n}": v
                   for n, v in _keras_grads("LSTM", m, "_reverse").items()})
    _compare(model, x, y, forward, params)


@pytest.mark.parametrize("kind", KINDS)
def test_whole_sequence_finite_differences(kind):
    model, _, _ = _td_model(kind, 7, return_sequences=True, go_backwards=kind == "GRU")
    _, x, y = _data(8, (T, U))
    loss_fn, grads = model_gradients(model, x, y, "mse")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_bidirectional_finite_differences_and_activations():
    nexec.clear_session()
    inp = Input(shape=(T, F), dtype="float64")
    h = layers.Bidirectional(layers.GRU(U, activation="relu", recurrent_activation="tanh",
                                        return_sequences=True))(inp)
    out = layers.SimpleRNN(2, activation="sigmoid", use_bias=False)(h)
    model = Model(inp, out)
    _, x, y = _data(9, (2,))
    loss_fn, grads = model_gradients(model, x, y, "mse")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def _numpy_lstm(x: np.ndarray, w: np.ndarray, u: np.ndarray, b: np.ndarray | None,
                act: Callable, ract: Callable) -> np.ndarray:
    """Keras' LSTM in float64 NumPy, every step's h: (batch, steps, units)."""
    n, units = x.shape[0], u.shape[0]
    h, c, hs = np.zeros((n, units)), np.zeros((n, units)), []
    for t in range(x.shape[1]):
        z = x[:, t] @ w + h @ u + (0.0 if b is None else b)
        i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        c = ract(f) * c + ract(i) * act(g)
        h = ract(o) * act(c)
        hs.append(h)
    return np.stack(hs, 1)


@pytest.mark.parametrize("activation,recurrent_activation", [("tanh", "sigmoid"),
                                                             ("relu", "tanh")])
@pytest.mark.parametrize("use_bias", [True, False])
def test_lstm_activations_and_bias_match_numpy_and_finite_differences(
        activation: str, recurrent_activation: str, use_bias: bool) -> None:
    """The fused cell rows (Keras' default activations with a bias) and the general path
    (other activations, or no bias): forward against NumPy, gradients by finite
    differences."""
    nexec.clear_session()
    inp = Input(shape=(T, F), dtype="float64")
    rnn = layers.LSTM(U, activation=activation, recurrent_activation=recurrent_activation,
                      use_bias=use_bias, return_sequences=True, name="rnn")
    model = Model(inp, rnn(inp))
    _rand_weights(rnn, np.random.default_rng(11))
    _, x, y = _data(12, (T, U))
    fns = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0.0),
           "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v))}
    ws = rnn.get_weights()
    ref = _numpy_lstm(x, ws[0], ws[1], ws[2] if use_bias else None, fns[activation],
                      fns[recurrent_activation])
    assert_close(model.predict(x, verbose=0), ref, rtol=TOL, what="forward")
    loss_fn, grads = model_gradients(model, x, y, "mse")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_time_distributed_dense_matches_numpy_and_fuses_softmax():
    nexec.clear_session()
    inp = Input(shape=(T, F), dtype="float64")
    td = layers.TimeDistributed(layers.Dense(3, activation="softmax"))
    model = Model(inp, td(inp))
    rng, x, _ = _data(10, (T, 3))
    _rand_weights(td, rng)
    kernel, bias = td.get_weights()
    assert kernel.shape == (F, 3) and bias.shape == (3,)
    z = x @ kernel + bias
    ref = np.exp(z - z.max(-1, keepdims=True))
    assert_close(model.predict(x, verbose=0), ref / ref.sum(-1, keepdims=True), rtol=TOL)
    y = np.eye(3)[rng.integers(0, 3, (B, T))]
    loss_fn, grads = model_gradients(model, x, y, "categorical_crossentropy")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_weights_have_keras_shapes_order_and_initial_values():
    nexec.clear_session()
    nexec.set_random_seed(0)
    inp = Input(shape=(T, F))
    lstm, gru, rnn = layers.LSTM(U), layers.GRU(U), layers.SimpleRNN(U)
    bi = layers.Bidirectional(layers.LSTM(2, return_sequences=True))
    for layer in (lstm, gru, rnn, bi):
        layer(inp)
    assert [w.shape for w in lstm.get_weights()] == [(F, 4 * U), (U, 4 * U), (4 * U,)]
    assert [w.shape for w in gru.get_weights()] == [(F, 3 * U), (U, 3 * U), (2, 3 * U)]
    assert [w.shape for w in rnn.get_weights()] == [(F, U), (U, U), (U,)]
    assert [w.shape for w in bi.get_weights()] == [(F, 8), (2, 8), (8,)] * 2
    assert list(bi._params) == [f"{d}_{n}" for d in ("forward", "backward")
                                for n in ("kernel", "recurrent_kernel", "bias")]
    bias = lstm.get_weights()[2]  # unit_forget_bias: ones for the forget gate only
    assert np.all(bias[U:2 * U] == 1) and np.all(bias[:U] == 0) and np.all(bias[2 * U:] == 0)
    u = lstm.get_weights()[1]  # orthogonal: (U, 4U) has orthonormal rows
    assert_close(u @ u.T, np.eye(U), rtol=1e-5, atol=1.0)


def test_orthogonal_initializer_follows_keras_formula():
    rng = np.random.default_rng(1)
    q = orthogonal((6, 3), np.float64, rng)
    assert_close(q.T @ q, np.eye(3), rtol=1e-12, atol=1.0)
    a = np.random.default_rng(1).normal(0.0, 1.0, (6, 3))
    qq, r = np.linalg.qr(a)
    assert_close(q, qq * np.sign(np.diag(r)), rtol=1e-15, atol=1.0)
    with pytest.raises(ValueError, match="rank >= 2"):
        orthogonal((3,), np.float64, rng)


def test_a_sequence_classifier_trains():
    nexec.clear_session()
    nexec.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8, 2)).astype(np.float32)
    labels = (x[:, :, 0].sum(1) > 0).astype(int)  # the sign of a sum over the sequence
    y = np.eye(2, dtype=np.float32)[labels]
    inp = Input(shape=(8, 2))
    h = layers.Bidirectional(layers.GRU(8, return_sequences=True))(inp)
    out = layers.Dense(2, activation="softmax")(layers.LSTM(8)(h))
    model = Model(inp, out)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=25, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9


def test_training_steps_allocate_nothing():
    nexec.clear_session()
    inp = Input(shape=(T, F))
    h = layers.Bidirectional(layers.GRU(U, return_sequences=True), merge_mode="sum")(inp)
    h = layers.TimeDistributed(layers.Dense(3))(h)
    h = layers.LSTM(U, go_backwards=True)(layers.SimpleRNN(U, return_sequences=True)(h))
    model = Model(inp, layers.Dense(2, activation="softmax")(h))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, T, F)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 16)]
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    ex = model._trainer.train_executor
    prog = ex.program(8)

    def steps(k):
        for _ in range(k):
            for dst, src in zip(prog.inputs + prog.targets, [x[:8], y[:8]]):
                np.copyto(dst, src)
            ex.train_step(prog, [0.0], [])

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(3))
    assert nrt == 3 * array_arguments(prog)
    assert numpy_blocks == []


def test_config_round_trip_keeps_the_wrappers():
    nexec.clear_session()
    inp = Input(shape=(T, F))
    h = layers.Bidirectional(layers.LSTM(U, return_sequences=True), merge_mode="ave")(inp)
    out = layers.TimeDistributed(layers.Dense(2))(layers.GRU(U, return_sequences=True)(h))
    model = Model(inp, out)
    clone = nexec.models.model_from_json(model.to_json())
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(0).normal(size=(2, T, F)).astype(np.float32)
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("kwargs,match", [
    ({"stateful": True}, "stateful"),
    ({"dropout": 0.2}, "dropout"),
    ({"recurrent_dropout": 0.1}, "recurrent_dropout"),
    ({"activation": "softmax"}, "activation='softmax'"),
    ({"recurrent_initializer": "nope"}, "recurrent_initializer"),
])
def test_unsupported_arguments_are_refused_by_name(kwargs, match):
    with pytest.raises(NexecError, match=match):
        layers.LSTM(U, **kwargs)


def test_other_refusals():
    with pytest.raises(NexecError, match="reset_after"):
        layers.GRU(U, reset_after=False)
    with pytest.raises(NexecError, match="merge_mode"):
        layers.Bidirectional(layers.LSTM(U), merge_mode=None)
    with pytest.raises(TypeError, match="only a Dense"):
        layers.TimeDistributed(layers.LSTM(U))
    with pytest.raises(ShapeError, match="unknown dimension"):  # refused at Input already
        layers.LSTM(U)(Input(shape=(None, F)))
    with pytest.raises(ShapeError, match="rank-3"):
        layers.LSTM(U)(Input(shape=(F,)))


def test_cuda_has_no_recurrent_kernels_yet():
    nexec.clear_session()
    inp = Input(shape=(T, F))
    model = Model(inp, layers.LSTM(U)(inp))
    with pytest.raises(NexecError, match="no kernel for device 'cuda'"):
        model.compile(optimizer="sgd", loss="mse", device="cuda")
