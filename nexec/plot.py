"""``plot_model``: a model's graph as a picture, as ``keras.utils.plot_model`` draws it.

The graph is always available as Graphviz DOT text (:func:`model_to_dot`), which needs
nothing installed. Turning DOT into SVG/PNG/PDF needs Graphviz: the ``graphviz`` Python
package (``pip install graphviz``) and its ``dot`` program (``apt-get install graphviz``,
``brew install graphviz`` or ``conda install graphviz``).

Example:
    >>> from nexec import Input, Model, layers
    >>> from nexec.plot import model_to_dot
    >>> x = Input(shape=(4,), name="x")
    >>> dot = model_to_dot(Model(x, layers.Dense(2, name="out")(x)), show_shapes=True)
    >>> dot.splitlines()[0]
    'digraph "model" {'
"""
from __future__ import annotations

import os
from html import escape
from typing import Any

from nexec.graph import Function
from nexec.io import atomic_write

__all__ = ["model_to_dot", "plot_model", "RENDERED_FORMATS"]

RENDERED_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg")
_TEXT_FORMATS = ("dot", "gv")

# Fill colours by layer family, so a glance tells inputs, compute and merges apart.
_COLOURS = {"InputLayer": "#e8e8e8", "Dense": "#c6dbef", "Conv2D": "#fdd0a2",
            "Concatenate": "#c7e9c0", "Add": "#c7e9c0", "Activation": "#f2f0f7",
            "Flatten": "#f2f0f7"}
_DEFAULT_COLOUR = "#fff5c0"  # plugin layers
_MODEL_COLOUR = "#dadaeb"


def _shapes(tensors: list[Any]) -> str:
    shapes = [str(t.shape) for t in tensors]
    return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"


def _io_shapes(layer: Any, model: Function) -> tuple[str, str]:
    """(input, output) shape text of ``layer`` in ``model``; "multiple" for shared layers."""
    nodes = [n for n in model._graph_nodes if n.layer is layer]
    ins = {_shapes(n.inputs) for n in nodes if n.inputs}
    outs = {_shapes(n.outputs) for n in nodes}

    def one(found: set[str]) -> str:
        return found.pop() if len(found) == 1 else ("multiple" if found else "-")
    return one(ins), one(outs)


def _label(layer: Any, model: Function, opts: dict[str, Any]) -> str:
    """An HTML-like Graphviz label: the layer, then one row per detail asked for."""
    kind = "Model" if isinstance(layer, Function) else type(layer).__name__
    title = f"{layer.name} ({kind})" if opts["show_layer_names"] else kind
    colour = _MODEL_COLOUR if kind == "Model" else _COLOURS.get(kind, _DEFAULT_COLOUR)
    rows = [f'<tr><td colspan="2" bgcolor="{colour}"><b>{escape(title)}</b></td></tr>']
    activation = layer.get_config().get("activation") if kind != "Model" else None
    if opts["show_layer_activations"] and activation:
        rows.append(f"<tr><td>activation</td><td>{escape(str(activation))}</td></tr>")
    if opts["show_shapes"]:
        shape_in, shape_out = _io_shapes(layer, model)
        if kind != "InputLayer":
            rows.append(f"<tr><td>input</td><td>{escape(shape_in)}</td></tr>")
        rows.append(f"<tr><td>output</td><td>{escape(shape_out)}</td></tr>")
    if opts["show_dtype"]:
        dtype = next((n.outputs[0].dtype for n in model._graph_nodes if n.layer is layer), "-")
        rows.append(f"<tr><td>dtype</td><td>{escape(str(dtype))}</td></tr>")
    if opts["show_trainable"]:
        rows.append(f"<tr><td>trainable</td><td>{'yes' if layer.trainable else 'no'}</td></tr>")
    return ('<<table border="0" cellborder="1" cellspacing="0" cellpadding="4">'
            + "".join(rows) + "</table>>")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _DotWriter:
    """Emits nodes and edges; a nested model becomes one node or, expanded, a cluster."""

    def __init__(self, opts: dict[str, Any]) -> None:
        self.opts = opts
        self.lines: list[str] = []
        self.clusters = 0
        self.edges: set[str] = set()

    def model(self, model: Function, prefix: str, indent: str) -> dict[int, tuple[list, list]]:
        """Writes ``model``'s layers; returns, per layer id, its (entry, exit) node ids."""
        ports: dict[int, tuple[list, list]] = {}
        for node in model._graph_nodes:
            layer = node.layer
            if id(layer) in ports:
                continue  # a shared layer is drawn once
            node_id = f"{prefix}{layer.name}"
            if isinstance(layer, Function) and self.opts["expand_nested"]:
                self.clusters += 1
                self.lines.append(f"{indent}subgraph cluster_{self.clusters} {{")
                self.lines.append(f"{indent}  label={_quote(layer.name)}; style=rounded; "
                                  'color="#807dba";')
                inner = self.model(layer, node_id + "/", indent + "  ")
                self.lines.append(f"{indent}}}")
                ports[id(layer)] = ([inner[id(t.producer.layer)][0][0] for t in layer.inputs],
                                    [inner[id(t.producer.layer)][1][0] for t in layer.outputs])
            else:
                self.lines.append(f"{indent}{_quote(node_id)} "
                                  f"[label={_label(layer, model, self.opts)}];")
                ports[id(layer)] = ([node_id], [node_id])
        for node in model._graph_nodes:
            entries = ports[id(node.layer)][0]
            for i, t in enumerate(node.inputs):
                exits = ports[id(t.producer.layer)][1]
                src = exits[t.index] if len(exits) > 1 else exits[0]
                dst = entries[i] if len(entries) > 1 else entries[0]
                edge = f"{indent}{_quote(src)} -> {_quote(dst)};"
                if edge not in self.edges:  # a layer called twice on one tensor: one arrow
                    self.edges.add(edge)
                    self.lines.append(edge)
        return ports


