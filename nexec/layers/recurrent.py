"""Recurrent layers (Keras 3 names, arguments, defaults and weight layout): SimpleRNN, LSTM,
GRU, and the wrappers Bidirectional and TimeDistributed (of Dense).

A recurrent layer runs as one op whose kernel loops over time inside one call
(``nexec/kernels/cpu/recurrent.py``). Its ``activation`` argument is kept as
``cell_activation``: the attribute ``activation`` is what the planner fuses into an op's
epilogue, and a recurrent layer's activations act inside the cell, not on its output.

``return_state=True`` makes a call return ``(output, h)`` (``(output, h, c)`` for LSTM), the
final states as tensors of their own: one op with several outputs (``Op.more_outputs``).

Not supported yet, refused at construction: ``stateful=True``,
``dropout``/``recurrent_dropout`` above 0, GRU ``reset_after=False``. Sequences need a known length.

Masks (``Embedding(mask_zero=True)`` upstream) are consumed as Keras 3 does: a padded step
keeps the previous state, its output is that carried state, and ``return_sequences`` passes
the mask on (``compute_mask``).
"""
from __future__ import annotations

import warnings
from typing import Any, cast

import numpy as np

from nexec.checks import ArgumentError, ArgumentTypeError, positive_int
from nexec.errors import GraphError, ShapeError
from nexec.graph import SymbolicTensor, is_symbolic
from nexec.kernels.activations import LINEAR, RELU, SIGMOID, TANH
from nexec.layers.base import Layer, ParamSpec, Shape
from nexec.layers.core import Dense, check_activation
from nexec.plugins import registry

__all__ = ["SimpleRNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed", "RNNLayer"]

#: Activation codes a recurrent kernel applies inside its cell.
_CELL_CODES = (LINEAR, RELU, SIGMOID, TANH)


def _cell_activation(name: Any, arg: str, where: str) -> str:
    name = check_activation(name, where)
    if registry().activation(name).code not in _CELL_CODES:
        raise ArgumentError(f"Layer '{where}': {arg}={name!r} is not supported inside a "
                            "recurrent cell; use 'tanh', 'sigmoid', 'relu' or 'linear'.")
    return name


def _refuse(cond: bool, where: str, arg: str, value: Any, why: str) -> None:
    if cond:
        raise ArgumentError(f"Layer '{where}': {arg}={value!r} is not supported yet; {why}")


class _Initializer:
    """A picklable, comparable initialiser built from registered names (LSTM's bias with
    ``unit_forget_bias``: ``bias_initializer`` with the forget gate's block set to ones)."""

    def __init__(self, base: str, units: int) -> None:
        self.base, self.units = base, units

    def __call__(self, shape: tuple, dtype: Any, rng: np.random.Generator) -> np.ndarray:
        init = registry().initializer(self.base)
        u = self.units
        return np.concatenate([init((u,), dtype, rng), np.ones((u,), dtype),
                               init((2 * u,), dtype, rng)]).astype(dtype)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Initializer) and (other.base, other.units) == \
            (self.base, self.units)

    def __hash__(self) -> int:
        return hash((self.base, self.units))


