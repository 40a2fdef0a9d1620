"""Convolutions sharded over output channels (filter shards) instead of images.

The forward of an im2col convolution with large weights for its rows (ResNet-18's 2x2x512
3x3 layers) builds the column matrix once and splits the GEMM over output channels
(``Conv2DKernel._filter_shards``). Checked here: the kernels against NumPy and against the
unsharded kernel bit for bit, the rule, and whole models with the rule forced.
"""
import numpy as np
import pytest

import nexec
from nexec import Input, Model, layers
from nexec.devices.threads import run_shards, set_num_threads
from nexec.kernels.activations import LINEAR, RELU, SIGMOID, TANH
from nexec.kernels.cpu.conv import conv2d_forward, conv2d_forward_filters, conv2d_im2col
from nexec.ops import builtin
from nexec.ops.builtin import Conv2DKernel
from nexec.ops.geometry import conv2d_geometry
from nexec.plugins import registry
from nexec.testing import (
    array_arguments,
    check_gradients,
    count_allocations,
    model_gradients,
    weights_by_name,
)
from nexec.training.trainer import predictor
from tests.blas_bits import assert_same_bits_where_blas_keeps_them
from tests.runtime.test_threads import (
    _data,
    restore_threads,  # noqa: F401 - autouse
)


@pytest.fixture
def filter_shards_everywhere(monkeypatch):
    """Every convolution, however small, is split, and over its filters where it can be
    (filter shards are im2col's: forced, whatever the default cost model would choose)."""
    monkeypatch.setenv("NEXEC_CONV_ALGORITHM", "im2col")
    monkeypatch.setattr(builtin, "_MIN_SHARD_FLOPS", 1)
    monkeypatch.setattr(builtin, "_FILTER_SHARD_WEIGHTS", 0)
    monkeypatch.setattr(builtin, "_FILTER_SHARD_ROWS_PER_K", 0)


# --------------------------------------------------------------------------- kernels


def _reference(x, w, b, sh, sw, padding, act):
    """Direct NumPy convolution (zero padding as Keras), bias and activation."""
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    ho, wo, pt, pl = conv2d_geometry(h, wd, kh, kw, sh, sw, padding)
    xp = np.zeros((n, max(h + kh, (ho - 1) * sh + kh + pt), max(wd + kw, (wo - 1) * sw + kw + pl),
                   c), x.dtype)
    xp[:, pt:pt + h, pl:pl + wd] = x
    out = np.zeros((n, ho, wo, f))
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, ky:ky + (ho - 1) * sh + 1:sh, kx:kx + (wo - 1) * sw + 1:sw]
            out += patch.astype(np.float64) @ w[ky, kx].astype(np.float64)
    if b.shape[0]:
        out += b
    out = {LINEAR: out, RELU: np.maximum(out, 0), SIGMOID: 1 / (1 + np.exp(-out)),
           TANH: np.tanh(out)}[act]
    return out.reshape(n * ho * wo, f)


