"""The contract between the executor and a layer type's kernels on one device."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from nexec.plugins import registry

__all__ = ["Kernel", "Call", "BoundCall", "Workspace", "rows", "view_2d", "empty_like_skip"]

#: A kernel function and the arguments it is called with at every step.
BoundCall = tuple[Callable[..., Any], tuple]


@dataclass(frozen=True)
class Workspace:
    """Scratch memory an op asks for; ``shape`` is the full shape (usually batch-led).

    ``saved=True`` keeps it from the forward step to the backward step (a dropout mask);
    otherwise it lives only during the steps of ``phase`` that use it (``"forward"``,
    ``"backward"`` or ``"both"``) and its memory is reused after each.

    ``phase="prepared"`` (inference only) is data derived from the op's parameters alone,
    such as transformed or re-laid-out weights: the op's :meth:`Kernel.prepare` calls write
    it, the forward reads it, and it is kept between steps, so it is remade only when the
    parameters change (``ParamStore.version``), not every batch.
    """

    shape: tuple
    saved: bool = False
    dtype: str | None = None  # None: the model's dtype
    phase: str = "both"


@dataclass
class Call:
    """Everything bound to one op: arrays are views of the executor's memory.

    ``d_inputs[i]`` is None when input ``i`` needs no gradient (a model input).

    ``output``/``d_output`` are the op's (first) output and its gradient; ``outputs`` and
    ``d_outputs`` list every output of a layer with several (``return_state=True``), the
    first included. An output that nothing reads and no loss sees has no gradient (None in
    ``d_outputs``, and ``d_output`` None when it is the first).
    """

    layer: Any
    activation: int
    inputs: list[np.ndarray]
    output: np.ndarray
    params: dict[str, np.ndarray]
    workspace: dict[str, np.ndarray] = field(default_factory=dict)
    training: bool = False
    d_output: np.ndarray | None = None
    d_inputs: list[np.ndarray | None] = field(default_factory=list)
    d_params: dict[str, np.ndarray] = field(default_factory=dict)
    #: The ``nexec.devices.Device`` the arrays live on: its ``kernels`` namespace has every
    #: kernel function of that device by name.
    device: Any = None
    #: The mask source of input 0 for an op whose layer consumes masks (``consumes_mask``):
    #: the ids whose zeros are padding (Keras' mask is ``ids != 0``), batch-led, in the ids'
    #: own dtype; None when the input carries no mask.
    mask: Any = None
    outputs: list[np.ndarray] = field(default_factory=list)
    d_outputs: list[np.ndarray | None] = field(default_factory=list)


class Kernel:
    """How one layer type runs on one device. Subclass and register via ``nexec_kernels``.

    Class attributes tell the planner what it may do around this op.
    """

    layer_type: str = ""
    device: str = "cpu"
    #: The op can apply any fused activation code itself (Dense, Conv2D, Add).
    fuses_activation: bool = False
    #: Backward reads the op's inputs / its output, so they must stay alive until then.
    saves_inputs: bool = True
    saves_output: bool = True
    #: Forward can write into a row-strided slice (the op's channel slice of a concat).
    strided_output: bool = False
    #: The output is a reshape of input 0 (Flatten): no memory, no forward or backward work.
    view_of_input: bool = False
    #: Forward may write its output over input 0 (elementwise ops): the planner does so when
    #: that input is read by nothing later.
    overwrites_input: bool = False
    #: The output is the inputs joined along the layer's feature axis (``feature_axis``), so
    #: producers may write straight into their slices (Concatenate): the planner does so when
    #: that axis is the last and each input's producer can write strided rows.
    concatenates_inputs: bool = False
    #: The op only applies its layer's ``activation`` to its one input (Activation), so the
    #: planner may fold it into that input's producer when the producer's kernel fuses
    #: activations.
    applies_activation_only: bool = False
    #: In inference the op is ``y = x * scale + shift`` per channel of the last axis, with
    #: scale and shift from its parameters alone (BatchNormalization): the planner may fold
    #: it into the weights of its input's producer when that kernel ``folds_channel_affine``;
    #: :meth:`channel_affine` gives the calls that compute scale and shift.
    applies_channel_affine: bool = False
    #: ``(weight, bias)``, names of parameters the op's output is linear in,
    #: ``x (*) weight + bias``, with output channel ``j`` in column ``j`` of the weight read
    #: as a ``(-1, channels)`` matrix (Dense, Conv2D): a following per-channel affine then
    #: folds into prepared copies of the two in inference. None: it cannot fold one.
    folds_channel_affine: tuple[str, str] | None = None

    def workspaces(self, layer: Any, in_shapes: list[tuple], out_shape: tuple, batch: int,
                   training: bool, strided_output: bool = False) -> dict[str, Workspace]:
        """Scratch arrays the op needs for this batch size (shapes include the batch).

        ``strided_output`` says the planner made the output a slice of a wider buffer.
        """
        return {}

    def forward(self, call: Call) -> list[BoundCall]:
        raise NotImplementedError

    def backward(self, call: Call) -> list[BoundCall]:
        raise NotImplementedError

    def prepare(self, call: Call) -> list[BoundCall]:
        """Calls that fill the op's ``phase="prepared"`` workspaces from its parameters, in
        inference; they run before a step whenever the parameters changed since they last
        ran. ``call`` is the forward's."""
        return []

    def channel_affine(self, call: Call) -> list[BoundCall]:
        """For a kernel that ``applies_channel_affine``: calls that write the op's inference
        scale and shift, the rows of ``call.output`` ``(2, channels)``, from
        ``call.params`` (``call.inputs`` is empty)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Kernel {self.layer_type} on {self.device}>"


def rows(a: Any) -> Any:
    """``a`` as a 2-D (rows, last axis) view; raises rather than silently copying.

    Works for NumPy arrays (any single-axis slice) and for any registered device's arrays.
    """
    shape = tuple(a.shape)
    if not shape:
        return view_2d(a, 1, 1)
    return view_2d(a, int(np.prod(shape[:-1])), shape[-1])


def view_2d(a: Any, n_rows: int, n_cols: int) -> Any:
    """A ``(n_rows, n_cols)`` view of ``a`` whose leading axes collapse into rows; a slice
    of a wider buffer on one axis keeps its row stride."""
    if isinstance(a, np.ndarray):
        v = a.view()
        v.shape = (n_rows, n_cols)  # raises instead of silently copying
        return v
    return _device_of(a).view_2d(a, n_rows, n_cols)


def empty_like_skip(a: Any) -> Any:
    """A zero-length array of ``a``'s rank and dtype: tells a kernel to skip that output."""
    if isinstance(a, np.ndarray):
        return np.empty((0, *a.shape[1:]), a.dtype)
    return _device_of(a).zeros((0, *tuple(a.shape)[1:]), a.dtype)


def _device_of(a: Any) -> Any:
    """The registered device whose array ``a`` is."""
    for device in registry().devices.values():
        if device.owns(a):
            return device
    raise TypeError(f"{type(a).__name__} is not an array of any registered device")
