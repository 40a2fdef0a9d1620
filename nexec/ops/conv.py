"""Op kernels of Conv1D, DepthwiseConv2D, SeparableConv2D and Conv2DTranspose.

* ``Conv1D`` is Conv2D over a height-1 image: its input, kernel and gradients are reshaped
  views (``(N, L, C)`` -> ``(N, 1, L, C)``, ``(K, C, F)`` -> ``(1, K, C, F)``), so it is
  Conv2D's op kernel and kernels (threads, blocks, CUDA) with a 1-D geometry ("causal" too).
* ``DepthwiseConv2D``: a direct kernel, vectorised over channels.
* ``SeparableConv2D``: the depthwise kernel (linear, no bias) into a workspace kept for
  backward, then Dense's kernels as the 1x1 pointwise convolution with bias + activation.
* ``Conv2DTranspose``: the adjoint of a convolution (col2im forward, im2col backward).

The last three have CPU kernels only (``devices = ("cpu",)``): on CUDA the registry says
the layer has no kernel for that device.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from nexec.kernels.activations import LINEAR
from nexec.ops.base import BoundCall, Call, Workspace, empty_like_skip, rows
from nexec.ops.builtin import BuiltinKernel, Conv2DKernel, _bias
from nexec.ops.geometry import (
    COLS_BLOCK,
    conv1d_geometry,
    conv2d_geometry,
    conv2d_transpose_geometry,
)

__all__ = ["OP_KERNEL_CLASSES", "Conv1DKernel", "DepthwiseConv2DKernel",
           "SeparableConv2DKernel", "Conv2DTransposeKernel"]


@dataclasses.dataclass(frozen=True)
class _AsConv2D:
    """A Conv1D layer's arguments as Conv2DKernel reads them (height 1)."""

    kernel_size: tuple[int, int]
    strides: tuple[int, int]
    padding: str
    filters: int
    use_bias: bool


def _as_conv2d(layer: Any) -> _AsConv2D:
    return _AsConv2D((1, layer.kernel_size[0]), (1, layer.strides[0]), layer.padding,
                     layer.filters, layer.use_bias)


class Conv1DKernel(Conv2DKernel):
    """Conv2D's op kernel on ``(N, 1, L, C)`` views of a 1-D convolution's arrays."""

    layer_type = "Conv1D"

    def _geometry(self, layer: Any, in_shape: tuple) -> tuple:
        _, length, _ = in_shape
        wo, pl = conv1d_geometry(length, layer.kernel_size[1], layer.strides[1], layer.padding)
        return 1, wo, 0, pl

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                   strided_output=False):  # noqa: ANN001
        return super().workspaces(_as_conv2d(layer), [(1, *in_shapes[0])], (1, *out_shape),
                                  batch, training, strided_output)

    def _call_2d(self, call: Call) -> Call:
        """``call`` with 4-D views of the input, kernel and their gradients."""
        def image(a: Any) -> Any:
            return None if a is None else self.dev.reshape(a, (a.shape[0], 1, *a.shape[1:]))

        def kernel(table: dict) -> dict:
            out = dict(table)
            if "kernel" in table:
                out["kernel"] = self.dev.reshape(table["kernel"], (1, *table["kernel"].shape))
            return out

        return dataclasses.replace(
            call, layer=_as_conv2d(call.layer), inputs=[image(call.inputs[0])],
            params=kernel(call.params), d_inputs=[image(d) for d in call.d_inputs],
            d_params=kernel(call.d_params))

    def forward(self, call: Call) -> list[BoundCall]:
        return super().forward(self._call_2d(call))

    def backward(self, call: Call) -> list[BoundCall]:
        return super().backward(self._call_2d(call))


def _window(layer: Any, in_shape: tuple) -> tuple[int, int, int, int]:
    h, w, _ = in_shape
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    return conv2d_geometry(h, w, kh, kw, sh, sw, layer.padding)


class DepthwiseConv2DKernel(BuiltinKernel):
    """Direct depthwise convolution with bias + activation fused."""

    layer_type = "DepthwiseConv2D"
    devices = ("cpu",)
    fuses_activation = True
    folds_channel_affine = ("kernel", "bias")  # (KH, KW, C, M): channel c * M + m

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                   strided_output=False):  # noqa: ANN001
        if not training:
            return {}
        ho, wo, cm = out_shape
        return {"dz": Workspace((batch * ho * wo, cm), phase="backward")}

    def forward(self, call: Call) -> list[BoundCall]:
        x = call.inputs[0]
        ho, wo, pt, pl = _window(call.layer, x.shape[1:])
        sh, sw = call.layer.strides
        return [(self.k.depthwise_conv2d_forward, (
            x, call.params["kernel"], _bias(call), sh, sw, pt, pl, ho, wo, call.activation,
            rows(call.output)))]

    def backward(self, call: Call) -> list[BoundCall]:
        x = call.inputs[0]
        ho, wo, pt, pl = _window(call.layer, x.shape[1:])
        sh, sw = call.layer.strides
        dx = call.d_inputs[0] if call.d_inputs[0] is not None else empty_like_skip(x)
        return [(self.k.depthwise_conv2d_backward, (
            x, call.params["kernel"], rows(call.output), rows(call.d_output), sh, sw, pt, pl,
            ho, wo, call.activation, call.workspace["dz"], dx, call.d_params["kernel"],
            _bias(call, grads=True)))]


