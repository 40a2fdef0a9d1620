"""Model and Sequential: graphs of layers, themselves callable like layers.

The graph itself is a :class:`nexec.graph.Function`, which a model extends with the Keras
layer methods; training lives in ``nexec.training`` and is reached through the Keras methods
(``compile``, ``fit``, ``evaluate``, ``predict``...), which delegate there. What those methods
need of serialisation (the config of a graph, the weights and model files) and the summary
table is here too, so that ``saving``, ``summary`` and ``plot`` sit above the model and
nothing the model imports imports it back.
"""
from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

import numpy as np

from nexec.checks import ArgumentError, ArgumentTypeError, positive_int
from nexec.errors import GraphError, NotCompiledError, SavedModelError, ShapeError
from nexec.graph import Function, Node, SymbolicTensor, is_symbolic, unique_name
from nexec.io import atomic_write
from nexec.keras_files import archive as keras_archive
from nexec.keras_files import legacy_h5
from nexec.keras_files.model_config import build_model, model_config, model_entry
from nexec.layers.base import Layer
from nexec.layers.core import Input, InputLayer
from nexec.planner import make_plan
from nexec.planner.schedule import build_schedule
from nexec.plugins import registry

if TYPE_CHECKING:
    from nexec.training.callbacks import History

__all__ = ["Model", "Sequential", "layer_class", "model_from_config", "model_from_json",
           "summary_text", "is_sequential_like", "FORMAT", "MODEL_FILE_VERSION"]

FORMAT = "nexec-model-1"  # the "format" field of nexec's older to_json() output
MODEL_FILE_VERSION = 1  # bump when the layout of a saved model file changes


