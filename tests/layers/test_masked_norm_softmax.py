"""BatchNormalization reads a Keras mask as Keras 3 does: in training its batch moments are
weighted by the mask (``_moments(inputs, mask)``: sums over the real rows divided by their
count plus ``epsilon()``, 1e-7), every row is normalised, inference uses the moving
statistics. Kernels against NumPy and finite differences, the CUDA twins against the CPU
(simulator), a float64 model against PyTorch with copied weights (1e-10). Softmax refuses a
masked input: Keras 3.15 broadcasts the mask against the input's trailing axes, which for an
Embedding mask fails (tests/layers/test_masked_norm_softmax_keras.py has Keras' numbers)."""
import numpy as np
import pytest
import torch

import nexec
from nexec import Input, Model, ShapeError, layers, optimizers
from nexec.errors import GraphError
from nexec.kernels.cpu import normalization as K
from nexec.kernels.cuda import backend
from nexec.testing import assert_close, check_gradients, model_gradients, weights_by_name

KEPS = 1e-7  # Keras' backend.epsilon()
EMPTY = np.empty(0)
T, V, F = 5, 7, 3
IDS = np.array([[3, 1, 4, 0, 0], [0, 0, 2, 6, 5], [5, 0, 0, 2, 3], [1, 2, 3, 4, 5]],
               dtype=np.int32)


def np_masked_moments(x, ids):
    """Keras 3.15's ``BatchNormalization._moments`` with a mask, written out."""
    m = (ids.reshape(-1) != 0).astype(np.float64)[:, None]
    w = m.sum() + KEPS
    mean = (m * x).sum(0) / w
    var = (m * (x - mean) ** 2).sum(0) / w
    return mean, var


def _forward(x, ids, gamma, beta, mm, mv, momentum=0.9, eps=1e-3):
    stats = np.full((2, x.shape[1]), np.nan, x.dtype)
    out = np.full(x.shape, np.nan, x.dtype)
    K.batchnorm_forward_train_masked(x, ids.reshape(-1, 1), gamma, beta, momentum, eps, mm, mv,
                                     stats, out)
    return out, stats


def _backward(x, ids, dy, gamma, stats):
    c = x.shape[1]
    dg, db, dx = np.full(c, np.nan), np.full(c, np.nan), np.full(x.shape, np.nan)
    K.batchnorm_backward_masked(x, ids.reshape(-1, 1), dy, gamma, stats, np.empty((2, c)),
                                dg if gamma.size else EMPTY, db if gamma.size else EMPTY, dx)
    return dx, dg, db


def _data(seed, rows=12, c=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, c)) * 2 + 1
    ids = rng.integers(0, 3, size=rows)
    ids[:2] = (0, 2)
    return rng, x, ids


# ----- kernels -----------------------------------------------------------------------------
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64, np.float64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masked_training_forward_matches_numpy(affine, id_dtype, dtype):
    rng, x, ids = _data(0)
    ids = ids.astype(id_dtype)
    gamma = rng.normal(size=4) if affine else EMPTY
    beta = rng.normal(size=4) if affine else EMPTY
    mm, mv = rng.normal(size=4), rng.random(4) + 0.5
    mm0, mv0 = mm.copy(), mv.copy()
    tol = 1e-13 if dtype == np.float64 else 1e-5
    x, gamma, beta, mm, mv = (a.astype(dtype) for a in (x, gamma, beta, mm, mv))
    out, stats = _forward(x, ids, gamma, beta, mm, mv)
    x64 = x.astype(np.float64)
    mean, var = np_masked_moments(x64, ids)
    ref = (x64 - mean) / np.sqrt(var + 1e-3) * (gamma if affine else 1.0) \
        + (beta if affine else 0.0)
    assert_close(out, ref, rtol=tol, what="output (padded rows normalised too)")
    assert_close(stats[0], mean, rtol=tol, what="saved mean")
    assert_close(mm, 0.9 * mm0 + 0.1 * mean, rtol=tol, what="moving mean")
    assert_close(mv, 0.9 * mv0 + 0.1 * var, rtol=tol, what="moving variance")
    # The padded rows' values do not reach the statistics.
    x2 = x.copy()
    x2[ids == 0] = 1e3
    out2, _ = _forward(x2, ids, gamma, beta, mm0.astype(dtype), mv0.astype(dtype))
    assert_close(out2[ids != 0], out[ids != 0], rtol=tol, what="real rows")


