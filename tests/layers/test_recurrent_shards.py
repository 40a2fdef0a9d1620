"""Recurrent ops split over batch shards (more than one thread): predictions and every
gradient equal the one-thread results (float64, 1e-12), with masks and initial states,
identical from run to run, and a sharded training step allocates nothing."""
from __future__ import annotations

import numpy as np
import pytest

import nexec
import nexec.ops.recurrent as recurrent_ops
from nexec import Input, Model, layers
from nexec.testing import array_arguments, assert_close, count_allocations, model_gradients

B, T, F, U = 5, 4, 3, 4  # an odd batch: shards of unequal size
KINDS = ["SimpleRNN", "LSTM", "GRU"]


@pytest.fixture
def shards(monkeypatch):
    """Runs the test body's models with ``n`` threads and shards however small the op."""
    monkeypatch.setattr(recurrent_ops, "_MIN_SHARD_FLOPS", 1)
    before = nexec.get_num_threads()
    yield nexec.set_num_threads
    nexec.set_num_threads(before)


def _model(kind: str, return_sequences: bool, masked: bool, with_state: bool, use_bias: bool):
    nexec.clear_session()
    nexec.set_random_seed(3)
    cls = getattr(layers, kind)
    rnn = cls(U, return_sequences=return_sequences, use_bias=use_bias, name="rnn")
    if masked:
        ids = Input(shape=(T,), dtype="int32")
        x = layers.Embedding(7, F, mask_zero=True, dtype="float64", name="emb")(ids)
        inputs = [ids]
    else:
        x = Input(shape=(T, F), dtype="float64")
        inputs = [x]
    if with_state:
        s = Input(shape=(U,), dtype="float64")
        inputs.append(s)
        h = rnn(x, initial_state=[s, s] if kind == "LSTM" else [s])
    else:
        h = rnn(x)
    out = layers.Dense(2, dtype="float64", name="head")(layers.Flatten()(h)
                                                        if return_sequences else h)
    return Model(inputs, out)


def _data(masked: bool, with_state: bool) -> tuple[list, np.ndarray]:
    rng = np.random.default_rng(0)
    if masked:
        ids = rng.integers(1, 7, (B, T)).astype(np.int32)
        ids[1, 2:] = 0
        ids[3, :1] = 0
        xs = [ids]
    else:
        xs = [rng.normal(size=(B, T, F))]
    if with_state:
        xs.append(rng.normal(size=(B, U)))
    return xs, rng.normal(size=(B, 2))


def _run(kind: str, threads: int, set_threads, **case) -> tuple:
    set_threads(threads)
    model = _model(kind, **case)
    x, y = _data(case["masked"], case["with_state"])
    pred = model.predict(x, verbose=0)
    _, grads = model_gradients(model, x, y, "mse")
    return pred, grads


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("return_sequences,masked,with_state,use_bias",
                         [(False, False, False, True), (True, False, True, False),
                          (False, True, False, True)])
def test_sharded_equals_whole(kind, return_sequences, masked, with_state, use_bias, shards):
    case = dict(return_sequences=return_sequences, masked=masked, with_state=with_state,
                use_bias=use_bias)
    pred1, grads1 = _run(kind, 1, shards, **case)
    pred2, grads2 = _run(kind, 2, shards, **case)
    pred2b, grads2b = _run(kind, 2, shards, **case)
    assert_close(pred2, pred1, rtol=1e-12, atol=1e-12)
    assert grads2.keys() == grads1.keys()
    for name in grads1:
        assert_close(grads2[name], grads1[name], rtol=1e-12, atol=1e-12)
        assert np.array_equal(grads2b[name], grads2[name]), name  # deterministic
    assert np.array_equal(pred2b, pred2)


def test_only_more_threads_split_the_op(shards):
    x, y = _data(False, False)
    for threads in (1, 2):
        shards(threads)
        model = _model("LSTM", False, False, False, True)
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, y, epochs=1, batch_size=B, verbose=0)
        assert model._trainer.train_executor.program(B).threaded == (threads == 2)


def test_sharded_training_steps_allocate_nothing(shards):
    shards(2)
    model = _model("LSTM", False, True, False, True)
    model.compile(optimizer="adam", loss="mse")
    x, y = _data(True, False)
    model.fit(x, y, epochs=1, batch_size=B, verbose=0)
    ex = model._trainer.train_executor
    prog = ex.program(B)
    assert prog.threaded

    def steps(k):
        for _ in range(k):
            for dst, src in zip(prog.inputs + prog.targets, x + [y]):
                np.copyto(dst, src)
            ex.train_step(prog, [0.0], [])

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(3))
    assert nrt == 3 * array_arguments(prog)
    assert numpy_blocks == []


def _states_model(kind: str):
    """The final states as model outputs (and the sequence): their gradients seed each
    shard's recurrence with its own rows."""
    nexec.clear_session()
    nexec.set_random_seed(5)
    x = Input(shape=(T, F), dtype="float64")
    seq, *states = getattr(layers, kind)(U, return_sequences=True, return_state=True,
                                         name="rnn")(x)
    return Model(x, [layers.Dense(2, dtype="float64", name="head")(layers.Flatten()(seq)),
                     *states])


@pytest.mark.parametrize("kind", KINDS)
def test_sharded_states_equal_whole(kind, shards):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(B, T, F))
    results = []
    for threads in (1, 2):
        shards(threads)
        model = _states_model(kind)
        ys = [rng.normal(size=(B, 2))] + [rng.normal(size=(B, U))] * (len(model.outputs) - 1)
        preds = model.predict(x, verbose=0)
        _, grads = model_gradients(model, x, ys if threads == 1 else results[0][2], "mse")
        assert model._trainer.train_executor.program(B).threaded == (threads == 2)
        results.append((preds, grads, ys))
    (p1, g1, _), (p2, g2, _) = results
    for a, b in zip(p1, p2):
        assert_close(b, a, rtol=1e-12, atol=1e-12)
    for name in g1:
        assert_close(g2[name], g1[name], rtol=1e-12, atol=1e-12, what=name)
