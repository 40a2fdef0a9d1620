"""Conv2D kernels against a plain NumPy float64 reference and finite differences."""
from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nexec.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from nexec.kernels.cpu.conv import conv2d_backward, conv2d_forward
from nexec.ops import geometry as geo
from nexec.ops.geometry import conv2d_geometry, conv2d_workspace_shapes, pointwise_rows
from nexec.testing import assert_close, check_gradients
from tests.kernels.reference import ref_act, ref_act_grad

ACTS = [LINEAR, RELU, SIGMOID, TANH, SOFTMAX]
DTYPES = [np.float32, np.float64]
N = 2
SENTINEL = 1234.5

# (h, w, cin, f, kh, kw, sh, sw, padding)
CASES = [
    (5, 5, 3, 2, 3, 3, 1, 1, "same"),
    (6, 6, 2, 3, 3, 3, 2, 2, "same"),
    (6, 5, 3, 2, 3, 3, 2, 1, "valid"),   # unequal strides
    (5, 6, 2, 3, 2, 2, 1, 1, "same"),    # even kernel: extra padding bottom/right
    (6, 6, 3, 2, 2, 2, 2, 2, "valid"),
    (6, 6, 2, 2, 5, 5, 1, 1, "same"),
    (6, 5, 2, 3, 5, 5, 1, 1, "valid"),
    (5, 6, 3, 2, 3, 2, 1, 2, "same"),    # 3x2 kernel, unequal strides
    (6, 6, 1, 2, 4, 4, 3, 3, "same"),    # stride 3, even kernel
    (4, 5, 3, 2, 1, 1, 1, 1, "same"),    # pointwise path (no im2col)
    (4, 4, 2, 3, 1, 1, 1, 1, "valid"),   # pointwise path
    (5, 5, 3, 2, 1, 1, 2, 2, "same"),    # 1x1 strided: im2col path
]
CASE_IDS = [f"{h}x{w}x{c}-{f}_k{kh}x{kw}_s{sh}x{sw}_{p}"
            for (h, w, c, f, kh, kw, sh, sw, p) in CASES]


# ----------------------------------------------------------------------------- reference


def _padded(x, kh, kw, sh, sw, pt, pl, ho, wo):
    n, h, w, c = x.shape
    hp = max(pt + h, (ho - 1) * sh + kh)
    wp = max(pl + w, (wo - 1) * sw + kw)
    xp = np.zeros((n, hp, wp, c))
    xp[:, pt:pt + h, pl:pl + w] = x
    return xp


def _window(a, ky, kx, sh, sw, ho, wo):
    return a[:, ky:ky + (ho - 1) * sh + 1:sh, kx:kx + (wo - 1) * sw + 1:sw, :]


def ref_conv_z(x, w, b, sh, sw, pt, pl, ho, wo):
    """Pre-activation (N, Ho, Wo, F) in float64: one einsum per kernel tap."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    kh, kw = w.shape[:2]
    xp = _padded(x, kh, kw, sh, sw, pt, pl, ho, wo)
    z = np.zeros((x.shape[0], ho, wo, w.shape[3]))
    for ky in range(kh):
        for kx in range(kw):
            z += np.einsum("nhwc,cf->nhwf", _window(xp, ky, kx, sh, sw, ho, wo), w[ky, kx])
    if b.shape[0]:
        z += np.asarray(b, dtype=np.float64)
    return z


def ref_conv(x, w, b, sh, sw, pt, pl, ho, wo, act):
    return ref_act(ref_conv_z(x, w, b, sh, sw, pt, pl, ho, wo), act)


def ref_conv_grad(x, w, dz, sh, sw, pt, pl, ho, wo):
    """(dx, dw, db) of the pre-activation for dz of shape (N, Ho, Wo, F), float64."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, h, wd, c = x.shape
    kh, kw = w.shape[:2]
    xp = _padded(x, kh, kw, sh, sw, pt, pl, ho, wo)
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    for ky in range(kh):
        for kx in range(kw):
            dw[ky, kx] = np.einsum("nhwc,nhwf->cf", _window(xp, ky, kx, sh, sw, ho, wo), dz)
            _window(dxp, ky, kx, sh, sw, ho, wo)[...] += np.einsum("nhwf,cf->nhwc", dz, w[ky, kx])
    return dxp[:, pt:pt + h, pl:pl + wd], dw, dz.sum(axis=(0, 1, 2))


