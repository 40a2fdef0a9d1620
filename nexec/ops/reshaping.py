"""The shape layers on each device: which kernel moves the data, on which views.

Reshape is a view (``view_of_input``: nothing runs, as Flatten). The others copy with the
kernels of ``nexec.kernels.<device>.reshaping``: UpSampling2D and RepeatVector (an
upsampling of ``(N, 1, 1, F)`` by ``(n, 1)``) with ``upsample_*``; ZeroPadding1D/2D and
Cropping2D with ``pad_shift`` (forward shifts one way, backward the other); Permute with
``permute_copy`` (its feature axes padded to four with size-1 axes). None of them reads its
input or output in backward. The views are made once, when the executor binds a plan.
"""
from __future__ import annotations

from typing import Any

from nexec.ops.base import BoundCall, Call
from nexec.ops.builtin import BuiltinKernel

__all__ = ["OP_KERNEL_CLASSES", "ReshapeKernel", "PermuteKernel", "RepeatVectorKernel",
           "UpSampling2DKernel", "ZeroPadding1DKernel", "ZeroPadding2DKernel",
           "Cropping2DKernel"]


def _view(call: Call, a: Any, features: tuple) -> Any:
    """``a`` with its feature axes given as ``features`` (a view, strides kept)."""
    shape = (tuple(a.shape)[0], *features)
    return a if tuple(a.shape) == shape else call.device.reshape(a, shape)


def _image(call: Call, a: Any) -> Any:
    """A ``(N, L, C)`` array as ``(N, 1, L, C)``; a 4-D one as it is."""
    shape = tuple(a.shape)
    return _view(call, a, (1, *shape[1:])) if len(shape) == 3 else a


class _CopyKernel(BuiltinKernel):
    saves_inputs = False
    saves_output = False
    strided_output = True


class ReshapeKernel(BuiltinKernel):
    """A reshape: the executor makes the output a view of the input, so nothing runs."""

    layer_type = "Reshape"
    saves_inputs = False
    saves_output = False
    view_of_input = True

    def forward(self, call: Call) -> list[BoundCall]:
        return []

    def backward(self, call: Call) -> list[BoundCall]:
        return []


class UpSampling2DKernel(_CopyKernel):
    """Nearest-neighbour upsampling; backward sums each block of gradients."""

    layer_type = "UpSampling2D"

    def _size(self, call: Call) -> tuple[int, int]:
        return call.layer.size

    def _arrays(self, call: Call, x: Any, y: Any) -> tuple[Any, Any]:
        return x, y

    def forward(self, call: Call) -> list[BoundCall]:
        x, out = self._arrays(call, call.inputs[0], call.output)
        return [(self.k.upsample_forward, (x, *self._size(call), out))]

    def backward(self, call: Call) -> list[BoundCall]:
        if call.d_inputs[0] is None:
            return []
        dx, dy = self._arrays(call, call.d_inputs[0], call.d_output)
        return [(self.k.upsample_backward, (dy, *self._size(call), dx))]


class RepeatVectorKernel(UpSampling2DKernel):
    """``(N, F)`` as ``(N, 1, 1, F)`` upsampled by ``(n, 1)`` into ``(N, n, 1, F)``."""

    layer_type = "RepeatVector"

    def _size(self, call: Call) -> tuple[int, int]:
        return call.layer.n, 1

    def _arrays(self, call: Call, x: Any, y: Any) -> tuple[Any, Any]:
        f = tuple(x.shape)[1]
        return _view(call, x, (1, 1, f)), _view(call, y, (call.layer.n, 1, f))


class _ShiftKernel(_CopyKernel):
    """Zero padding (shift by ``+pad``) and cropping (by ``-crop``): a shifted copy with
    zeros outside the source; backward is the opposite shift."""

    def forward(self, call: Call) -> list[BoundCall]:
        top, left = call.layer.shift()
        return [(self.k.pad_shift, (_image(call, call.inputs[0]), top, left,
                                    _image(call, call.output)))]

    def backward(self, call: Call) -> list[BoundCall]:
        if call.d_inputs[0] is None:
            return []
        top, left = call.layer.shift()
        return [(self.k.pad_shift, (_image(call, call.d_output), -top, -left,
                                    _image(call, call.d_inputs[0])))]


class ZeroPadding1DKernel(_ShiftKernel):
    layer_type = "ZeroPadding1D"


class ZeroPadding2DKernel(_ShiftKernel):
    layer_type = "ZeroPadding2D"


class Cropping2DKernel(_ShiftKernel):
    layer_type = "Cropping2D"


class PermuteKernel(_CopyKernel):
    """A transposing copy between 5-D views; backward copies back with the inverse."""

    layer_type = "Permute"

    def _call(self, call: Call, src: Any, dst: Any, dims: tuple) -> BoundCall:
        pad = (1,) * (4 - len(dims))
        src5 = _view(call, src, (*tuple(src.shape)[1:], *pad))
        dst5 = _view(call, dst, (*tuple(dst.shape)[1:], *pad))
        full = (*dims, *range(len(dims) + 1, 5))  # dst axis k takes src axis full[k] - 1
        q = [0] * 4
        for k, d in enumerate(full):
            q[d - 1] = k
        return (self.k.permute_copy, (src5, *q, dst5))

    def forward(self, call: Call) -> list[BoundCall]:
        return [self._call(call, call.inputs[0], call.output, call.layer.dims)]

    def backward(self, call: Call) -> list[BoundCall]:
        if call.d_inputs[0] is None:
            return []
        dims = call.layer.dims
        inverse = tuple(dims.index(a) + 1 for a in range(1, len(dims) + 1))
        return [self._call(call, call.d_output, call.d_inputs[0], inverse)]


OP_KERNEL_CLASSES = (ReshapeKernel, PermuteKernel, RepeatVectorKernel, UpSampling2DKernel,
                     ZeroPadding1DKernel, ZeroPadding2DKernel, Cropping2DKernel)
