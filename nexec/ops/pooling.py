"""The pooling layers on each device: every one is a 2-D window op on ``(N, H, W, C)``.

A 1-D pooling's ``(N, L, C)`` arrays are viewed as ``(N, 1, L, C)``, a global pooling is
one window as large as the image and its ``(N, C)`` output is viewed as ``(N, 1, 1, C)``;
the views are made once, when the executor binds a plan. No pooling op reads its input or
output in backward (``saves_inputs = saves_output = False``): max pooling keeps the argmax
positions in a ``saved=True`` int32 workspace instead, and the averages need only the output
gradient. Outputs may be row-strided slices of a concatenated buffer (``strided_output``).
"""
from __future__ import annotations

from typing import Any

from nexec.layers.pooling import _GlobalPooling
from nexec.ops.base import BoundCall, Call, Workspace, rows
from nexec.ops.builtin import BuiltinKernel, _part, _shard_slices
from nexec.ops.elementwise import shard_count

__all__ = ["OP_KERNEL_CLASSES", "MaxPooling1DKernel", "MaxPooling2DKernel",
           "AveragePooling1DKernel", "AveragePooling2DKernel", "GlobalMaxPooling1DKernel",
           "GlobalMaxPooling2DKernel", "GlobalAveragePooling1DKernel",
           "GlobalAveragePooling2DKernel"]


def _grid_out(layer: Any, out_shape: tuple) -> tuple[int, int, int]:
    """The output feature shape seen as ``(Ho, Wo, C)``."""
    if isinstance(layer, _GlobalPooling):
        return (1, 1, out_shape[-1])
    return layer.grid(out_shape)


def _as_grid(call: Call, a: Any, grid: tuple) -> Any:
    """``a`` (batch-led) as ``(N, H, W, C)``, a view (strides kept)."""
    shape = (tuple(a.shape)[0], *grid)
    return a if tuple(a.shape) == shape else call.device.reshape(a, shape)


class _PoolKernel(BuiltinKernel):
    """Runs the layer's window with the max or average kernels (``mode``)."""

    mode = "max"
    saves_inputs = False
    saves_output = False
    strided_output = True

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN202
                   strided_output=False):  # noqa: ANN001
        if self.mode != "max" or not training:
            return {}
        return {"argmax": Workspace((batch, *_grid_out(layer, out_shape)), saved=True,
                                    dtype="int32")}

    def _arrays(self, call: Call, x: Any, y: Any) -> tuple[Any, Any, tuple]:
        layer = call.layer
        in_shape = tuple(call.inputs[0].shape)[1:]
        xg = _as_grid(call, x, layer.grid(in_shape))
        yg = _as_grid(call, y, _grid_out(layer, tuple(call.output.shape)[1:]))
        return xg, yg, layer.window(in_shape)

    def _shards(self, fn: Any, big: Any, before: tuple, window: tuple, after: tuple
                ) -> list[BoundCall]:
        """``fn(*before, *window, *after)`` over the convolutions' image shards
        (``builtin._shard_slices``; a window never reaches another image, so the bits are the
        same); one call for a small tensor (``elementwise.shard_count`` on ``big``, the larger
        of input and output)."""
        shards = shard_count(self.dev, tuple(big.shape), big.dtype.itemsize)

        def part(arrays: tuple, images: slice) -> tuple:
            # a skipped argmax (zero images) stays empty
            return tuple(a if tuple(a.shape)[0] == 0 else _part(a, images) for a in arrays)

        return self.dev.parallel([
            (fn, (*part(before, images), *window, *part(after, images)))
            for images, _ in _shard_slices(tuple(big.shape)[0], shards, 1)])

    def forward(self, call: Call) -> list[BoundCall]:
        x, out, window = self._arrays(call, call.inputs[0], call.output)
        if self.mode == "avg":
            return self._shards(self.k.avg_pool_forward, x, (x,), window, (out,))
        argmax = call.workspace.get("argmax") if call.training else None
        if argmax is None:  # inference: a zero-length array tells the kernel not to record
            argmax = call.device.zeros((0, 0, 0, 0), "int32")
        return self._shards(self.k.max_pool_forward, x, (x,), window, (out, argmax))

    def backward(self, call: Call) -> list[BoundCall]:
        if call.d_inputs[0] is None:  # a model input: nothing to propagate to
            return []
        assert call.d_output is not None
        dx, dy, window = self._arrays(call, call.d_inputs[0], call.d_output)
        if self.mode == "avg":
            return self._shards(self.k.avg_pool_backward, dx, (dy,), window, (dx,))
        return self._shards(self.k.max_pool_backward, dx, (dy, call.workspace["argmax"]),
                            window, (dx,))


class MaxPooling1DKernel(_PoolKernel):
    """Window maxima along the steps; backward through the recorded positions."""

    layer_type = "MaxPooling1D"


class MaxPooling2DKernel(_PoolKernel):
    """Window maxima; backward through the recorded positions."""

    layer_type = "MaxPooling2D"


class AveragePooling1DKernel(_PoolKernel):
    """Window means along the steps; backward spreads each gradient over its window."""

    layer_type = "AveragePooling1D"
    mode = "avg"


class AveragePooling2DKernel(_PoolKernel):
    """Window means; backward spreads each gradient over its window's real inputs."""

    layer_type = "AveragePooling2D"
    mode = "avg"


class GlobalMaxPooling1DKernel(_PoolKernel):
    """Per-channel maxima over the steps."""

    layer_type = "GlobalMaxPooling1D"


class GlobalMaxPooling2DKernel(_PoolKernel):
    """Per-channel maxima over height and width."""

    layer_type = "GlobalMaxPooling2D"


class GlobalAveragePooling1DKernel(_PoolKernel):
    """Per-channel means over the steps; over the real steps only for a masked input
    (``Call.mask``, the ids), with the masked kernels."""

    layer_type = "GlobalAveragePooling1D"
    mode = "avg"

    def forward(self, call: Call) -> list[BoundCall]:
        if call.mask is None:
            return super().forward(call)
        return [(self.k.masked_avg_pool1d_forward, (call.inputs[0], call.mask,
                                                    rows(call.output)))]

    def backward(self, call: Call) -> list[BoundCall]:
        if call.mask is None or call.d_inputs[0] is None:
            return super().backward(call)
        assert call.d_output is not None
        return [(self.k.masked_avg_pool1d_backward, (rows(call.d_output), call.mask,
                                                     call.d_inputs[0]))]


class GlobalAveragePooling2DKernel(_PoolKernel):
    """Per-channel means over height and width."""

    layer_type = "GlobalAveragePooling2D"
    mode = "avg"


OP_KERNEL_CLASSES = (MaxPooling1DKernel, MaxPooling2DKernel, AveragePooling1DKernel,
                     AveragePooling2DKernel, GlobalMaxPooling1DKernel, GlobalMaxPooling2DKernel,
                     GlobalAveragePooling1DKernel, GlobalAveragePooling2DKernel)