# ----------------------------------------------------------------------------- helpers


def strided(rows: int, cols: int, dtype, left: int = 2, right: int = 3):
    """A (rows, cols) view with row stride cols+left+right, inside a sentinel-filled array."""
    big = np.full((rows, left + cols + right), SENTINEL, dtype=dtype)
    return big, big[:, left:left + cols]


def assert_outside_untouched(big: np.ndarray, cols: int, left: int = 2) -> None:
    assert np.all(big[:, :left] == SENTINEL), "left margin was written"
    assert np.all(big[:, left + cols:] == SENTINEL), "right margin was written"


def geometry(case):
    h, w, c, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = conv2d_geometry(h, w, kh, kw, sh, sw, pad)
    return ho, wo, pt, pl


def make_problem(case, seed: int, bias: bool):
    """float64 x, w, b whose pre-activations stay away from the ReLU kink."""
    h, wd, c, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = geometry(case)
    rng = np.random.default_rng(seed)
    while True:
        x = rng.standard_normal((N, h, wd, c))
        w = rng.standard_normal((kh, kw, c, f)) / np.sqrt(kh * kw * c)
        b = rng.standard_normal(f) * 0.5 if bias else np.zeros(0)
        z = ref_conv_z(x, w, b, sh, sw, pt, pl, ho, wo)
        if np.min(np.abs(z)) > 1e-3:
            return x, w, b


def workspaces(case, dtype, training=True):
    h, wd, c, f, kh, kw, sh, sw, pad = case
    ho, wo, _, _ = geometry(case)
    shapes = conv2d_workspace_shapes(N, h, wd, c, kh, kw, f, ho, wo, sh, sw, training)
    # Garbage in every workspace: kernels must not rely on zeroed scratch.
    return {k: np.full(s, np.nan, dtype=dtype) for k, s in shapes.items()}


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("args, expected", [
    ((32, 32, 3, 3, 1, 1, "same"), (32, 32, 1, 1)),
    ((32, 32, 3, 3, 2, 2, "same"), (16, 16, 0, 0)),      # pad_total 1 -> all bottom/right
    ((5, 5, 3, 3, 2, 2, "same"), (3, 3, 1, 1)),          # pad_total 2
    ((5, 5, 2, 2, 1, 1, "same"), (5, 5, 0, 0)),          # even kernel: pad_total 1
    ((6, 6, 4, 4, 1, 1, "same"), (6, 6, 1, 1)),          # pad_total 3 -> 1 top, 2 bottom
    ((6, 6, 5, 5, 1, 1, "same"), (6, 6, 2, 2)),
    ((224, 224, 7, 7, 2, 2, "same"), (112, 112, 2, 2)),  # ResNet stem: TF pads (2, 3)
    ((5, 5, 1, 1, 2, 2, "same"), (3, 3, 0, 0)),          # stride > kernel: no padding
    ((7, 7, 3, 3, 2, 2, "valid"), (3, 3, 0, 0)),
    ((6, 7, 3, 2, 2, 1, "valid"), (2, 6, 0, 0)),
    ((28, 28, 5, 5, 1, 1, "valid"), (24, 24, 0, 0)),
    ((7, 9, 3, 5, 2, 3, "same"), (4, 3, 1, 1)),          # pads 2 and 2*3 + 5 - 9 = 2
])
def test_geometry_matches_keras(args, expected):
    assert conv2d_geometry(*args) == expected


@pytest.mark.parametrize("args", [
    (5, 5, 3, 3, 1, 1, "causal"),
    (2, 5, 3, 3, 1, 1, "valid"),
    (5, 5, 3, 3, 0, 1, "same"),
])
def test_geometry_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        conv2d_geometry(*args)


