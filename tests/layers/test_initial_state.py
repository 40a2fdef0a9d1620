"""``initial_state=`` on recurrent calls (the encoder-decoder pattern): forward and every
gradient, the initial states' producers included, against PyTorch float64 (``h0``/``c0``) to
1e-10; finite differences through the states; masks with a given state; an encoder-decoder
that trains; saving and loading; the errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nexec
from nexec import Input, Model, layers
from nexec.checks import ArgumentError
from nexec.errors import ExportError, ShapeError
from nexec.testing import (assert_close, check_gradients, model_gradients, weights_by_name)

from .test_masking import _keras_grads, _torch_rnn

B, T, F, S, U = 4, 5, 3, 2, 4  # batch, steps, features, state source width, units
TOL = 1e-10


def _rand_weights(layer, rng: np.random.Generator, scale: float = 0.5) -> None:
    layer.set_weights([rng.normal(size=w.shape) * scale for w in layer.get_weights()])


def _model(kind: str, seed: int, **kwargs):
    """x (B, T, F) and s (B, S) inputs; the states are Dense(U, tanh) of s (one Dense per
    state), so their gradients are checked through the Dense weights."""
    nexec.clear_session()
    x = Input(shape=(T, F), dtype="float64", name="x")
    s = Input(shape=(S,), dtype="float64", name="s")
    n = 2 if kind == "LSTM" else 1
    dense = [layers.Dense(U, activation="tanh", name=f"state{i}") for i in range(n)]
    states = [d(s) for d in dense]
    rnn = getattr(layers, kind)(U, name="rnn", **kwargs)
    out = rnn(x, initial_state=states if n == 2 else states[0])
    model = Model([x, s], out)
    rng = np.random.default_rng(seed)
    for d in dense:
        _rand_weights(d, rng)
    _rand_weights(rnn, rng)
    return model, dense, rnn, rng


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("return_sequences,go_backwards", [(False, False), (True, True)])
def test_initial_state_matches_torch(kind, return_sequences, go_backwards):
    model, dense, rnn, rng = _model(kind, 1, return_sequences=return_sequences,
                                    go_backwards=go_backwards)
    x, s = rng.normal(size=(B, T, F)), rng.normal(size=(B, S))
    m = _torch_rnn(kind, rnn.get_weights())
    params = {f"rnn/{k}": v for k, v in _keras_grads(kind, m).items()}
    states = []
    for d in dense:
        kernel, bias = (torch.tensor(w, requires_grad=True) for w in d.get_weights())
        states.append(torch.tanh(torch.tensor(s) @ kernel + bias)[None])
        params[f"{d.name}/kernel"] = (kernel, lambda g: g)
        params[f"{d.name}/bias"] = (bias, lambda g: g)
    xt = torch.tensor(x)
    if go_backwards:
        xt = torch.flip(xt, dims=[1])
    seq, _ = m(xt, tuple(states) if kind == "LSTM" else states[0])
    ref = seq if return_sequences else seq[:, -1]
    y = rng.normal(size=tuple(ref.shape))
    pred = model.predict([x, s], verbose=0)
    assert_close(pred, ref.detach().numpy(), rtol=TOL, what="forward")
    loss_fn, grads = model_gradients(model, [x, s], y, "mse")
    loss = ((ref - torch.tensor(y)) ** 2).mean()
    loss.backward()
    assert abs(loss_fn() - loss.item()) <= TOL * abs(loss.item())
    for name, (tensor, to_keras) in params.items():
        assert_close(grads[name], to_keras(tensor.grad.numpy()), rtol=TOL, what=name)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_finite_differences_through_the_initial_state(kind):
    model, _, _, rng = _model(kind, 2, return_sequences=True)
    x, s = rng.normal(size=(B, T, F)), rng.normal(size=(B, S))
    loss_fn, grads = model_gradients(model, [x, s], rng.normal(size=(B, T, U)), "mse")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_a_masked_sequence_starts_from_the_given_state():
    """Leading padding carries the given state (Keras 3's scan rule with h0 first). Keras
    3.15 itself ignores the mask in such a call (checked by hand): nexec warns."""
    nexec.clear_session()
    ids = Input(shape=(T,), dtype="int32")
    s = Input(shape=(S,), dtype="float64")
    emb = layers.Embedding(6, F, mask_zero=True, dtype="float64", name="emb")
    dh, dc = layers.Dense(U, name="h0"), layers.Dense(U, name="c0")
    rnn = layers.LSTM(U, return_sequences=True, name="rnn")
    with pytest.warns(UserWarning, match="Keras 3 ignores the mask in this call"):
        out = rnn(emb(ids), initial_state=[dh(s), dc(s)])
    model = Model([ids, s], out)
    rng = np.random.default_rng(3)
    for layer in (emb, dh, dc, rnn):
        _rand_weights(layer, rng)
    data = np.array([[0, 0, 1, 2, 3], [4, 5, 0, 0, 0], [1, 0, 2, 0, 3], [0, 0, 0, 0, 0]],
                    dtype=np.int32)
    sv = rng.normal(size=(4, S))
    m = _torch_rnn("LSTM", rnn.get_weights())
    w = {f"{layer.name}/{n}": torch.tensor(v, requires_grad=True)
         for layer in (emb, dh, dc) for n, v in zip(("embeddings",) if layer is emb
                                                    else ("kernel", "bias"),
                                                    layer.get_weights())}
    st = torch.tensor(sv)
    h0 = (st @ w["h0/kernel"] + w["h0/bias"])[None]
    c0 = (st @ w["c0/kernel"] + w["c0/bias"])[None]
    x = w["emb/embeddings"][torch.tensor(data, dtype=torch.long)]
    keep = data != 0
    h, c, outs = h0, c0, []
    for t in range(T):
        k = torch.tensor(keep[:, t])[None, :, None]
        _, (hn, cn) = m(x[:, t:t + 1], (h, c))
        h, c = torch.where(k, hn, h), torch.where(k, cn, c)
        outs.append(h[0])
    ref = torch.stack(outs, 1)
    pred = model.predict([data, sv], verbose=0)
    assert_close(pred, ref.detach().numpy(), rtol=TOL, what="forward")
    assert_close(pred[3], np.repeat(h0[0, 3].detach().numpy()[None], T, 0), rtol=TOL,
                 what="all padding keeps h0")
    y = rng.normal(size=(4, T, U))
    loss_fn, grads = model_gradients(model, [data, sv], y, "mse")
    mask = torch.tensor(keep, dtype=torch.float64)  # the output carries the mask: Keras'
    (((ref - torch.tensor(y)) ** 2).mean(-1) * mask).sum().div(mask.sum()).backward()  # loss
    for name in ("h0/kernel", "c0/bias", "emb/embeddings"):
        assert_close(grads[name], w[name].grad.numpy(), rtol=TOL, what=name)
    m_grads = dict(_keras_grads("LSTM", m))
    tensor, to_keras = m_grads["recurrent_kernel"]
    assert_close(grads["rnn/recurrent_kernel"], to_keras(tensor.grad.numpy()), rtol=TOL)


def _seq2seq(cell: str = "GRU"):
    """Keras' character-level seq2seq tutorial, small: the encoder's last state starts the
    decoder, which reads the target shifted by one (teacher forcing)."""
    nexec.clear_session()
    enc_in = Input(shape=(6, 5), name="encoder_inputs")
    dec_in = Input(shape=(6, 5), name="decoder_inputs")
    state = getattr(layers, cell)(16, name="encoder")(enc_in)
    seq = getattr(layers, cell)(16, return_sequences=True, name="decoder")(
        dec_in, initial_state=[state])
    out = layers.Dense(5, activation="softmax", name="decoder_dense")(seq)
    return Model([enc_in, dec_in], out)


def test_an_encoder_decoder_trains():
    model = _seq2seq()
    model.compile(optimizer=nexec.optimizers.Adam(0.02), loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 5, (128, 6))
    src = np.eye(5, dtype=np.float32)[tokens]
    target = np.eye(5, dtype=np.float32)[tokens[:, ::-1]]  # reverse the sequence
    shifted = np.concatenate([np.zeros_like(target[:, :1]), target[:, :-1]], axis=1)
    hist = model.fit([src, shifted], target, epochs=40, batch_size=32, verbose=0)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    pred = model.predict([src, shifted], verbose=0)
    assert (pred.argmax(-1) == tokens[:, ::-1]).mean() > 0.6


def test_a_model_with_initial_state_round_trips_through_its_files(tmp_path):
    nexec.clear_session()
    x = Input(shape=(T, F), name="x")
    s = Input(shape=(S,), name="s")
    h0, c0 = layers.Dense(U, name="h0")(s), layers.Dense(U, name="c0")(s)
    out = layers.LSTM(U, name="rnn")(x, initial_state=[h0, c0])
    model = Model([x, s], out)
    rng = np.random.default_rng(4)
    data = [rng.normal(size=(3, T, F)).astype(np.float32),
            rng.normal(size=(3, S)).astype(np.float32)]
    want = model.predict(data, verbose=0)
    for name in ("m.keras", "m.nexec"):
        path = str(tmp_path / name)
        model.save(path)
        back = nexec.models.load_model(path)
        assert_close(back.predict(data, verbose=0), want, rtol=1e-6, what=name)
    config = json.loads(model.to_json())
    rnn = next(e for e in config["config"]["layers"] if e["name"] == "rnn")
    node = rnn["inbound_nodes"][0]
    assert len(node["args"]) == 1 and len(node["kwargs"]["initial_state"]) == 2


def test_initial_state_errors():
    nexec.clear_session()
    x = Input(shape=(T, F))
    h = Input(shape=(U,))
    with pytest.raises(ArgumentError, match=r"initial_state takes \[h, c\]"):
        layers.LSTM(U)(x, initial_state=[h])
    with pytest.raises(ArgumentError, match="initial_state takes h"):
        layers.GRU(U)(x, initial_state=[h, h])
    with pytest.raises(ShapeError, match=r"initial state 0 must have shape \(None, 3\)"):
        layers.GRU(3)(x, initial_state=h)
    with pytest.raises(ArgumentError, match="explicit mask"):
        layers.GRU(U)(x, mask=h)
    from nexec.export.onnx import build_onnx

    model = Model([x, h], layers.GRU(U)(x, initial_state=h))
    with pytest.raises(ExportError, match="initial_state"):
        build_onnx(model)
