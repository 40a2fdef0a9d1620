"""The direct Conv2D kernels against a plain NumPy float64 reference, finite differences and
PyTorch, and the workspace shapes their binder asks for."""
from __future__ import annotations

import numpy as np
import pytest

from nexec.kernels.activations import LINEAR, RELU, SOFTMAX, TANH
from nexec.kernels.cpu import conv_direct
from nexec.kernels.cpu.conv_direct import conv2d_direct_backward, conv2d_direct_forward
from nexec.ops.conv_direct import (
    DIRECT_MAX_CIN,
    DIRECT_MAX_CIN_POINTWISE,
    direct_applies,
    direct_limit,
    direct_workspace_shapes,
)
from nexec.ops.geometry import conv2d_geometry
from nexec.testing import assert_close, check_gradients
from tests.kernels.reference import ref_act, ref_act_grad
from tests.kernels.test_conv import (
    assert_outside_untouched,
    ref_conv_grad,
    ref_conv_z,
    strided,
)

N = 2
# (h, w, cin, f, kh, kw, sh, sw, padding). F covers the kernel's paths: fewer filters than
# a register block (5), whole blocks (16), blocks plus a rest (20), whole wide blocks of 32
# (32, 64: the forward's wider register block on CPUs with 512-bit vectors; the row kernels
# of both widths are compared directly below, on any CPU); output widths that are and are not
# multiples of four pixels.
CASES = [
    (5, 7, 3, 5, 3, 3, 1, 1, "same"),
    (9, 8, 3, 16, 3, 3, 1, 1, "same"),
    (9, 11, 2, 20, 5, 3, 2, 2, "same"),     # unequal kernel, stride 2, pads (2, 1)
    (8, 10, 3, 16, 3, 2, 2, 1, "valid"),    # unequal strides, even kernel width
    (11, 11, 8, 16, 5, 5, 1, 1, "same"),    # the CNN's 5x5 over 8
    (13, 14, 3, 20, 7, 7, 2, 2, "same"),    # a ResNet-like stem: 7x7 stride 2
    (7, 9, 1, 4, 4, 4, 3, 3, "same"),       # stride 3 > padding, one channel
    (9, 10, 24, 32, 3, 3, 1, 1, "same"),    # the CNN's 3x3 over 24: one wide block
    (8, 9, 5, 64, 3, 3, 2, 2, "valid"),     # two wide blocks, stride 2
]
IDS = [f"{h}x{w}x{c}-{f}_k{kh}x{kw}_s{sh}x{sw}_{p}" for (h, w, c, f, kh, kw, sh, sw, p) in CASES]
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _problem(case, seed: int, bias: bool = True):
    h, wd, c, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = conv2d_geometry(h, wd, kh, kw, sh, sw, pad)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, h, wd, c))
    w = rng.standard_normal((kh, kw, c, f)) / np.sqrt(kh * kw * c)
    b = rng.standard_normal(f) * 0.5 if bias else np.zeros(0)
    return x, w, b, (ho, wo, pt, pl)


