"""The layer description every layer type extends.

A layer *describes*: its configuration, how its output shape follows from its input shapes,
and which parameters it owns (shape, initialiser, trainable or not). It computes nothing;
kernels registered for its type do. Its parameter arrays live in the layer so that Keras
idioms (``layer.kernel``, ``get_weights``) work; once a model is compiled they become views
of the executor's flat parameter buffer, so writes through either side are seen by both.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from nexec.checks import ArgumentTypeError
from nexec.errors import GraphError, ShapeError
from nexec.graph import (
    Node,
    SymbolicTensor,
    float_dtype,
    is_integer_dtype,
    is_symbolic,
    unique_name,
)
from nexec.plugins import registry
from nexec.random import generator

__all__ = ["Layer", "ParamSpec", "Shape", "KERAS_MASKING_LAYERS"]

#: The Keras 3.15 layers (of those nexec has) whose ``supports_masking`` is True: they pass
#: a mask on (or read it). One of them that does not support masking in nexec refuses a
#: masked input; any other layer drops the mask with Keras' warning, as Keras does.
KERAS_MASKING_LAYERS = frozenset({
    "Activation", "Add", "Average", "BatchNormalization", "Bidirectional", "Concatenate",
    "Dense", "Dot", "Dropout", "ELU", "GRU", "GaussianNoise", "GlobalAveragePooling1D",
    "LSTM", "LayerNormalization", "LeakyReLU", "Maximum", "Minimum", "Multiply",
    "Normalization", "PReLU", "ReLU", "Rescaling", "SimpleRNN", "Softmax",
    "SpatialDropout1D", "SpatialDropout2D", "Subtract", "TimeDistributed",
})

Shape = tuple  # a feature shape: the sample shape without the batch axis


@dataclass(frozen=True)
class ParamSpec:
    """One parameter a layer owns.

    Args:
        name: Keras' name for it (``kernel``, ``bias``, ``moving_mean``...).
        shape: Its full shape.
        initializer: A registered initialiser name or a callable ``(shape, dtype, rng)``.
        trainable: False for state the optimiser must not touch (moving statistics).
    """

    name: str
    shape: tuple
    initializer: str | Callable = "zeros"
    trainable: bool = True


def _snake(name: str) -> str:
    """Keras' auto-name rule: ``Conv2D`` -> ``conv2d``, ``MaxPooling2D`` -> ``max_pooling2d``."""
    s = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