def _filter_sharded(x, w, b, sh, sw, pt, pl, ho, wo, act, out, bounds):
    """im2col once, then one conv2d_forward_filters per channel range (serially here)."""
    kh, kw, c, _ = w.shape
    cols = np.full((x.shape[0] * ho * wo, kh * kw * c), np.nan, x.dtype)
    conv2d_im2col(x, sh, sw, pt, pl, ho, wo, kh, kw, cols)
    for f0, f1 in zip(bounds, bounds[1:]):
        conv2d_forward_filters(cols, w, b, f0, f1, act, out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,f,k,s,padding,bounds,act,bias", [
    ((3, 5, 5, 4), 7, 3, 1, "same", (0, 3, 7), RELU, True),         # F not divisible by 2
    ((2, 2, 2, 6), 5, 3, 1, "same", (0, 1, 3, 5), SIGMOID, True),     # three shards
    ((4, 6, 5, 3), 8, 3, 2, "valid", (0, 4, 8), TANH, False),         # stride, no bias
    ((2, 4, 4, 8), 40, 2, 1, "same", (0, 16, 40), LINEAR, True),      # 16-aligned bound
    ((2, 3, 3, 5), 6, 3, 2, "same", (0, 6), RELU, True),              # one shard: all of F
    ((3, 5, 5, 4), 48, 3, 1, "same", (0, 16, 48), RELU, True),        # as the binder splits
    ((5, 3, 3, 6), 70, 3, 1, "same", (0, 32, 64, 70), SIGMOID, True),
])
def test_filter_shards_match_numpy_and_the_unsharded_kernel(dtype, shape, f, k, s, padding,
                                                            bounds, act, bias):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(dtype)
    w = rng.normal(size=(k, k, shape[3], f)).astype(dtype)
    b = rng.normal(size=f).astype(dtype) if bias else np.zeros(0, dtype)
    ho, wo, pt, pl = conv2d_geometry(shape[1], shape[2], k, k, s, s, padding)
    m = shape[0] * ho * wo
    whole = np.full((m, f), np.nan, dtype)
    cols = np.zeros((m, k * k * shape[3]), dtype)
    conv2d_forward(x, w, b, s, s, pt, pl, ho, wo, act, cols, whole, whole)
    # a Concatenate's slice: the output is row-strided, with neighbours left alone
    wide = np.full((m, f + 5), -7.0, dtype)
    out = wide[:, 2:2 + f]
    _filter_sharded(x, w, b, s, s, pt, pl, ho, wo, act, out, bounds)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, _reference(x, w, b, s, s, padding, act), rtol=tol,
                               atol=tol)
    if all(f0 % 16 == 0 for f0 in bounds[:-1]):  # as the binder splits F >= 16 * shards
        # each element: one GEMM dot over the same K, in the same micro-kernel column block
        # (where the BLAS's column blocks are 16 wide: tests/blas_bits.py)
        assert_same_bits_where_blas_keeps_them(out, whole, rtol=tol, atol=tol)
    else:  # OpenBLAS's edge micro-kernels may sum a tail differently: rounding only
        np.testing.assert_allclose(out, whole, rtol=tol, atol=tol)
    assert (wide[:, :2] == -7).all() and (wide[:, 2 + f:] == -7).all()


def test_filter_shards_check_their_arguments():
    x = np.zeros((1, 3, 3, 2), np.float32)
    w = np.zeros((3, 3, 2, 4), np.float32)
    out = np.zeros((9, 4), np.float32)
    cols = np.zeros((9, 18), np.float32)
    with pytest.raises(ValueError, match="cols is not"):
        conv2d_im2col(x, 1, 1, 1, 1, 3, 3, 3, 3, cols[:8])
    for f0, f1 in ((2, 2), (-1, 2), (0, 5)):
        with pytest.raises(ValueError, match="channel range"):
            conv2d_forward_filters(cols, w, np.zeros(0, np.float32), f0, f1, RELU, out)
    with pytest.raises(ValueError, match="channel range"):
        conv2d_forward_filters(cols[:, :17], w, np.zeros(0, np.float32), 0, 4, RELU, out)


# --------------------------------------------------------------------------- the rule


def _conv(filters, k=3, s=1):
    return layers.Conv2D(filters, k, strides=s, padding="same")


