"""``Bidirectional(...)(x, initial_state=[...])`` as Keras 3: the first half of the list
starts the forward layer, the second half the backward layer. Forward, loss and every
gradient (into the given states' producers included) against PyTorch float64 with copied
weights to 1e-10, with masks, ``return_state`` and each merge mode; finite differences;
models recorded from Keras 3.15 (predictions and three SGD epochs); saving and loading; the
argument errors."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import nexec
from nexec import Input, Model, layers
from nexec.checks import ArgumentError
from nexec.errors import ExportError
from nexec.optimizers import SGD
from nexec.testing import assert_close, check_gradients, model_gradients, weights_by_name
from tests.keras_reference.record_bidirectional_initial_state import CASES as KERAS_CASES

from .masked_recurrence import masked_torch
from .test_masking import _keras_grads, _torch_rnn
from .test_return_state import _compare

T, F, S, U = 4, 3, 2, 4  # steps, embedding width, state source width, units (test_masking's)


def _rand_weights(layer, rng: np.random.Generator, scale: float = 0.5) -> None:
    layer.set_weights([rng.normal(size=w.shape) * scale for w in layer.get_weights()])


def _model(kind: str, merge_mode: str, return_sequences: bool, return_state: bool,
           masked: bool, seed: int):
    """ids -> Embedding -> Bidirectional(initial_state=[Dense(tanh)(s) per state])."""
    nexec.clear_session()
    ids = Input(shape=(T,), dtype="int32", name="ids")
    s = Input(shape=(S,), dtype="float64", name="s")
    emb = layers.Embedding(6, F, mask_zero=masked, dtype="float64", name="emb")
    n = 2 if kind == "LSTM" else 1
    dense = [layers.Dense(U, activation="tanh", name=f"state{i}") for i in range(2 * n)]
    bi = layers.Bidirectional(getattr(layers, kind)(U, return_sequences=return_sequences,
                                                    return_state=return_state),
                              merge_mode=merge_mode, name="bi")
    e = emb(ids)
    if masked:
        with pytest.warns(UserWarning, match="initial_state is given"):
            outs = bi(e, initial_state=[d(s) for d in dense])
    else:
        outs = bi(e, initial_state=[d(s) for d in dense])
    model = Model([ids, s], list(outs) if return_state else outs)
    rng = np.random.default_rng(seed)
    for layer in (emb, *dense, bi):
        _rand_weights(layer, rng)
    return model, emb, dense, bi, rng


@pytest.mark.parametrize("kind,merge_mode,return_sequences,return_state,masked", [
    ("LSTM", "concat", True, False, False), ("LSTM", "concat", True, True, True),
    ("LSTM", "ave", False, True, False), ("GRU", "sum", False, False, True),
    ("GRU", "concat", True, True, False), ("SimpleRNN", "mul", True, False, True),
    ("SimpleRNN", "concat", False, True, False)])
def test_initial_state_halves_match_torch(kind, merge_mode, return_sequences, return_state,
                                          masked):
    model, emb, dense, bi, rng = _model(kind, merge_mode, return_sequences, return_state,
                                        masked, seed=31)
    data = np.array([[1, 2, 0, 0], [0, 0, 3, 4], [5, 0, 1, 0]] if masked else
                    [[1, 2, 3, 4], [5, 4, 3, 2], [1, 1, 2, 2]], dtype=np.int32)
    s = rng.normal(size=(len(data), S))
    w = bi.get_weights()
    mf, mb = _torch_rnn(kind, w[:3]), _torch_rnn(kind, w[3:])
    table = torch.tensor(emb.get_weights()[0], requires_grad=True)
    x = table[torch.tensor(data, dtype=torch.long)]
    params = {f"bi/forward_{k}": v for k, v in _keras_grads(kind, mf).items()}
    params.update({f"bi/backward_{k}": v for k, v in _keras_grads(kind, mb).items()})
    params["emb/embeddings"] = (table, lambda g: g)
    states = []
    for d in dense:
        kernel, bias = (torch.tensor(a, requires_grad=True) for a in d.get_weights())
        states.append(torch.tanh(torch.tensor(s) @ kernel + bias))
        params[f"{d.name}/kernel"] = (kernel, lambda g: g)
        params[f"{d.name}/bias"] = (bias, lambda g: g)
    half = len(states) // 2
    keep = data != 0 if masked else np.ones_like(data, dtype=bool)
    zero = masked and return_sequences
    sf, fs = masked_torch(kind, mf, x, keep, False, zero, state=states[:half])
    sb, bs = masked_torch(kind, mb, x, keep, True, zero, state=states[half:])
    a, b = (sf, torch.flip(sb, dims=[1])) if return_sequences else (sf[:, -1], sb[:, -1])
    merged = {"concat": lambda: torch.cat([a, b], dim=-1), "sum": lambda: a + b,
              "ave": lambda: (a + b) / 2, "mul": lambda: a * b}[merge_mode]()
    refs = [merged, *fs, *bs] if return_state else [merged]
    ys = [rng.normal(size=tuple(r.shape)) for r in refs]
    _compare(model, [data, s], ys, refs, params,
             masks=[keep if zero else None] + [None] * (len(refs) - 1))


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_finite_differences_through_the_states(kind):
    model, _, _, _, rng = _model(kind, "concat", True, False, True, seed=32)
    data = np.array([[1, 2, 0, 0], [0, 3, 4, 5]], dtype=np.int32)
    xs = [data, rng.normal(size=(2, S))]
    loss_fn, grads = model_gradients(model, xs, rng.normal(size=(2, T, 2 * U)), "mse")
    assert np.abs(grads["state0/kernel"]).max() > 0
    assert np.abs(grads[f"state{3 if kind == 'LSTM' else 1}/kernel"]).max() > 0
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(KERAS_CASES))
def test_keras_recorded_models(name):
    """Unmasked (Keras 3 ignores a mask when initial_state is given): predictions, three
    SGD epochs' losses and the predictions after them, to 1e-6 (JAX's float64 recurrence
    differs from nexec's by ~1e-8)."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "keras_reference", "bidirectional_initial_state")
    data = np.load(os.path.join(here, f"{name}.npz"))
    nexec.clear_session()
    model = KERAS_CASES[name](nexec)
    for layer in model.layers:
        n = len(layer.get_weights())
        if n:
            layer.set_weights([data[f"w:{layer.name}:{i}"] for i in range(n)])
    xs = [data["x0"], data["x1"]]
    assert_close(model.predict(xs, verbose=0), data["y"], rtol=1e-6, what="prediction")
    model.compile(optimizer=SGD(0.1), loss="mse")
    hist = model.fit(xs, data["t"], batch_size=len(xs[0]), epochs=3, shuffle=False, verbose=0)
    assert_close(np.array(hist.history["loss"]), data["losses"], rtol=1e-6, what="losses")
    assert_close(model.predict(xs, verbose=0), data["trained"], rtol=1e-6, what="trained")


