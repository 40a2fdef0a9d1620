"""ONNX export: walks a model's graph and builds one ONNX model with the ``onnx`` package.

Each layer becomes ONNX nodes through its *exporter*, a callable registered for its class name
through the ``nexec_onnx_exporters`` plugin hook (nexec's own layers' in
``nexec.export.onnx_layers``, registered the same way). An exporter gets an
:class:`OnnxBuilder`, the layer and the ONNX names of its inputs, and returns the names of its
outputs. Tensors keep nexec's (Keras') layout, channels last; exporters of the NCHW ONNX
operators (Conv, MaxPool...) go through :meth:`OnnxBuilder.channels_first` and
:meth:`OnnxBuilder.channels_last`, and a transpose that undoes the one before it folds away.

Everything is built and checked (``onnx.checker`` with shape inference) in memory before the
file is written atomically, so a layer that cannot be exported leaves no file behind.

The default opset is 17 (:data:`DEFAULT_OPSET`): the first with ``LayerNormalization``, run by
every onnxruntime since 1.13 (2022) and by the other common runtimes; opsets up to 21 may be
asked for (``opset_version=``).
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence

import numpy as np

from nexec.checks import ArgumentError, ArgumentTypeError
from nexec.errors import ExportError
from nexec.export import onnx_layers
from nexec.graph import Function, SymbolicTensor, float_dtype
from nexec.io import atomic_write
from nexec.plugins import registry

__all__ = ["OnnxBuilder", "export_onnx", "build_onnx", "DEFAULT_OPSET", "OPSETS", "BATCH"]

#: The opset written unless ``opset_version`` says otherwise (see the module docstring).
DEFAULT_OPSET = 17
#: The opsets nexec can write: the exporters' operator forms are valid for each.
OPSETS = range(17, 22)
#: The ONNX IR version that goes with each opset (the oldest that carries it, so older
#: runtimes read the file).
_IR_VERSION = {17: 8, 18: 8, 19: 9, 20: 9, 21: 10}
#: The symbolic name of the (dynamic) batch axis of every input and output.
BATCH = "batch"

_ELEM_TYPES = {"float32": 1, "float64": 11, "int32": 6, "int64": 7}  # onnx.TensorProto codes


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError("Exporting to ONNX needs the onnx package: pip install "
                          "'nexec[onnx]' (or pip install onnx).") from None
    return onnx


class OnnxBuilder:
    """What an exporter builds with: ONNX nodes, initialisers, fresh names.

    Tensor names are strings. Every tensor an exporter receives or returns has the batch
    axis first and nexec's layout (channels last); :meth:`shape` gives its feature shape
    (without the batch axis) and :meth:`dtype_of` its dtype, for the layers' inputs and
    outputs.

    Args:
        opset: The ONNX opset being written (17 to 21).
        dtype: The model's float dtype (``"float32"`` or ``"float64"``).
    """

    def __init__(self, opset: int, dtype: str) -> None:
        self.opset = opset
        #: The model's float dtype: parameters and float constants are stored in it.
        self.dtype = np.dtype(dtype)
        self.nodes: list[Any] = []
        self.initializers: dict[str, np.ndarray] = {}
        self._shapes: dict[str, tuple] = {}
        self._dtypes: dict[str, str] = {}
        self._taken: set[str] = set()
        self._counts: dict[str, int] = {}
        self._cache: dict[Any, str] = {}
        self._transposed: dict[str, tuple[str, tuple[int, ...]]] = {}
        self._scope = ""

    # ----- names --------------------------------------------------------------------------
    def fresh(self, hint: str = "t") -> str:
        """A tensor name not used yet, made from ``hint`` and the current layer's name."""
        base = f"{self._scope}/{hint}" if self._scope else hint
        n = self._counts.get(base, 0)
        name = base if n == 0 else f"{base}_{n}"
        while name in self._taken:
            n += 1
            name = f"{base}_{n}"
        self._counts[base] = n + 1
        self._taken.add(name)
        return name

    def reserve(self, name: str) -> None:
        """Marks ``name`` as taken (the graph's input and output names)."""
        self._taken.add(name)

    # ----- nodes and constants ------------------------------------------------------------
    def op(self, op_type: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1,
           **attrs: Any) -> Any:
        """Adds one node of the default ONNX domain.

        Args:
            op_type: The ONNX operator (``"Conv"``, ``"MatMul"``...).
            inputs: Input tensor names; ``""`` skips an optional input.
            outputs: How many outputs (fresh names), or their names (``""`` skips one).
            **attrs: The operator's attributes (ints, floats, strings or lists of them).

        Returns:
            The output name, or a list of them when ``outputs`` is not ``1``.
        """
        names = [self.fresh(op_type.lower()) for _ in range(outputs)] \
            if isinstance(outputs, int) else list(outputs)
        onnx = _onnx()
        self.nodes.append(onnx.helper.make_node(op_type, list(inputs), names,
                                                name=self.fresh(f"{op_type}_node"), **attrs))
        return names[0] if isinstance(outputs, int) and outputs == 1 else names

    def const(self, value: Any, dtype: Any = None) -> str:
        """An initialiser holding ``value``: float values in the model's dtype (unless
        ``dtype`` is given), integer ones as int64."""
        arr = np.asarray(value)
        if dtype is not None:
            arr = arr.astype(dtype)
        elif arr.dtype.kind == "f":
            arr = arr.astype(self.dtype)
        elif arr.dtype.kind in "iub":
            arr = arr.astype(np.int64)
        name = self.fresh("const")
        self.initializers[name] = np.ascontiguousarray(arr)
        return name

    def param(self, layer: Any, name: str,
              transform: Callable[[np.ndarray], np.ndarray] | None = None,
              key: str = "") -> str:
        """A layer's parameter (``layer.<name>``) as an initialiser in the model's dtype,
        optionally after ``transform`` (e.g. a kernel transposed to ONNX's layout).

        A layer called several times shares one initialiser: the result is cached by layer,
        parameter and ``key``, so give each different ``transform`` its own ``key``.
        """
        cache_key = ("param", id(layer), name, key)
        if cache_key not in self._cache:
            value = np.asarray(layer._params[name], dtype=np.float64)
            if transform is not None:
                value = transform(value)
            saved = self._scope
            self._scope = layer.name
            out = self.fresh(f"{name}{'_' + key if key else ''}")
            self._scope = saved
            self.initializers[out] = np.ascontiguousarray(value, dtype=self.dtype)
            self._cache[cache_key] = out
        return self._cache[cache_key]

    def ints(self, values: Sequence[int]) -> str:
        """A 1-D int64 constant (shapes, axes, pads), shared by every user of the same
        values."""
        key = ("ints", tuple(int(v) for v in values))
        if key not in self._cache:
            self._cache[key] = self.const(np.array(key[1], np.int64))
        return self._cache[key]

    # ----- what is known of tensors -------------------------------------------------------
    def shape(self, name: str) -> tuple:
        """The feature shape (no batch axis) of a layer's input or output tensor."""
        if name not in self._shapes:
            raise ExportError(f"the shape of ONNX tensor {name!r} is not known to the "
                              "builder (only the layers' inputs and outputs are).")
        return self._shapes[name]

    def dtype_of(self, name: str) -> str:
        """The dtype name (``"float32"``, ``"int64"``...) of a layer's input or output."""
        return self._dtypes.get(name, self.dtype.name)

    def set_info(self, name: str, shape: tuple, dtype: str) -> None:
        """Records the feature shape and dtype of ``name`` (the walker does this)."""
        self._shapes[name] = tuple(shape)
        self._dtypes[name] = dtype

    # ----- layout -------------------------------------------------------------------------
    def transpose(self, x: str, perm: Sequence[int]) -> str:
        """``Transpose(x, perm)``; undoes a transpose made here instead when ``perm`` inverts
        it, and reuses the result of an identical earlier transpose."""
        perm = tuple(int(p) for p in perm)
        if perm == tuple(range(len(perm))):
            return x
        if x in self._transposed:
            src, first = self._transposed[x]
            composed = tuple(first[p] for p in perm)
            if composed == tuple(range(len(composed))):
                return src
            x, perm = src, composed
        key = ("transpose", x, perm)
        if key not in self._cache:
            out = self.op("Transpose", [x], perm=list(perm))
            self._transposed[out] = (x, perm)
            self._cache[key] = out
        return self._cache[key]

    def transposed_sources(self, names: Sequence[str]
                           ) -> tuple[list[str], tuple[int, ...]] | None:
        """When every tensor of ``names`` is a transpose made here by one permutation
        ``perm``: their sources and ``perm``, else None.

        An elementwise exporter then computes on the sources and transposes its result by
        ``perm`` once (Conv -> BatchNormalization -> Add -> Conv stays NCHW), and the
        transposes it skipped are dropped if nothing else reads them.
        """
        found = [self._transposed.get(n) for n in names]
        if any(f is None for f in found):
            return None
        perms = {f[1] for f in found if f is not None}
        if len(perms) != 1:
            return None
        return [f[0] for f in found if f is not None], perms.pop()

    def channels_first(self, x: str, rank: int) -> str:
        """NHWC (or NLC, NDHWC) ``x`` of ``rank`` axes, batch included, as NCHW."""
        return self.transpose(x, [0, rank - 1, *range(1, rank - 1)])

    def channels_last(self, x: str, rank: int) -> str:
        """NCHW ``x`` back to NHWC."""
        return self.transpose(x, [0, *range(2, rank), 1])

    # ----- helpers for operators whose form changed between opsets ------------------------
    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: bool) -> str:
        """``ReduceMean``/``ReduceMax``/``ReduceSum``... over ``axes`` (batch axis 0)."""
        as_input = self.opset >= 18 or op_type == "ReduceSum"
        if as_input:
            return self.op(op_type, [x, self.ints(axes)], keepdims=int(keepdims))
        return self.op(op_type, [x], axes=list(axes), keepdims=int(keepdims))

    def squeeze(self, x: str, axes: Sequence[int]) -> str:
        return self.op("Squeeze", [x, self.ints(axes)])

    def unsqueeze(self, x: str, axes: Sequence[int]) -> str:
        return self.op("Unsqueeze", [x, self.ints(axes)])

    def activation(self, x: str, name: str) -> str:
        """A nexec activation (``"relu"``, ``"softmax"``...) applied to ``x``; the last axis
        for the row-wise ones."""
        return onnx_layers.activation(self, x, name)


