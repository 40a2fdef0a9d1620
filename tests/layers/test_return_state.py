"""``return_state=True`` on SimpleRNN, LSTM and GRU: the final states as tensors of their own
(model outputs, another layer's input, ``initial_state=`` of a decoder), against PyTorch
float64 with copied weights (forward and every gradient to 1e-10, the gradients flowing back
through the states included), finite differences, masks, an encoder-decoder that trains, saving
and loading, the plan and the summary."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nexec
from nexec import Input, Model, layers
from nexec.errors import NexecError
from nexec.testing import (
    array_arguments,
    assert_close,
    check_gradients,
    count_allocations,
    model_gradients,
    weights_by_name,
)

from .masked_recurrence import masked_torch
from .test_masking import _keras_grads, _torch_rnn

B, T, F, H, U = 3, 4, 3, 2, 4  # batch, steps, features, TimeDistributed width, units
TOL = 1e-10
KINDS = ["SimpleRNN", "LSTM", "GRU"]


def _rand_weights(layer, rng: np.random.Generator, scale: float = 0.5) -> None:
    layer.set_weights([rng.normal(size=w.shape) * scale for w in layer.get_weights()])


def _torch_td(td):
    lin = torch.nn.Linear(F, H, dtype=torch.float64)
    kernel, bias = td.get_weights()
    lin.weight.data = torch.tensor(kernel.T.copy())
    lin.bias.data = torch.tensor(bias)
    return lin


def _torch_states(kind: str, m, h):
    """torch's sequence and final states, in Keras' order (h, then c for LSTM)."""
    seq, state = m(h)
    states = list(state) if kind == "LSTM" else [state]
    return seq, [s[0] for s in states]


def _mse(r, y, mask=None):
    """Keras' MSE; on an output with a mask, ``sum(step loss * mask) / valid steps``."""
    rows = ((r - torch.tensor(y)) ** 2).mean(-1)
    if mask is None:
        return rows.mean()
    m = torch.tensor(mask, dtype=torch.float64)
    return (rows * m).sum() / m.sum()


def _compare(model, x, ys, refs, params: dict, masks=None) -> None:
    """nexec's outputs, summed MSE losses and gradients against torch's ``refs``
    (``masks``: each output's mask, or None)."""
    preds = model.predict(x, verbose=0)
    preds = preds if isinstance(preds, list) else [preds]
    assert len(preds) == len(refs)
    for k, (p, r) in enumerate(zip(preds, refs)):
        assert_close(p, r.detach().numpy(), rtol=TOL, what=f"output {k}")
    loss_fn, grads = model_gradients(model, x, ys, "mse")
    masks = masks or [None] * len(refs)
    loss = sum(_mse(r, y, m) for r, y, m in zip(refs, ys, masks))
    loss.backward()
    assert abs(loss_fn() - loss.item()) <= TOL * abs(loss.item())
    for name, (tensor, to_keras) in params.items():
        assert_close(grads[name], to_keras(tensor.grad.numpy()), rtol=TOL, what=name)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("return_sequences,go_backwards",
                         [(False, False), (True, False), (False, True), (True, True)])
def test_states_as_model_outputs_match_torch(kind, return_sequences, go_backwards):
    """Every output is a model output with a loss of its own: the gradients of the final
    states reach the recurrent weights and, through the input, the Dense before it."""
    nexec.clear_session()
    inp = Input(shape=(T, F), dtype="float64")
    td = layers.TimeDistributed(layers.Dense(H, activation="tanh"), name="td")
    rnn = getattr(layers, kind)(U, return_state=True, return_sequences=return_sequences,
                                go_backwards=go_backwards, name="rnn")
    outs = rnn(td(inp))
    assert isinstance(outs, tuple) and len(outs) == (3 if kind == "LSTM" else 2)
    assert outs[0].shape == ((None, T, U) if return_sequences else (None, U))
    assert all(s.shape == (None, U) for s in outs[1:])
    model = Model(inp, list(outs))
    rng = np.random.default_rng(1)
    _rand_weights(td, rng)
    _rand_weights(rnn, rng)
    m, lin = _torch_rnn(kind, rnn.get_weights()), _torch_td(td)
    x = rng.normal(size=(B, T, F))
    h = torch.tanh(lin(torch.tensor(x)))
    if go_backwards:
        h = torch.flip(h, dims=[1])
    seq, states = _torch_states(kind, m, h)
    refs = [seq if return_sequences else seq[:, -1], *states]
    ys = [rng.normal(size=tuple(r.shape)) for r in refs]
    params = {f"rnn/{k}": v for k, v in _keras_grads(kind, m).items()}
    params["td/kernel"] = (lin.weight, lambda g: g.T)
    params["td/bias"] = (lin.bias, lambda g: g)
    _compare(model, x, ys, refs, params)


