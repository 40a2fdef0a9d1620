"""Built-in layer types on each device: which kernel functions run, with which arrays.

One class per layer type serves every device: an instance is made per registered device
and takes its kernel functions from that device's namespace (``device.kernels``), where
every device has the same function names and argument order. Every binder runs once, when
the executor binds a plan; it returns ``(function, args)`` pairs, so a training step does
no Python work here.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nexec.kernels.activations import LINEAR, ROW_WISE
from nexec.ops.base import BoundCall, Call, Kernel, Workspace, empty_like_skip, rows, view_2d
from nexec.ops.conv_direct import direct_workspace_shapes
from nexec.ops.conv_toeplitz import toeplitz_matrix_shape
from nexec.ops.elementwise import costly, split_rows
from nexec.ops.geometry import COLS_BLOCK, conv2d_geometry, conv2d_workspace_shapes, is_pointwise
from nexec.ops.winograd import algorithm_of, tile_of, transform_matrices, winograd_workspace_shapes
from nexec.plugins import registry

__all__ = ["OP_KERNEL_CLASSES", "BuiltinKernel", "DenseKernel", "Conv2DKernel", "AddKernel",
           "ConcatenateKernel", "ActivationKernel", "FlattenKernel"]


def _bias(call: Call, grads: bool = False) -> Any:
    table = call.d_params if grads else call.params
    if "bias" in table:
        return table["bias"]
    return call.device.zeros((0,), call.output.dtype)  # "no bias" to the kernels


#: Below this many forward flops per shard, waking a thread costs more than it saves.
_MIN_SHARD_FLOPS = 8_000_000


def _shard_count(device: Any, flops: int, batch: int) -> int:
    """How many threads share an op's batch: 1 for a device without intra-op threads, for
    one thread, or for small work."""
    return max(1, min(device.threads(), batch, flops // _MIN_SHARD_FLOPS))


def _shard_slices(n: int, shards: int, rows_per_item: int) -> list[tuple[slice, slice]]:
    """(items, rows of the 2-D output) of each shard; one shard takes whole arrays."""
    if shards == 1:
        return [(slice(None), slice(None))]
    bounds = [n * i // shards for i in range(shards + 1)]
    return [(slice(a, b), slice(a * rows_per_item, b * rows_per_item))
            for a, b in zip(bounds, bounds[1:])]


def _part(a: Any, s: slice) -> Any:
    """Shard ``s`` of ``a`` (``a`` itself for the whole: no slicing of device arrays)."""
    return a if s == slice(None) else a[s]


def _grad_parts_workspaces(shards: int, kernel_shape: tuple, use_bias: bool
                           ) -> dict[str, Workspace]:
    """Where shards after the first write their partial weight and bias gradients."""
    if shards == 1:
        return {}
    ws = {"dw_parts": Workspace((shards - 1, *kernel_shape), phase="backward")}
    if use_bias:
        ws["db_parts"] = Workspace((shards - 1, kernel_shape[-1]), phase="backward")
    return ws


def _shard_grads(call: Call, i: int, accumulate: Any) -> tuple[Any, Any, list[BoundCall]]:
    """Shard ``i``'s weight and bias gradient targets, and the calls that add them up.

    Shard 0 writes the gradients themselves; later shards write partial sums that are added
    to them, in shard order (deterministic), once all shards are done.
    """
    dw, db = call.d_params["kernel"], _bias(call, grads=True)
    if i == 0:
        return dw, db, []
    f = dw.shape[-1]
    dw_i = call.workspace["dw_parts"][i - 1]
    sums = [(accumulate, (dw.reshape(-1, f), dw_i.reshape(-1, f)))]
    db_i = db
    if db.shape[0]:
        db_i = call.workspace["db_parts"][i - 1]
        sums.append((accumulate, (db.reshape(1, f), db_i.reshape(1, f))))
    return dw_i, db_i, sums


class BuiltinKernel(Kernel):
    """An op kernel bound to one device (a ``nexec.devices.Device``): its kernel functions
    come from ``device.kernels``; its capabilities decide shards and workspaces."""

    def __init__(self, device: Any = "cpu") -> None:
        """``device``: a ``Device``, or its name (looked up in the registry when used)."""
        self._dev = None if isinstance(device, str) else device
        self.device = device if isinstance(device, str) else device.name

    @property
    def dev(self) -> Any:
        """The ``nexec.devices.Device`` (the registry's, by name, when none was given)."""
        if self._dev is None:
            self._dev = registry().device(self.device)
        return self._dev

    @property
    def k(self) -> Any:
        """The device's kernel namespace."""
        return self.dev.kernels


class DenseKernel(BuiltinKernel):
    """GEMM with bias + activation in the epilogue; fused activation/bias-gradient backward.

    Inputs of any rank: the leading axes are rows of one GEMM (``rows``), as Keras' Dense
    acts on the last axis.

    Not split over threads: its GEMMs dominate and BLAS threads them well (splitting the
    wide-MLP benchmark's batch measured 12% slower, from the partial weight gradients).
    """

    layer_type = "Dense"
    fuses_activation = True
    folds_channel_affine = ("kernel", "bias")
    strided_output = True

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                   strided_output=False):  # noqa: ANN001
        # dz for backward; the GEMM writes straight into the output, strided or not.
        return {"dz": Workspace((batch, *out_shape), phase="backward")} if training else {}

    def forward(self, call: Call) -> list[BoundCall]:
        dense_forward = self.k.dense_forward

        out = rows(call.output)  # any rank: the leading axes are rows
        return [(dense_forward, (rows(call.inputs[0]), call.params["kernel"], _bias(call),
                                 call.activation, out, out))]

    def backward(self, call: Call) -> list[BoundCall]:
        dense_backward = self.k.dense_backward

        x = rows(call.inputs[0])
        dx = rows(call.d_inputs[0]) if call.d_inputs[0] is not None else empty_like_skip(x)
        return [(dense_backward, (x, call.params["kernel"], rows(call.output),
                                  rows(call.d_output), call.activation,
                                  rows(call.workspace["dz"]), dx, call.d_params["kernel"],
                                  _bias(call, grads=True)))]


