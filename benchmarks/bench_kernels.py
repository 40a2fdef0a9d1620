"""Each CPU kernel family alone, on the shapes the workloads give it.

Kernels are called exactly as the executor binds them (``nexec/ops/builtin.py``): C-contiguous
inputs, separate workspaces, outputs overwritten. Every ``setup`` calls the kernel once, so
JIT compilation (or the Numba cache load) is never timed. In small mode (smoke test) the
batch dimension shrinks to 2; the shapes' other dimensions stay.

Reading the numbers: a dense or conv kernel's FLOPs are 2*M*K*N per GEMM (forward one
GEMM; backward two, the weight and the input gradient), so ``GFLOP/s = flops / time``;
compare with ``benchmarks/blas_peak.py``.
"""
import numpy as np

from benchmarks import models

RELU = 1  # nexec.kernels.activations.RELU; the literal keeps this module import-light
LINEAR = 0


def _rand(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


class TimeDenseKernels:
    """``dense_forward`` / ``dense_backward`` with ReLU, batch 128; params are (in, out)."""

    params = [["64x32", "256x256", "512x512", "784x512"]]
    param_names = ["in_x_out"]

    def setup(self, shape):
        from nexec.kernels.cpu.dense import dense_backward, dense_forward

        self.fwd, self.bwd = dense_forward, dense_backward
        i, o = map(int, shape.split("x"))
        n = models.kernel_batch(128)
        rng = np.random.default_rng(0)
        self.x, self.w, self.b = _rand(rng, n, i), _rand(rng, i, o) * 0.05, _rand(rng, o)
        self.out = np.empty((n, o), np.float32)
        self.dy = _rand(rng, n, o)
        self.dz = np.empty((n, o), np.float32)
        self.dx = np.empty((n, i), np.float32)
        self.dw = np.empty((i, o), np.float32)
        self.db = np.empty(o, np.float32)
        self.time_dense_forward(shape)
        self.time_dense_backward(shape)

    def time_dense_forward(self, shape):
        self.fwd(self.x, self.w, self.b, RELU, self.out, self.out)

    def time_dense_backward(self, shape):
        self.bwd(self.x, self.w, self.out, self.dy, RELU, self.dz, self.dx, self.dw, self.db)


# Every convolution of the CNN, in model order: HxWxCin-F, kernel, stride ("same" padding).
CONV_SHAPES = ["32x32x3-32k3s1", "32x32x32-32k1s1", "32x32x32-24k1s1", "32x32x24-32k3s1",
               "32x32x32-8k1s1", "32x32x8-16k5s1", "32x32x80-64k3s2", "16x16x64-64k3s1",
               "16x16x64-64k3s2"]


def _parse_conv(label):
    image, rest = label.split("-")
    h, w, cin = map(int, image.split("x"))
    f, rest = rest.split("k")
    k, s = map(int, rest.split("s"))
    return h, w, cin, int(f), k, s


class TimeConvKernels:
    """``conv2d_forward`` / ``conv2d_backward`` (blocked im2col + GEMM, as the CPU op sizes
    ``cols``), ReLU, batch 64.

    The residual branch's second 3x3 (16x16x64-64k3s1) appears twice in the model, once
    here; every other convolution of the CNN once each.
    """

    params = [CONV_SHAPES]
    param_names = ["shape"]

    def setup(self, label):
        from nexec.kernels.cpu.conv import (conv2d_backward, conv2d_forward, conv2d_geometry,
                                            conv2d_workspace_shapes)

        self.fwd, self.bwd = conv2d_forward, conv2d_backward
        h, w, cin, f, k, s = _parse_conv(label)
        n = models.kernel_batch(64)
        ho, wo, pt, pl = conv2d_geometry(h, w, k, k, s, s, "same")
        ws = conv2d_workspace_shapes(n, h, w, cin, k, k, f, ho, wo, s, s, True, tiled=True)
        rng = np.random.default_rng(0)
        self.x = rng.random((n, h, w, cin), dtype=np.float32)
        self.w = _rand(rng, k, k, cin, f) * 0.05
        self.b = _rand(rng, f)
        m = n * ho * wo
        self.out = np.empty((m, f), np.float32)
        self.dy = _rand(rng, m, f)
        self.cols = np.empty(ws["cols"], np.float32)
        self.dz = np.empty(ws["dz"], np.float32)
        self.dcols = np.empty(ws["dcols"], np.float32)
        self.dx = np.empty_like(self.x)
        self.dw = np.empty_like(self.w)
        self.db = np.empty(f, np.float32)
        self.geom = (s, s, pt, pl, ho, wo)
        self.time_conv2d_forward(label)
        self.time_conv2d_backward(label)

    def time_conv2d_forward(self, label):
        self.fwd(self.x, self.w, self.b, *self.geom, RELU, self.cols, self.out, self.out)

    def time_conv2d_backward(self, label):
        self.bwd(self.x, self.w, self.out, self.dy, *self.geom, RELU, self.cols, self.dz,
                 self.dcols, self.dx, self.dw, self.db)


class TimeMergeKernels:
    """``nexec.kernels.cpu.merge``: Add (fused ReLU), gradient accumulation, and the copy of
    one branch into its slice of a concatenated buffer (what Concatenate costs when the
    planner cannot place the branch in place, and how Add's gradient fans out).

    Params are (rows, channels): 128x256 is a residual-stack Add, 16384x64 the CNN's
    residual Add (64 images of 16x16), 65536x32 an inception branch (64 images of 32x32)
    written into an 80-channel buffer.
    """

    params = [["128x256", "16384x64", "65536x32"]]
    param_names = ["rows_x_channels"]

    def setup(self, shape):
        from nexec.kernels.cpu.merge import accumulate, add_forward, copy_into

        self.add, self.acc, self.copy = add_forward, accumulate, copy_into
        rows, cols = map(int, shape.split("x"))
        rows = models.kernel_batch(rows)
        rng = np.random.default_rng(0)
        self.a, self.b = _rand(rng, rows, cols), _rand(rng, rows, cols)
        self.out = np.empty((rows, cols), np.float32)
        self.wide = np.empty((rows, max(80, 2 * cols)), np.float32)
        self.slice = self.wide[:, 16:16 + cols]  # row-strided, like a concat branch
        self.time_add_forward(shape)
        self.time_add_forward_inplace(shape)
        self.time_accumulate(shape)
        self.time_copy_into_concat_slice(shape)

    def time_add_forward(self, shape):
        self.add(self.a, self.b, RELU, self.out)

    def time_add_forward_inplace(self, shape):
        self.add(self.out, self.b, LINEAR, self.out)

    def time_accumulate(self, shape):
        self.acc(self.out, self.a)

    def time_copy_into_concat_slice(self, shape):
        self.copy(self.slice, self.a)


class TimePoolingKernels:
    """``max_pool_forward`` (inference, and training with its argmax) and
    ``max_pool_backward`` on ResNet-18's pool: 3x3, stride 2, 'same', over 32x32x64, batch 32.
    """

    def setup(self):
        from nexec.kernels.cpu.pooling import max_pool_backward, max_pool_forward
        from nexec.ops.geometry import window_geometry_2d

        self.fwd, self.bwd = max_pool_forward, max_pool_backward
        n = models.kernel_batch(32)
        ho, wo, pt, pl = window_geometry_2d(32, 32, 3, 3, 2, 2, "same")
        rng = np.random.default_rng(0)
        self.x = _rand(rng, n, 32, 32, 64)
        self.out = np.empty((n, ho, wo, 64), np.float32)
        self.argmax = np.empty(self.out.shape, np.int32)
        self.none = np.zeros((0, 0, 0, 0), np.int32)
        self.dy = _rand(rng, n, ho, wo, 64)
        self.dx = np.empty_like(self.x)
        self.window = (3, 3, 2, 2, pt, pl)
        self.time_max_pool_inference()
        self.time_max_pool_training()
        self.time_max_pool_backward()

    def time_max_pool_inference(self):
        self.fwd(self.x, *self.window, self.out, self.none)

    def time_max_pool_training(self):
        self.fwd(self.x, *self.window, self.out, self.argmax)

    def time_max_pool_backward(self):
        self.bwd(self.dy, self.argmax, *self.window, self.dx)


class TimeWinogradKernels:
    """``winograd_forward`` F(2x2,3x3) (the cost model's Winograd) on the CNN's residual
    3x3 (16x16x64 -> 64, ReLU), batch 32: transforms, GEMMs and epilogue."""

    def setup(self):
        from nexec.kernels.cpu.winograd import winograd_filter, winograd_forward
        from nexec.ops.winograd import transform_matrices, winograd_workspace_shapes

        self.fwd = winograd_forward
        n = models.kernel_batch(32)
        rng = np.random.default_rng(0)
        self.x = _rand(rng, n, 16, 16, 64)
        w = _rand(rng, 3, 3, 64, 64) * 0.05
        self.b = _rand(rng, 64)
        self.bt, g, self.at = transform_matrices(2, np.float32)
        shapes = winograd_workspace_shapes(n, 16, 16, 64, 64, "same", 2, False)
        self.ws = {k: np.empty(v, np.float32) for k, v in shapes.items()}
        winograd_filter(w, g, self.ws["U"])
        self.out = np.empty((n * 256, 64), np.float32)
        self.time_winograd_forward()

    def time_winograd_forward(self):
        ws = self.ws
        self.fwd(self.x, ws["U"], self.b, 1, 1, 16, 16, RELU, self.bt, self.at, ws["V"],
                 ws["M"], ws["Y"], ws["scratch"], self.out)


# Flat parameter counts: seed MLP, wide MLP, residual stack (20 blocks).
OPTIMIZER_SIZES = [3466, 669706, 2634250]


class TimeOptimizerKernels:
    """One fused optimizer step over a whole model's flat parameters."""

    params = [OPTIMIZER_SIZES]
    param_names = ["parameters"]

    def setup(self, size):
        from nexec.kernels.cpu.optimizer import adam_update, rmsprop_update, sgd_update

        self.sgd, self.rms, self.adam = sgd_update, rmsprop_update, adam_update
        rng = np.random.default_rng(0)
        self.w, self.g = _rand(rng, size), _rand(rng, size) * 1e-3
        self.s1, self.s2 = np.zeros(size, np.float32), np.zeros(size, np.float32)
        # [iterations, learning_rate, ...]: the layouts of nexec/kernels/cpu/optimizer.py
        self.h_sgd = np.array([0.0, 1e-2, 0.9, 0.0])
        self.h_rms = np.array([0.0, 1e-3, 0.9, 1e-7])
        self.h_adam = np.array([9.0, 1e-3, 0.9, 0.999, 1e-7])
        self.time_sgd_momentum(size)
        self.time_rmsprop(size)
        self.time_adam(size)

    def time_sgd_momentum(self, size):
        self.sgd(self.w, self.g, self.s1, self.h_sgd)

    def time_rmsprop(self, size):
        self.rms(self.w, self.g, self.s1, self.h_rms)

    def time_adam(self, size):
        self.adam(self.w, self.g, self.s1, self.s2, self.h_adam)
