"""Model and Sequential: graphs of layers, themselves callable like layers.

A model holds the graph; training lives in ``nexec.training`` and is reached through the
Keras methods (``compile``, ``fit``, ``evaluate``, ``predict``...), which delegate there.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from nexec.errors import GraphError, ShapeError
from nexec.graph import Node, SymbolicTensor, is_symbolic, unique_name
from nexec.layers.base import Layer
from nexec.layers.core import InputLayer
from nexec.planner.order import topological_order

__all__ = ["Model", "Sequential"]


def _flatten_io(value: Any, what: str) -> tuple[list[SymbolicTensor], list[str] | None]:
    """Tensors from a tensor, list or dict; dict keys are kept for dict-style data."""
    if isinstance(value, dict):
        keys = list(value)
        tensors = [value[k] for k in keys]
    elif isinstance(value, (list, tuple)):
        keys, tensors = None, list(value)
    else:
        keys, tensors = None, [value]
    for i, t in enumerate(tensors):
        if not is_symbolic(t):
            raise GraphError(f"Model {what}[{i}] is a {type(t).__name__}, not a symbolic tensor "
                             "from nexec.Input(...) or a layer call.")
    return tensors, keys


class Model(Layer):
    """A graph of layers from ``inputs`` to ``outputs``, as ``keras.Model``.

    Args:
        inputs: A tensor from :func:`nexec.Input`, or a list or dict of them.
        outputs: A tensor, or a list or dict of them, computed from ``inputs``.
        name: Model name (``model``, ``model_1``... when omitted).

    Example:
        >>> from nexec import Input, Model, layers
        >>> x = Input(shape=(64,))
        >>> model = Model(x, layers.Dense(10, activation="softmax")(x))
        >>> model.count_params()
        650
    """

    num_inputs = None  # a model takes as many tensors as it has inputs

    def __init__(self, inputs: Any = None, outputs: Any = None, name: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(name=name or unique_name(self._default_name()), **kwargs)
        self._trainer: Any = None
        if inputs is not None or outputs is not None:
            self._init_graph(inputs, outputs)

    @staticmethod
    def _default_name() -> str:
        return "model"

    # ----- graph --------------------------------------------------------------------------
    def _init_graph(self, inputs: Any, outputs: Any) -> None:
        ins, self._input_keys = _flatten_io(inputs, "inputs")
        outs, self._output_keys = _flatten_io(outputs, "outputs")
        for t in ins:
            if not isinstance(t.node.layer, InputLayer):
                raise GraphError(f"Model input {t.name!r} is not made by nexec.Input(...); "
                                 "models start from Input tensors.")
        order = topological_order(outs)
        given = {t.id for t in ins}
        reached: set[int] = set()
        for node in order:
            if isinstance(node.layer, InputLayer):
                t = node.outputs[0]
                if t.id not in given:
                    needers = [o.name for o in outs if _depends_on(o, t)]
                    raise GraphError(f"Output(s) {', '.join(needers)} need input {t.name!r} "
                                     f"{t.shape}, which was not passed to Model(inputs=...).")
                reached.add(t.id)
        unused = [f"{t.name} {t.shape}" for t in ins if t.id not in reached]
        if unused:
            raise GraphError(f"Model input(s) {', '.join(unused)} are not used by any output.")
        layers: list[Layer] = []
        seen: dict[str, Layer] = {}
        for node in order:
            layer = node.layer
            if layer.name in seen and seen[layer.name] is not layer:
                raise GraphError(f"Two different layers are named {layer.name!r}; layer names "
                                 "must be unique within a model.")
            if layer.name not in seen:
                seen[layer.name] = layer
                layers.append(layer)
        leaves: dict[str, Layer] = {}
        for leaf in _leaf_layers(layers):
            other = leaves.setdefault(leaf.name, leaf)
            if other is not leaf:
                raise GraphError(f"Two different layers are named {leaf.name!r} (one inside a "
                                 "nested model); layer names must be unique within a model.")
        self.inputs: list[SymbolicTensor] = ins
        self.outputs: list[SymbolicTensor] = outs
        self._layers = layers
        self._graph_nodes = order
        self.built = True
        self.dtype = ins[0].dtype
        self._input_shapes = [t.feature_shape for t in ins]

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name (or by position in ``model.layers``)."""
        if index is not None:
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No layer named {name!r} in model '{self.name}'; layers: "
                         f"{', '.join(l.name for l in self._layers)}.")

    @property
    def input_names(self) -> list[str]:
        return [t.node.layer.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.node.layer.name for t in self.outputs]

    # ----- a model is a layer -------------------------------------------------------------
    def __call__(self, inputs: Any) -> Any:
        self._ensure_built()
        if isinstance(inputs, dict):
            keys = self._input_keys or self.input_names
            if set(inputs) != set(keys):
                raise GraphError(f"Model '{self.name}' takes a dict with keys {keys}, got "
                                 f"{list(inputs)}.")
            tensors = [inputs[k] for k in keys]
        else:
            tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        for i, t in enumerate(tensors):
            if not is_symbolic(t):
                raise TypeError(f"Model '{self.name}' was called on input {i} of type "
                                f"{type(t).__name__}; it takes symbolic tensors.")
        if len(tensors) != len(self.inputs):
            raise ShapeError(f"Model '{self.name}' takes {len(self.inputs)} input(s), "
                             f"got {len(tensors)}.")
        for t, expected in zip(tensors, self.inputs):
            if t.feature_shape != expected.feature_shape:
                raise ShapeError(f"Model '{self.name}' expects input {expected.name!r} of shape "
                                 f"{expected.shape}, got {t.name!r} of shape {t.shape}.")
        outs = [SymbolicTensor(o.feature_shape, o.dtype) for o in self.outputs]
        self._nodes.append(Node(self, tensors, outs))
        return outs[0] if len(outs) == 1 else outs

    def compute_output_shape(self, input_shapes: list[tuple]) -> tuple:
        return self.outputs[0].feature_shape

    def param_specs(self, input_shapes: list[tuple]) -> list:
        return []

    @property
    def input(self) -> Any:  # type: ignore[override]
        """The model's own input tensor (a list when it has several)."""
        return self.inputs[0] if len(self.inputs) == 1 else list(self.inputs)

    @property
    def output(self) -> Any:  # type: ignore[override]
        """The model's own output tensor (a list when it has several)."""
        return self.outputs[0] if len(self.outputs) == 1 else list(self.outputs)

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        # As in Keras: freezing a model freezes every layer in it.
        self._trainable = bool(value)
        for layer in getattr(self, "_layers", []):
            layer.trainable = self._trainable

    def _leaves(self) -> list[Layer]:
        """Every non-model layer inside, each once, nested models opened."""
        return _leaf_layers(self._layers)

    @property
    def weights(self) -> list[np.ndarray]:
        return [w for layer in self._leaves() for w in layer.weights]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        return [w for layer in self._leaves() for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        return [w for layer in self._leaves() for w in layer.non_trainable_weights]

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(f"Model '{self.name}' has {len(own)} weight arrays, "
                             f"got {len(weights)}.")
        for layer in self._leaves():
            n = len(layer.weights)
            layer.set_weights(weights[:n])
            weights = weights[n:]

    def count_params(self) -> int:
        return int(sum(w.size for w in self.weights))

    # ----- planning and description ---------------------------------------------------------
    def plan(self, device: str = "cpu"):  # noqa: ANN201 - Plan
        """The static plan (order, shapes, fusion) of this model; ``print`` it to read it."""
        from nexec.planner import make_plan

        self._ensure_built()
        return make_plan(self, device)

    def memory_plan(self, batch_size: int = 32, training: bool = True, device: str = "cpu"):  # noqa: ANN201
        """Where every buffer lives in the arena for a batch size (see ``MemoryPlan``)."""
        from nexec.planner.schedule import build_schedule

        return build_schedule(self.plan(device), batch_size, training).memory

    def summary(self, line_length: int | None = None, positions: Any = None,
                print_fn: Callable[[str], Any] | None = None) -> None:
        """Prints the Keras summary table (layers, output shapes, parameter counts)."""
        from nexec.summary import summary_text

        self._ensure_built()
        text = summary_text(self, line_length=line_length)
        (print_fn or print)(text)

    # ----- serialisation ------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        from nexec.saving import model_config

        return model_config(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Model:
        from nexec.saving import model_from_config

        return model_from_config(config, cls)

    def to_json(self, **kwargs: Any) -> str:
        from nexec.saving import to_json

        return to_json(self, **kwargs)

    def save(self, path: str) -> None:
        from nexec.saving import save_model

        save_model(self, path)

    def save_weights(self, path: str) -> None:
        from nexec.saving import save_weights

        save_weights(self, path)

    def load_weights(self, path: str) -> None:
        from nexec.saving import load_weights

        load_weights(self, path)

    # ----- training (nexec.training) ------------------------------------------------------
    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None,
                loss_weights: Any = None, device: str = "cpu") -> None:
        """Chooses optimizer, loss(es) and metrics; planning happens here, once.

        Args:
            optimizer: Name (``"rmsprop"``) or instance (``optimizers.Adam(1e-3)``).
            loss: Name, or a list/dict of names per output.
            metrics: e.g. ``["accuracy"]``, or a dict per output.
            loss_weights: Per-output weights of the total loss (list or dict).
            device: ``"cpu"`` (default).
        """
        from nexec.training.trainer import Trainer

        self._ensure_built()
        self._trainer = Trainer(self, optimizer, loss, metrics, loss_weights, device)

    def _ensure_built(self, x: Any = None) -> None:
        if not hasattr(self, "inputs"):
            raise GraphError(f"Model '{self.name}' has no inputs yet; give the first layer an "
                             "input_shape or call the model on data.")

    def _need_trainer(self, what: str):  # noqa: ANN202
        from nexec.errors import NotCompiledError

        if self._trainer is None:
            raise NotCompiledError(f"Model '{self.name}' must be compiled before {what}(); "
                                   "call model.compile(optimizer=..., loss=...) first.")
        return self._trainer

    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: Any = None, validation_split: float = 0.0,
            validation_data: Any = None, shuffle: bool = True, initial_epoch: int = 0):  # noqa: ANN201
        """Trains the model, printing a Keras progress bar; returns a ``History``."""
        self._ensure_built(x)
        return self._need_trainer("fit").fit(
            x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
            validation_split=validation_split, validation_data=validation_data,
            shuffle=shuffle, initial_epoch=initial_epoch)

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: Any = "auto", return_dict: bool = False):  # noqa: ANN201
        """Loss (and metrics) on data; a float, a list, or a dict with ``return_dict``."""
        self._ensure_built(x)
        return self._need_trainer("evaluate").evaluate(x, y, batch_size=batch_size,
                                                       verbose=verbose, return_dict=return_dict)

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = 0):  # noqa: ANN201
        """Outputs for ``x``; works without ``compile`` (inference needs no loss)."""
        from nexec.training.trainer import predictor

        self._ensure_built(x)
        return predictor(self).predict(x, batch_size=batch_size, verbose=verbose)

    def train_on_batch(self, x: Any, y: Any):  # noqa: ANN201
        """One optimiser step on one batch; returns the loss (and metrics)."""
        self._ensure_built(x)
        return self._need_trainer("train_on_batch").train_on_batch(x, y)

    def predict_on_batch(self, x: Any):  # noqa: ANN201
        return self.predict(x, batch_size=None)