class Layer:
    """Base of all layers.

    Subclasses implement :meth:`compute_output_shape`, and :meth:`param_specs` when they own
    parameters, and extend :meth:`get_config` with their constructor arguments.

    Args:
        name: Unique name in a model; auto-generated from the class name when omitted.
        trainable: Whether the optimiser updates this layer's parameters.
        dtype: Parameter dtype; by default that of the first input.
        input_shape: Keras shortcut for the first layer of a ``Sequential``.
    """

    #: Number of input tensors: 1, or None for "a list of two or more" (merge layers).
    num_inputs: int | None = 1
    #: Whether the layer behaves differently in training (Dropout, BatchNormalization).
    has_training_mode: bool = False
    #: Whether the layer reads its inputs as integer ids (Embedding): they may then be of an
    #: integer dtype (``int32``/``int64``) or hold whole numbers in a float dtype. Every
    #: other layer computes in floating point and refuses integer tensors when called.
    accepts_ids: bool = False
    #: Keras' name: whether the layer takes an input that carries a mask (see
    #: :meth:`compute_mask`). A layer that does not drops the mask with Keras 3's warning
    #: (its output carries none, its numbers are those of the unmasked input), except one
    #: whose Keras twin passes the mask on (:data:`KERAS_MASKING_LAYERS`): nexec refuses
    #: that input rather than compute something Keras would not.
    supports_masking: bool = False
    #: Whether the layer's kernels read the mask of its input (recurrent layers,
    #: GlobalAveragePooling1D): the planner then binds the mask source to the op
    #: (``Op.mask``, ``Call.mask``). A layer that only passes the mask on leaves it False.
    #: The mask must then be one flag per step of the input's first feature axis (a layer
    #: may check another shape: BatchNormalization's is one flag per position).
    consumes_mask: bool = False
    #: Whether the mask is read in training only (BatchNormalization's batch moments): the
    #: inference form ignores it, so e.g. the ONNX export can leave it out.
    mask_in_training_only: bool = False

    def __init__(self, name: str | None = None, trainable: bool = True,
                 dtype: str | None = None, input_shape: tuple | None = None,
                 batch_input_shape: tuple | None = None) -> None:
        self.name = name if name is not None else unique_name(_snake(type(self).__name__))
        self.trainable = trainable
        self.dtype = _check_dtype(dtype, self.name)
        if batch_input_shape is not None:
            input_shape = tuple(batch_input_shape)[1:]
        self.input_shape_hint = None if input_shape is None else _as_shape(input_shape)
        self.built = False
        self._params: dict[str, np.ndarray] = {}
        self._param_specs: dict[str, ParamSpec] = {}
        self._input_shapes: list[Shape] | None = None
        self._nodes: list[Node] = []

    # ----- what subclasses describe -------------------------------------------------------
    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        """Output feature shape from input feature shapes; raises :class:`ShapeError`."""
        raise NotImplementedError

    def compute_output_shapes(self, input_shapes: list[Shape]) -> list[Shape]:
        """Every output's feature shape: one for most layers (:meth:`compute_output_shape`);
        a layer with several outputs (a recurrent layer with ``return_state=True``) lists
        them, and a call of it returns a tuple of tensors, as Keras 3."""
        return [self.compute_output_shape(input_shapes)]

    def param_specs(self, input_shapes: list[Shape]) -> list[ParamSpec]:
        """Parameters this layer owns for these input shapes (none by default)."""
        return []

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, so that ``type(layer).from_config(cfg)`` rebuilds it."""
        cfg: dict[str, Any] = {"name": self.name, "trainable": self.trainable}
        if self.dtype is not None:
            cfg["dtype"] = self.dtype
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)

    def compute_mask(self, inputs: Any, previous_mask: Any) -> SymbolicTensor | None:
        """The mask of the output, as Keras' ``compute_mask``, on symbolic tensors.

        A mask is None or the integer-id tensor whose zeros are padding
        (``SymbolicTensor.mask``). By default a layer that supports masking passes the mask
        of its one input on (an elementwise or per-time-step layer), and any other layer's
        output has none; a layer that consumes the mask (a pooling over time, a recurrent
        layer without ``return_sequences``) or makes one (``Embedding``) overrides this.

        Args:
            inputs: The input tensor (a list for several inputs), as the layer was called.
            previous_mask: Its mask (a list of masks, one per input, for several inputs).
        """
        if self.supports_masking and not isinstance(inputs, (list, tuple)):
            return previous_mask
        return None

    # ----- graph capture ------------------------------------------------------------------
    def __call__(self, inputs: Any) -> Any:
        tensors = self._check_inputs(inputs)
        self._check_dtypes(tensors)
        self._check_masks(tensors)
        shapes = [t.feature_shape for t in tensors]
        try:
            out_shapes = [_checked_shape(self, s) for s in self.compute_output_shapes(shapes)]
        except ShapeError as e:
            raise ShapeError(f"Layer '{self.name}' ({type(self).__name__}): {e}") from None
        dtype = float_dtype(t.dtype for t in tensors)
        if not self.built:
            self.build(shapes, dtype)
        elif self.param_specs(shapes) != list(self._param_specs.values()):
            raise ShapeError(
                f"Layer '{self.name}' was built for input shapes "
                f"{_fmt(self._input_shapes)} and cannot be called on {_fmt(shapes)}: "
                "a shared layer needs inputs of the same shape.")
        outs = [SymbolicTensor(s, self.dtype or dtype) for s in out_shapes]
        self._nodes.append(Node(self, tensors, outs))
        many = isinstance(inputs, (list, tuple))
        masks = [t.mask for t in tensors]
        # Further outputs (final states) have no time axis, so no mask.
        outs[0].mask = self.compute_mask(tensors if many else tensors[0],
                                         masks if many else masks[0])
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _check_dtypes(self, tensors: list[SymbolicTensor]) -> None:
        """Integer tensors only into layers that take ids; float inputs of the layer's dtype."""
        if self.accepts_ids:
            return  # ids of any numeric dtype; the layer's dtype is its parameters'
        ints = [t for t in tensors if is_integer_dtype(t.dtype)]
        if ints:
            raise TypeError(
                f"Layer '{self.name}' ({type(self).__name__}) was called on {ints[0].name!r} "
                f"of dtype {ints[0].dtype}, but it computes in floating point: integer tensors "
                "are token ids for the layers that take ids (Embedding). Put an Embedding "
                "first, or give the input a float dtype (Input(..., dtype='float32')) if it "
                "holds numeric features.")
        if self.dtype is not None and any(t.dtype != self.dtype for t in tensors):
            got = ", ".join(sorted({t.dtype for t in tensors}))
            raise TypeError(
                f"Layer '{self.name}' ({type(self).__name__}) has dtype {self.dtype} but its input "
                f"is {got}; nexec runs a whole model in one dtype (float32 or float64): give "
                f"the model's Input(dtype='{self.dtype}') (or the first layer of a Sequential "
                f"dtype='{self.dtype}'), and leave the other layers' dtype unset.")

    def _check_masks(self, tensors: list[SymbolicTensor]) -> None:
        """A masked input into a layer without masking: Keras 3's warning (the mask is
        dropped), or an error where Keras would pass the mask on; never ignored silently."""
        if self.supports_masking:
            if self.consumes_mask and tensors[0].mask is not None:
                t, mask = tensors[0], tensors[0].mask
                if mask.feature_shape != t.feature_shape[:1]:
                    raise ShapeError(
                        f"Layer '{self.name}' ({type(self).__name__}) reads the mask of "
                        f"{t.name!r} {t.shape} as one flag per step, but its mask source "
                        f"{mask.name!r} has shape {mask.shape}; it needs {(None, *t.shape[1:2])}.")
            return
        masked = next((t for t in tensors if t.mask is not None), None)
        if masked is None:
            return
        assert masked.mask is not None
        kind = type(self).__name__
        if kind in KERAS_MASKING_LAYERS:
            raise GraphError(
                f"Layer '{self.name}' ({kind}) was called on {masked.name!r}, which carries a "
                f"mask (entries of {masked.mask.name!r} equal to 0 are padding, from "
                f"Embedding(mask_zero=True)); Keras 3 passes the mask on through {kind}, "
                "nexec does not support that yet and refuses rather than drop it. Use "
                "mask_zero=False, or feed the masked tensor to a layer that supports masking "
                "(docs/keras.md, Masks).")
        # Keras 3.15's words (keras/src/layers/layer.py, Layer.__call__); the output
        # carries no mask (``compute_mask`` returns None when supports_masking is False).
        warnings.warn(
            f"Layer '{self.name}' (of type {kind}) was passed an input with a mask attached "
            "to it. However, this layer does not support masking and will therefore destroy "
            "the mask information. Downstream layers will not see the mask.", UserWarning,
            stacklevel=3)

    def _check_inputs(self, inputs: Any) -> list[SymbolicTensor]:
        many = isinstance(inputs, (list, tuple))
        tensors = list(inputs) if many else [inputs]
        for i, t in enumerate(tensors):
            if not is_symbolic(t):
                where = f"input {i}" if many else "its input"
                raise TypeError(
                    f"Layer '{self.name}' ({type(self).__name__}) was called on {where} of "
                    f"type {type(t).__name__}; layers take symbolic tensors from "
                    "nexec.Input(...) or from another layer.")
        if self.num_inputs is None:
            if not many or len(tensors) < 2:
                raise ShapeError(f"Layer '{self.name}' ({type(self).__name__}) takes a list "
                                 f"of at least 2 tensors, got {len(tensors)}.")
        elif len(tensors) != self.num_inputs:
            raise ShapeError(f"Layer '{self.name}' ({type(self).__name__}) takes "
                             f"{self.num_inputs} input(s), got {len(tensors)}.")
        return tensors

    def build(self, input_shapes: list[Shape], dtype: str = "float32") -> None:
        """Creates the parameters (with the seeded stream) for these input shapes."""
        self.dtype = self.dtype or dtype
        self._input_shapes = list(input_shapes)
        for spec in self.param_specs(self._input_shapes):
            init = spec.initializer
            fn = registry().initializer(init) if isinstance(init, str) else init
            value = np.ascontiguousarray(fn(tuple(spec.shape), np.dtype(self.dtype), generator()),
                                         dtype=self.dtype)
            self._param_specs[spec.name] = spec
            self._params[spec.name] = value
        self.built = True

    # ----- Keras accessors ----------------------------------------------------------------
    @property
    def input(self) -> SymbolicTensor:
        return self._single_node("input").inputs[0] if self.num_inputs == 1 \
            else self._single_node("input").inputs  # type: ignore[return-value]

    @property
    def output(self) -> Any:
        """The output tensor, or the list of them for a layer with several (Keras)."""
        outs = self._single_node("output").outputs
        return outs[0] if len(outs) == 1 else list(outs)

    def _single_node(self, what: str) -> Node:
        if not self._nodes:
            raise GraphError(f"Layer '{self.name}' has not been called yet, so it has no {what}.")
        if len(self._nodes) > 1:
            raise GraphError(f"Layer '{self.name}' has been called {len(self._nodes)} times; "
                             f"its {what} is ambiguous.")
        return self._nodes[0]

    @property
    def weights(self) -> list[np.ndarray]:
        return list(self._params.values())

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        if not self.trainable:
            return []
        return [p for n, p in self._params.items() if self._param_specs[n].trainable]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        return [p for n, p in self._params.items()
                if not (self.trainable and self._param_specs[n].trainable)]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the parameters, in Keras order (Dense: kernel, bias)."""
        return [p.copy() for p in self._params.values()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Overwrites the parameters in place; a compiled model sees it at the next step.

        Every array is checked (count, shape, numbers, finite) before any is written, so a
        refused call leaves the layer as it was.
        """
        for p, w in zip(self._params.values(), self.checked_weights(weights)):
            np.copyto(p, w, casting="unsafe")

    def checked_weights(self, weights: Any) -> list[np.ndarray]:
        """``weights`` as arrays this layer's parameters can take, else a clear error.

        Raises:
            ArgumentTypeError: Not a list of arrays, or an array not of numbers.
            ValueError: Another count or shape. NaN or infinite values are taken, as Keras
                takes them, with a ``RuntimeWarning``.
        """
        if not isinstance(weights, (list, tuple)):
            raise ArgumentTypeError(f"Layer '{self.name}': set_weights takes a list of arrays "
                                    f"({', '.join(self._params) or 'none'}), got "
                                    f"{type(weights).__name__}.")
        if len(weights) != len(self._params):
            raise ValueError(f"Layer '{self.name}' has {len(self._params)} weights "
                             f"({', '.join(self._params)}), got {len(weights)}.")
        out = []
        for (name, p), w in zip(self._params.items(), weights):
            w = np.asarray(w)
            if w.dtype.kind not in "biuf":
                raise ArgumentTypeError(f"Layer '{self.name}': weight '{name}' must hold "
                                        f"numbers, got an array of dtype {w.dtype}.")
            if w.shape != p.shape:
                raise ValueError(f"Layer '{self.name}': weight '{name}' has shape {p.shape}, "
                                 f"got {w.shape}.")
            bad = int(w.size - np.count_nonzero(np.isfinite(w))) if w.dtype.kind == "f" else 0
            if bad:  # Keras takes them (restoring a diverged model, say); say so, once
                warnings.warn(f"Layer '{self.name}': weight '{name}' holds {bad} NaN or "
                              "infinite value(s); outputs will be NaN or infinite.",
                              RuntimeWarning, stacklevel=3)
            out.append(w)
        return out

    def count_params(self) -> int:
        return int(sum(p.size for p in self._params.values()))

    def __getattr__(self, name: str) -> Any:
        # ``layer.kernel``, ``layer.bias``, ``layer.moving_mean`` ... as in Keras.
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