@pytest.mark.parametrize("kind", KINDS)
def test_only_the_states_are_read(kind):
    """``_, *states = layer(x)``: the output feeds nothing, the states feed a Dense each."""
    nexec.clear_session()
    inp = Input(shape=(T, F), dtype="float64")
    rnn = getattr(layers, kind)(U, return_state=True, return_sequences=True, name="rnn")
    _, *states = rnn(inp)
    heads = [layers.Dense(2, name=f"head{i}") for i in range(len(states))]
    model = Model(inp, [d(s) for d, s in zip(heads, states)])
    rng = np.random.default_rng(2)
    _rand_weights(rnn, rng)
    for d in heads:
        _rand_weights(d, rng)
    m = _torch_rnn(kind, rnn.get_weights())
    x = rng.normal(size=(B, T, F))
    _, tstates = _torch_states(kind, m, torch.tensor(x))
    params = {f"rnn/{k}": v for k, v in _keras_grads(kind, m).items()}
    refs = []
    for d, s in zip(heads, tstates):
        kernel, bias = (torch.tensor(w, requires_grad=True) for w in d.get_weights())
        refs.append(s @ kernel + bias)
        params[f"{d.name}/kernel"] = (kernel, lambda g: g)
        params[f"{d.name}/bias"] = (bias, lambda g: g)
    ys = [rng.normal(size=(B, 2)) for _ in refs]
    _compare(model, x, ys, refs, params)


def _encoder_decoder(kind: str, seed: int):
    """Keras' seq2seq pattern: the encoder's final states start the decoder."""
    nexec.clear_session()
    enc_in = Input(shape=(T, F), dtype="float64", name="enc_in")
    dec_in = Input(shape=(T - 1, F), dtype="float64", name="dec_in")
    enc = getattr(layers, kind)(U, return_state=True, name="enc")
    dec = getattr(layers, kind)(U, return_sequences=True, name="dec")
    _, *states = enc(enc_in)
    seq = dec(dec_in, initial_state=states)
    head = layers.TimeDistributed(layers.Dense(2), name="head")
    model = Model([enc_in, dec_in], head(seq))
    rng = np.random.default_rng(seed)
    for layer in (enc, dec, head):
        _rand_weights(layer, rng)
    return model, enc, dec, head, rng


