"""The CUDA twins of the regularisation and normalisation kernels against the CPU ones, and
a small model through ``fit`` on ``device="cuda"`` against the CPU, in the simulator."""
import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers, optimizers
from nexec.kernels.cpu import normalization as CN
from nexec.kernels.cpu import regularization as CR
from nexec.kernels.cuda import backend
from nexec.kernels.cuda import normalization as GN
from nexec.kernels.cuda import regularization as GR
from nexec.testing import assert_close

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.skipif(not backend.is_available(), reason="needs a GPU or the simulator"),
    # the simulator runs the 64-bit hash on NumPy scalars, which warn on the intended wrap
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
]


def dev(a):
    return backend.to_device(np.ascontiguousarray(a))


def test_random_kernels_give_the_cpu_numbers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    cs, gs = np.array([9], np.uint64), np.array([9], np.uint64)
    cmask, cout = np.empty((2, 3)), np.empty_like(x)
    CR.dropout_forward(x, np.uint64(int(0.4 * 2 ** 53)), 1 / 0.6, 3, cs, cmask, cout)
    gmask, gout = dev(np.full((2, 3), np.nan)), dev(np.full_like(x, np.nan))
    GR.dropout_forward(dev(x), np.uint64(int(0.4 * 2 ** 53)), 1 / 0.6, 3, gs, gmask, gout)
    np.testing.assert_array_equal(gmask.copy_to_host(), cmask)
    np.testing.assert_array_equal(gout.copy_to_host(), cout)
    assert cs[0] == gs[0]
    gdx = dev(np.full_like(x, np.nan))
    GR.dropout_backward(dev(x), gmask, 3, gdx)
    cdx = np.empty_like(x)
    CR.dropout_backward(x, cmask, 3, cdx)
    np.testing.assert_array_equal(gdx.copy_to_host(), cdx)
    CR.gaussian_noise_forward(x, 0.5, cs, cout)
    GR.gaussian_noise_forward(dev(x), 0.5, gs, gout)
    assert_close(gout.copy_to_host(), cout, rtol=1e-14)
    bits_c, bits_g = np.zeros(5, np.uint64), dev(np.zeros(5, np.uint64))
    CR.random_bits53(cs, bits_c)
    GR.random_bits53(gs, bits_g)
    np.testing.assert_array_equal(bits_g.copy_to_host(), bits_c)


def test_normalization_kernels_match_the_cpu():
    rng = np.random.default_rng(1)
    x, dy = rng.normal(size=(5, 3)) * 2 + 1, rng.normal(size=(5, 3))
    g, b, mm, mv = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3), rng.random(3) + .5
    empty = np.empty(0)
    for gamma, beta in [(g, b), (empty, empty)]:
        c = {"mm": mm.copy(), "mv": mv.copy(), "st": np.empty((2, 3)), "out": np.empty_like(x)}
        CN.batchnorm_forward_train(x, gamma, beta, 0.9, 1e-3, c["mm"], c["mv"], c["st"], c["out"])
        d = {k: dev(np.full_like(v, np.nan)) for k, v in c.items()}
        d["mm"], d["mv"] = dev(mm), dev(mv)
        GN.batchnorm_forward_train(dev(x), dev(gamma), dev(beta), 0.9, 1e-3, d["mm"], d["mv"],
                                   d["st"], d["out"])
        for k in c:
            assert_close(d[k].copy_to_host(), c[k], rtol=1e-12, what=k)
        dg, db = (np.empty(3), np.empty(3)) if gamma.size else (empty, empty)
        dx = np.empty_like(x)
        CN.batchnorm_backward(x, dy, gamma, c["st"], np.empty((2, 3)), dg, db, dx)
        gdg, gdb, gdx = dev(np.full_like(dg, np.nan)), dev(np.full_like(db, np.nan)), \
            dev(np.full_like(dx, np.nan))
        GN.batchnorm_backward(dev(x), dev(dy), dev(gamma), d["st"], dev(np.empty((2, 3))), gdg,
                              gdb, gdx)
        for got, want in [(gdg, dg), (gdb, db), (gdx, dx)]:
            assert_close(got.copy_to_host(), want, rtol=1e-12)
        # inference and its (frozen) backward
        coef, out = np.empty((2, 3)), np.empty_like(x)
        CN.batchnorm_forward_infer(x, gamma, beta, 1e-3, mm, mv, coef, out)
        gcoef, gout = dev(np.full((2, 3), np.nan)), dev(np.full_like(x, np.nan))
        GN.batchnorm_forward_infer(dev(x), dev(gamma), dev(beta), 1e-3, dev(mm), dev(mv), gcoef,
                                   gout)
        assert_close(gout.copy_to_host(), out, rtol=1e-12)
        CN.batchnorm_backward_frozen(x, dy, mm, mv, 1e-3, coef, dg, db, dx)
        GN.batchnorm_backward_frozen(dev(x), dev(dy), dev(mm), dev(mv), 1e-3, gcoef, gdg, gdb,
                                     gdx)
        for got, want in [(gdg, dg), (gdb, db), (gdx, dx)]:
            assert_close(got.copy_to_host(), want, rtol=1e-12)
        # layer normalisation
        st, out = np.empty((5, 2)), np.empty_like(x)
        CN.layernorm_forward(x, gamma, beta, 1e-3, st, out)
        gst, gout = dev(np.full((5, 2), np.nan)), dev(np.full_like(x, np.nan))
        GN.layernorm_forward(dev(x), dev(gamma), dev(beta), 1e-3, gst, gout)
        assert_close(gout.copy_to_host(), out, rtol=1e-12)
        CN.layernorm_backward(x, dy, gamma, st, dg, db, dx)
        GN.layernorm_backward(dev(x), dev(dy), dev(gamma), gst, gdg, gdb, gdx)
        for got, want in [(gdg, dg), (gdb, db), (gdx, dx)]:
            assert_close(got.copy_to_host(), want, rtol=1e-12)