class Model(Function, Layer):
    """A graph of layers from ``inputs`` to ``outputs``, as ``keras.Model``.

    Args:
        inputs: A tensor from :func:`nexec.Input`, or a list or dict of them.
        outputs: A tensor, or a list or dict of them, computed from ``inputs``.
        name: Model name (``functional``, ``functional_1``... when omitted, as Keras 3).

    Example:
        >>> from nexec import Input, Model, layers
        >>> x = Input(shape=(64,))
        >>> model = Model(x, layers.Dense(10, activation="softmax")(x))
        >>> model.count_params()
        650
    """

    num_inputs = None  # a model takes as many tensors as it has inputs
    #: The ``class_name`` of its config; "Sequential" for a :class:`Sequential`.
    _config_class_name = "Model"

    def __init__(self, inputs: Any = None, outputs: Any = None, name: str | None = None,
                 **kwargs: Any) -> None:
        self._trainer: Any = None
        super().__init__(inputs, outputs, name=name or unique_name(self._default_name()),
                         **kwargs)

    @staticmethod
    def _default_name() -> str:
        return "functional"

    # ----- graph (nexec.graph.Function), and what a layer needs of it ---------------------
    def _init_graph(self, inputs: Any, outputs: Any) -> None:
        super()._init_graph(inputs, outputs)
        self.built = True
        self.dtype = self.inputs[0].dtype
        self._input_shapes = [t.feature_shape for t in self.inputs]

    # ----- a model is a layer -------------------------------------------------------------
    def __call__(self, inputs: Any, training: bool = False) -> Any:
        """On symbolic tensors: a node of a bigger graph. On NumPy arrays (a batch): the
        outputs, as NumPy arrays (Keras returns tensors), computed as by :meth:`predict`.

        Args:
            inputs: Symbolic tensors, or arrays (a list or a dict keyed as the inputs).
            training: Must be False on arrays (inference; training-mode calls are not
                supported on arrays).
        """
        if _is_data(inputs):
            if training:
                raise ValueError(f"Model '{self.name}': model(x, training=True) on arrays is "
                                 "not supported; use train_on_batch or fit to train.")
            return self.predict(inputs, batch_size=None, verbose=0)
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

    def _tensors(self, which: str) -> list[Any]:
        """``self.inputs`` or ``self.outputs``; a clear error where a Sequential is not
        built yet (Keras' ValueError)."""
        if which not in self.__dict__:
            raise ValueError(f"Sequential model '{self.name}' has no defined {which} yet: give "
                             "its first layer an input shape (an Input, or input_shape=...) "
                             "or run it on data (fit, predict) first.")
        return self.__dict__[which]

    @property
    def input(self) -> Any:
        """The model's own input tensor (a list when it has several)."""
        inputs = self._tensors("inputs")
        return inputs[0] if len(inputs) == 1 else list(inputs)

    @property
    def output(self) -> Any:
        """The model's own output tensor (a list when it has several)."""
        outputs = self._tensors("outputs")
        return outputs[0] if len(outputs) == 1 else list(outputs)

    @property
    def input_shape(self) -> Any:
        """The input's shape with ``None`` for the batch; a list of them when there are
        several, given as a list or a dict (as Keras 3)."""
        return _shaped(self._tensors("inputs"))

    @property
    def output_shape(self) -> Any:
        """The output's shape with ``None`` for the batch; a list of them when there are
        several, given as a list or a dict (as Keras 3)."""
        return _shaped(self._tensors("outputs"))

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        # As in Keras: freezing a model freezes every layer in it.
        self._trainable = bool(value)
        for layer in getattr(self, "_layers", []):
            layer.trainable = self._trainable

    @property
    def weights(self) -> list[np.ndarray]:
        return [w for layer in self._leaves() for w in layer.weights]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        return [w for layer in self._leaves() for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        return [w for layer in self._leaves() for w in layer.non_trainable_weights]

    @property
    def optimizer(self) -> Any:
        """The compiled optimizer object (``None`` before ``compile``), as Keras';
        ``model.optimizer.learning_rate = x`` takes effect at the next step."""
        return None if self._trainer is None else self._trainer.optimizer

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Overwrites every weight, in :attr:`weights` order; all are checked (count, shape,
        numbers, finite) before any is written."""
        own = self.weights
        if not isinstance(weights, (list, tuple)):
            raise ArgumentTypeError(f"Model '{self.name}': set_weights takes a list of "
                                    f"{len(own)} arrays, got {type(weights).__name__}.")
        if len(weights) != len(own):
            raise ValueError(f"Model '{self.name}' has {len(own)} weight arrays, "
                             f"got {len(weights)}.")
        checked = []
        for layer in self._leaves():
            n = len(layer.weights)
            checked.append((layer, layer.checked_weights(list(weights[:n]))))
            weights = weights[n:]
        for layer, arrays in checked:
            layer.set_weights(arrays)

    def count_params(self) -> int:
        return int(sum(w.size for w in self.weights))

    # ----- planning and description ---------------------------------------------------------
    def plan(self, device: str = "cpu"):  # noqa: ANN201 - Plan
        """The static plan (order, shapes, fusion) of this model; ``print`` it to read it."""
        self._ensure_built()
        return make_plan(self, device)

    def memory_plan(self, batch_size: int = 32, training: bool = True, device: str = "cpu"):  # noqa: ANN201
        """Where every buffer lives in the arena for a batch size (see ``MemoryPlan``)."""
        return build_schedule(self.plan(device), batch_size, training).memory

    def summary(self, line_length: int | None = None, positions: Any = None,
                print_fn: Callable[[str], Any] | None = None) -> None:
        """Prints the Keras summary table (layers, output shapes, parameter counts).

        Args:
            line_length: Total width of the table.
            positions: Accepted for Keras compatibility; ignored.
            print_fn: Called once per line (as Keras 3) instead of ``print``.
        """
        self._ensure_built()
        text = summary_text(self, line_length=line_length)
        if print_fn is None:
            print(text)
            return
        for line in text.split("\n"):  # Keras 3 calls print_fn once per line
            print_fn(line)

    def _summary_layers(self) -> list[Layer]:
        """The layers the summary lists, in order: the inputs first."""
        inputs = [t.producer.layer for t in self.inputs]
        return inputs + [layer for layer in self.layers if layer not in inputs]

    # ----- serialisation ------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The graph as Keras 3's functional config: each layer once, in Keras' order, with
        the calls it makes (``inbound_nodes``), and ``input_layers``/``output_layers``
        (see ``nexec.keras_files.model_config``); ``keras.Model.from_config`` reads it."""
        return model_config(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Model:
        return model_from_config(config, cls)

    def to_json(self, **kwargs: Any) -> str:
        """The architecture as Keras 3's JSON: ``nexec.models.model_from_json`` and
        ``keras.models.model_from_json`` both read it back."""
        return json.dumps(model_entry(self), **kwargs)

    def save(self, path: str) -> None:
        """Architecture, weights and (once compiled) compile settings and optimizer state, in
        one file written atomically; ``nexec.load_model`` reads it back.

        The extension decides the format: ``.keras`` writes a Keras 3 archive and ``.h5``
        (or ``.hdf5``) a legacy Keras HDF5 file, both of which Keras loads (architecture,
        weights and compile settings; not the optimizer's state) and which need ``h5py``
        (``pip install 'nexec[keras]'``). Any other name writes nexec's own file.

        nexec's own file is a NumPy ``.npz`` (a zip of ``.npy`` arrays, no pickles): ``__format__``
        holds ``[MODEL_FILE_VERSION]``, ``__config__`` the :meth:`to_json` text,
        ``__compile__`` the compile settings as JSON, ``layer/param`` each weight,
        ``__optimizer__/N`` each optimizer state slot (flat, in the parameter store's order)
        and ``__optimizer__/iterations``.
        """
        lower = str(path).lower()
        if lower.endswith(".keras"):
            keras_archive.write_archive(self, path)
            return
        if lower.endswith((".h5", ".hdf5")):
            legacy_h5.write_legacy_h5(self, path)
            return
        arrays: dict[str, np.ndarray] = {"__format__": np.array([MODEL_FILE_VERSION]),
                                         "__config__": np.array(self.to_json())}
        arrays.update(self._weight_arrays())
        trainer = self._trainer
        if trainer is not None:
            opt = trainer.optimizer
            compile_config = {**trainer.config, "optimizer": {
                "class_name": type(opt).__name__, "config": opt.get_config()}}
            arrays["__compile__"] = np.array(json.dumps(compile_config))
            arrays["__optimizer__/iterations"] = np.array(opt.iterations, np.int64)
            for i, slot in enumerate(opt.state_arrays()):
                arrays[f"__optimizer__/{i}"] = slot
        atomic_write(path, lambda f: np.savez(f, allow_pickle=False, **arrays))

    def export(self, filepath: Any, format: str = "onnx", verbose: bool | None = None,
               input_signature: Any = None, **kwargs: Any) -> None:
        """Writes the model for inference elsewhere, as Keras 3's ``export``; ONNX only.

        The file (written atomically) holds the inference graph: every input and output
        named as the model's, with a dynamic batch axis, the model's float dtype, Dropout as
        the identity and BatchNormalization with its moving statistics (docs/keras.md,
        Export to ONNX). Needs ``pip install 'nexec[onnx]'``.

        Args:
            filepath: The file to write (``str`` or ``os.PathLike``).
            format: ``"onnx"`` (Keras' default, ``"tf_saved_model"``, and its other formats
                are refused: nexec has no TensorFlow).
            verbose: Print where the file went.
            input_signature: Only None (the model's own inputs).
            **kwargs: ``opset_version``: the ONNX opset, 17 (default) to 21.

        Raises:
            nexec.errors.ExportError: A layer without an ONNX form, named with the reason;
                nothing is written.
        """
        from nexec.export import export_model

        export_model(self, filepath, format=format, verbose=verbose,
                     input_signature=input_signature, **kwargs)

    def save_weights(self, path: str) -> None:
        """Writes every parameter to ``path`` (``.npz``), keyed ``layer/param``, atomically."""
        arrays = self._weight_arrays()
        atomic_write(path, lambda f: np.savez(f, allow_pickle=False, **arrays))

    def load_weights(self, path: str) -> None:
        """Loads parameters saved by :meth:`save_weights`; validates names and shapes first."""
        with np.load(path, allow_pickle=False) as data:
            self._assign_weight_arrays({k: data[k] for k in data.files if not k.startswith("__")})

    def _weight_arrays(self) -> dict[str, np.ndarray]:
        """Every parameter array (not a copy), keyed ``layer/param``."""
        return {f"{layer.name}/{n}": p
                for layer in _all_layers(self) for n, p in layer._params.items()}

    def _assign_weight_arrays(self, saved: dict[str, np.ndarray]) -> None:
        """Copies ``saved`` (keyed as :meth:`_weight_arrays`) into the parameters, after
        checking that names and shapes match exactly."""
        own = self._weight_arrays()
        missing = sorted(set(own) - set(saved))
        extra = sorted(set(saved) - set(own))
        if missing or extra:
            raise ValueError(f"Weights do not match model '{self.name}': missing {missing}, "
                             f"unexpected {extra}.")
        for k, p in own.items():
            if saved[k].shape != p.shape:
                raise ValueError(f"Weight {k}: model has shape {p.shape}, file has "
                                 f"{saved[k].shape}.")
        for k, p in own.items():
            np.copyto(p, saved[k], casting="unsafe")

    # ----- training (nexec.training) ------------------------------------------------------
    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None,
                loss_weights: Any = None, device: str = "cpu",
                jit_step: bool | str = False, weighted_metrics: Any = None,
                distribute: Any = None, run_eagerly: bool = False,
                steps_per_execution: int = 1, jit_compile: bool | str = "auto",
                auto_scale_loss: bool = True) -> None:
        """Chooses optimizer, loss(es) and metrics; planning happens here, once.

        Args:
            optimizer: Name (``"rmsprop"``) or instance (``optimizers.Adam(1e-3)``).
            loss: Name, or a list/dict of names per output.
            metrics: e.g. ``["accuracy", "mae", metrics.AUC()]``; per output a list with
                one entry each, or a dict by output name (as Keras 3).
            loss_weights: Per-output weights of the total loss (list or dict).
            device: ``"cpu"`` (default).
            jit_step: Run each step (training, evaluation, inference) as one compiled native
                call: ``False`` (default: the Python loop over kernels), ``True``, or
                ``"auto"`` (when compilable and small steps run long). The default stays the
                loop: the compiled step measured no gain on the seed MLP while its first
                compile costs seconds (docs/performance.md). When a step compiles,
                ``predict`` on in-memory arrays (no ``steps``) runs all full batches of the
                pass in one native call (the last, shorter batch in a second one), bit for
                bit as the loop. A silent progress bar (``verbose=0``, or ``"auto"`` off a
                terminal) sees one call; a live bar (``verbose=1`` on a terminal) advances
                between calls over 1, 2, 4, ... batches, each call grown until it takes
                about 25 ms, so it still redraws while long passes run. A model used before
                ``compile`` always predicts with the loop.
            weighted_metrics: Not supported (metrics weighted by ``sample_weight``); only
                ``None`` or an empty list is accepted. ``metrics`` are unweighted, as in
                Keras 3, while the loss is weighted.
            distribute: A strategy such as ``nexec.distribute.RayDataParallel(num_workers=4)``:
                ``fit`` then trains data-parallel on Ray workers (docs/distributed.md).
            run_eagerly: Keras' debugging switch: ``True`` keeps the Python loop over kernels
                (``jit_step=False``); with ``jit_compile=True`` Keras' warning, and the loop.
            steps_per_execution: Batches per execution, as Keras 3: batch callbacks
                (``on_train_batch_begin``/``_end``) are called once per execution, with its
                first and last batch index, so with ``jit_step`` the batches between them
                run as one native call even where callbacks have batch hooks.
            jit_compile: Keras' XLA switch, taken as the whole-step compiler's: ``True`` is
                ``jit_step=True``, ``False`` is ``jit_step=False``, ``"auto"`` (Keras'
                default) leaves ``jit_step`` as given.
            auto_scale_loss: Accepted for Keras compatibility: loss scaling applies to
                mixed-precision (float16) training, which nexec does not run.
        """
        from nexec.training.trainer import Trainer

        if weighted_metrics:
            raise ArgumentError(
                f"compile(weighted_metrics={weighted_metrics!r}): nexec has no metrics weighted "
                "by sample_weight; pass them as metrics=[...] (unweighted, as Keras 3 computes "
                "`metrics`); the loss itself is weighted by sample_weight/class_weight. See "
                "docs/keras.md#sample-and-class-weights.")
        jit_step = _keras_execution(jit_step, run_eagerly, jit_compile, auto_scale_loss)
        steps_per_execution = positive_int(steps_per_execution, "steps_per_execution",
                                           "compile()")
        if self._deferred():
            # Keras builds a Sequential without an input shape at its first fit/predict;
            # compile's arguments wait until then (see ``_ensure_built``).
            self._pending_compile = dict(
                optimizer=optimizer, loss=loss, metrics=metrics, loss_weights=loss_weights,
                device=device, jit_step=jit_step, distribute=distribute,
                steps_per_execution=steps_per_execution)
            return
        self._ensure_built()
        self._trainer = Trainer(self, optimizer, loss, metrics, loss_weights, device, jit_step,
                                distribute, steps_per_execution)

    def _deferred(self) -> bool:
        """Whether the model waits for data to learn its input shape (a Sequential only)."""
        return False

    def _ensure_built(self, x: Any = None) -> None:
        if not hasattr(self, "inputs"):
            raise GraphError(f"Model '{self.name}' has no inputs yet; give the first layer an "
                             "input_shape or call the model on data.")

    def _need_trainer(self, what: str):  # noqa: ANN202
        if self._trainer is None:
            raise NotCompiledError(f"Model '{self.name}' must be compiled before {what}(); "
                                   "call model.compile(optimizer=..., loss=...) first.")
        return self._trainer

    @property
    def metrics_names(self) -> list[str]:
        """The names of ``evaluate()``'s values in its order (``[]`` before ``compile``).

        Keras 3.15 returns ``["loss", "compile_metrics"]`` (plus per-output losses) here;
        nexec returns every logged name, as Keras 2 did (docs/keras.md, Metrics).
        """
        trainer = getattr(self, "_trainer", None)
        return [] if trainer is None else trainer.metrics_names()

    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: Any = None, validation_split: float = 0.0,
            validation_data: Any = None, shuffle: bool = True, initial_epoch: int = 0,
            steps_per_epoch: int | None = None, validation_freq: Any = 1,
            sample_weight: Any = None, class_weight: Any = None,
            validation_steps: int | None = None) -> History:
        """Trains the model, printing a Keras progress bar; returns a ``History``.

        Args:
            x: Arrays (a memory map is read batch by batch), or a generator, iterable or
                ``utils.PyDataset`` giving ``(x, y)`` or ``(x, y, sample_weight)`` batches
                (docs/keras.md, Data).
            validation_data: ``(x_val, y_val)``, ``(x_val, y_val, val_sample_weight)``, or a
                stream as ``x``.
            sample_weight: Per-sample loss weights: an array ``(n,)`` for every output, or
                per output a list or dict (an output with time steps also takes
                ``(n, steps)``); Keras' weighted loss ``sum(w * loss) / N``. Metrics stay
                unweighted, as in Keras 3.
            class_weight: ``{class index: weight}`` (single-output models): each sample
                weighs its class's weight (1.0 for classes not listed).
            steps_per_epoch: Batches per epoch; as Keras 3 on arrays, successive epochs
                continue one pass over the data (see docs/keras.md).
            validation_freq: Validate every ``validation_freq`` epochs, or after the
                (1-based) epochs listed.
            validation_steps: Batches per validation when ``validation_data`` is a stream.
        """
        self._ensure_built(x)
        return self._need_trainer("fit").fit(
            x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
            validation_split=validation_split, validation_data=validation_data,
            shuffle=shuffle, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
            validation_freq=validation_freq, sample_weight=sample_weight,
            class_weight=class_weight, validation_steps=validation_steps)

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: Any = "auto", sample_weight: Any = None, steps: int | None = None,
                 return_dict: bool = False) -> Any:
        """Loss (and metrics) on data; a float, a list, or a dict with ``return_dict``.
        ``sample_weight`` weighs the loss as in ``fit`` (metrics stay unweighted).

        ``x`` may be a stream as for ``fit``; ``steps`` limits the batches read from it.

        Typed ``Any``: which of the three it is depends on the outputs, the metrics and
        ``return_dict``.
        """
        self._ensure_built(x)
        return self._need_trainer("evaluate").evaluate(x, y, batch_size=batch_size,
                                                       verbose=verbose, return_dict=return_dict,
                                                       sample_weight=sample_weight,
                                                       steps=steps)

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = 0,  # noqa: ANN201
                steps: int | None = None):
        """Outputs for ``x``; works without ``compile`` (inference needs no loss).

        ``x`` may be a stream as for ``fit`` (targets in its batches are ignored); ``steps``
        limits the batches read from it.
        """
        from nexec.training.trainer import predictor

        self._ensure_built(x)
        out = predictor(self).predict(x, batch_size=batch_size, verbose=verbose, steps=steps)
        if self._output_keys:  # outputs given as a dict: a dict keyed as given (Keras)
            return dict(zip(self._output_keys, out if isinstance(out, list) else [out]))
        return out

    def train_on_batch(self, x: Any, y: Any, sample_weight: Any = None,  # noqa: ANN201
                       class_weight: Any = None, return_dict: bool = False):
        """One optimiser step on one batch; returns the loss (and metrics). Sample and
        class weights as in :meth:`fit`."""
        self._ensure_built(x)
        return self._need_trainer("train_on_batch").train_on_batch(
            x, y, sample_weight=sample_weight, class_weight=class_weight,
            return_dict=return_dict)

    def test_on_batch(self, x: Any, y: Any, sample_weight: Any = None,  # noqa: ANN201
                      return_dict: bool = False):
        """Loss (and metrics) on one batch, nothing updated; a float, a list, or a dict."""
        self._ensure_built(x)
        return self._need_trainer("test_on_batch").test_on_batch(
            x, y, sample_weight=sample_weight, return_dict=return_dict)

    def predict_on_batch(self, x: Any):  # noqa: ANN201
        return self.predict(x, batch_size=None)


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

    _config_class_name = "Sequential"

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
        if any(other.name == layer.name for other in self._stack):
            raise GraphError(f"Sequential '{self.name}' already has a layer named {layer.name!r}.")
        if self._input is None and not self._stack and layer.input_shape_hint is not None:
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

    def build(self, input_shape: Any = None, dtype: str = "float32") -> None:
        """Builds a deferred Sequential for samples of ``input_shape`` (batch axis optional)."""
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

    def _deferred(self) -> bool:
        return self._input is None

    def _ensure_built(self, x: Any = None) -> None:
        if self._input is None and x is not None:
            from nexec.training.adapters import first_inputs

            x = first_inputs(x, self.name)
            arr = np.asarray(x[0] if isinstance(x, (list, tuple)) and x and hasattr(x[0], "shape")
                             else x)
            if arr.ndim < 2:
                raise ValueError(f"Sequential '{self.name}' has no input shape yet and cannot "
                                 f"learn one from data of shape {arr.shape}: it needs a batch "
                                 "axis first, e.g. (samples, features).")
            # As Keras: the model's dtype is the first layer's (float32 by default), not the data's.
            first = self._stack[0].dtype if self._stack else None
            self.build((None, *arr.shape[1:]), dtype=first or "float32")
        super()._ensure_built(x)
        pending = self.__dict__.pop("_pending_compile", None)
        if pending is not None:
            self.compile(**pending)

    @property
    def layers(self) -> list[Layer]:
        return list(self._stack)

    def get_config(self) -> dict[str, Any]:
        """The stack as Keras 3's Sequential config: an ``InputLayer`` first (when the input
        is known), then each layer's class name and config."""
        return model_config(self)

    def _summary_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if not isinstance(layer, InputLayer)]