@pytest.mark.parametrize("kind", KINDS)
def test_encoder_decoder_gradients_match_torch(kind):
    """A loss on the decoder alone trains the encoder, through its final states."""
    model, enc, dec, head, rng = _encoder_decoder(kind, 3)
    me, md = _torch_rnn(kind, enc.get_weights()), _torch_rnn(kind, dec.get_weights())
    xe, xd = rng.normal(size=(B, T, F)), rng.normal(size=(B, T - 1, F))
    _, states = _torch_states(kind, me, torch.tensor(xe))
    init = tuple(s[None] for s in states) if kind == "LSTM" else states[0][None]
    seq, _ = md(torch.tensor(xd), init)
    kernel, bias = (torch.tensor(w, requires_grad=True) for w in head.get_weights())
    ref = seq @ kernel + bias
    params = {f"enc/{k}": v for k, v in _keras_grads(kind, me).items()}
    params.update({f"dec/{k}": v for k, v in _keras_grads(kind, md).items()})
    params["head/kernel"] = (kernel, lambda g: g)
    _compare(model, [xe, xd], [rng.normal(size=(B, T - 1, 2))], [ref], params)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_finite_differences_through_the_states(kind):
    model, _, _, _, rng = _encoder_decoder(kind, 4)
    x = [rng.normal(size=(B, T, F)), rng.normal(size=(B, T - 1, F))]
    loss_fn, grads = model_gradients(model, x, rng.normal(size=(B, T - 1, 2)), "mse")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_masked_states_are_the_last_real_steps():
    """With ``Embedding(mask_zero=True)``, Keras' final states are those after each sample's
    last real step (padded steps carry them); their gradients pass back the same way."""
    nexec.clear_session()
    ids = Input(shape=(T,), dtype="int32")
    emb = layers.Embedding(6, F, mask_zero=True, dtype="float64", name="emb")
    rnn = layers.LSTM(U, return_state=True, name="rnn")
    out, h, c = rnn(emb(ids))
    assert out.mask is None and h.mask is None and c.mask is None
    model = Model(ids, [h, c])
    rng = np.random.default_rng(5)
    _rand_weights(emb, rng)
    _rand_weights(rnn, rng)
    data = np.array([[1, 2, 0, 0], [0, 0, 3, 4], [5, 0, 1, 0]], dtype=np.int32)
    m = _torch_rnn("LSTM", rnn.get_weights())
    table = torch.tensor(emb.get_weights()[0], requires_grad=True)
    x = table[torch.tensor(data, dtype=torch.long)]
    hh = torch.zeros(1, B, U, dtype=torch.float64)
    cc = torch.zeros(1, B, U, dtype=torch.float64)
    for t in range(T):
        keep = torch.tensor(data[:, t] != 0)[None, :, None]
        _, (hn, cn) = m(x[:, t:t + 1], (hh, cc))
        hh, cc = torch.where(keep, hn, hh), torch.where(keep, cn, cc)
    params = {f"rnn/{k}": v for k, v in _keras_grads("LSTM", m).items()}
    params["emb/embeddings"] = (table, lambda g: g)
    ys = [rng.normal(size=(B, U)) for _ in range(2)]
    _compare(model, data, ys, [hh[0], cc[0]], params)


def test_encoder_decoder_trains_and_round_trips(tmp_path):
    model, *_ = _encoder_decoder("LSTM", 6)
    rng = np.random.default_rng(7)
    x = [rng.normal(size=(16, T, F)), rng.normal(size=(16, T - 1, F))]
    y = np.tanh(x[1][:, :, :2] + x[0][:, -1:, :2])
    model.compile(optimizer="adam", loss="mse")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=15, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0) < first
    path = str(tmp_path / "seq2seq.npz")
    model.save(path)
    loaded = nexec.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    enc = loaded.get_layer("enc")
    assert enc.return_state and enc.get_config()["return_state"] is True


def test_config_round_trip_keeps_every_output():
    nexec.clear_session()
    inp = Input(shape=(T, F))
    out, h, c = layers.LSTM(U, return_state=True, name="rnn")(inp)
    model = Model(inp, [out, layers.Dense(2, name="d")(c), h])
    clone = nexec.models.model_from_json(model.to_json())
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(0).normal(size=(2, T, F)).astype(np.float32)
    for a, b in zip(clone.predict(x, verbose=0), model.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)


def test_plan_and_summary_show_the_outputs():
    nexec.clear_session()
    inp = Input(shape=(T, F))
    out, h, c = layers.LSTM(U, return_state=True, name="rnn")(inp)
    model = Model(inp, [h, c])
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    row = next(line for line in "\n".join(lines).splitlines()
               if line.lstrip().startswith("rnn"))
    assert row.count(f"(None, {U})") == 3
    plan = str(model.plan()).splitlines()
    at = next(i for i, line in enumerate(plan) if "rnn (LSTM)" in line)
    assert all(f"(None, {U})" in line for line in plan[at:at + 3])
    assert plan[-1] == "outputs: t2, t3"  # the states; the output t1 feeds nothing


def test_output_and_state_h_are_the_same_value():
    nexec.clear_session()
    inp = Input(shape=(T, F))
    out, h = layers.GRU(U, return_state=True)(inp)
    model = Model(inp, [out, h])
    a, b = model.predict(np.random.default_rng(0).normal(size=(2, T, F)), verbose=0)
    np.testing.assert_array_equal(a, b)