def _checked_shape(layer: Layer, shape: Any) -> Shape:
    """``shape`` if it is a feature shape (a tuple of positive ints or None), else a
    ShapeError naming the plugin that registered the layer type."""
    if isinstance(shape, tuple) and all(
            d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0)
            for d in shape):
        return tuple(None if d is None else int(d) for d in shape)
    kind = type(layer).__name__
    owner = registry().owner.get(("layers", kind)) \
        if registry().layers.get(kind) is type(layer) else None
    where = f"from plugin '{owner}'" if owner else "not registered by a plugin"
    raise ShapeError(f"compute_output_shape ({where}) returned {shape!r}; it must return the "
                     "feature shape without the batch axis, a tuple of positive ints or None.")


_DTYPES = ("float32", "float64")


def _check_dtype(dtype: Any, name: str) -> str | None:
    """A layer's ``dtype`` argument as ``"float32"``/``"float64"`` (or None: the input's);
    anything else (``"float16"``, a mixed-precision policy) is refused here, clearly."""
    if dtype is None:
        return None
    try:
        as_name = np.dtype(dtype).name
    except TypeError:
        as_name = str(dtype)
    if as_name not in _DTYPES:
        raise ValueError(f"Layer '{name}': dtype must be 'float32' or 'float64' (or None, the "
                         f"input's), got {dtype!r}; nexec has no other dtypes or dtype "
                         "policies.")
    return as_name


def _as_shape(shape: Any) -> Shape:
    if isinstance(shape, int):
        return (shape,)
    return tuple(None if d is None else int(d) for d in shape)


def _fmt(shapes: Any) -> str:
    return ", ".join(str((None, *s)) for s in shapes or [])