class _TakesInitialState(Layer):
    """Keras' ``initial_state=`` call of a recurrent layer (and of Bidirectional): the
    sequence, then ``n_states`` state tensors, each ``(batch, units)``, which become the op's
    inputs 1, 2, ..."""

    #: State tensors ``initial_state=`` takes.
    n_states = 1

    def _state_form(self) -> str:
        """How the states are listed, for messages."""
        return "[h, c]" if self.n_states == 2 else "h (or [h])"

    def __call__(self, inputs: Any, initial_state: Any = None, mask: Any = None,
                 training: Any = None) -> Any:
        """Keras' call: ``layer(x)`` or ``layer(x, initial_state=[h0, c0])`` (LSTM) /
        ``initial_state=h0`` or ``[h0]`` (GRU, SimpleRNN), the encoder-decoder pattern; also
        ``layer([x, h0, c0])`` (Keras 2's form, and how saved models call it).

        Args:
            inputs: The sequence ``(batch, time, features)``.
            initial_state: The starting state(s), each ``(batch, units)``; zeros when None.
            mask: Only None: masks come from ``Embedding(mask_zero=True)`` upstream.
            training: Accepted and ignored (no dropout in nexec's recurrent layers).
        """
        if mask is not None:
            raise ArgumentError(f"Layer '{self.name}': an explicit mask= is not supported; "
                                "masks come from Embedding(mask_zero=True) upstream.")
        if isinstance(inputs, (list, tuple)):
            if initial_state is not None:
                raise ArgumentError(f"Layer '{self.name}': give the initial states either in "
                                    "the input list or as initial_state=, not both.")
            inputs, initial_state = inputs[0], (list(inputs[1:]) or None)
        if initial_state is None:
            return super().__call__(inputs)
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) \
            else [initial_state]
        if len(states) != self.n_states:
            raise ArgumentError(f"Layer '{self.name}' ({type(self).__name__}): initial_state "
                                f"takes {self._state_form()}: {self.n_states} tensor(s), got "
                                f"{len(states)}.")
        if is_symbolic(inputs) and inputs.mask is not None:
            warnings.warn(
                f"Layer '{self.name}': its input {inputs.name!r} carries a mask and "
                "initial_state is given. nexec applies the mask (padded steps carry the "
                "state); Keras 3 ignores the mask in this call (it reads a mask only when the "
                "sequence is the call's one tensor argument), so Keras gives other numbers "
                "for padded steps.", UserWarning, stacklevel=2)
        return super().__call__([inputs, *states])

    def _check_inputs(self, inputs: Any) -> list[SymbolicTensor]:
        tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        for i, t in enumerate(tensors):
            if not is_symbolic(t):
                raise TypeError(f"Layer '{self.name}' ({type(self).__name__}) was called on "
                                f"{'its input' if i == 0 else f'initial state {i - 1}'} of "
                                f"type {type(t).__name__}; layers take symbolic tensors.")
        return tensors

    def _check_masks(self, tensors: list[SymbolicTensor]) -> None:
        super()._check_masks(tensors)
        masked = next((t for t in tensors[1:] if t.mask is not None), None)
        if masked is not None:
            raise GraphError(f"Layer '{self.name}': initial state {masked.name!r} carries a "
                             "mask; a state has no time steps to mask.")