def test_bidirectional_needs_one_return_state_both_ways():
    with pytest.raises(NexecError, match="return_state"):
        layers.Bidirectional(layers.LSTM(U, return_state=True),
                             backward_layer=layers.LSTM(U, go_backwards=True))


def test_keras_archive_round_trip(tmp_path):
    """nexec writes the node references to the states as Keras does (tensor index 1, 2)."""
    model, *_ = _encoder_decoder("LSTM", 8)
    x = [np.random.default_rng(0).normal(size=(2, T, F)),
         np.random.default_rng(1).normal(size=(2, T - 1, F))]
    path = str(tmp_path / "seq2seq.keras")
    model.save(path)
    loaded = nexec.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    cfg = model.get_config()
    dec = next(entry for entry in cfg["layers"] if entry["name"] == "dec")
    assert ["enc", 0, 1] in _refs(dec["inbound_nodes"])
    assert ["enc", 0, 2] in _refs(dec["inbound_nodes"])


def _refs(value):
    """Every ``[layer, call, output]`` reference in a Keras inbound-nodes structure."""
    if isinstance(value, dict):
        if "keras_history" in value.get("config", {}):
            return [list(value["config"]["keras_history"])]
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


@pytest.mark.parametrize("kind,return_sequences", [("LSTM", False), ("GRU", True),
                                                   ("SimpleRNN", False)])
def test_onnx_export_returns_the_states(kind, return_sequences, tmp_path):
    """ONNX's recurrent ops have the final states as outputs (Y_h, Y_c): onnxruntime gives
    nexec's numbers for every output."""
    import onnxruntime as ort

    nexec.clear_session()
    inp = Input(shape=(T, F), name="x")
    outs = getattr(layers, kind)(U, return_state=True, return_sequences=return_sequences,
                                 go_backwards=kind == "GRU", name="rnn")(inp)
    model = Model(inp, list(outs))
    _rand_weights(model.get_layer("rnn"), np.random.default_rng(9))
    path = tmp_path / "rnn.onnx"
    model.export(path)
    x = np.random.default_rng(10).normal(size=(3, T, F)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})
    want = model.predict(x, verbose=0)
    assert len(got) == len(want) == len(outs)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("kind,merge_mode,return_sequences,masked", [
    ("LSTM", "concat", True, True), ("LSTM", "ave", False, False),
    ("GRU", "sum", False, True), ("SimpleRNN", "mul", True, False)])
def test_bidirectional_states_match_torch(kind, merge_mode, return_sequences, masked):
    """Keras' order: the merged output, the forward layer's states, the backward layer's;
    with a mask and sequences the outputs are 0 at padded steps but the states carry."""
    nexec.clear_session()
    ids = Input(shape=(T,), dtype="int32")
    emb = layers.Embedding(6, F, mask_zero=masked, dtype="float64", name="emb")
    bi = layers.Bidirectional(getattr(layers, kind)(U, return_sequences=return_sequences,
                                                    return_state=True),
                              merge_mode=merge_mode, name="bi")
    outs = bi(emb(ids))
    n = 2 if kind == "LSTM" else 1
    assert len(outs) == 1 + 2 * n and all(s.shape == (None, U) for s in outs[1:])
    model = Model(ids, list(outs))
    rng = np.random.default_rng(11)
    _rand_weights(emb, rng)
    _rand_weights(bi, rng)
    data = np.array([[1, 2, 0, 0], [0, 0, 3, 4], [5, 0, 1, 0]] if masked else
                    [[1, 2, 3, 4], [5, 4, 3, 2], [1, 1, 2, 2]], dtype=np.int32)
    w = bi.get_weights()
    mf, mb = _torch_rnn(kind, w[:3]), _torch_rnn(kind, w[3:])
    table = torch.tensor(emb.get_weights()[0], requires_grad=True)
    x = table[torch.tensor(data, dtype=torch.long)]
    keep = data != 0 if masked else np.ones_like(data, dtype=bool)
    zero = masked and return_sequences
    sf, fs = masked_torch(kind, mf, x, keep, False, zero)
    sb, bs = masked_torch(kind, mb, x, keep, True, zero)
    a, b = (sf, torch.flip(sb, dims=[1])) if return_sequences else (sf[:, -1], sb[:, -1])
    merged = {"concat": lambda: torch.cat([a, b], dim=-1), "sum": lambda: a + b,
              "ave": lambda: (a + b) / 2, "mul": lambda: a * b}[merge_mode]()
    refs = [merged, *fs, *bs]
    params = {f"bi/forward_{k}": v for k, v in _keras_grads(kind, mf).items()}
    params.update({f"bi/backward_{k}": v for k, v in _keras_grads(kind, mb).items()})
    params["emb/embeddings"] = (table, lambda g: g)
    ys = [rng.normal(size=tuple(r.shape)) for r in refs]
    _compare(model, data, ys, refs, params,  # the masked sequence's loss is masked (Keras)
             masks=[keep if zero else None] + [None] * (len(refs) - 1))