# ----- configs ----------------------------------------------------------------------------
def layer_class(name: str) -> type:
    """The class registered under ``name`` (built-in or plugin), or ``Model``/``Sequential``."""
    if name in ("Model", "Functional"):
        return Model
    if name == "Sequential":
        return Sequential
    return registry().layer(name)


def _is_data(inputs: Any) -> bool:
    """Whether a model was called on data (arrays, lists of numbers) rather than tensors."""
    items = list(inputs.values()) if isinstance(inputs, dict) else \
        list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    return bool(items) and not any(is_symbolic(t) for t in items)


def model_from_config(config: dict[str, Any], cls: type | None = None) -> Model:
    """Rebuilds a model from ``model.get_config()`` output (fresh weights).

    Keras 3 configs (what nexec writes, and Keras 2 ones) are checked first: every layer or
    option nexec does not support is listed in one ``UnsupportedModelError`` before
    anything is built. nexec's older configs (a functional one has ``nodes``) still load.

    Args:
        config: The config of a functional model or of a ``Sequential``.
        cls: ``Model`` or ``Sequential``; by default told apart by the config.
    """
    if "nodes" not in config:
        sequential = cls is Sequential or (cls is None and "input_layers" not in config)
        return build_model({"class_name": "Sequential" if sequential else "Functional",
                            "config": config}, Model, Sequential)
    # nexec's older functional format: nodes in order, each naming what it reads.
    layers: dict[str, Any] = {}
    outputs: dict[str, list[list[Any]]] = {}  # layer name -> per call, its output tensors
    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer":
            t = Input(**entry["config"])
            input_layer = t.producer.layer
            layers[input_layer.name] = input_layer
            outputs[input_layer.name] = [[t]]
        else:
            layer = _layer_from(entry)
            layers[layer.name] = layer
            outputs[layer.name] = []

    def tensor(ref: list) -> Any:
        name, call, index = ref
        try:
            return outputs[name][call][index]
        except (KeyError, IndexError):
            raise GraphError(f"Model config refers to {name}[{call}][{index}], which no "
                             "earlier node produced.") from None

    for name, refs in config["nodes"]:
        ins = [tensor(r) for r in refs]
        out = layers[name](ins if len(ins) > 1 else ins[0])
        outputs[name].append(list(out) if isinstance(out, (list, tuple)) else [out])
    model_ins: list[Any] | dict[str, Any] = [tensor(r) for r in config["input_layers"]]
    model_outs: list[Any] | dict[str, Any] = [tensor(r) for r in config["output_layers"]]
    if config.get("input_keys"):
        model_ins = dict(zip(config["input_keys"], model_ins))
    if config.get("output_keys"):
        model_outs = dict(zip(config["output_keys"], model_outs))
    model = Model(model_ins, model_outs, name=config["name"])
    model._trainable = config.get("trainable", True)  # the layers keep their own flags
    return model