# ----- the walk -----------------------------------------------------------------------------
def _exporter(layer: Any) -> Callable | None:
    return registry().onnx_exporter(type(layer).__name__)


def _unexportable(fn: Function, seen: set[int] | None = None) -> list[str]:
    """Every layer in ``fn`` (nested models opened) that has no exporter, described."""
    seen = set() if seen is None else seen
    found: list[str] = []
    for node in fn.nodes:
        layer = node.layer
        if not node.inputs or id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, Function):
            found += _unexportable(layer, seen)
        elif _exporter(layer) is None:
            owner = registry().owner.get(("layers", type(layer).__name__))
            where = f", from plugin '{owner}'" if owner else ""
            found.append(f"'{layer.name}' ({type(layer).__name__}{where})")
    return found


def _walk(b: OnnxBuilder, fn: Function, names: list[str]) -> list[str]:
    """Adds the nodes of ``fn`` reading ONNX tensors ``names``; its outputs' names."""
    env: dict[int, str] = {t.id: n for t, n in zip(fn.inputs, names)}
    for node in fn.nodes:
        if not node.inputs:
            continue
        layer = node.layer
        ins = [env[t.id] for t in node.inputs]
        if (getattr(layer, "consumes_mask", False) and node.inputs[0].mask is not None
                and not getattr(layer, "mask_in_training_only", False)):
            raise ExportError(f"Layer '{layer.name}' ({type(layer).__name__}) reads the mask "
                              f"of {node.inputs[0].name!r} (Embedding(mask_zero=True)), which "
                              "the ONNX export does not carry; export the model with "
                              "mask_zero=False.")
        if isinstance(layer, Function):
            outs = _walk(b, layer, ins)
        else:
            outs = _call_exporter(b, layer, ins)
        if len(outs) != len(node.outputs):
            raise ExportError(f"Layer '{layer.name}' ({type(layer).__name__}): its ONNX "
                              f"exporter returned {len(outs)} output(s), the layer has "
                              f"{len(node.outputs)}.")
        for t, name in zip(node.outputs, outs):
            env[t.id] = name
            if name not in b._shapes:
                b.set_info(name, t.feature_shape, t.dtype)
    return [env[t.id] for t in fn.outputs]