def test_workspace_shapes():
    s = conv2d_workspace_shapes(4, 8, 8, 3, 3, 3, 5, 8, 8, 1, 1, False)
    assert s == {"cols": (4 * 64, 27)}  # the GEMM writes straight into the output
    s = conv2d_workspace_shapes(4, 8, 8, 3, 3, 3, 5, 4, 4, 2, 2, True)
    assert s["cols"] == (4 * 16, 27) and s["dz"] == (4 * 16, 5) and "tmp" not in s
    assert int(np.prod(s["dcols"])) == 0  # backward reuses cols
    # 1x1 stride 1: x itself is the column matrix.
    assert conv2d_workspace_shapes(2, 8, 8, 16, 1, 1, 4, 8, 8, 1, 1, True)["cols"] == (0, 0)
    # ... which, in shards on the CPU, is multiplied a block of rows at a time: about 2**15
    # elements of x and out rows, a multiple of 256 rows (cols: no columns, the block's rows).
    point = (64, 32, 32, 32, 1, 1, 32, 32, 32, 1, 1, True)
    assert conv2d_workspace_shapes(*point, tiled=True)["cols"] == (0, 0)  # one shard: BLAS's
    blocks = conv2d_workspace_shapes(*point, tiled=True, shards=2)
    assert blocks["cols"] == (512, 0) and blocks["dz"] == (512, 32)  # dz: one block's
    assert conv2d_workspace_shapes(*point, tiled=False, shards=2)["cols"] == (0, 0)
    assert pointwise_rows(64, 64, 2) == 256 and pointwise_rows(8, 16, 4) == 1280
    # Not for narrow outputs, nor where blocks are short against the input channels.
    assert pointwise_rows(32, 8, 2) == 0 and pointwise_rows(256, 256, 2) == 0
    # 1x1 stride 2 still needs the (subsampled) column matrix.
    assert conv2d_workspace_shapes(2, 8, 8, 16, 1, 1, 4, 4, 4, 2, 2, False)["cols"] == (32, 16)
    # Tiled (CPU): a block of about 2**20 elements (+ F rows in training: fewer dw GEMMs),
    # never more rows than the whole column matrix; the other workspaces are unchanged.
    big = (64, 32, 32, 24, 3, 3, 32, 32, 32, 1, 1)
    k = 3 * 3 * 24
    assert conv2d_workspace_shapes(*big, False, tiled=True)["cols"] == ((1 << 20) // k, k)
    s = conv2d_workspace_shapes(*big, True, tiled=True)
    assert s["cols"] == ((1 << 20) // k + 32, k) and s["dz"] == (64 * 1024, 32)
    assert conv2d_workspace_shapes(4, 8, 8, 3, 3, 3, 5, 8, 8, 1, 1, True, tiled=True) == \
        conv2d_workspace_shapes(4, 8, 8, 3, 3, 3, 5, 8, 8, 1, 1, True)
    # Shards that run at once split one block between them (they share the last-level
    # cache); untiled shapes ignore it.
    s2 = conv2d_workspace_shapes(*big, True, tiled=True, shards=2)
    assert s2["cols"] == ((1 << 19) // k + 32, k) and s2["dz"] == s["dz"]
    assert conv2d_workspace_shapes(*big, False, shards=2) == conv2d_workspace_shapes(*big, False)


def test_block_elements():
    assert geo.block_elements() == geo.COLS_BLOCK == 1 << 20
    assert [geo.block_elements(s) for s in (1, 2, 3, 4)] == \
        [1 << 20, 1 << 19, (1 << 20) // 3, 1 << 18]
    for bad in (0, -1, 1.5, None):
        with pytest.raises(ValueError, match="shards must be an integer >= 1"):
            geo.block_elements(bad)


@pytest.mark.parametrize("size", [1, 2, 5, 6, 7, 32])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_axis_geometry(size, kernel, stride):
    valid = geo.output_length(size, kernel, stride, "valid")
    assert max(valid, 0) == len(range(0, size - kernel + 1, stride))  # window starts that fit
    assert geo.padding_before(size, kernel, stride, "valid") == 0
    out = geo.output_length(size, kernel, stride, "SAME")
    pad = geo.padding_before(size, kernel, stride, "same")
    assert out == -(-size // stride)
    # Every output window starts inside the padded input and the last one reaches its end.
    total = max((out - 1) * stride + kernel - size, 0)
    assert 0 <= pad <= total - pad <= pad + 1
    assert (out - 1) * stride - pad <= size - 1
    assert geo.window_geometry_2d(size, 7, kernel, 1, stride, 1, "same") == \
        (out, 7, pad, 0)


def test_axis_geometry_rejects_unknown_padding():
    with pytest.raises(ValueError, match="padding"):
        geo.output_length(5, 3, 1, "causal")
    with pytest.raises(ValueError, match="padding"):
        geo.padding_before(5, 3, 1, "full")


def test_window_geometry_does_not_check_fit_but_conv_geometry_does():
    assert geo.window_geometry_2d(2, 5, 3, 3, 1, 1, "valid")[0] <= 0
    with pytest.raises(ValueError, match="larger than input"):
        conv2d_geometry(2, 5, 3, 3, 1, 1, "valid")


def test_is_pointwise_is_plain_python():
    """Planning code calls it, so it must not be a compiled kernel."""
    assert inspect.isfunction(geo.is_pointwise)
    assert geo.is_pointwise(4, 5, 1, 1, 4, 5, 1, 1, 0, 0)
    assert not geo.is_pointwise(4, 5, 1, 1, 2, 3, 2, 2, 0, 0)
    assert not geo.is_pointwise(4, 5, 3, 3, 4, 5, 1, 1, 1, 1)
    assert not geo.is_pointwise(4, 5, 1, 1, 4, 5, 1, 1, 1, 0)  # explicit padding


def test_planning_a_conv_model_loads_no_kernel_module():
    """``memory_plan`` needs only the geometry: no conv kernel module, nothing compiled."""
    code = textwrap.dedent("""
        import sys
        from nexec import Input, Model, layers
        i = Input(shape=(8, 8, 3))
        h = layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(i)
        h = layers.Conv2D(5, 1)(h)
        Model(i, layers.Dense(2)(layers.Flatten()(h))).memory_plan(batch_size=4)
        loaded = [m for m in sys.modules if m.endswith(".conv") and ".kernels." in m]
        assert not loaded, loaded
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- forward


def test_reference_matches_direct_loops():
    """The einsum reference against the definition, written out as plain loops."""
    case = (5, 6, 2, 3, 3, 2, 2, 1, "same")
    x, w, b = make_problem(case, 7, True)
    ho, wo, pt, pl = geometry(case)
    sh, sw = case[6], case[7]
    z = np.zeros((N, ho, wo, 3))
    for n in range(N):
        for oy in range(ho):
            for ox in range(wo):
                for ky in range(3):
                    for kx in range(2):
                        iy, ix = oy * sh - pt + ky, ox * sw - pl + kx
                        if 0 <= iy < 5 and 0 <= ix < 6:
                            z[n, oy, ox] += x[n, iy, ix] @ w[ky, kx]
    assert_close(ref_conv_z(x, w, b, sh, sw, pt, pl, ho, wo), z + b, rtol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_numpy(case, dtype, act, bias):
    h, wd, c, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = geometry(case)
    x64, w64, b64 = make_problem(case, act, bias)
    expected = ref_conv(x64, w64, b64, sh, sw, pt, pl, ho, wo, act).reshape(-1, f)
    x, w, b = x64.astype(dtype), w64.astype(dtype), b64.astype(dtype)
    ws = workspaces(case, dtype, training=False)
    big, out = strided(N * ho * wo, f, dtype)
    conv2d_forward(x, w, b, sh, sw, pt, pl, ho, wo, act, ws["cols"], out, out)
    assert_outside_untouched(big, f)
    assert out.dtype == dtype
    assert_close(out, expected, what="conv forward")
    assert_close(x, x64.astype(dtype), rtol=0, what="x (must be unchanged)")


@pytest.mark.parametrize("case", [CASES[1], CASES[7], CASES[9]], ids=lambda c: f"k{c[4]}x{c[5]}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [LINEAR, RELU, SOFTMAX])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layout", ["tmp_is_out", "separate_tmp"])
def test_forward_contiguous_out(case, dtype, act, bias, layout):
    h, wd, c, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = geometry(case)
    x64, w64, b64 = make_problem(case, 11, bias)
    expected = ref_conv(x64, w64, b64, sh, sw, pt, pl, ho, wo, act).reshape(-1, f)
    ws = workspaces(case, dtype, training=False)
    out = np.full((N * ho * wo, f), SENTINEL, dtype=dtype)
    tmp = out if layout == "tmp_is_out" else np.full_like(out, np.nan)
    conv2d_forward(x64.astype(dtype), w64.astype(dtype), b64.astype(dtype), sh, sw, pt, pl,
                   ho, wo, act, ws["cols"], tmp, out)
    assert_close(out, expected, what=f"conv forward, {layout}")
    if layout == "separate_tmp":
        assert np.isnan(tmp).all(), "tmp is unused on the CPU"


def test_forward_custom_padding():
    """Explicit (non-Keras) padding: pt/pl are taken as given, bottom/right follow from ho/wo."""
    case = (5, 5, 2, 3, 3, 3, 1, 1, "valid")
    x, w, b = make_problem(case, 12, True)
    pt, pl, ho, wo = 2, 0, 6, 4  # 2 rows of padding on top and 1 at the bottom, none left/right
    k = 3 * 3 * 2
    cols, tmp = np.empty((N * ho * wo, k)), np.empty((N * ho * wo, 3))
    conv2d_forward(x, w, b, 1, 1, pt, pl, ho, wo, TANH, cols, tmp, tmp)
    assert_close(tmp, ref_conv(x, w, b, 1, 1, pt, pl, ho, wo, TANH).reshape(-1, 3))


# ----------------------------------------------------------------------------- backward


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
def test_backward_matches_finite_differences(case, act, bias):
    h, wd, c, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = geometry(case)
    x, w, b = make_problem(case, 100 + act, bias)
    m = N * ho * wo
    r = np.random.default_rng(200 + act).standard_normal((m, f))
    ybig, y = strided(m, f, np.float64, left=1, right=2)
    ws = workspaces(case, np.float64)

    def loss() -> float:
        conv2d_forward(x, w, b, sh, sw, pt, pl, ho, wo, act, ws["cols"], y, y)
        return float((y * r).sum())

    loss()
    dybig, dy = strided(m, f, np.float64, left=3, right=0)
    dy[:] = r
    dx = np.full(x.shape, SENTINEL)
    dw = np.full(w.shape, SENTINEL)
    db = np.full(b.shape, SENTINEL)
    conv2d_backward(x, w, y, dy, sh, sw, pt, pl, ho, wo, act,
                    ws["cols"], ws["dz"], ws["dcols"], dx, dw, db)
    assert_outside_untouched(ybig, f, left=1)
    assert_outside_untouched(dybig, f, left=3)
    assert np.array_equal(dy, r), "dy was modified"
    dz_ref = ref_act_grad(np.array(y), r, act)
    assert_close(ws["dz"], dz_ref, what="dz")
    analytic = {"w": dw.copy(), "b": db.copy(), "x": dx.copy()}
    wrt = {"x": x, "w": w}
    if bias:
        wrt["b"] = b
    check_gradients(loss, analytic, wrt)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [LINEAR, SIGMOID, SOFTMAX])
def test_backward_matches_numpy(case, dtype, act):
    h, wd, c, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = geometry(case)
    x64, w64, b64 = make_problem(case, 300 + act, True)
    x, w, b = x64.astype(dtype), w64.astype(dtype), b64.astype(dtype)
    m = N * ho * wo
    ws = workspaces(case, dtype)
    ybig, y = strided(m, f, dtype, left=0, right=2)
    conv2d_forward(x, w, b, sh, sw, pt, pl, ho, wo, act, ws["cols"], y, y)
    dy = np.random.default_rng(400 + act).standard_normal((m, f)).astype(dtype)
    dx = np.full(x.shape, SENTINEL, dtype=dtype)
    dw = np.full(w.shape, SENTINEL, dtype=dtype)
    db = np.full(b.shape, SENTINEL, dtype=dtype)
    conv2d_backward(x, w, y, dy, sh, sw, pt, pl, ho, wo, act,
                    ws["cols"], ws["dz"], ws["dcols"], dx, dw, db)
    dz_ref = ref_act_grad(y.astype(np.float64), dy.astype(np.float64), act)
    dx_ref, dw_ref, db_ref = ref_conv_grad(x, w, dz_ref.reshape(N, ho, wo, f),
                                           sh, sw, pt, pl, ho, wo)
    assert_close(ws["dz"], dz_ref, what="dz")
    assert_close(dw, dw_ref, what="dw")
    assert_close(dx, dx_ref, what="dx")
    assert_close(db, db_ref, what="db")
    assert_outside_untouched(ybig, f, left=0)


@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[9], CASES[11]],
                         ids=lambda c: f"k{c[4]}x{c[5]}s{c[6]}")
@pytest.mark.parametrize("bias", [True, False])
def test_backward_skips_dx(case, bias):
    h, wd, c, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = geometry(case)
    x, w, b = make_problem(case, 500, bias)
    m = N * ho * wo
    ws = workspaces(case, np.float64)
    y = np.empty((m, f))
    conv2d_forward(x, w, b, sh, sw, pt, pl, ho, wo, TANH, ws["cols"], y, y)
    dy = np.random.default_rng(501).standard_normal((m, f))
    dx = np.empty((0, h, wd, c))
    dw = np.full(w.shape, SENTINEL)
    db = np.full(b.shape, SENTINEL)
    conv2d_backward(x, w, y, dy, sh, sw, pt, pl, ho, wo, TANH,
                    ws["cols"], ws["dz"], ws["dcols"], dx, dw, db)
    assert dx.shape == (0, h, wd, c)
    dz_ref = ref_act_grad(y, dy, TANH)
    _, dw_ref, db_ref = ref_conv_grad(x, w, dz_ref.reshape(N, ho, wo, f), sh, sw, pt, pl, ho, wo)
    assert_close(dw, dw_ref, what="dw")
    if bias:
        assert_close(db, db_ref, what="db")


@pytest.mark.parametrize("case", [CASES[2], CASES[5]], ids=["k3s21", "k5"])
def test_backward_separate_dcols_and_dz_is_dy(case):
    """A full-size dcols workspace, and dz aliasing a contiguous dy, give the same result."""
    h, wd, c, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = geometry(case)
    x, w, b = make_problem(case, 600, True)
    m = N * ho * wo
    ws = workspaces(case, np.float64)
    y = np.empty((m, f))
    conv2d_forward(x, w, b, sh, sw, pt, pl, ho, wo, SOFTMAX, ws["cols"], y, y)
    r = np.random.default_rng(601).standard_normal((m, f))
    outs = []
    for variant in ("shared", "separate"):
        dy = r.copy()
        dcols = ws["dcols"] if variant == "shared" else np.full(ws["cols"].shape, np.nan)
        dz = ws["dz"] if variant == "shared" else dy
        dx, dw, db = np.empty(x.shape), np.empty(w.shape), np.empty(b.shape)
        conv2d_backward(x, w, y, dy, sh, sw, pt, pl, ho, wo, SOFTMAX,
                        ws["cols"], dz, dcols, dx, dw, db)
        outs.append((dx, dw, db))
    dz_ref = ref_act_grad(y, r, SOFTMAX)
    dx_ref, dw_ref, db_ref = ref_conv_grad(x, w, dz_ref.reshape(N, ho, wo, f),
                                           sh, sw, pt, pl, ho, wo)
    for dx, dw, db in outs:
        assert_close(dx, dx_ref, what="dx")
        assert_close(dw, dw_ref, what="dw")
        assert_close(db, db_ref, what="db")


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[5], CASES[8], CASES[11]],
                         ids=lambda c: f"k{c[4]}x{c[5]}s{c[6]}x{c[7]}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [1, 7])
def test_blocked_column_matrix(case, dtype, block):
    """A cols workspace of fewer rows than N*Ho*Wo: forward works ``block`` rows at a time,
    backward too, each block's dw added by the GEMM (the last block shorter), with a shared
    and with a separate dcols, and matches the reference."""
    h, wd, c, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = geometry(case)
    x64, w64, b64 = make_problem(case, 900 + block, True)
    x, w, b = x64.astype(dtype), w64.astype(dtype), b64.astype(dtype)
    m, k = N * ho * wo, kh * kw * c
    assert m % block != 0 or block == 1
    cols = np.full((block, k), np.nan, dtype=dtype)
    tmp = np.full((m, f), np.nan, dtype=dtype)
    big, y = strided(m, f, dtype)
    conv2d_forward(x, w, b, sh, sw, pt, pl, ho, wo, TANH, cols, tmp, y)
    assert_close(y, ref_conv(x64, w64, b64, sh, sw, pt, pl, ho, wo, TANH).reshape(-1, f),
                 what="blocked forward")
    assert_outside_untouched(big, f)
    dy = np.random.default_rng(901).standard_normal((m, f)).astype(dtype)
    dz_ref = ref_act_grad(y.astype(np.float64), dy.astype(np.float64), TANH)
    dx_ref, dw_ref, db_ref = ref_conv_grad(x, w, dz_ref.reshape(N, ho, wo, f),
                                           sh, sw, pt, pl, ho, wo)
    for dcols in (np.empty((0, 0), dtype), np.full(cols.shape, np.nan, dtype=dtype)):
        dz = np.full((m, f), np.nan, dtype=dtype)
        dx = np.full(x.shape, SENTINEL, dtype=dtype)
        dw = np.full(w.shape, SENTINEL, dtype=dtype)
        db = np.full(b.shape, SENTINEL, dtype=dtype)
        conv2d_backward(x, w, y, dy, sh, sw, pt, pl, ho, wo, TANH, cols, dz, dcols, dx, dw, db)
        assert_close(dz, dz_ref, what="blocked dz")
        assert_close(dw, dw_ref, what="blocked dw")
        assert_close(dx, dx_ref, what="blocked dx")
        assert_close(db, db_ref, what="blocked db")


def test_blocked_backward_needs_a_column_block():
    case = CASES[0]
    h, wd, c, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = geometry(case)
    x, w, b = make_problem(case, 950, True)
    m = N * ho * wo
    y, dy = np.zeros((m, f)), np.ones((m, f))
    with pytest.raises(ValueError, match="at least one row"):
        conv2d_backward(x, w, y, dy, sh, sw, pt, pl, ho, wo, LINEAR,
                        np.empty((0, kh * kw * c)), np.empty((m, f)), np.empty((0, 0)),
                        np.empty(x.shape), np.empty(w.shape), np.empty(b.shape))


def test_float32_bias_gradient_over_many_rows():
    """db is summed in blocks: float32 stays accurate over a long batch of rows."""
    rng = np.random.default_rng(700)
    n = 512
    x = rng.standard_normal((n, 8, 8, 1)).astype(np.float32)
    w = rng.standard_normal((1, 1, 1, 2)).astype(np.float32)
    m = n * 64
    y = np.zeros((m, 2), np.float32)
    dy = (1.0 + rng.random((m, 2))).astype(np.float32)
    dz, db = np.empty((m, 2), np.float32), np.empty(2, np.float32)
    conv2d_backward(x, w, y, dy, 1, 1, 0, 0, 8, 8, LINEAR, np.empty((0, 0), np.float32),
                    dz, np.empty((0, 0), np.float32), np.empty((0, 8, 8, 1), np.float32),
                    np.empty_like(w), db)
    assert_close(db, dy.astype(np.float64).sum(axis=0), rtol=1e-6, what="float32 db")


@pytest.mark.parametrize("act", [RELU, SOFTMAX])
def test_python_bodies_without_jit(act):
    """Runs the pure-Python bodies (``py_func``) of the public kernels, as a second opinion."""
    case = CASES[7]
    h, wd, c, f, kh, kw, sh, sw, pad = case
    ho, wo, pt, pl = geometry(case)
    x, w, b = make_problem(case, 800 + act, True)
    ws = workspaces(case, np.float64)
    ws["cols"] = np.full((f + 3, kh * kw * c), np.nan)  # several blocks of f + 3 rows
    big, out = strided(N * ho * wo, f, np.float64)
    conv2d_forward.py_func(x, w, b, sh, sw, pt, pl, ho, wo, act, ws["cols"], out, out)
    assert_close(out, ref_conv(x, w, b, sh, sw, pt, pl, ho, wo, act).reshape(-1, f))
    assert_outside_untouched(big, f)
    dy = np.random.default_rng(801).standard_normal(out.shape)
    dx, dw, db = np.empty(x.shape), np.empty(w.shape), np.empty(b.shape)
    conv2d_backward.py_func(x, w, out, dy, sh, sw, pt, pl, ho, wo, act,
                            ws["cols"], ws["dz"], ws["dcols"], dx, dw, db)
    dz_ref = ref_act_grad(np.array(out), dy, act)
    dx_ref, dw_ref, db_ref = ref_conv_grad(x, w, dz_ref.reshape(N, ho, wo, f),
                                           sh, sw, pt, pl, ho, wo)
    assert_close(dx, dx_ref, what="py_func dx")
    assert_close(dw, dw_ref, what="py_func dw")
    assert_close(db, db_ref, what="py_func db")