def _layer_from(entry: dict[str, Any]) -> Any:
    cls = layer_class(entry["class_name"])
    if entry["class_name"] in ("Model", "Functional", "Sequential"):
        return model_from_config(entry["config"], cls)
    # Layer types subclass Layer (the hook's contract); the registry, which sits below
    # layers, checks them by what they can do and so types them as plain ``type``.
    return cast("type[Layer]", cls).from_config(dict(entry["config"]))


def model_from_json(text: str) -> Model:
    """Rebuilds a model from ``model.to_json()`` output."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as e:
        raise SavedModelError(f"model_from_json: text is not valid JSON ({e}).") from None
    if not isinstance(data, dict) or "config" not in data or "class_name" not in data:
        raise SavedModelError("model_from_json: text is not a model's JSON (it needs "
                              "'class_name' and 'config'); write it with model.to_json().")
    return model_from_config(data["config"], layer_class(data["class_name"]))


# ----- weights ----------------------------------------------------------------------------
def _all_layers(model: Model) -> list[Any]:
    out = []
    for layer in model.layers:
        out.extend(_all_layers(layer) if isinstance(layer, Model) else [layer])
    return out



# ----- the summary table ------------------------------------------------------------------
def is_sequential_like(model: Model) -> bool:
    """True for chains (each node one input, one node per layer): no 'Connected to' column."""
    nodes = [n for n in model._graph_nodes if n.inputs]
    if len({id(n.layer) for n in nodes}) != len(nodes):
        return False
    consumed: set[int] = set()
    for n in nodes:
        if len(n.inputs) != 1 or n.inputs[0].id in consumed:
            return False
        consumed.add(n.inputs[0].id)
    return len(model.inputs) == 1 and len(model.outputs) == 1


def _shape(layer: Layer, model: Model) -> str:
    nodes = [n for n in model._graph_nodes if n.layer is layer]
    shapes = {tuple(tuple(t.shape) for t in n.outputs) for n in nodes}
    if len(shapes) != 1:
        return "multiple"
    (outs,) = shapes
    return str(outs[0]) if len(outs) == 1 else ", ".join(str(s) for s in outs)


def _connections(layer: Layer, model: Model) -> list[str]:
    out = []
    for n in model._graph_nodes:
        if n.layer is layer:
            for t in n.inputs:
                node = t.producer
                out.append(f"{node.layer.name}[{node.index}][{t.index}]")
    return out or ["-"]


def _shaped(tensors: list[Any]) -> Any:
    """The shape of one tensor, a list of shapes of several."""
    shapes = [tuple(t.shape) for t in tensors]
    return shapes[0] if len(shapes) == 1 else shapes


def _keras_execution(jit_step: Any, run_eagerly: Any, jit_compile: Any,
                     auto_scale_loss: Any) -> Any:
    """``jit_step`` after Keras' execution switches (``compile``'s docstring), checked.

    Raises:
        ArgumentTypeError: a switch of the wrong type.
        ArgumentError: ``jit_compile`` or ``run_eagerly`` contradicting an explicit
            ``jit_step``.
    """
    for name, value in (("run_eagerly", run_eagerly), ("auto_scale_loss", auto_scale_loss)):
        if not isinstance(value, bool):
            raise ArgumentTypeError(f"compile(): {name} must be True or False, got {value!r}.")
    if not (jit_compile is True or jit_compile is False or jit_compile == "auto"):
        raise ArgumentTypeError(f"compile(): jit_compile must be True, False or 'auto', got "
                                f"{jit_compile!r}.")
    if run_eagerly:
        if jit_step is not False:
            raise ArgumentError(f"compile(): run_eagerly=True runs the Python loop, but "
                                f"jit_step={jit_step!r} asks for compiled steps; pass one.")
        if jit_compile is True:
            warnings.warn("If `run_eagerly` is True, then `jit_compile` cannot also be True. "
                          "Disabling `jit_compile`.", stacklevel=3)
        return False
    if jit_compile == "auto":
        return jit_step
    if jit_step is not False and jit_step != jit_compile:
        raise ArgumentError(f"compile(): jit_compile={jit_compile!r} and jit_step={jit_step!r} "
                            "disagree; jit_compile is Keras' name for jit_step, pass one.")
    return jit_compile


def summary_text(model: Model, line_length: int | None = None) -> str:
    """The summary as text, with Keras' columns and thousands separators."""
    chain = is_sequential_like(model)
    layers = model._summary_layers()
    headers = ["Layer (type)", "Output Shape", "Param #"] + ([] if chain else ["Connected to"])
    rows = []
    for layer in layers:
        conn = [] if chain else _connections(layer, model)
        rows.append([f"{layer.name} ({type(layer).__name__})", _shape(layer, model),
                     f"{layer.count_params():,}"] + (conn[:1] if conn else []))
        for extra in conn[1:]:
            rows.append(["", "", "", extra])
    widths = [max(len(h), *(len(r[i]) for r in rows)) + 3 if rows else len(h) + 3
              for i, h in enumerate(headers)]
    width = line_length or sum(widths)
    if line_length:
        widths[0] += max(0, line_length - sum(widths))

    def fmt(cells: list[str]) -> str:
        return "".join(f" {c:<{w - 1}}" for c, w in zip(cells, widths)).rstrip()

    trainable = sum(w.size for w in model.trainable_weights)
    total = model.count_params()
    lines = [f'Model: "{model.name}"', "_" * width, fmt(headers), "=" * width]
    for i, r in enumerate(rows):
        lines.append(fmt(r))
        if not chain and i + 1 < len(rows) and rows[i + 1][0]:
            lines.append("_" * width)
    lines += ["=" * width, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}", "_" * width]
    return "\n".join(lines)