def test_all_padding_gives_zero_moments_as_keras():
    rng, x, _ = _data(1)
    ids = np.zeros(12, np.int32)
    mm, mv = np.ones(4), np.ones(4)
    out, stats = _forward(x, ids, EMPTY, EMPTY, mm, mv, momentum=0.5)
    assert np.all(stats[0] == 0.0)
    assert_close(out, x / np.sqrt(1e-3), rtol=1e-13, what="output")
    assert_close(mv, np.full(4, 0.5), rtol=1e-15, what="moving variance")
    dx, _, _ = _backward(x, ids, rng.normal(size=x.shape), EMPTY, stats)
    assert np.all(np.isfinite(dx))


@pytest.mark.parametrize("affine", [True, False])
def test_masked_backward_matches_finite_differences(affine):
    rng, x, ids = _data(2, rows=7, c=3)
    gamma = rng.normal(size=3) if affine else EMPTY
    beta = rng.normal(size=3) if affine else EMPTY
    w = rng.normal(size=x.shape)

    def loss():
        out, _ = _forward(x, ids, gamma, beta, np.zeros(3), np.ones(3))
        return float((out * w).sum())

    _, stats = _forward(x, ids, gamma, beta, np.zeros(3), np.ones(3))
    dx, dg, db = _backward(x, ids, w, gamma, stats)
    analytic = {"x": dx, **({"gamma": dg, "beta": db} if affine else {})}
    wrt = {"x": x, **({"gamma": gamma, "beta": beta} if affine else {})}
    check_gradients(loss, analytic, wrt, rtol=1e-7)
    assert not np.allclose(dx[ids == 0], 0.0)  # padded rows are normalised: they get gradient


def test_masked_backward_matches_torch_autograd():
    """The exact float64 gradient of Keras' masked moments (the epsilon term included)."""
    rng, x, ids = _data(3, rows=9, c=4)
    x[ids != 0] += 50.0  # a large mean makes the epsilon term of d mean / dx visible
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    dy = rng.normal(size=x.shape)
    _, stats = _forward(x, ids, gamma, beta, np.zeros(4), np.ones(4))
    dx, dg, db = _backward(x, ids, dy, gamma, stats)
    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    m = torch.tensor((ids != 0).astype(np.float64))[:, None]
    mean = (m * tx).sum(0) / (m.sum() + KEPS)
    var = (m * (tx - mean) ** 2).sum(0) / (m.sum() + KEPS)
    out = (tx - mean) / torch.sqrt(var + 1e-3) * tg + tb
    (out * torch.tensor(dy)).sum().backward()
    assert_close(dx, tx.grad.numpy(), rtol=1e-11, what="dx")
    assert_close(dg, tg.grad.numpy(), rtol=1e-11, what="dgamma")
    assert_close(db, tb.grad.numpy(), rtol=1e-11, what="dbeta")


def test_masked_kernels_refuse_ids_of_another_length():
    _, x, ids = _data(4)
    with pytest.raises(ValueError, match="ids and x rows differ"):
        _forward(x, ids[:-1], EMPTY, EMPTY, np.zeros(4), np.ones(4))