class RNNLayer(_TakesInitialState):
    """Base of SimpleRNN, LSTM and GRU: the arguments Keras' ``RNN`` layers share.

    Args:
        units: Size of the state.
        activation: Cell activation (``tanh``; ``sigmoid``, ``relu``, ``linear`` accepted).
        recurrent_activation: Gate activation (LSTM, GRU; ``sigmoid``).
        use_bias: Whether the cell has biases.
        kernel_initializer, recurrent_initializer, bias_initializer: Registered names.
        return_sequences: Output every step ``(batch, time, units)``, not only the last.
        return_state: Also return the final states: a call gives ``(output, h)``, or
            ``(output, h, c)`` for LSTM, each state ``(batch, units)``.
        go_backwards: Process the sequence from its end (outputs in processing order).
        stateful, dropout, recurrent_dropout: Only their defaults.
        unroll, use_cudnn, seed: Accepted and ignored (no effect on the result here).
    """

    #: Gates per unit: columns of the kernel are ``gates * units``.
    gates = 1
    has_recurrent_activation = False
    supports_masking = True
    consumes_mask = True
    #: State tensors of the cell (``initial_state=`` takes this many): h (and c for LSTM).
    n_states = 1

    def __init__(self, units: int, activation: str | None = "tanh",
                 recurrent_activation: str | None = "sigmoid", use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform",
                 recurrent_initializer: str = "orthogonal", bias_initializer: str = "zeros",
                 dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, unroll: bool = False,
                 use_cudnn: Any = "auto", seed: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = self.name
        self.units = positive_int(units, "units", f"{type(self).__name__} '{where}'")
        self.cell_activation = _cell_activation(activation, "activation", where)
        self.recurrent_activation = _cell_activation(recurrent_activation,
                                                     "recurrent_activation", where)
        for arg, name in (("kernel_initializer", kernel_initializer),
                           ("recurrent_initializer", recurrent_initializer),
                           ("bias_initializer", bias_initializer)):
            if not isinstance(name, str) or name not in registry().initializers:
                raise ArgumentError(f"Layer '{where}': unknown {arg} {name!r}; known: "
                                    f"{', '.join(sorted(registry().initializers))}.")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        for arg, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ArgumentTypeError(f"Layer '{where}': {arg} must be a number in [0, 1), "
                                        f"got {value!r}.")
            _refuse(value != 0, where, arg, value, "recurrent layers have no dropout in nexec; "
                    "put a Dropout layer before or after the layer instead.")
        _refuse(bool(stateful), where, "stateful", stateful,
                "every batch starts from a zero state.")
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = False
        self.dropout = 0.0
        self.recurrent_dropout = 0.0
        self.unroll = bool(unroll)
        self.use_cudnn = use_cudnn
        self.seed = seed

    # ----- shapes and weights -----------------------------------------------------------
    def compute_mask(self, inputs: Any, previous_mask: Any) -> Any:
        """Keras' rule: the input's mask for a sequence output, none for the last state."""
        if isinstance(previous_mask, list):  # called with initial states
            previous_mask = previous_mask[0]
        return previous_mask if self.return_sequences else None

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape, states = input_shapes[0], input_shapes[1:]
        for i, s in enumerate(states):
            if tuple(s) != (self.units,):
                raise ShapeError(f"initial state {i} must have shape {(None, self.units)}, got "
                                 f"{(None, *s)}.")
        if len(shape) != 2:
            raise ShapeError(f"expects a rank-3 input (batch, time, features), got "
                             f"{(None, *shape)}.")
        if shape[0] is None:
            raise ShapeError(f"needs a known sequence length, got {(None, *shape)}: "
                             "variable-length sequences are not supported yet; pad them to "
                             "one length and give Input(shape=(length, features)).")
        if shape[1] is None:
            raise ShapeError(f"the feature dimension of its input {(None, *shape)} must be "
                             "known.")
        return (shape[0], self.units) if self.return_sequences else (self.units,)

    def compute_output_shapes(self, input_shapes: list[Shape]) -> list[Shape]:
        """The output, then with ``return_state`` each final state ``(units,)``."""
        out = self.compute_output_shape(input_shapes)
        return [out, *[(self.units,)] * self.n_states] if self.return_state else [out]

    def _bias_spec(self) -> ParamSpec:
        return ParamSpec("bias", (self.gates * self.units,), self.bias_initializer)

    def param_specs(self, input_shapes: list[Shape]) -> list[ParamSpec]:
        g = self.gates * self.units
        specs = [ParamSpec("kernel", (input_shapes[0][-1], g), self.kernel_initializer),
                 ParamSpec("recurrent_kernel", (self.units, g), self.recurrent_initializer)]
        if self.use_bias:
            specs.append(self._bias_spec())
        return specs

    def get_config(self) -> dict[str, Any]:
        cfg = {**super().get_config(), "units": self.units,
               "activation": self.cell_activation, "use_bias": self.use_bias,
               "kernel_initializer": self.kernel_initializer,
               "recurrent_initializer": self.recurrent_initializer,
               "bias_initializer": self.bias_initializer, "dropout": 0.0,
               "recurrent_dropout": 0.0, "return_sequences": self.return_sequences,
               "return_state": self.return_state, "go_backwards": self.go_backwards,
               "stateful": False, "unroll": self.unroll, "seed": self.seed}
        if self.has_recurrent_activation:
            cfg["recurrent_activation"] = self.recurrent_activation
        return cfg


class SimpleRNN(RNNLayer):
    """Fully connected RNN: ``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``.

    Weights (Keras order): kernel ``(features, units)``, recurrent_kernel ``(units, units)``,
    bias ``(units,)``.

    Example:
        >>> from nexec import Input, layers
        >>> layers.SimpleRNN(8)(Input(shape=(5, 3))).shape
        (None, 8)
    """

    def __init__(self, units: int, activation: str | None = "tanh", **kwargs: Any) -> None:
        if "recurrent_activation" in kwargs:
            raise TypeError("SimpleRNN has no argument 'recurrent_activation'.")
        super().__init__(units, activation=activation, **kwargs)


class LSTM(RNNLayer):
    """Long short-term memory, Keras' gate order ``i, f, c, o``.

    Weights: kernel ``(features, 4 units)``, recurrent_kernel ``(units, 4 units)``, bias
    ``(4 units,)``; ``unit_forget_bias`` starts the forget gate's bias at one.

    Example:
        >>> from nexec import Input, layers
        >>> layers.LSTM(8, return_sequences=True)(Input(shape=(5, 3))).shape
        (None, 5, 8)
    """

    gates = 4
    has_recurrent_activation = True
    n_states = 2

    def __init__(self, units: int, unit_forget_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)
        self._forget_init = _Initializer(self.bias_initializer, self.units)

    def _bias_spec(self) -> ParamSpec:
        init = self._forget_init if self.unit_forget_bias else self.bias_initializer
        return ParamSpec("bias", (4 * self.units,), init)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


class GRU(RNNLayer):
    """Gated recurrent unit, Keras' gate order ``z, r, h`` with ``reset_after=True`` (Keras 3's
    default, and PyTorch's GRU): the reset gate multiplies the recurrent candidate term.

    Weights: kernel ``(features, 3 units)``, recurrent_kernel ``(units, 3 units)``, bias
    ``(2, 3 units)`` (input bias, recurrent bias).

    Example:
        >>> from nexec import Input, layers
        >>> layers.GRU(8)(Input(shape=(5, 3))).shape
        (None, 8)
    """

    gates = 3
    has_recurrent_activation = True

    def __init__(self, units: int, reset_after: bool = True, **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        _refuse(not reset_after, self.name, "reset_after", reset_after,
                "only Keras 3's default reset_after=True (PyTorch's GRU) is implemented.")
        self.reset_after = True

    def _bias_spec(self) -> ParamSpec:
        return ParamSpec("bias", (2, 3 * self.units), self.bias_initializer)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "reset_after": True}


_MERGE_MODES = ("concat", "sum", "ave", "mul")


def _layer_from_entry(entry: Any) -> Layer:
    """A layer from a ``{"class_name", "config"}`` entry (or the layer itself)."""
    if isinstance(entry, Layer):
        return entry
    cls = registry().layers.get(entry["class_name"])
    if cls is None:
        raise ArgumentError(f"unknown layer class {entry['class_name']!r}.")
    return cast("type[Layer]", cls).from_config(dict(entry["config"]))


class Bidirectional(_TakesInitialState):
    """Runs a recurrent layer forwards and a copy backwards, and merges their outputs.

    A call takes ``initial_state=`` as Keras 3: a list whose first half are the forward
    layer's starting states and whose second half the backward layer's
    (``[fw_h, fw_c, bw_h, bw_c]`` for LSTM, ``[fw_h, bw_h]`` for GRU and SimpleRNN).

    Args:
        layer: A ``SimpleRNN``, ``LSTM`` or ``GRU`` (its configuration is copied). With its
            ``return_state=True`` a call returns ``(output, *forward states, *backward
            states)``, as Keras.
        merge_mode: ``"concat"`` (default), ``"sum"``, ``"ave"`` or ``"mul"``; ``None``
            (two outputs) is not supported.
        backward_layer: The backward layer; by default a copy of ``layer`` with
            ``go_backwards`` flipped.

    Weights: the forward layer's (kernel, recurrent_kernel, bias), then the backward layer's,
    as Keras; named ``forward_kernel``... ``backward_bias``.

    Example:
        >>> from nexec import Input, layers
        >>> layers.Bidirectional(layers.LSTM(8))(Input(shape=(5, 3))).shape
        (None, 16)
    """

    supports_masking = True
    consumes_mask = True

    def __init__(self, layer: Any, merge_mode: str | None = "concat",
                 backward_layer: Any = None, weights: Any = None, **kwargs: Any) -> None:
        layer = _layer_from_entry(layer)
        super().__init__(**kwargs)
        if not isinstance(layer, RNNLayer):
            raise ArgumentTypeError(f"Bidirectional '{self.name}': layer must be a SimpleRNN, "
                                    f"LSTM or GRU, got {type(layer).__name__}.")
        if merge_mode not in _MERGE_MODES:
            raise ArgumentError(f"Bidirectional '{self.name}': merge_mode must be one of "
                                f"{', '.join(map(repr, _MERGE_MODES))}, got {merge_mode!r}"
                                + (" (two outputs are not supported yet)."
                                   if merge_mode is None else "."))
        _refuse(weights is not None, self.name, "weights", "<arrays>",
                "call set_weights after building the layer.")
        cfg = layer.get_config()
        self.forward_layer = type(layer).from_config({**cfg, "name": f"forward_{layer.name}"})
        if backward_layer is None:
            backward_layer = type(layer).from_config(
                {**cfg, "name": f"backward_{layer.name}", "go_backwards": not layer.go_backwards})
        backward_layer = _layer_from_entry(backward_layer)
        if type(backward_layer) is not type(layer) or backward_layer.units != layer.units \
                or backward_layer.return_sequences != layer.return_sequences or \
                backward_layer.return_state != layer.return_state or \
                backward_layer.go_backwards == layer.go_backwards:
            raise ArgumentError(f"Bidirectional '{self.name}': backward_layer must be a "
                                "layer of the same type, units, return_sequences and "
                                "return_state, and the opposite go_backwards.")
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        #: As the wrapped layer's: a call then returns ``(output, *forward states,
        #: *backward states)``, Keras' order (LSTM: output, fw h, fw c, bw h, bw c).
        self.return_state = layer.return_state

    @property
    def n_states(self) -> int:  # type: ignore[override]
        """``initial_state=`` takes the forward layer's states, then the backward layer's."""
        return self.forward_layer.n_states + self.backward_layer.n_states

    def _state_form(self) -> str:
        one = "h, c" if self.forward_layer.n_states == 2 else "h"
        return f"the forward layer's states then the backward layer's ([{one}, {one}])"

    def compute_mask(self, inputs: Any, previous_mask: Any) -> Any:
        """Keras' rule: the input's mask for a sequence output, none for the last state."""
        if isinstance(previous_mask, list):  # called with initial states
            previous_mask = previous_mask[0]
        return previous_mask if self.return_sequences else None

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        x, states = input_shapes[:1], input_shapes[1:]
        n = self.forward_layer.n_states if states else 0
        f = self.forward_layer.compute_output_shape(x + states[:n])
        b = self.backward_layer.compute_output_shape(x + states[n:])
        if self.merge_mode == "concat":
            return (*f[:-1], f[-1] + b[-1])
        if f != b:
            raise ShapeError(f"merge_mode={self.merge_mode!r} needs both directions of one "
                             f"shape, got {f} and {b}.")
        return f

    def compute_output_shapes(self, input_shapes: list[Shape]) -> list[Shape]:
        """The merged output, then with ``return_state`` the forward layer's final states
        and the backward layer's, each ``(units,)``."""
        out = self.compute_output_shape(input_shapes)
        if not self.return_state:
            return [out]
        f, b = self.forward_layer, self.backward_layer
        return [out, *[(f.units,)] * f.n_states, *[(b.units,)] * b.n_states]

    def param_specs(self, input_shapes: list[Shape]) -> list[ParamSpec]:
        return [ParamSpec(f"{side}_{s.name}", s.shape, s.initializer, s.trainable)
                for side, layer in (("forward", self.forward_layer),
                                    ("backward", self.backward_layer))
                for s in layer.param_specs(input_shapes)]

    def get_config(self) -> dict[str, Any]:
        def entry(layer: Layer) -> dict[str, Any]:
            return {"class_name": type(layer).__name__, "config": layer.get_config()}

        cfg = self.forward_layer.get_config()
        cfg["name"] = cfg["name"].removeprefix("forward_")
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": {"class_name": type(self.forward_layer).__name__, "config": cfg},
                "backward_layer": entry(self.backward_layer)}