def _leaf_layers(layers: list[Layer]) -> list[Layer]:
    out: dict[int, Layer] = {}
    for layer in layers:
        for leaf in (layer._leaves() if isinstance(layer, Model) else [layer]):
            out.setdefault(id(leaf), leaf)
    return list(out.values())


def _depends_on(out: SymbolicTensor, t: SymbolicTensor) -> bool:
    return any(n.outputs[0] is t for n in topological_order([out]) if not n.inputs)


class Sequential(Model):
    """A linear stack of layers, as ``keras.Sequential``; a thin builder over ``Model``.

    Args:
        layers: Layers to add in order. The first needs ``input_shape=...`` (or is an
            ``Input``) for the model to be built before data arrives.
        name: Model name (``sequential``, ``sequential_1``... when omitted).

    Example:
        >>> from nexec import Sequential, layers
        >>> seq = Sequential()
        >>> seq.add(layers.Dense(32, activation="relu", input_shape=(64,)))
        >>> seq.add(layers.Dense(10, activation="softmax"))
        >>> seq.count_params()
        2410
    """

    def __init__(self, layers: Sequence[Any] | None = None, name: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self._stack: list[Layer] = []
        self._outputs: list[SymbolicTensor] = []
        self._input: SymbolicTensor | None = None
        self._layers = []
        for layer in layers or []:
            self.add(layer)

    @staticmethod
    def _default_name() -> str:
        return "sequential"

    def add(self, layer: Any) -> None:
        """Appends a layer (or an ``Input`` tensor as the first element)."""
        if is_symbolic(layer):
            if self._stack or self._input is not None:
                raise GraphError("An Input can only be the first element of a Sequential.")
            self._input = layer
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add takes a layer, got {type(layer).__name__}.")
        if any(l.name == layer.name for l in self._stack):
            raise GraphError(f"Sequential '{self.name}' already has a layer named {layer.name!r}.")
        if self._input is None and not self._stack and layer.input_shape_hint is not None:
            from nexec.graph import Input

            self._input = Input(shape=layer.input_shape_hint, dtype=layer.dtype or "float32")
        self._stack.append(layer)
        if self._input is not None:
            try:
                self._connect()
            except Exception:
                self._stack.pop()  # a rejected layer leaves the model as it was
                raise

    def pop(self) -> Layer:
        """Removes the last layer."""
        layer = self._stack.pop()
        if len(self._outputs) > len(self._stack):
            self._outputs.pop()
            layer._nodes.pop()
            if self._stack:
                self._init_graph(self._input, self._outputs[-1])
        self._layers = list(self._stack)
        return layer

    def build(self, input_shape: Any = None, dtype: str = "float32") -> None:  # type: ignore[override]
        """Builds a deferred Sequential for samples of ``input_shape`` (batch axis optional)."""
        from nexec.graph import Input

        if input_shape is not None and self._input is None:
            shape = tuple(input_shape)
            self._input = Input(shape=shape[1:] if shape and shape[0] is None else shape,
                                dtype=dtype)
            self._connect()

    def _connect(self) -> None:
        """Calls each layer not yet connected on the stack's current output."""
        while len(self._outputs) < len(self._stack):
            x = self._outputs[-1] if self._outputs else self._input
            self._outputs.append(self._stack[len(self._outputs)](x))
        if self._outputs:
            self._init_graph(self._input, self._outputs[-1])
        self._layers = list(self._stack)

    def _ensure_built(self, x: Any = None) -> None:
        if self._input is None and x is not None:
            arr = np.asarray(x[0] if isinstance(x, (list, tuple)) else x)
            self.build((None, *arr.shape[1:]))
        super()._ensure_built(x)

    @property
    def layers(self) -> list[Layer]:
        return list(self._stack)