def _call_exporter(b: OnnxBuilder, layer: Any, ins: list[str]) -> list[str]:
    exporter = _exporter(layer)
    assert exporter is not None  # checked for every layer before the walk
    b._scope = layer.name
    try:
        out = exporter(b, layer, list(ins))
    except ExportError as e:
        raise ExportError(f"Layer '{layer.name}' ({type(layer).__name__}) cannot be exported "
                          f"to ONNX: {e}") from None
    except Exception as e:  # noqa: BLE001 - a broken exporter (a plugin's): name the layer
        raise ExportError(f"Layer '{layer.name}' ({type(layer).__name__}): its ONNX exporter "
                          f"raised {type(e).__name__}: {e}") from e
    finally:
        b._scope = ""
    outs = [out] if isinstance(out, str) else list(out) if isinstance(out, (list, tuple)) \
        else [out]
    if not all(isinstance(o, str) for o in outs):
        raise ExportError(f"Layer '{layer.name}' ({type(layer).__name__}): its ONNX exporter "
                          f"must return a tensor name or a list of them, got {out!r}.")
    return outs


def _unique(names: list[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        name, k = n, 1
        while name in out:
            name, k = f"{n}_{k}", k + 1
        out.append(name)
    return out


def _check_opset(opset: Any) -> int:
    if opset is None:
        return DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, numbers.Integral):
        raise ArgumentTypeError(f"Model.export: opset_version must be an int, got {opset!r}.")
    if int(opset) not in OPSETS:
        raise ArgumentError(f"Model.export: opset_version={opset!r} is not supported; nexec "
                            f"writes opsets {OPSETS.start} to {OPSETS.stop - 1} (default "
                            f"{DEFAULT_OPSET}).")
    return int(opset)


def build_onnx(model: Any, opset_version: int | None = None) -> Any:
    """The ``onnx.ModelProto`` of ``model``, checked, without writing it.

    Raises:
        ExportError: An unbuilt model, or layers without an exporter (all named at once),
            or a layer whose settings have no ONNX form.
    """
    opset = _check_opset(opset_version)
    if not isinstance(getattr(model, "inputs", None), list):
        raise ExportError(f"Model '{getattr(model, 'name', model)}' is not built yet (a "
                          "Sequential without an input shape); call it on data or give its "
                          "first layer input_shape=... before exporting.")
    missing = _unexportable(model)
    if missing:
        raise ExportError(f"Model '{model.name}' cannot be exported to ONNX: no ONNX exporter "
                          f"for layer(s) {', '.join(missing)}. A plugin exports its layers "
                          "through the nexec_onnx_exporters hook (docs/plugins.md).")
    onnx = _onnx()
    helper = onnx.helper
    dtypes = [t.dtype for t in model.inputs] + [getattr(lay, "dtype", None)
                                                for lay in model._leaves()]
    b = OnnxBuilder(opset, float_dtype(dtypes))
    in_names = _unique(model.input_names)
    out_names = _unique(in_names + model.output_names)[len(in_names):]
    for name in in_names + out_names:
        b.reserve(name)
    for t, name in zip(model.inputs, in_names):
        b.set_info(name, t.feature_shape, t.dtype)
    results = _walk(b, model, in_names)
    for src, name in zip(results, out_names):
        b.nodes.append(helper.make_node("Identity", [src], [name], name=f"{name}/output"))
    _prune(b, out_names)

    def info(t: SymbolicTensor, name: str) -> Any:
        return helper.make_tensor_value_info(name, _ELEM_TYPES[t.dtype],
                                             [BATCH, *t.feature_shape])

    graph = helper.make_graph(
        b.nodes, model.name, [info(t, n) for t, n in zip(model.inputs, in_names)],
        [info(t, n) for t, n in zip(model.outputs, out_names)],
        [onnx.numpy_helper.from_array(v, k) for k, v in b.initializers.items()])
    proto = helper.make_model(graph, producer_name="nexec", producer_version=_version(),
                              opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = _IR_VERSION[opset]
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # noqa: BLE001 - onnx's checker raises several types
        raise ExportError(f"Model '{model.name}': the ONNX model built fails onnx's checker "
                          f"({type(e).__name__}: {e}); please report this.") from e
    return proto


def export_onnx(model: Any, path: str, opset_version: int | None = None) -> int:
    """Writes ``model`` to ``path`` as ONNX, atomically; returns the opset written."""
    proto = build_onnx(model, opset_version)
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))
    return int(proto.opset_import[0].version)


def _prune(b: OnnxBuilder, outputs: list[str]) -> None:
    """Drops nodes and initialisers no output depends on (a transpose that folded away)."""
    needed = set(outputs)
    kept = []
    for node in reversed(b.nodes):
        if any(o in needed for o in node.output if o):
            kept.append(node)
            needed.update(i for i in node.input if i)
    b.nodes = kept[::-1]
    b.initializers = {k: v for k, v in b.initializers.items() if k in needed}


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("nexec")
    except metadata.PackageNotFoundError:
        return ""