_CONV_PHASES = {"dz": "backward", "dcols": "backward"}

#: Filter shards (``Conv2DKernel._filter_shards``) for an im2col forward whose weights have
#: more elements than this (2 MiB of float32: one core's L2 on the 2-core machine measured):
#: image shards then each stream all the weights from L3 for their few rows (ResNet-18's
#: 2x2x512 3x3 layer: 0.68-0.75x the time with filter shards, 4608x512 weights; 4x4x256:
#: 0.9-1.0x; 8x8x128, 0.6 MiB of weights: 1.03-1.09x, slower).
_FILTER_SHARD_WEIGHTS = 1 << 19
#: ... and whose image shards have at most K / this many rows (K = KH*KW*Cin): with more
#: rows each image shard's GEMM reuses the weights enough (4x4x256 at batch 128, 1024 rows
#: per shard for K = 2304: 1.03x with filter shards) ...
_FILTER_SHARD_ROWS_PER_K = 4
#: ... and whose whole column matrix (built once, shared by the shards) has at most this
#: many elements.
_FILTER_SHARD_COLS = 8 * COLS_BLOCK


class Conv2DKernel(BuiltinKernel):
    """im2col + BLAS GEMMs (per block of rows on the CPU), or where the plan chose it
    (``nexec.planner.algorithms``) Winograd for 3x3 stride-1 layers, the direct kernel for
    few input channels, or in inference a Toeplitz matrix for maps of a few pixels; bias +
    activation fused. In inference, Winograd's filter transform and the Toeplitz matrix are
    prepared weights (``Kernel.prepare``): made when the weights change, not every step."""

    layer_type = "Conv2D"
    fuses_activation = True
    folds_channel_affine = ("kernel", "bias")
    strided_output = True

    def _geometry(self, layer: Any, in_shape: tuple) -> tuple:
        h, w, _ = in_shape
        (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
        return conv2d_geometry(h, w, kh, kw, sh, sw, layer.padding)

    def _shards(self, layer: Any, in_shape: tuple, batch: int) -> int:
        ho, wo, _, _ = self._geometry(layer, in_shape)
        (kh, kw) = layer.kernel_size
        return _shard_count(self.dev, 2 * batch * ho * wo * kh * kw * in_shape[2]
                            * layer.filters, batch)

    def _filter_shards(self, layer: Any, in_shape: tuple, batch: int) -> int:
        """How many output-channel shards an im2col forward takes instead of image shards
        (0: image shards); see ``_FILTER_SHARD_WEIGHTS``. Backward keeps image shards.

        Depends on the shapes and thread count only, so the workspaces planned and the
        calls bound agree; a row-wise activation (softmax), known only when binding, falls
        back to image shards in the same workspace.
        """
        if not self.dev.column_blocks or self._algorithm(layer) != "im2col":
            return 0
        shards = self._shards(layer, in_shape, batch)
        h, w, cin = in_shape
        ho, wo, pt, pl = self._geometry(layer, in_shape)
        (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
        k, f, m = kh * kw * cin, layer.filters, batch * ho * wo
        if (shards == 1 or f < shards
                or is_pointwise(h, w, kh, kw, ho, wo, sh, sw, pt, pl)
                or k * f <= _FILTER_SHARD_WEIGHTS
                or -(-batch // shards) * ho * wo * _FILTER_SHARD_ROWS_PER_K > k
                or m * k > _FILTER_SHARD_COLS):
            return 0
        return shards

    def _algorithm(self, layer: Any) -> str:
        """The algorithm the plan chose for ``layer`` (``nexec.planner.algorithms``);
        Winograd and direct run on the CPU only."""
        return algorithm_of(layer) if self.dev.name == "cpu" else "im2col"

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                   strided_output=False):  # noqa: ANN001
        algorithm = self._algorithm(layer)
        if algorithm == "direct":
            return self._direct_workspaces(layer, in_shapes, out_shape, batch, training)
        if algorithm == "toeplitz":
            if training:
                raise ValueError(f"Conv2D '{layer.name}': the Toeplitz algorithm serves "
                                 "inference only")
            return {"T": Workspace(toeplitz_matrix_shape(layer, in_shapes[0]),
                                   phase="prepared")}
        if algorithm != "im2col":
            return self._winograd_workspaces(layer, in_shapes, out_shape, batch, training,
                                             strided_output)
        return self._im2col_workspaces(layer, in_shapes, out_shape, batch, training,
                                       strided_output)

    def _winograd_workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN202
                             strided_output):  # noqa: ANN001
        """Per-shard transform blocks (``V``, ``M``, ``scratch`` serve both passes)."""
        h, w, cin = in_shapes[0]
        ho, wo, f = out_shape
        shards = self._shards(layer, in_shapes[0], batch)
        shapes = winograd_workspace_shapes(-(-batch // shards), h, w, cin, f, layer.padding,
                                           tile_of(algorithm_of(layer)), training, shards)
        ws = {}
        for name, shape in shapes.items():
            shared = name in ("U", "dU")
            phase = "backward" if name.startswith("d") else "forward"
            if training and name in ("V", "M", "scratch"):
                phase = "both"  # the weight gradient's tile blocks are the forward's shapes
            if not training and name == "U":
                phase = "prepared"  # the filter transform: once per change of the weights
            ws[name] = Workspace(shape if shared else (shards, *shape), phase=phase)
        if training:
            a = tile_of(algorithm_of(layer)) + 2
            ws["dz"] = Workspace((batch * ho * wo, f), phase="backward")
            ws["wU"] = Workspace((shards, a * a, cin, f), phase="backward")
            ws.update(_grad_parts_workspaces(shards, (3, 3, cin, f), layer.use_bias))
        return ws

    def _direct_workspaces(self, layer, in_shapes, out_shape, batch,  # noqa: ANN001, ANN202
                           training):  # noqa: ANN001
        """Per-shard padded image (and column gradient), the shards' partial gradients."""
        h, w, cin = in_shapes[0]
        ho, wo, f = out_shape
        (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
        shards = self._shards(layer, in_shapes[0], batch)
        shapes = direct_workspace_shapes(batch, h, w, cin, kh, kw, f, ho, wo, sh, sw, shards,
                                         training)
        ws = {name: Workspace(shape, phase=_CONV_PHASES.get(name, "both"))
              for name, shape in shapes.items()}
        if training:
            ws.update(_grad_parts_workspaces(shards, (kh, kw, cin, f), layer.use_bias))
        return ws

    def _direct_forward(self, call: Call) -> list[BoundCall]:
        """Each shard's images through the direct kernel, into its rows of the output."""
        layer, x, ws = call.layer, call.inputs[0], call.workspace
        ho, wo, pt, pl = self._geometry(layer, x.shape[1:])
        sh, sw = layer.strides
        out = rows(call.output)
        shards = [(self.k.conv2d_direct_forward, (
            _part(x, im), call.params["kernel"], _bias(call), sh, sw, pt, pl, ho, wo,
            call.activation, ws["xpad"][i], _part(out, r)))
            for i, (im, r) in enumerate(self._split(call))]
        return self.dev.parallel(shards)

    def _direct_backward(self, call: Call) -> list[BoundCall]:
        """Per shard: dz and db, the direct weight gradient, the input gradient by GEMM."""
        layer, x, ws = call.layer, call.inputs[0], call.workspace
        ho, wo, pt, pl = self._geometry(layer, x.shape[1:])
        sh, sw = layer.strides
        dx = call.d_inputs[0] if call.d_inputs[0] is not None else empty_like_skip(x)
        y, dy = rows(call.output), rows(call.d_output)
        shards, sums = [], []
        for i, (im, r) in enumerate(self._split(call)):
            dw_i, db_i, adds = _shard_grads(call, i, self.k.accumulate)
            sums += adds
            shards.append((self.k.conv2d_direct_backward, (
                _part(x, im), call.params["kernel"], _part(y, r), _part(dy, r), sh, sw, pt,
                pl, ho, wo, call.activation, ws["xpad"][i], _part(ws["dz"], r),
                ws["dcols"][i], _part(dx, im), dw_i, db_i)))
        return self.dev.parallel(shards) + sums

    def _im2col_workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN202
                           strided_output=False):  # noqa: ANN001
        h, w, cin = in_shapes[0]
        ho, wo, _, _ = self._geometry(layer, in_shapes[0])
        (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
        f = layer.filters
        blocks = self.dev.column_blocks
        shapes = conv2d_workspace_shapes(batch, h, w, cin, kh, kw, f, ho, wo, sh, sw,
                                         training, tiled=blocks)
        if blocks:  # one column-matrix block per shard, and the shards' partial gradients
            shards = self._shards(layer, in_shapes[0], batch)
            per_shard = conv2d_workspace_shapes(-(-batch // shards), h, w, cin, kh, kw, f,
                                                ho, wo, sh, sw, training, tiled=True,
                                                shards=shards)
            rows_, k = per_shard["cols"]
            if self._filter_shards(layer, in_shapes[0], batch):
                # the whole column matrix too: its first N*Ho*Wo rows, C-contiguous
                rows_ = max(rows_, -(-batch * ho * wo // shards))
            shapes["cols"] = (shards, rows_, k)
            if training and k == 0 and rows_:  # a 1x1 layer in blocks: dz one block a shard
                shapes["dz"] = (shards, *per_shard["dz"])
        ws = {name: Workspace(tuple(shape), phase=_CONV_PHASES.get(name, "both"))
              for name, shape in shapes.items()}
        if training and blocks:
            ws.update(_grad_parts_workspaces(shards, (kh, kw, cin, f), layer.use_bias))
        return ws

    def _split(self, call: Call) -> list[tuple[slice, slice]]:
        x = call.inputs[0]
        ho, wo, _, _ = self._geometry(call.layer, x.shape[1:])
        return _shard_slices(x.shape[0], self._shards(call.layer, x.shape[1:], x.shape[0]),
                             ho * wo)

    def _winograd_forward(self, call: Call) -> list[BoundCall]:
        """The filter transform (training: every step; inference: :meth:`prepare`), then
        each shard's tiles: transforms, GEMMs, epilogue."""
        k = self.k
        layer, x, ws = call.layer, call.inputs[0], call.workspace
        ho, wo, pt, pl = self._geometry(layer, x.shape[1:])
        bt, g, at = transform_matrices(tile_of(algorithm_of(layer)), x.dtype)
        out = rows(call.output)
        shards = [(k.winograd_forward, (_part(x, im), ws["U"], _bias(call), pt, pl, ho, wo,
                                        call.activation, bt, at, ws["V"][i], ws["M"][i],
                                        ws["Y"][i], ws["scratch"][i], _part(out, r)))
                  for i, (im, r) in enumerate(self._split(call))]
        if not call.training:
            return self.dev.parallel(shards)
        return [(k.winograd_filter, (call.params["kernel"], g, ws["U"]))] + \
            self.dev.parallel(shards)

    def prepare(self, call: Call) -> list[BoundCall]:
        """Inference: Winograd's filter transform, or the Toeplitz matrix, from the weights."""
        algorithm = self._algorithm(call.layer)
        layer, x = call.layer, call.inputs[0]
        if algorithm == "toeplitz":
            h, w, _ = x.shape[1:]
            ho, wo, pt, pl = self._geometry(layer, x.shape[1:])
            sh, sw = layer.strides
            return [(self.k.conv2d_toeplitz_matrix, (call.params["kernel"], h, w, sh, sw, pt,
                                                     pl, ho, wo, call.workspace["T"]))]
        if algorithm in ("winograd", "winograd4"):
            _, g, _ = transform_matrices(tile_of(algorithm), x.dtype)
            return [(self.k.winograd_filter, (call.params["kernel"], g,
                                              call.workspace["U"]))]
        return []

    def _toeplitz_forward(self, call: Call) -> list[BoundCall]:
        """Each shard's output pixels (or, on a map of fewer pixels than shards, its output
        channels, in multiples of 16 where the filters allow) as GEMMs against the Toeplitz
        matrix's columns, then the epilogue."""
        layer, x = call.layer, call.inputs[0]
        n = x.shape[0]
        ho, wo, _, _ = self._geometry(layer, x.shape[1:])
        f, pixels = layer.filters, ho * wo
        x2 = self.dev.reshape(x, (n, int(np.prod(x.shape[1:]))))
        out = self.dev.reshape(rows(call.output), (n, pixels, f))
        shards = self._shards(layer, x.shape[1:], n)
        if pixels >= shards:
            bounds = [pixels * i // shards for i in range(shards + 1)]
            parts = [(p0, p1, 0, f) for p0, p1 in zip(bounds, bounds[1:])]
        elif call.activation in ROW_WISE:
            parts = [(0, pixels, 0, f)]
        else:
            unit = 16 if f >= 16 * shards else 1
            bounds = [f * i // shards // unit * unit for i in range(shards)] + [f]
            parts = [(0, pixels, f0, f1) for f0, f1 in zip(bounds, bounds[1:]) if f1 > f0]
        return self.dev.parallel([
            (self.k.conv2d_toeplitz_forward, (x2, call.workspace["T"], _bias(call), p0, p1,
                                              f0, f1, call.activation, out))
            for p0, p1, f0, f1 in parts])

    def _winograd_backward(self, call: Call) -> list[BoundCall]:
        """Per shard: dz and db, dw by Winograd, dx by Winograd with the rotated filter."""
        k = self.k
        layer, x, ws = call.layer, call.inputs[0], call.workspace
        ho, wo, pt, pl = self._geometry(layer, x.shape[1:])
        bt, g, at = transform_matrices(tile_of(algorithm_of(layer)), x.dtype)
        dx = call.d_inputs[0]
        y, dy = rows(call.output), rows(call.d_output)
        shards, sums = [], []
        for i, (im, r) in enumerate(self._split(call)):
            dw_i, db_i, adds = _shard_grads(call, i, k.accumulate)
            sums += adds
            dx_i = empty_like_skip(x) if dx is None else _part(dx, im)
            shards.append((k.winograd_backward, (
                _part(x, im), _part(y, r), _part(dy, r), call.activation, pt, pl, ho, wo,
                bt, g, at, _part(ws["dz"], r), db_i, ws["V"][i], ws["M"][i], ws["wU"][i],
                ws["scratch"][i], dw_i, ws["dU"], ws["dV"][i], ws["dM"][i],
                ws["dY"][i], ws["dscratch"][i], dx_i)))
        flip = [] if dx is None else \
            [(k.winograd_filter_flipped, (call.params["kernel"], g, ws["dU"]))]
        return flip + self.dev.parallel(shards) + sums

    def forward(self, call: Call) -> list[BoundCall]:
        algorithm = self._algorithm(call.layer)
        if algorithm == "direct":
            return self._direct_forward(call)
        if algorithm == "toeplitz":
            return self._toeplitz_forward(call)
        if algorithm != "im2col":
            return self._winograd_forward(call)
        conv2d_forward = self.k.conv2d_forward

        layer = call.layer
        x = call.inputs[0]
        filters = self._filter_shards(layer, x.shape[1:], x.shape[0])
        if filters and call.activation not in ROW_WISE:
            return self._filter_forward(call, filters)
        ho, wo, pt, pl = self._geometry(layer, x.shape[1:])
        out = rows(call.output)
        cols = call.workspace["cols"]
        sh, sw = layer.strides
        shards = [(conv2d_forward, (_part(x, im), call.params["kernel"], _bias(call), sh, sw,
                                    pt, pl, ho, wo, call.activation, _shard_cols(cols, i),
                                    _part(out, r), _part(out, r)))
                  for i, (im, r) in enumerate(self._split(call))]
        return self.dev.parallel(shards)

    def _filter_forward(self, call: Call, shards: int) -> list[BoundCall]:
        """The whole column matrix once, then each shard's output channels for all rows.

        Channel bounds are multiples of 16 where the filters allow, so that each shard's
        GEMM starts on the same column-block boundary as the unsharded GEMM (OpenBLAS then
        gives the same bits; checked by tests/runtime/test_conv_filter_shards.py).
        """
        layer, x = call.layer, call.inputs[0]
        ho, wo, pt, pl = self._geometry(layer, x.shape[1:])
        (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
        k, f = kh * kw * x.shape[3], layer.filters
        cols = call.workspace["cols"].reshape(-1, k)[:x.shape[0] * ho * wo]
        unit = 16 if f >= 16 * shards else 1
        bounds = [f * i // shards // unit * unit for i in range(shards)] + [f]
        out = rows(call.output)
        parts = [(self.k.conv2d_forward_filters, (cols, call.params["kernel"], _bias(call),
                                                  f0, f1, call.activation, out))
                 for f0, f1 in zip(bounds, bounds[1:])]
        return [(self.k.conv2d_im2col, (x, sh, sw, pt, pl, ho, wo, kh, kw, cols))] + \
            self.dev.parallel(parts)

    def backward(self, call: Call) -> list[BoundCall]:
        algorithm = self._algorithm(call.layer)
        if algorithm == "direct":
            return self._direct_backward(call)
        if algorithm != "im2col":
            return self._winograd_backward(call)
        return self._im2col_backward(call)

    def _im2col_backward(self, call: Call) -> list[BoundCall]:
        conv2d_backward = self.k.conv2d_backward
        accumulate = self.k.accumulate

        layer = call.layer
        x = call.inputs[0]
        ho, wo, pt, pl = self._geometry(layer, x.shape[1:])
        sh, sw = layer.strides
        dx = call.d_inputs[0] if call.d_inputs[0] is not None else empty_like_skip(x)
        ws = call.workspace
        y, dy, cols = rows(call.output), rows(call.d_output), ws["cols"]
        shards, sums = [], []
        for i, (im, r) in enumerate(self._split(call)):
            dw_i, db_i, adds = _shard_grads(call, i, accumulate)
            sums += adds
            shards.append((conv2d_backward, (
                _part(x, im), call.params["kernel"], _part(y, r), _part(dy, r), sh, sw, pt, pl,
                ho, wo, call.activation, _shard_cols(cols, i),
                ws["dz"][i] if ws["dz"].ndim == 3 else _part(ws["dz"], r), ws["dcols"],
                _part(dx, im), dw_i, db_i)))
        return self.dev.parallel(shards) + sums


def _shard_cols(cols: Any, i: int) -> Any:
    """Shard ``i``'s column-matrix block (CPU workspaces have one per shard; CUDA's is 2-D)."""
    return cols[i] if cols.ndim == 3 else cols


class AddKernel(BuiltinKernel):
    """Sum of n inputs with the activation applied in the last pass; a large image tensor is
    split over the convolutions' shards (``ops/elementwise.py``), forward and backward."""

    layer_type = "Add"
    fuses_activation = True
    saves_inputs = False
    strided_output = True
    overwrites_input = True
    saves_output = True  # backward reads it for a fused activation's gradient

    def forward(self, call: Call) -> list[BoundCall]:
        add_accumulate = self.k.add_accumulate
        add_forward = self.k.add_forward

        def build(part: Any) -> list[BoundCall]:
            xs = [part(rows(x)) for x in call.inputs]
            out = part(rows(call.output))
            last = len(xs) == 2
            calls: list[BoundCall] = [(add_forward, (xs[0], xs[1], call.activation if last
                                                     else LINEAR, out))]
            for i, x in enumerate(xs[2:], start=3):
                calls.append((add_accumulate, (out, x, call.activation if i == len(xs)
                                               else LINEAR)))
            return calls

        return split_rows(self.dev, call.output, build, len(call.inputs) + 1,
                          costly(call.activation))

    def backward(self, call: Call) -> list[BoundCall]:
        activation_backward = self.k.activation_backward
        copy_into = self.k.copy_into

        if all(d is None for d in call.d_inputs):
            return []

        def build(part: Any) -> list[BoundCall]:
            targets = [part(rows(d)) for d in call.d_inputs if d is not None]
            first = targets[0]
            calls: list[BoundCall] = [(activation_backward, (
                part(rows(call.output)), part(rows(call.d_output)), call.activation, first))]
            return calls + [(copy_into, (t, first)) for t in targets[1:]]

        return split_rows(self.dev, call.output, build, len(call.inputs) + 2,
                          costly(call.activation))


class ConcatenateKernel(BuiltinKernel):
    """Copies each input into its slice; the memory planner often makes this free."""

    layer_type = "Concatenate"
    saves_inputs = False
    saves_output = False
    concatenates_inputs = True

    def _parts(self, call: Call, whole: np.ndarray) -> list[np.ndarray]:
        """Each input's slice of ``whole`` (the output or its gradient)."""
        axis = call.layer.feature_axis(whole.ndim - 1) + 1
        parts, start = [], 0
        for x in call.inputs:
            index = [slice(None)] * whole.ndim
            index[axis] = slice(start, start + x.shape[axis])
            start += x.shape[axis]
            parts.append(whole[tuple(index)])
        return parts

    def forward(self, call: Call) -> list[BoundCall]:
        copy_into = self.k.copy_into

        axis = call.layer.feature_axis(call.output.ndim - 1) + 1
        return [(copy_into, (as_2d(part, axis), as_2d(x, axis)))
                for x, part in zip(call.inputs, self._parts(call, call.output))
                if not _same_memory(x, part)]  # produced in place: nothing to copy

    def backward(self, call: Call) -> list[BoundCall]:
        copy_into = self.k.copy_into

        assert call.d_output is not None
        axis = call.layer.feature_axis(call.output.ndim - 1) + 1
        return [(copy_into, (as_2d(d, axis), as_2d(part, axis)))
                for d, part in zip(call.d_inputs, self._parts(call, call.d_output))
                if d is not None and not _same_memory(d, part)]


def _same_memory(a: Any, b: Any) -> bool:
    # Device arrays are never planned in place (no strided outputs there): always copy.
    return isinstance(a, np.ndarray) and np.shares_memory(a, b)


def as_2d(a: np.ndarray, axis: int) -> np.ndarray:
    """A 2-D view (axes before ``axis``, the rest): rows are runs with one stride.

    Any single-axis slice of a C-contiguous array has this form, so one row-strided copy
    kernel serves concatenation on every axis.
    """
    full = tuple(a.shape)
    return view_2d(a, int(np.prod(full[:axis])), int(np.prod(full[axis:])))


def _needs_input(layer: Any) -> bool:
    """Whether the layer's activation takes its derivative from the input (GELU, SiLU)."""
    return bool(registry().activation(layer.activation).needs_input)


class ActivationKernel(BuiltinKernel):
    """A standalone activation (when it could not be fused into its producer), split over
    the convolutions' shards for a large image tensor (``ops/elementwise.py``).

    GELU and SiLU (``needs_input``) copy their input into a saved workspace in training, since
    the output may overwrite it and their derivative needs it.
    """

    layer_type = "Activation"
    saves_inputs = False
    strided_output = True
    overwrites_input = True
    applies_activation_only = True

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                   strided_output=False):  # noqa: ANN001
        if training and _needs_input(layer):
            return {"x": Workspace((batch, *in_shapes[0]), saved=True)}
        return {}

    def forward(self, call: Call) -> list[BoundCall]:
        activation_forward = self.k.activation_forward

        def build(part: Any) -> list[BoundCall]:
            x = part(rows(call.inputs[0]))
            calls: list[BoundCall] = []
            if "x" in call.workspace:
                calls.append((self.k.copy_into, (part(rows(call.workspace["x"])), x)))
            return calls + [(activation_forward, (x, call.activation, part(rows(call.output))))]

        return split_rows(self.dev, call.output, build, 2, costly(call.activation))

    def backward(self, call: Call) -> list[BoundCall]:
        if call.d_inputs[0] is None:
            return []

        def build(part: Any) -> list[BoundCall]:
            dy, dx = part(rows(call.d_output)), part(rows(call.d_inputs[0]))
            if "x" in call.workspace:
                return [(self.k.activation_backward_input, (
                    part(rows(call.workspace["x"])), dy, call.activation, dx))]
            return [(self.k.activation_backward, (part(rows(call.output)), dy, call.activation,
                                                  dx))]

        return split_rows(self.dev, call.output, build, 2, costly(call.activation))


class FlattenKernel(BuiltinKernel):
    """A reshape: the executor makes the output a view of the input, so nothing runs."""

    layer_type = "Flatten"
    saves_inputs = False
    saves_output = False
    view_of_input = True

    def forward(self, call: Call) -> list[BoundCall]:
        return []

    def backward(self, call: Call) -> list[BoundCall]:
        return []


OP_KERNEL_CLASSES = (DenseKernel, Conv2DKernel, AddKernel, ConcatenateKernel, ActivationKernel,
                     FlattenKernel)