def model_to_dot(model: Function, show_shapes: bool = False, show_dtype: bool = False,
                 show_layer_names: bool = True, rankdir: str = "TB",
                 expand_nested: bool = False, dpi: int | None = None,
                 show_layer_activations: bool = False, show_trainable: bool = False) -> str:
    """The model's graph as Graphviz DOT text: one box per layer, one arrow per connection.

    Arguments are those of :func:`plot_model`.
    """
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError(f"rankdir must be 'TB', 'LR', 'BT' or 'RL', got {rankdir!r}.")
    opts = {"show_shapes": show_shapes, "show_dtype": show_dtype,
            "show_layer_names": show_layer_names, "expand_nested": expand_nested,
            "show_layer_activations": show_layer_activations,
            "show_trainable": show_trainable}
    writer = _DotWriter(opts)
    writer.model(model, "", "  ")
    head = [f"digraph {_quote(model.name)} {{",
            f'  graph [rankdir={rankdir}{f", dpi={int(dpi)}" if dpi else ""}];',
            '  node [shape=plaintext, fontname="Helvetica", fontsize=11];',
            '  edge [color="#555555", arrowsize=0.7];']
    return "\n".join(head + writer.lines + ["}"]) + "\n"


def plot_model(model: Function, to_file: str = "model.png", show_shapes: bool = False,
               show_dtype: bool = False, show_layer_names: bool = True, rankdir: str = "TB",
               expand_nested: bool = False, dpi: int = 200,
               show_layer_activations: bool = False, show_trainable: bool = False) -> str:
    """Draws the model's graph to ``to_file``, as ``keras.utils.plot_model``.

    The format follows the extension: ``.dot``/``.gv`` write DOT text (no dependency);
    ``.png``, ``.svg``, ``.pdf``, ``.jpg`` need Graphviz (see the module docstring). The file
    is written atomically.

    Args:
        model: A ``Model`` or ``Sequential``.
        to_file: Where to write.
        show_shapes: Input and output shapes of each layer.
        show_dtype: The output dtype of each layer.
        show_layer_names: Names as well as types.
        rankdir: ``"TB"`` (top to bottom) or ``"LR"`` (left to right), as Graphviz.
        expand_nested: Draw nested models' layers inside a box instead of one node.
        dpi: Resolution of PNG/JPG output.
        show_layer_activations: The activation of Dense/Conv2D/Activation layers.
        show_trainable: Whether each layer is trainable.

    Returns:
        The DOT text.

    Raises:
        ValueError: An extension that is neither DOT nor a Graphviz format.
        ImportError: A picture format without Graphviz installed; says how to get it.
    """
    fmt = os.path.splitext(to_file)[1].lstrip(".").lower()
    if fmt not in _TEXT_FORMATS + RENDERED_FORMATS:
        raise ValueError(f"plot_model cannot write '{to_file}': use one of "
                         f"{', '.join('.' + f for f in _TEXT_FORMATS + RENDERED_FORMATS)}.")
    dot = model_to_dot(model, show_shapes, show_dtype, show_layer_names, rankdir,
                       expand_nested, dpi if fmt in ("png", "jpg", "jpeg") else None,
                       show_layer_activations, show_trainable)
    data = dot.encode() if fmt in _TEXT_FORMATS else render(dot, fmt, to_file)
    atomic_write(to_file, lambda f: f.write(data))
    return dot


def render(dot: str, fmt: str, to_file: str = "the picture") -> bytes:
    """DOT text rendered by Graphviz' ``dot`` program into ``fmt`` bytes."""
    hint = ("install the graphviz Python package (pip install graphviz) and the Graphviz "
            "'dot' program (apt-get install graphviz, brew install graphviz or conda install "
            "graphviz), or write DOT text with a '.dot' file name")
    try:
        import graphviz
    except ImportError:
        raise ImportError(f"Writing '{to_file}' needs Graphviz: {hint}.") from None
    try:
        return graphviz.Source(dot).pipe(format="jpg" if fmt == "jpeg" else fmt)
    except graphviz.ExecutableNotFound:
        raise ImportError(f"Writing '{to_file}' needs Graphviz' 'dot' program, which is not on "
                          f"PATH: {hint}.") from None