def test_input_list_form_and_saving_round_trip(tmp_path):
    """``bi([x, *states])`` is the same call; a saved model (.keras) loads with the states
    as ``initial_state`` again and predicts the same."""
    model, *_ = _model("LSTM", "concat", False, False, False, seed=33)
    data = np.array([[1, 2, 3, 4], [5, 4, 3, 2]], dtype=np.int32)
    s = np.random.default_rng(34).normal(size=(2, S))
    path = tmp_path / "bi.keras"
    model.save(path)
    loaded = nexec.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict([data, s], verbose=0),
                                  model.predict([data, s], verbose=0))
    bi = model.get_layer("bi")
    node = bi._nodes[0]
    again = bi(node.inputs)
    assert again.shape == (None, 2 * U) and len(bi._nodes[-1].inputs) == 5


def test_wrong_state_count_names_the_argument():
    nexec.clear_session()
    x = Input(shape=(T, F))
    h = Input(shape=(U,))
    bi = layers.Bidirectional(layers.LSTM(U), name="bi")
    with pytest.raises(ArgumentError, match=r"initial_state takes the forward layer's states "
                                            r"then the backward layer's \(\[h, c, h, c\]\): "
                                            r"4 tensor\(s\), got 2"):
        bi(x, initial_state=[h, h])
    gru = layers.Bidirectional(layers.GRU(U), name="bg")
    with pytest.raises(ArgumentError, match=r"\[h, h\]\): 2 tensor\(s\), got 1"):
        gru(x, initial_state=h)
    with pytest.raises(ArgumentError, match="not both"):
        gru([x, h, h], initial_state=[h, h])
    with pytest.raises(nexec.errors.ShapeError, match="initial state 0 must have shape"):
        gru(x, initial_state=[Input(shape=(U + 1,)), h])


def test_export_with_initial_state_is_refused(tmp_path):
    nexec.clear_session()
    x, h = Input(shape=(T, F)), Input(shape=(U,))
    model = Model([x, h], layers.Bidirectional(layers.GRU(U))(x, initial_state=[h, h]))
    with pytest.raises(ExportError, match="Bidirectional call with initial_state"):
        model.export(tmp_path / "m.onnx")