class SeparableConv2DKernel(BuiltinKernel):
    """Depthwise (linear) into ``mid``, then Dense's GEMM + epilogue as the 1x1 step."""

    layer_type = "SeparableConv2D"
    devices = ("cpu",)
    fuses_activation = True
    folds_channel_affine = ("pointwise_kernel", "bias")
    strided_output = True

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                   strided_output=False):  # noqa: ANN001
        ho, wo, f = out_shape
        m, cm = batch * ho * wo, in_shapes[0][-1] * layer.depth_multiplier
        # The depthwise result is the pointwise GEMM's input: backward needs it.
        ws = {"mid": Workspace((m, cm), saved=training,
                               phase="both" if training else "forward")}
        if training:
            ws["dz"] = Workspace((m, f), phase="backward")
            ws["dmid"] = Workspace((m, cm), phase="backward")
        return ws

    def _pointwise(self, table: dict) -> Any:
        pk = table["pointwise_kernel"]
        return self.dev.reshape(pk, (pk.shape[2], pk.shape[3]))

    def forward(self, call: Call) -> list[BoundCall]:
        x = call.inputs[0]
        ho, wo, pt, pl = _window(call.layer, x.shape[1:])
        sh, sw = call.layer.strides
        mid, out = call.workspace["mid"], rows(call.output)
        no_bias = call.device.zeros((0,), call.output.dtype)
        return [(self.k.depthwise_conv2d_forward, (
                    x, call.params["depthwise_kernel"], no_bias, sh, sw, pt, pl, ho, wo,
                    LINEAR, mid)),
                (self.k.dense_forward, (mid, self._pointwise(call.params), _bias(call),
                                        call.activation, out, out))]

    def backward(self, call: Call) -> list[BoundCall]:
        x = call.inputs[0]
        ho, wo, pt, pl = _window(call.layer, x.shape[1:])
        sh, sw = call.layer.strides
        ws = call.workspace
        mid, dmid = ws["mid"], ws["dmid"]
        dx = call.d_inputs[0] if call.d_inputs[0] is not None else empty_like_skip(x)
        no_bias = call.device.zeros((0,), call.output.dtype)
        return [(self.k.dense_backward, (
                    mid, self._pointwise(call.params), rows(call.output), rows(call.d_output),
                    call.activation, ws["dz"], dmid, self._pointwise(call.d_params),
                    _bias(call, grads=True))),
                # Linear: the depthwise step's pre-activation gradient is dmid itself.
                (self.k.depthwise_conv2d_backward, (
                    x, call.params["depthwise_kernel"], mid, dmid, sh, sw, pt, pl, ho, wo,
                    LINEAR, dmid, dx, call.d_params["depthwise_kernel"], no_bias))]


class Conv2DTransposeKernel(BuiltinKernel):
    """GEMM into column-matrix blocks + col2im forward; im2col + GEMMs backward."""

    layer_type = "Conv2DTranspose"
    devices = ("cpu",)
    fuses_activation = True

    @staticmethod
    def _geometry(layer: Any, in_shape: tuple) -> tuple[int, int, int, int]:
        h, w, _ = in_shape
        (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
        return conv2d_transpose_geometry(h, w, kh, kw, sh, sw, layer.padding)

    def workspaces(self, layer, in_shapes, out_shape, batch, training,  # noqa: ANN001, ANN201
                   strided_output=False):  # noqa: ANN001
        h, w, cin = in_shapes[0]
        ho, wo, f = out_shape
        kh, kw = layer.kernel_size
        k, m = kh * kw * f, batch * h * w
        block = min(m, max(COLS_BLOCK // k, 64))  # input pixels per column-matrix block
        ws = {"cols": Workspace((block, k))}
        if training:
            ws["dz"] = Workspace((batch, ho, wo, f), phase="backward")
        return ws

    def forward(self, call: Call) -> list[BoundCall]:
        x = call.inputs[0]
        _, _, pt, pl = self._geometry(call.layer, x.shape[1:])
        sh, sw = call.layer.strides
        return [(self.k.conv2d_transpose_forward, (
            x, call.params["kernel"], _bias(call), sh, sw, pt, pl, call.activation,
            call.workspace["cols"], call.output))]

    def backward(self, call: Call) -> list[BoundCall]:
        x = call.inputs[0]
        _, _, pt, pl = self._geometry(call.layer, x.shape[1:])
        sh, sw = call.layer.strides
        ws = call.workspace
        dx = call.d_inputs[0] if call.d_inputs[0] is not None else empty_like_skip(x)
        return [(self.k.conv2d_transpose_backward, (
            x, call.params["kernel"], rows(call.output), rows(call.d_output), sh, sw, pt, pl,
            call.activation, ws["cols"], ws["dz"], dx, call.d_params["kernel"],
            _bias(call, grads=True)))]


OP_KERNEL_CLASSES = (Conv1DKernel, DepthwiseConv2DKernel, SeparableConv2DKernel,
                     Conv2DTransposeKernel)