class TimeDistributed(Layer):
    """Applies a ``Dense`` layer to every step of a sequence (to the last axis).

    Args:
        layer: A ``Dense`` layer; its configuration is used, its weights are this layer's
            (``kernel``, ``bias``, as Keras' TimeDistributed reports them).

    Example:
        >>> from nexec import Input, layers
        >>> layers.TimeDistributed(layers.Dense(4))(Input(shape=(5, 3))).shape
        (None, 5, 4)
    """

    supports_masking = True  # Dense acts per step: the mask passes on, as in Keras

    def __init__(self, layer: Any, **kwargs: Any) -> None:
        layer = _layer_from_entry(layer)
        super().__init__(**kwargs)
        if not isinstance(layer, Dense):
            raise ArgumentTypeError(f"TimeDistributed '{self.name}': only a Dense layer is "
                                    f"supported, got {type(layer).__name__}.")
        self.layer = layer

    @property
    def activation(self) -> str:
        """The Dense layer's activation: the planner fuses it into this op's epilogue."""
        return str(self.layer.activation)

    def compute_output_shape(self, input_shapes: list[Shape]) -> Shape:
        (shape,) = input_shapes
        if len(shape) < 2 or shape[0] is None:
            raise ShapeError(f"expects (batch, time, ...) with a known time axis, got "
                             f"{(None, *shape)}.")
        return (shape[0], *self.layer.compute_output_shape([shape[1:]]))

    def param_specs(self, input_shapes: list[Shape]) -> list[ParamSpec]:
        return self.layer.param_specs([input_shapes[0][1:]])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(),
                "layer": {"class_name": "Dense", "config": self.layer.get_config()}}