@pytest.mark.parametrize("in_shape,layer,batch,expected", [
    ((2, 2, 512), _conv(512), 32, 2),            # ResNet-18 stage 4: 4608 x 512 weights
    ((4, 4, 256), _conv(512, s=2), 32, 2),       # its strided entry: 2304 x 512
    ((4, 4, 256), _conv(256), 32, 2),            # stage 3: 2304 x 256, 256 rows per shard
    ((4, 4, 256), _conv(256), 128, 0),           # ... with 1024 rows per shard
    ((8, 8, 128), _conv(128), 32, 0),            # stage 2: 0.6 MiB of weights
    ((32, 32, 64), _conv(64), 32, 0),            # large images, small weights
    ((16, 16, 512), _conv(512), 32, 0),          # large images: many rows per shard
    ((2, 2, 512), _conv(512, k=1), 32, 0),       # pointwise (no column matrix)
    ((2, 2, 512), _conv(512), 1, 0),             # one image: no shards at all
])
def test_the_rule_takes_filter_shards_for_few_rows_and_large_weights(in_shape, layer, batch,
                                                                     expected):
    set_num_threads(2)
    kernel = Conv2DKernel(registry().device("cpu"))
    assert kernel._filter_shards(layer, in_shape, batch) == expected
    if expected:  # the column workspace holds the whole column matrix
        ws = kernel.workspaces(layer, [in_shape], None, batch, training=True)
        shards, r, k = ws["cols"].shape
        ho, wo, _, _ = kernel._geometry(layer, in_shape)
        assert shards * r >= batch * ho * wo and k == 9 * in_shape[2]
    set_num_threads(1)
    assert kernel._filter_shards(layer, in_shape, batch) == 0


# --------------------------------------------------------------------------- models


def _cnn(dtype="float64", last="relu"):
    def conv(f, k, s=1, act="relu"):
        return layers.Conv2D(f, k, strides=s, padding="same", activation=act)

    i = Input(shape=(6, 6, 2), dtype=dtype)
    s = conv(5, 3)(i)
    m = layers.Concatenate()([conv(3, 1)(s), conv(3, 3)(conv(2, 1)(s)),
                              conv(2, 5, act="tanh")(conv(1, 1)(s))])   # strided outputs
    d = conv(7, 3, 2)(m)
    r = layers.Conv2D(7, 2, padding="same", use_bias=False)(conv(7, 3, act="sigmoid")(d))
    d = layers.Activation(last)(layers.Add()([d, r]))
    out = layers.Dense(3, activation="softmax")(layers.Flatten()(d))
    return Model(i, out)


def _filter_calls(prog):
    return [shard for fn, args in prog.forward if fn is run_shards for shard in args[0]
            if shard[0].__name__ == "conv2d_forward_filters"]


def _run(n_threads, dtype="float64"):
    nexec.clear_session()
    nexec.set_random_seed(7)
    set_num_threads(n_threads)
    model = _cnn(dtype)
    x, y = _data()
    _, grads = model_gradients(model, x.astype(dtype), y.astype(dtype),
                               "categorical_crossentropy")
    prog = model._trainer.train_executor.program(5)
    return model.predict(x.astype(dtype), batch_size=5), grads, prog


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_model_with_filter_shards_matches_one_thread_and_image_shards(
        monkeypatch, filter_shards_everywhere, dtype):
    p1, g1, _ = _run(1, dtype)
    p2, g2, prog = _run(2, dtype)
    # the 6 convolutions of the 9 that are not 1x1 stride 1 (pointwise)
    assert len(_filter_calls(prog)) == 2 * 6
    monkeypatch.setattr(builtin, "_FILTER_SHARD_WEIGHTS", 1 << 40)
    pi, gi, prog_i = _run(2, dtype)
    assert not _filter_calls(prog_i) and prog_i.threaded
    # F < 32 here: channel bounds off OpenBLAS's column blocks, so rounding may differ
    rtol, atol = (1e-11, 1e-14) if dtype == "float64" else (1e-4, 1e-6)
    for ref in (pi, p1):
        np.testing.assert_allclose(p2, ref, rtol=rtol, atol=atol)
    for name in g1:  # backward keeps image shards
        for ref in (gi, g1):
            np.testing.assert_allclose(g2[name], ref[name], rtol=rtol, atol=atol, err_msg=name)


