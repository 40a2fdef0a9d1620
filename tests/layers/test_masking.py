"""Masks consumed: ``Embedding(mask_zero=True)`` into the recurrent layers (Bidirectional,
``go_backwards``, ``return_sequences`` included) and ``GlobalAveragePooling1D``, with Keras 3's
rules, against float64 PyTorch step loops (forward and every gradient to 1e-10), NumPy and
finite differences; masks passed on by Dense, Activation, Dropout and TimeDistributed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nexec
from nexec import Input, Model, layers
from nexec.errors import ExportError
from nexec.kernels.cuda import backend
from nexec.planner.lowering import lower
from nexec.testing import (
    array_arguments,
    assert_close,
    check_gradients,
    count_allocations,
    model_gradients,
    weights_by_name,
)

from .masked_recurrence import masked_torch

B, T, V, F, U = 5, 6, 7, 3, 4  # batch, steps, vocabulary, embedding width, units
TOL = 1e-10
GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}
#: Right padding, left padding, a hole in the middle, no padding, all padding.
IDS = np.array([[3, 1, 4, 0, 0, 0],
                [0, 0, 2, 6, 5, 1],
                [5, 0, 0, 2, 0, 3],
                [1, 2, 3, 4, 5, 6],
                [0, 0, 0, 0, 0, 0]], dtype=np.int32)


def _rand_weights(layer, rng: np.random.Generator, scale: float = 0.5) -> None:
    layer.set_weights([rng.normal(size=w.shape) * scale for w in layer.get_weights()])


def _torch_rnn(kind: str, weights: list):
    """A one-layer torch.nn.RNN/LSTM/GRU (batch_first, float64) with Keras-layout weights."""
    cls = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[kind]
    w, u, b = weights
    m = cls(w.shape[0], U, batch_first=True, dtype=torch.float64)
    perm = np.r_[U:2 * U, 0:U, 2 * U:3 * U] if kind == "GRU" else np.arange(GATES[kind] * U)
    m.weight_ih_l0.data = torch.tensor(w[:, perm].T.copy())
    m.weight_hh_l0.data = torch.tensor(u[:, perm].T.copy())
    bi, bh = (b[0], b[1]) if kind == "GRU" else (b, np.zeros_like(b))
    m.bias_ih_l0.data = torch.tensor(bi[perm].copy())
    m.bias_hh_l0.data = torch.tensor(bh[perm].copy())
    return m


def _keras_grads(kind: str, m) -> dict:
    """nexec weight name -> (torch parameter, its gradient in Keras' layout)."""
    perm = np.r_[U:2 * U, 0:U, 2 * U:3 * U] if kind == "GRU" else np.arange(GATES[kind] * U)
    inv = np.argsort(perm)
    out = {"kernel": (m.weight_ih_l0, lambda g: g.T[:, inv]),
           "recurrent_kernel": (m.weight_hh_l0, lambda g: g.T[:, inv])}
    if kind == "GRU":
        out["bias"] = (m.bias_ih_l0,
                       lambda g: np.stack([g[inv], m.bias_hh_l0.grad.numpy()[inv]]))
    else:
        out["bias"] = (m.bias_ih_l0, lambda g: g)
    return out


def _compare(model, x, y, out, params: dict) -> None:
    """nexec's prediction, MSE loss and gradients against torch's ``out`` (``params``: nexec
    weight name -> (torch tensor, its gradient in Keras' layout)). An output that carries
    the mask has Keras' masked loss, ``sum(row loss * mask) / valid rows``."""
    pred = model.predict(x, verbose=0)
    loss_fn, grads = model_gradients(model, x, y, "mse")
    assert_close(pred, out.detach().numpy(), rtol=TOL, what="forward")
    if model.outputs[0].mask is not None:
        keep = torch.tensor(x != 0, dtype=torch.float64)
        loss = (((out - torch.tensor(y)) ** 2).mean(-1) * keep).sum() / keep.sum()
    else:
        loss = ((out - torch.tensor(y)) ** 2).mean()
    loss.backward()
    assert abs(loss_fn() - loss.item()) <= TOL * abs(loss.item())
    for name, (tensor, to_keras) in params.items():
        assert_close(grads[name], to_keras(tensor.grad.numpy()), rtol=TOL, what=name)


def _embedded(seed: int):
    """ids -> Embedding(mask_zero) -> Dense(tanh) -> Activation -> Dropout: the mask passes
    through the last three, as in Keras (rate 0: gradients come from a training step)."""
    nexec.clear_session()
    ids = Input(shape=(T,), dtype="int32", name="ids")
    emb = layers.Embedding(V, F, mask_zero=True, dtype="float64", name="emb")
    dense = layers.Dense(F, activation="tanh", name="d")
    h = layers.Dropout(0.0, name="drop")(layers.Activation("linear", name="a")(dense(emb(ids))))
    rng = np.random.default_rng(seed)
    _rand_weights(emb, rng, 1.0)
    _rand_weights(dense, rng)
    return ids, h, emb, dense, rng


def _torch_embedded(emb, dense):
    e = torch.tensor(emb.get_weights()[0], requires_grad=True)
    kernel, bias = (torch.tensor(w, requires_grad=True) for w in dense.get_weights())
    x = torch.tanh(e[torch.tensor(IDS, dtype=torch.long)] @ kernel + bias)
    params = {"emb/embeddings": (e, lambda g: g), "d/kernel": (kernel, lambda g: g),
              "d/bias": (bias, lambda g: g)}
    return x, params


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("return_sequences,go_backwards",
                         [(False, False), (True, False), (False, True), (True, True)])
def test_masked_recurrence_matches_torch(kind, return_sequences, go_backwards):
    ids, h, emb, dense, rng = _embedded(1)
    rnn = getattr(layers, kind)(U, return_sequences=return_sequences,
                                go_backwards=go_backwards, name="rnn")
    out = rnn(h)
    assert (out.mask is ids) == return_sequences  # Keras' compute_mask
    model = Model(ids, out)
    _rand_weights(rnn, rng)
    m = _torch_rnn(kind, rnn.get_weights())
    x, params = _torch_embedded(emb, dense)
    seq, (last, *_) = masked_torch(kind, m, x, IDS != 0, go_backwards)
    ref = seq if return_sequences else last
    y = rng.normal(size=tuple(ref.shape))
    params.update({f"rnn/{k}": v for k, v in _keras_grads(kind, m).items()})
    _compare(model, IDS, y, ref, params)
    pred = model.predict(IDS, verbose=0)
    assert np.all(pred[4] == 0.0)  # all padding: the zero state throughout


@pytest.mark.parametrize("kind,merge_mode,return_sequences",
                         [("LSTM", "concat", True), ("GRU", "sum", False),
                          ("SimpleRNN", "concat", False)])
def test_masked_bidirectional_matches_torch(kind, merge_mode, return_sequences):
    ids, h, emb, dense, rng = _embedded(2)
    bi = layers.Bidirectional(getattr(layers, kind)(U, return_sequences=return_sequences),
                              merge_mode=merge_mode, name="bi")
    out = bi(h)
    model = Model(ids, out)
    _rand_weights(bi, rng)
    w = bi.get_weights()
    mf, mb = _torch_rnn(kind, w[:3]), _torch_rnn(kind, w[3:])
    x, params = _torch_embedded(emb, dense)
    sf, (lf, *_) = masked_torch(kind, mf, x, IDS != 0, False, zero=True)
    sb, (lb, *_) = masked_torch(kind, mb, x, IDS != 0, True, zero=True)
    a, b = (sf, torch.flip(sb, dims=[1])) if return_sequences else (lf, lb)
    ref = torch.cat([a, b], dim=-1) if merge_mode == "concat" else a + b
    y = rng.normal(size=tuple(ref.shape))
    params.update({f"bi/forward_{k}": v for k, v in _keras_grads(kind, mf).items()})
    params.update({f"bi/backward_{k}": v for k, v in _keras_grads(kind, mb).items()})
    _compare(model, IDS, y, ref, params)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_masked_recurrence_finite_differences(kind):
    ids, h, _, _, rng = _embedded(3)
    rnn = getattr(layers, kind)(U, return_sequences=True, go_backwards=kind == "GRU")
    model = Model(ids, layers.TimeDistributed(layers.Dense(2))(rnn(h)))
    y = rng.normal(size=(B, T, 2))
    loss_fn, grads = model_gradients(model, IDS, y, "mse")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_masked_global_average_pooling_matches_numpy_and_torch():
    ids, h, emb, dense, rng = _embedded(4)
    pooled = layers.GlobalAveragePooling1D(name="pool")(h)
    assert pooled.mask is None
    model = Model(ids, pooled)
    data = IDS[:4]  # every sample has a real step
    x, params = _torch_embedded(emb, dense)
    x = x[:4]
    keep = torch.tensor((data != 0)[..., None], dtype=torch.float64)
    ref = (x * keep).sum(1) / keep.sum(1)
    # the NumPy rule, written out
    xs = x.detach().numpy()
    expect = np.stack([xs[b][data[b] != 0].mean(0) for b in range(4)])
    assert_close(ref.detach().numpy(), expect, rtol=1e-14)
    y = rng.normal(size=(4, F))
    params["emb/embeddings"] = (params["emb/embeddings"][0], lambda g: g)
    _compare(model, data, y, ref, params)
    loss_fn, grads = model_gradients(model, data, y, "mse")
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_masked_pooling_of_an_all_padding_sample_is_nan_and_passes_no_gradient():
    ids, h, emb, _, _ = _embedded(5)
    model = Model(ids, layers.GlobalAveragePooling1D()(h))
    pred = model.predict(IDS, verbose=0)
    assert np.all(np.isnan(pred[4])) and np.all(np.isfinite(pred[:4]))
    _, grads = model_gradients(model, IDS[4:], np.zeros((1, F)), "mse")
    assert np.all(grads["emb/embeddings"] == 0.0)


def test_unmasked_pooling_and_recurrence_are_unchanged_by_the_mask_machinery():
    """mask_zero=False: the same ids give the plain mean over every step and an unmasked
    recurrence (padding processed like any step)."""
    nexec.clear_session()
    ids = Input(shape=(T,), dtype="int32")
    emb = layers.Embedding(V, F, dtype="float64")
    e = emb(ids)
    assert e.mask is None
    model = Model(ids, layers.GlobalAveragePooling1D()(e))
    table = emb.get_weights()[0]
    assert_close(model.predict(IDS, verbose=0), table[IDS].mean(1), rtol=1e-14)
    assert all(op.mask is None for op in lower(model).ops)
    masked = Model(ids, layers.GlobalAveragePooling1D()(
        layers.Dense(2)(layers.Embedding(V, F, mask_zero=True)(ids))))
    by_kind = {op.kind: op for op in lower(masked).ops}
    assert by_kind["Dense"].mask is None  # passes the mask on, never reads it
    assert by_kind["GlobalAveragePooling1D"].mask == lower(masked).inputs[0]


def test_mask_passes_through_time_distributed_and_is_consumed_downstream():
    ids, h, _, _, _ = _embedded(6)
    td = layers.TimeDistributed(layers.Dense(2))(h)
    assert td.mask is ids
    assert layers.LSTM(2)(td).mask is None


def test_layers_without_masking_drop_the_mask_with_keras_warning():
    ids, h, _, _, _ = _embedded(7)
    for layer in (layers.GlobalMaxPooling1D(name="gmp"), layers.Flatten(name="fl"),
                  layers.Conv1D(2, 2, name="cv")):
        with pytest.warns(UserWarning, match=f"'{layer.name}'.*destroy the mask"):
            assert layer(h).mask is None


def test_onnx_export_refuses_a_consumed_mask():
    from nexec.export.onnx import build_onnx

    ids, h, _, _, _ = _embedded(8)
    model = Model(ids, layers.LSTM(U, name="rnn")(h))
    with pytest.raises(ExportError, match="'rnn'.*mask"):
        build_onnx(model)


def test_masked_lstm_model_trains_without_allocating():
    nexec.clear_session()
    ids = Input(shape=(T,), dtype="int32")
    h = layers.Embedding(V, 8, mask_zero=True)(ids)
    h = layers.Bidirectional(layers.LSTM(U, return_sequences=True), merge_mode="sum")(h)
    h = layers.GRU(U, return_sequences=True)(h)
    pooled = layers.GlobalAveragePooling1D()(h)
    model = Model(ids, layers.Dense(2, activation="softmax")(pooled))
    model.compile(optimizer=nexec.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, T + 1, 64)
    x = np.where(np.arange(T)[None] < lengths[:, None], rng.integers(1, V, (64, T)), 0)
    y = (lengths > T // 2).astype(np.int32)  # only the length decides the class
    hist = model.fit(x.astype(np.int32), y, epochs=30, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < 0.3 * hist.history["loss"][0]
    ex = model._trainer.train_executor
    prog = ex.program(16)
    xb, yb = x[:16].astype(np.int32), y[:16]

    def steps(k):
        for _ in range(k):
            for dst, src in zip(prog.inputs + prog.targets, [xb, yb]):
                np.copyto(dst, src.reshape(dst.shape))
            ex.train_step(prog, [0.0], [])

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(3))
    assert nrt == 3 * array_arguments(prog)
    assert numpy_blocks == []


def test_a_masked_output_with_a_loss_compiles_without_a_warning():
    """Keras 3 weights the loss of a masked output by the mask, and so does nexec
    (tests/training/test_output_masks.py): nothing to warn about."""
    import warnings

    ids, h, _, _, _ = _embedded(9)
    model = Model(ids, layers.LSTM(U, return_sequences=True, name="rnn")(h))
    pooled = Model(ids, layers.GlobalAveragePooling1D()(h))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compile(optimizer="sgd", loss="mse")
        pooled.compile(optimizer="sgd", loss="mse")


@pytest.mark.cudasim
@pytest.mark.skipif(not backend.is_available(), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")
def test_masked_average_pooling_on_cuda_matches_the_cpu():
    def fit(device):
        nexec.clear_session()
        nexec.set_random_seed(3)
        ids = Input(shape=(T,), dtype="int32")
        h = layers.Embedding(V, F, mask_zero=True, dtype="float64")(ids)
        model = Model(ids, layers.Dense(2)(layers.GlobalAveragePooling1D()(h)))
        model.compile(optimizer=nexec.optimizers.SGD(0.1), loss="mse", device=device)
        y = np.random.default_rng(0).normal(size=(4, 2))
        history = model.fit(IDS[:4], y, epochs=2, batch_size=2, verbose=0, shuffle=False)
        return model, history.history["loss"], model.predict(IDS, verbose=0)

    cpu, l_cpu, p_cpu = fit("cpu")
    gpu, l_gpu, p_gpu = fit("cuda")
    np.testing.assert_allclose(l_gpu, l_cpu, rtol=1e-10)
    np.testing.assert_allclose(p_gpu, p_cpu, rtol=1e-10, atol=1e-12)  # NaN row: NaN on both
    assert np.all(np.isnan(p_gpu[4]))
    for a, b in zip(cpu.get_weights(), gpu.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