def test_bidirectional_states_only_feed_a_decoder():
    """``_, fh, fc, bh, bc = Bidirectional(LSTM(return_state=True))``: the output feeds
    nothing; the concatenated states start a decoder, which trains the encoder."""
    nexec.clear_session()
    enc_in = Input(shape=(T, F), dtype="float64")
    dec_in = Input(shape=(T - 1, F), dtype="float64")
    _, fh, fc, bh, bc = layers.Bidirectional(layers.LSTM(U, return_state=True),
                                             name="bi")(enc_in)
    h = layers.Concatenate()([fh, bh])
    c = layers.Concatenate()([fc, bc])
    dec = layers.LSTM(2 * U, return_sequences=True, name="dec")
    model = Model([enc_in, dec_in], dec(dec_in, initial_state=[h, c]))
    rng = np.random.default_rng(12)
    for layer in (model.get_layer("bi"), dec):
        _rand_weights(layer, rng)
    x = [rng.normal(size=(B, T, F)), rng.normal(size=(B, T - 1, F))]
    loss_fn, grads = model_gradients(model, x, rng.normal(size=(B, T - 1, 2 * U)), "mse")
    assert np.abs(grads["bi/forward_kernel"]).max() > 0
    assert np.abs(grads["bi/backward_recurrent_kernel"]).max() > 0
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_bidirectional_states_export_to_onnx(tmp_path):
    import onnxruntime as ort

    nexec.clear_session()
    inp = Input(shape=(T, F), name="x")
    outs = layers.Bidirectional(layers.LSTM(U, return_state=True, return_sequences=True),
                                name="bi")(inp)
    model = Model(inp, list(outs))
    _rand_weights(model.get_layer("bi"), np.random.default_rng(13))
    path = tmp_path / "bi.onnx"
    model.export(path)
    x = np.random.default_rng(14).normal(size=(3, T, F)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})
    want = model.predict(x, verbose=0)
    assert len(got) == len(want) == 5
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=2e-5)


def test_training_steps_with_states_allocate_nothing():
    """The state copies and the gradient seeds are bound calls over planned memory."""
    nexec.clear_session()
    enc_in, dec_in = Input(shape=(T, F)), Input(shape=(T - 1, F))
    _, fh, fc, bh, bc = layers.Bidirectional(layers.LSTM(U, return_state=True))(enc_in)
    _, h = layers.GRU(U, return_state=True, return_sequences=True)(dec_in, initial_state=fh)
    model = Model([enc_in, dec_in], layers.Dense(2)(layers.Concatenate()([h, fc, bh, bc])))
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    xe = rng.normal(size=(16, T, F)).astype(np.float32)
    xd = rng.normal(size=(16, T - 1, F)).astype(np.float32)
    y = rng.normal(size=(16, 2)).astype(np.float32)
    model.fit([xe, xd], y, epochs=1, batch_size=8, verbose=0)
    ex = model._trainer.train_executor
    prog = ex.program(8)

    def steps(k):
        for _ in range(k):
            for dst, src in zip(prog.inputs + prog.targets, [xe[:8], xd[:8], y[:8]]):
                np.copyto(dst, src)
            ex.train_step(prog, [0.0], [])

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(3))
    assert nrt == 3 * array_arguments(prog)
    assert numpy_blocks == []
