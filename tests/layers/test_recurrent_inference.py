"""The recurrent ops' inference path: an inference program (predict, evaluate) keeps no step
for backward, only the running state, and its outputs equal those of a training program's
forward bit for bit (same arithmetic in the same order), for every cell, mask, direction,
output kind and initial state; its workspaces are smaller."""
from __future__ import annotations

import numpy as np
import pytest

import nexec
import nexec.ops.recurrent as recurrent_ops
from nexec import Input, Model, layers
from nexec.training.data import as_inputs

B, T, F, U = 5, 6, 3, 4
KINDS = ["SimpleRNN", "LSTM", "GRU"]


def _model(kind: str, dtype: str, masked: bool, with_state: bool, bidirectional: bool,
           **rnn_kw) -> Model:
    nexec.clear_session()
    nexec.set_random_seed(7)
    if masked:
        ids = Input(shape=(T,), dtype="int32")
        x = layers.Embedding(7, F, mask_zero=True, dtype=dtype)(ids)
        inputs = [ids]
    else:
        x = Input(shape=(T, F), dtype=dtype)
        inputs = [x]
    rnn = getattr(layers, kind)(U, dtype=dtype, **rnn_kw)
    if bidirectional:
        rnn = layers.Bidirectional(rnn, dtype=dtype)
    call_kw = {}
    if with_state:
        n = (2 if kind == "LSTM" else 1) * (2 if bidirectional else 1)
        states = [Input(shape=(U,), dtype=dtype) for _ in range(n)]
        inputs += states
        call_kw["initial_state"] = states
    out = rnn(x, **call_kw)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    return Model(inputs, outs)


def _data(masked: bool, with_state: bool, kind: str, bidirectional: bool,
          dtype: str) -> list:
    rng = np.random.default_rng(2)
    if masked:
        ids = rng.integers(1, 7, (B, T)).astype(np.int32)
        ids[1, 3:] = 0
        ids[3, :2] = 0
        ids[4, :] = 0
        xs = [ids]
    else:
        xs = [rng.normal(size=(B, T, F)).astype(dtype)]
    if with_state:
        n = (2 if kind == "LSTM" else 1) * (2 if bidirectional else 1)
        xs += [rng.normal(size=(B, U)).astype(dtype) for _ in range(n)]
    return xs


def _forward(executor, model: Model, xs: list) -> list[np.ndarray]:
    """The model outputs of one forward pass of ``executor``'s program."""
    prog = executor.program(B)
    for dst, src in zip(prog.inputs, as_inputs(xs, model, model._trainer.dtype)):
        np.copyto(dst, src)
    executor.run_forward(prog)
    return [np.array(o) for o in prog.outputs]


CASES = [  # masked, with_state, bidirectional, layer settings
    (False, False, False, {}),
    (False, False, False, {"return_sequences": True, "go_backwards": True}),
    (True, False, False, {"return_sequences": True}),
    (True, True, False, {"return_state": True, "go_backwards": True}),
    (False, True, False, {"return_sequences": True, "return_state": True}),
    (True, False, True, {"return_sequences": True}),
    (False, True, True, {}),
]


@pytest.mark.filterwarnings("ignore:Layer .* carries a mask and initial_state is given")
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("masked,with_state,bidirectional,kw", CASES)
def test_inference_outputs_equal_training_forward_bits(kind, dtype, masked, with_state,
                                                       bidirectional, kw):
    model = _model(kind, dtype, masked, with_state, bidirectional, **kw)
    model.compile(optimizer="sgd", loss="mse")
    xs = _data(masked, with_state, kind, bidirectional, dtype)
    trainer = model._trainer
    inference = _forward(trainer.eval_executor, model, xs)
    training = _forward(trainer.train_executor, model, xs)
    predicted = model.predict(xs, verbose=0)
    predicted = predicted if isinstance(predicted, list) else [predicted]
    assert len(inference) == len(training) == len(predicted)
    for a, b, p in zip(inference, training, predicted):
        assert a.dtype == np.dtype(dtype)
        assert np.isfinite(a).all()
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))
        assert np.array_equal(p.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("kind", KINDS)
def test_inference_workspaces_are_smaller(kind):
    layer = getattr(layers, kind)(U)
    kernel = getattr(recurrent_ops, f"{kind}Kernel")("cpu")
    inf = kernel.workspaces(layer, [(T, F)], (U,), B, training=False)
    train = kernel.workspaces(layer, [(T, F)], (U,), B, training=True)
    assert inf["hs"].shape == (2, B, U)  # the running state: read one, write the other
    if kind == "LSTM":  # its backward reads the hidden states from the joint rows ``xh``
        assert train["hs"].shape == (2, B, U) and not train["hs"].saved
        assert train["cs"].shape == (T + 1, B, U) and train["cs"].saved
        assert inf["cs"].shape == (2, B, U) and inf["tc"].shape == (1, B, U)
    else:
        assert train["hs"].shape == (T + 1, B, U) and train["hs"].saved
    if kind == "GRU":
        assert inf["rh"].shape == (1, B, U)
        assert train["xs"].saved and "xh" not in train
    else:  # the joint rows [x_t | h_{t-1} | 1], written by forward, replace the kept input
        assert train["xh"].shape == (T, B, F + U + 1) and train["xh"].saved
        assert not train["xs"].saved and "xh" not in inf
    assert not any(ws.saved for ws in inf.values())
    size = lambda table: sum(int(np.prod(ws.shape)) for ws in table.values())  # noqa: E731
    assert size(inf) < size({k: ws for k, ws in train.items() if ws.phase != "backward"})


def test_inference_plan_holds_running_states():
    """The inference program's memory plan holds two states, not every step's."""
    model = _model("LSTM", "float32", False, False, False, return_sequences=True)
    model.compile(optimizer="sgd", loss="mse")
    ex = model._trainer.eval_executor
    ex.program(B)
    sched = ex.schedule
    states = {n: b.shape for n, b in sched.buffers.items()
              if n.endswith((".hs (forward)", ".cs (forward)", ".tc (forward)"))}
    assert sorted(states.values()) == [(1, B, U), (2, B, U), (2, B, U)], states