def _xpad(case, dtype):
    h, wd, c, f, kh, kw, sh, sw, pad = case
    ho, wo, _, _ = conv2d_geometry(h, wd, kh, kw, sh, sw, pad)
    shapes = direct_workspace_shapes(N, h, wd, c, kh, kw, f, ho, wo, sh, sw, 1, True)
    # Garbage in every workspace: the kernels must not rely on zeroed scratch.
    return {k: np.full(s, np.nan, dtype)[0] if k != "dz" else np.full(s, np.nan, dtype)
            for k, s in shapes.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_reference(case, dtype):
    x, w, b, (ho, wo, pt, pl) = _problem(case, 0)
    sh, sw = case[6], case[7]
    ws = _xpad(case, dtype)
    for act, bias in ((LINEAR, np.zeros(0)), (TANH, b)):
        out = np.full((N * ho * wo, w.shape[3]), np.nan, dtype)
        conv2d_direct_forward(x.astype(dtype), w.astype(dtype), bias.astype(dtype), sh, sw,
                              pt, pl, ho, wo, act, ws["xpad"], out)
        want = ref_act(ref_conv_z(x, w, bias, sh, sw, pt, pl, ho, wo), act)
        assert_close(out, want.reshape(out.shape), rtol=TOL[dtype])


@pytest.mark.parametrize("wo", [4, 9])
def test_wide_and_narrow_register_blocks_give_the_same_bits(wo):
    """Blocks of 32 filters (taken on CPUs with 512-bit vectors) and of 16 (elsewhere) sum
    each output in the same order: one output row, 3x3 over 5 channels into 64 filters."""
    rng = np.random.default_rng(7)
    kh, kw, c, f = 3, 3, 5, 64
    xpad = rng.standard_normal((kh, wo + kw - 1, c)).astype(np.float32)
    w2 = rng.standard_normal((kh * kw * c, f)).astype(np.float32)
    xpf, rowlen = xpad.reshape(-1), xpad.shape[1] * c
    rows = []
    for row in (conv_direct._forward_row, conv_direct._forward_row_wide):
        out = np.full((wo, f), np.nan, np.float32)
        row(xpf, w2, out, 0, 0, c, rowlen, wo, kh, kw * c)
        rows.append(out)
    np.testing.assert_array_equal(rows[0], rows[1])
    want = np.stack([xpad[:, ox:ox + kw].reshape(-1).astype(np.float64) @ w2
                     for ox in range(wo)])
    assert_close(rows[0], want, rtol=TOL[np.float32])


@pytest.mark.parametrize("wo", [4, 9])
def test_wide_and_narrow_weight_gradient_blocks_give_the_same_bits(wo):
    """The weight gradient's blocks of 32 filters and of 16 add each tap's products in the
    same (pixel) order: one output row, 3x3 over 5 channels (15 taps a kernel row: groups
    of four and a rest) into 64 filters, onto a nonzero ``dw``."""
    rng = np.random.default_rng(8)
    kh, kw, c, f = 3, 3, 5, 64
    xpad = rng.standard_normal((kh, wo + kw - 1, c)).astype(np.float32)
    dz = rng.standard_normal((wo, f)).astype(np.float32)
    start = rng.standard_normal((kh * kw * c, f)).astype(np.float32)
    xpf, rowlen = xpad.reshape(-1), xpad.shape[1] * c
    grads = []
    for row in (conv_direct._weight_grad_row, conv_direct._weight_grad_row_wide):
        dw2 = start.copy()
        row(xpf, dz, dw2, 0, 0, c, rowlen, wo, kh, kw * c)
        grads.append(dw2)
    np.testing.assert_array_equal(grads[0], grads[1])
    cols = np.stack([xpad[:, ox:ox + kw].reshape(-1) for ox in range(wo)]).astype(np.float64)
    assert_close(grads[0], start + cols.T @ dz.astype(np.float64), rtol=TOL[np.float32])


def test_the_wide_block_is_taken_only_with_512_bit_vectors():
    from nexec.kernels.vector_width import native_vector_bits

    assert conv_direct._WIDE_REGISTERS == (native_vector_bits() >= 512)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_into_a_concatenation_slice(dtype):
    """A row-strided output (a Concatenate slice): only its columns are written."""
    case = CASES[2]
    x, w, b, (ho, wo, pt, pl) = _problem(case, 1)
    f = w.shape[3]
    big, out = strided(N * ho * wo, f, dtype)
    ws = _xpad(case, dtype)
    for act in (RELU, SOFTMAX):
        conv2d_direct_forward(x.astype(dtype), w.astype(dtype), b.astype(dtype), 2, 2, pt,
                              pl, ho, wo, act, ws["xpad"], out)
        want = ref_act(ref_conv_z(x, w, b, 2, 2, pt, pl, ho, wo), act)
        assert_close(out, want.reshape(out.shape), rtol=TOL[dtype])
        assert_outside_untouched(big, f)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_matches_reference(case, dtype):
    x, w, b, (ho, wo, pt, pl) = _problem(case, 2)
    sh, sw = case[6], case[7]
    f = w.shape[3]
    rng = np.random.default_rng(3)
    y = ref_act(ref_conv_z(x, w, b, sh, sw, pt, pl, ho, wo), TANH).reshape(-1, f)
    dy = rng.standard_normal(y.shape)
    dz = ref_act_grad(y, dy, TANH)
    want_dx, want_dw, want_db = ref_conv_grad(x, w, dz.reshape(N, ho, wo, f), sh, sw, pt, pl,
                                             ho, wo)
    ws = _xpad(case, dtype)
    dx, dw, db = (np.full(a.shape, np.nan, dtype) for a in (x, w, b))
    conv2d_direct_backward(x.astype(dtype), w.astype(dtype), y.astype(dtype),
                           dy.astype(dtype), sh, sw, pt, pl, ho, wo, TANH, ws["xpad"],
                           ws["dz"], ws["dcols"], dx, dw, db)
    assert_close(dx, want_dx, rtol=TOL[dtype], what="dx")
    assert_close(dw, want_dw, rtol=TOL[dtype], what="dw")
    assert_close(db, want_db, rtol=TOL[dtype], what="db")
    # No input gradient (a model input), no bias: dx and dcols untouched, dw the same.
    dw2 = np.full(w.shape, np.nan, dtype)
    conv2d_direct_backward(x.astype(dtype), w.astype(dtype), y.astype(dtype),
                           dy.astype(dtype), sh, sw, pt, pl, ho, wo, TANH, ws["xpad"],
                           ws["dz"], np.zeros((0, 0), dtype), dx[:0], dw2,
                           np.zeros(0, dtype))
    assert_close(dw2, want_dw, rtol=TOL[dtype], what="dw without dx")


def test_gradients_finite_differences_strided_output():
    """float64, bias + tanh, output and its gradient in a concatenation's slice."""
    case = CASES[5]
    x, w, b, (ho, wo, pt, pl) = _problem(case, 4)
    f = w.shape[3]
    big, y = strided(N * ho * wo, f, np.float64)
    _, dy = strided(N * ho * wo, f, np.float64)
    g = np.random.default_rng(5).standard_normal(y.shape)
    ws = _xpad(case, np.float64)

    def loss() -> float:
        conv2d_direct_forward(x, w, b, 2, 2, pt, pl, ho, wo, TANH, ws["xpad"], y)
        return float(np.sum(y * g))

    loss()
    dy[...] = g
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    conv2d_direct_backward(x, w, y, dy, 2, 2, pt, pl, ho, wo, TANH, ws["xpad"], ws["dz"],
                           ws["dcols"], dx, dw, db)
    check_gradients(loss, {"x": dx, "w": dw, "b": db}, {"x": x, "w": w, "b": b}, rtol=1e-6)
    assert_outside_untouched(big, f)


@pytest.mark.parametrize("case", [CASES[5], CASES[7]], ids=[IDS[5], IDS[7]])
def test_matches_pytorch_float64(case):
    """The ResNet-like stem (7x7, stride 2, TF 'same' padding (2, 3)) and a 3x3 over 24
    channels into 32 filters (the wide register block) against torch, with copied weights:
    forward, and the input, weight and bias gradients of a sum."""
    torch = pytest.importorskip("torch")
    h, wd, c, f, kh, kw, sh, sw, _ = case
    x, w, b, (ho, wo, pt, pl) = _problem(case, 6)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(w.transpose(3, 2, 0, 1), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    pb = (ho - 1) * sh + kh - h - pt
    pr = (wo - 1) * sw + kw - wd - pl
    zt = torch.nn.functional.conv2d(torch.nn.functional.pad(xt, (pl, pr, pt, pb)), wt, bt,
                                    stride=(sh, sw))
    yt = torch.relu(zt)
    g = np.random.default_rng(7).standard_normal((N, ho, wo, f))
    (yt * torch.tensor(g.transpose(0, 3, 1, 2))).sum().backward()

    ws = _xpad(case, np.float64)
    y = np.empty((N * ho * wo, f))
    conv2d_direct_forward(x, w, b, sh, sw, pt, pl, ho, wo, RELU, ws["xpad"], y)
    assert_close(y, yt.detach().numpy().transpose(0, 2, 3, 1).reshape(y.shape), rtol=1e-12)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    conv2d_direct_backward(x, w, y, g.reshape(y.shape), sh, sw, pt, pl, ho, wo, RELU,
                           ws["xpad"], ws["dz"], ws["dcols"], dx, dw, db)
    assert_close(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12, what="dx")
    assert_close(dw, wt.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-12, what="dw")
    assert_close(db, bt.grad.numpy(), rtol=1e-12, what="db")


def test_bad_workspaces_are_refused():
    case = CASES[0]
    x, w, b, (ho, wo, pt, pl) = _problem(case, 8)
    out = np.empty((N * ho * wo, w.shape[3]))
    with pytest.raises(ValueError, match="xpad is smaller"):
        conv2d_direct_forward(x, w, b, 1, 1, pt, pl, ho, wo, LINEAR,
                              np.zeros((ho, wo, 3)), out)
    with pytest.raises(ValueError, match="output rows"):
        conv2d_direct_forward(x, w, b, 1, 1, pt, pl, ho, wo, LINEAR,
                              np.zeros((ho + 2, wo + 2, 3)), out[:-1])


def test_workspace_shapes_and_applicability():
    s = direct_workspace_shapes(8, 64, 64, 3, 7, 7, 64, 32, 32, 2, 2, 2, False)
    assert s == {"xpad": (2, 69, 69, 3)}
    s = direct_workspace_shapes(8, 32, 32, 8, 5, 5, 16, 32, 32, 1, 1, 1, True)
    assert s == {"xpad": (1, 36, 36, 8), "dz": (8 * 1024, 16), "dcols": (1, 128, 200)}
    assert direct_workspace_shapes(2, 5, 7, 3, 3, 3, 5, 5, 7, 1, 1, 1, True)["dcols"] == \
        (1, 35, 27)

    class Layer:
        filters = 4
        kernel_size = (3, 3)

    class Pointwise(Layer):
        kernel_size = (1, 1)

    assert DIRECT_MAX_CIN == 32 and DIRECT_MAX_CIN_POINTWISE == 16
    assert direct_limit(Layer()) == DIRECT_MAX_CIN
    assert direct_limit(Pointwise()) == DIRECT_MAX_CIN_POINTWISE
    assert direct_applies(Layer(), 3) and direct_applies(Layer(), DIRECT_MAX_CIN)
    assert not direct_applies(Layer(), DIRECT_MAX_CIN + 1)
    assert direct_applies(Pointwise(), DIRECT_MAX_CIN_POINTWISE)
    assert not direct_applies(Pointwise(), DIRECT_MAX_CIN_POINTWISE + 1)