def test_filter_shards_of_aligned_channels_give_the_image_shards_bits(monkeypatch):
    """F >= 32: bounds on multiples of 16, and the same bits as the image shards."""
    def run(weights_limit):
        monkeypatch.setattr(builtin, "_FILTER_SHARD_WEIGHTS", weights_limit)
        nexec.clear_session()
        nexec.set_random_seed(5)
        set_num_threads(2)
        i = Input(shape=(2, 2, 24), dtype="float32")
        c = layers.Conv2D(48, 3, padding="same", activation="relu")(i)
        c = layers.Conv2D(40, 3, strides=2, padding="same", activation="tanh")(c)
        model = Model(i, layers.Concatenate()([c, layers.Conv2D(3, 1)(c)]))
        x = np.random.default_rng(1).normal(size=(6, 2, 2, 24)).astype("float32")
        out = model.predict(x, batch_size=6)
        return out, _filter_calls(predictor(model).executor.program(6))

    monkeypatch.setattr(builtin, "_MIN_SHARD_FLOPS", 1)
    monkeypatch.setattr(builtin, "_FILTER_SHARD_ROWS_PER_K", 0)
    filtered, calls = run(0)
    assert [(a[3], a[4]) for _, a in calls] == [(0, 16), (16, 48), (0, 16), (16, 40)]
    image, none = run(1 << 40)
    assert not none
    assert_same_bits_where_blas_keeps_them(filtered, image)


def test_filter_sharded_gradients_match_finite_differences(filter_shards_everywhere):
    set_num_threads(2)
    model = _cnn()
    rng = np.random.default_rng(3)
    for layer in model.layers:  # biases off the ReLU kink (see test_gradients.py)
        if getattr(layer, "use_bias", False):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0.0, 0.1, bias.shape)])
    x, y = _data()
    loss_fn, grads = model_gradients(model, x, y, "categorical_crossentropy")
    assert _filter_calls(model._trainer.train_executor.program(5))
    check_gradients(loss_fn, grads, weights_by_name(model), rtol=1e-6)


def test_training_with_filter_shards_is_deterministic_and_matches_one_thread(
        filter_shards_everywhere):
    def train(n_threads):
        nexec.clear_session()
        nexec.set_random_seed(11)
        set_num_threads(n_threads)
        model = _cnn()
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        x, y = _data(12)
        model.fit(x, y, epochs=3, batch_size=4, verbose=0)
        assert bool(_filter_calls(model._trainer.train_executor.program(4))) == \
            (n_threads == 2)
        return model.get_weights(), model.predict(x, batch_size=4)

    (w_a, p_a), (w_b, p_b), (w_1, p_1) = train(2), train(2), train(1)
    for a, b, one in zip(w_a, w_b, w_1):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, one, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(p_a, p_b)
    np.testing.assert_allclose(p_a, p_1, rtol=1e-9, atol=1e-12)


def test_a_fused_softmax_keeps_image_shards(filter_shards_everywhere):
    set_num_threads(2)
    i = Input(shape=(4, 4, 3), dtype="float64")
    c = layers.Conv2D(6, 3, padding="same", activation="softmax")(i)
    model = Model(i, layers.Conv2D(4, 3, padding="same")(c))
    x = np.random.default_rng(0).normal(size=(4, 4, 4, 3))
    p2 = model.predict(x, batch_size=4)
    assert len(_filter_calls(predictor(model).executor.program(4))) == 2  # the second only
    set_num_threads(1)
    p1 = model.predict(x, batch_size=4)
    np.testing.assert_array_equal(p2, p1)


def test_filter_sharded_steps_allocate_nothing(filter_shards_everywhere):
    set_num_threads(2)
    model = _cnn()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = _data(8)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    ex = model._trainer.train_executor
    prog = ex.program(4)
    assert _filter_calls(prog)
    losses = [0.0]

    def steps(k):
        for _ in range(k):
            ex.load(prog, [x, y], 0, 4)
            ex.train_step(prog, losses, [])

    steps(2)
    nrt, numpy_blocks = count_allocations(lambda: steps(3))
    assert nrt == 3 * array_arguments(prog)  # the arguments' boxing only, as unsharded
    assert numpy_blocks == []