def _fit(device):
    nexec.clear_session()
    nexec.set_random_seed(3)
    x = Input(shape=(2, 3), dtype="float64")
    h = layers.LayerNormalization()(layers.SpatialDropout1D(0.3)(x))
    h = layers.GaussianNoise(0.1)(layers.BatchNormalization(momentum=0.8)(h))
    model = Model(x, layers.Dense(2)(layers.Dropout(0.4)(layers.Flatten()(h))))
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse", device=device)
    rng = np.random.default_rng(0)
    data, target = rng.normal(size=(6, 2, 3)), rng.normal(size=(6, 2))
    history = model.fit(data, target, epochs=2, batch_size=3, verbose=0, shuffle=False)
    return model, history.history["loss"], model.predict(data)


def test_fit_on_cuda_matches_the_cpu():
    cpu, l_cpu, p_cpu = _fit("cpu")
    gpu, l_gpu, p_gpu = _fit("cuda")
    np.testing.assert_allclose(l_gpu, l_cpu, rtol=1e-10)
    for a, b in zip(cpu.get_weights(), gpu.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(p_gpu, p_cpu, rtol=1e-10, atol=1e-12)


def test_batchnorm_folding_kernels_match_the_cpu():
    rng = np.random.default_rng(2)
    g, b, mm, mv = rng.normal(size=4), rng.normal(size=4), rng.normal(size=4), rng.random(4) + .5
    w, bias = rng.normal(size=(6, 4)), rng.normal(size=4)
    empty = np.empty(0)
    for gamma, beta, wb in [(g, b, bias), (empty, empty, empty)]:
        coef = np.empty((2, 4))
        CN.batchnorm_affine(gamma, beta, 1e-3, mm, mv, coef)
        gcoef = dev(np.full((2, 4), np.nan))
        GN.batchnorm_affine(dev(gamma), dev(beta), 1e-3, dev(mm), dev(mv), gcoef)
        assert_close(gcoef.copy_to_host(), coef, rtol=1e-14)
        w_out, b_out = np.empty_like(w), np.empty(4)
        CN.fold_channel_affine(w, wb, coef, w_out, b_out)
        gw, gb = dev(np.full_like(w, np.nan)), dev(np.full(4, np.nan))
        GN.fold_channel_affine(dev(w), dev(wb), gcoef, gw, gb)
        assert_close(gw.copy_to_host(), w_out, rtol=1e-14)
        assert_close(gb.copy_to_host(), b_out, rtol=1e-14)


def test_batchnorm_folded_into_dense_predicts_on_cuda_as_on_the_cpu():
    def predict(device):
        nexec.clear_session()
        nexec.set_random_seed(4)
        x = Input(shape=(5,), dtype="float64")
        h = layers.BatchNormalization()(layers.Dense(3)(x))
        model = Model(x, layers.Activation("relu")(h))
        assert len(model.plan(device).for_steps(False).ops) == 1  # folded on both
        rng = np.random.default_rng(5)
        model.set_weights([rng.normal(size=w.shape) + (2 if w.ndim == 1 else 0)
                           for w in model.get_weights()])
        model.compile(optimizer="sgd", loss="mse", device=device)
        return model.predict(rng.normal(size=(4, 5)), verbose=0)

    np.testing.assert_allclose(predict("cuda"), predict("cpu"), rtol=1e-12, atol=1e-13)