@pytest.mark.cudasim
@pytest.mark.skipif(not backend.is_available(), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")
@pytest.mark.parametrize("affine", [True, False])
def test_cuda_masked_kernels_match_the_cpu(affine):
    from nexec.kernels.cuda import normalization as G

    def dev(a):
        return backend.to_device(np.ascontiguousarray(a))

    rng, x, ids = _data(5, rows=10, c=3)
    ids2 = ids.reshape(-1, 1)
    gamma = rng.normal(size=3) if affine else EMPTY
    beta = rng.normal(size=3) if affine else EMPTY
    mm, mv = rng.normal(size=3), rng.random(3) + 0.5
    dy = rng.normal(size=x.shape)
    out, stats = _forward(x, ids, gamma, beta, c_mm := mm.copy(), c_mv := mv.copy())
    dx, dg, db = _backward(x, ids, dy, gamma, stats)
    g_mm, g_mv, g_st, g_out = dev(mm), dev(mv), dev(np.full((2, 3), np.nan)), \
        dev(np.full(x.shape, np.nan))
    G.batchnorm_forward_train_masked(dev(x), dev(ids2), dev(gamma), dev(beta), 0.9, 1e-3, g_mm,
                                     g_mv, g_st, g_out)
    for got, want, what in ((g_out, out, "out"), (g_st, stats, "stats"), (g_mm, c_mm, "mm"),
                            (g_mv, c_mv, "mv")):
        assert_close(got.copy_to_host(), want, rtol=1e-12, what=what)
    g_dx = dev(np.full(x.shape, np.nan))
    g_dg, g_db = (dev(np.full(3, np.nan)) if affine else dev(EMPTY) for _ in range(2))
    G.batchnorm_backward_masked(dev(x), dev(ids2), dev(dy), dev(gamma), g_st,
                                dev(np.empty((2, 3))), g_dg, g_db, g_dx)
    assert_close(g_dx.copy_to_host(), dx, rtol=1e-12, what="dx")
    if affine:
        assert_close(g_dg.copy_to_host(), dg, rtol=1e-12, what="dgamma")
        assert_close(g_db.copy_to_host(), db, rtol=1e-12, what="dbeta")


# ----- the layer in a model ----------------------------------------------------------------
def _model(momentum=0.9, ids_shape=(T,)):
    nexec.clear_session()
    ids = Input(shape=ids_shape, dtype="int32", name="ids")
    e = layers.Embedding(V, F, mask_zero=True, dtype="float64", name="emb")(ids)
    h = layers.Dense(4, activation="tanh", name="dense")(e)
    n = layers.BatchNormalization(momentum=momentum, name="bn")(h)
    assert n.mask is e.mask
    return Model(ids, layers.GlobalAveragePooling1D(name="avg")(n) if len(ids_shape) == 1
                 else layers.Dense(2, name="out")(n))


def _torch_model(model, ids, train=True):
    w = {k: torch.tensor(v.copy(), requires_grad=True)
         for k, v in weights_by_name(model).items()}
    keep = torch.tensor((ids != 0).astype(np.float64))[..., None]
    h = torch.tanh(w["emb/embeddings"][torch.tensor(ids.astype(np.int64))] @ w["dense/kernel"]
                   + w["dense/bias"])
    if train:
        wsum = keep.sum() + KEPS
        mean = (keep * h).sum(dim=tuple(range(h.dim() - 1))) / wsum
        var = (keep * (h - mean) ** 2).sum(dim=tuple(range(h.dim() - 1))) / wsum
    else:
        mean, var = w["bn/moving_mean"], w["bn/moving_variance"]
    n = (h - mean) / torch.sqrt(var + 1e-3) * w["bn/gamma"] + w["bn/beta"]
    return w, n, keep, (mean.detach().numpy(), var.detach().numpy())


def _rand_weights(model, rng):
    for layer in model.layers:
        layer.set_weights([rng.normal(0.0, 0.7, w.shape) + (1.0 if "moving_v" in n else 0.0)
                           for n, w in zip(layer._params, layer.get_weights())])


def test_masked_batchnorm_model_gradients_match_torch():
    model = _model()
    rng = np.random.default_rng(7)
    _rand_weights(model, rng)
    data = IDS[:3]
    y = rng.normal(size=(3, 4))
    loss_fn, grads = model_gradients(model, data, y, "mse", training=True)
    w, n, keep, _ = _torch_model(model, data)
    out = (n * keep).sum(1) / keep.sum(1)  # the masked average over the real steps
    loss = ((out - torch.tensor(y)) ** 2).mean()
    loss.backward()
    assert abs(loss_fn() - loss.item()) <= 1e-10 * loss.item()
    for k, t in w.items():
        if t.grad is not None:
            assert_close(grads[k], t.grad.numpy(), rtol=1e-10, atol=1e-14, what=f"grad {k}")
    check_gradients(loss_fn, grads, {k: v for k, v in weights_by_name(model).items()
                                     if "moving" not in k}, rtol=1e-6)


def test_masked_batchnorm_fit_updates_moving_stats_and_predicts_with_them():
    model = _model(momentum=0.75, ids_shape=(2, T))  # a mask of two axes: one flag per row
    rng = np.random.default_rng(8)
    _rand_weights(model, rng)
    data = np.stack([IDS[:3], IDS[1:4]], axis=1)  # (3, 2, T)
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse")
    _, _, _, (mean, var) = _torch_model(model, data)
    mm0, mv0 = model.get_layer("bn").get_weights()[2:]
    model.fit(data, rng.normal(size=(3, 2, T, 2)), batch_size=3, epochs=1, verbose=0)
    mm, mv = model.get_layer("bn").get_weights()[2:]
    assert_close(mm, 0.75 * mm0 + 0.25 * mean, rtol=1e-12, what="moving mean")
    assert_close(mv, 0.75 * mv0 + 0.25 * var, rtol=1e-12, what="moving variance")
    _, n, _, _ = _torch_model(model, data, train=False)
    w = weights_by_name(model)
    expect = n.detach().numpy() @ w["out/kernel"] + w["out/bias"]
    assert_close(model.predict(data, verbose=0), expect, rtol=1e-12, what="inference")


@pytest.mark.cudasim
@pytest.mark.skipif(not backend.is_available(), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1")
def test_masked_batchnorm_fit_on_cuda_matches_the_cpu():
    def fit(device):
        model = _model()
        _rand_weights(model, np.random.default_rng(9))
        model.compile(optimizer=optimizers.SGD(0.1), loss="mse", device=device)
        y = np.random.default_rng(0).normal(size=(4, 4))
        # batches of 3 and 1: the mask of a part batch too
        hist = model.fit(IDS[:4], y, epochs=2, batch_size=3, verbose=0, shuffle=False)
        return model, hist.history["loss"]

    cpu, l_cpu = fit("cpu")
    gpu, l_gpu = fit("cuda")
    np.testing.assert_allclose(l_gpu, l_cpu, rtol=1e-10)
    for a, b in zip(cpu.get_weights(), gpu.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


def test_batchnorm_refuses_a_mask_that_is_not_one_flag_per_row():
    """Every mask nexec makes has one flag per row; a mask source of another shape (set by
    hand here) is refused when the layer is called, as Keras' rank check would."""
    ids = Input(shape=(T,), dtype="int32")
    e = layers.Embedding(V, F, mask_zero=True)(ids)
    e.mask = Input(shape=(T, 2), dtype="int32", name="wrong")
    with pytest.raises(ShapeError, match=r"mask source 'wrong'.*one flag per position"):
        layers.BatchNormalization(name="bn_bad")(e)
    assert layers.BatchNormalization()(Input(shape=(T, F))).mask is None


# ----- Softmax -----------------------------------------------------------------------------
def test_softmax_refuses_a_masked_input_with_keras_reason():
    ids = Input(shape=(T,), dtype="int32")
    e = layers.Embedding(V, F, mask_zero=True)(ids)
    with pytest.raises(GraphError, match=r"Softmax.*trailing axes"):
        layers.Softmax(name="sm")(layers.Dense(4)(e))
    with pytest.raises(GraphError, match="Softmax"):
        layers.Softmax(name="sm1")(layers.Dense(1)(e))
    # without a mask nothing changes
    assert layers.Softmax()(layers.Dense(4)(layers.Embedding(V, F)(ids))).mask is None
