"""The plan: ordered, shape-checked, fused ops, printable for people."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from nexec.errors import PluginError
from nexec.graph import Function
from nexec.ops.base import Kernel
from nexec.planner.algorithms import choose_conv_algorithms, conv_algorithm_mode
from nexec.planner.fusion import fold_channel_affines, fuse_activations, split_input_activations
from nexec.planner.lowering import Graph, lower
from nexec.planner.shapes import infer_shapes
from nexec.plugins import registry

__all__ = ["Plan", "make_plan"]


@dataclass
class Plan:
    """The static plan of one model: what runs, in which order, on which shapes.

    ``describe()`` (also ``str(plan)``) prints it as a table.
    """

    model_name: str
    graph: Graph
    param_shapes: dict[str, dict[str, tuple]]
    device: str = "cpu"
    #: Conv2D layer name -> algorithm ("im2col", "winograd", "winograd4", "direct"): the
    #: plan's choice for training steps (``nexec.planner.algorithms``); the executor may
    #: refine "auto" choices by measurement.
    conv_algorithms: dict[str, str] = field(default_factory=dict)
    #: The ``conv_algorithm`` mode the plan was made under.
    conv_mode: str = "model"
    #: The same for inference (``predict``, ``evaluate``), where a forward alone may favour
    #: another algorithm; a copy of :attr:`conv_algorithms` when not given.
    inference_conv_algorithms: dict[str, str] | None = None
    #: The graph inference steps run when it differs from :attr:`graph`: each per-channel
    #: affine (BatchNormalization) folded into its producer's weights, then activations
    #: fused again (``nexec.planner.fusion``). None: inference runs :attr:`graph`.
    inference_graph: Graph | None = None

    def __post_init__(self) -> None:
        if self.inference_conv_algorithms is None:
            self.inference_conv_algorithms = dict(self.conv_algorithms)

    def for_steps(self, training: bool) -> Plan:
        """The plan that training (``True``) or inference steps run: this one, or in
        inference its :attr:`inference_graph` with the same algorithm choices."""
        if training or self.inference_graph is None:
            return self
        return replace(self, graph=self.inference_graph, inference_graph=None)

    def algorithms(self, training: bool) -> dict[str, str]:
        """The Conv2D choices for training steps or for inference."""
        assert self.inference_conv_algorithms is not None
        return self.conv_algorithms if training else self.inference_conv_algorithms

    @property
    def ops(self):  # noqa: ANN201 - list[Op]
        return self.graph.ops

    def describe(self) -> str:
        g = self.graph
        inputs = ", ".join(f"{g.tensors[i].name}{(None, *g.tensors[i].shape)}" for i in g.inputs)
        lines = [f'Plan of "{self.model_name}" on {self.device}: {len(g.ops)} steps',
                 f"inputs: {inputs}"]
        header = f"{'step':>4}  {'op':<28} {'inputs':<30} {'output shape':<20} params"
        lines += [header, "-" * len(header)]
        # layer -> the op inference merges it into (looked up for the ops training runs)
        folded = {name: op.layer.name for op in self.for_steps(False).graph.ops
                  for name in op.fused} if self.inference_graph is not None else {}
        for op in g.ops:
            name = f"{op.layer.name} ({op.kind}"
            if op.activation != "linear":
                name += f"+{op.activation}"
            name += ")"
            ins = ", ".join(f"t{i}" for i in op.inputs)
            shape = str((None, *g.tensors[op.output].shape))
            params = ", ".join(f"{k}{v}" for k, v in self.param_shapes[op.layer.name].items())
            lines.append(f"{op.index:>4}  {name:<28} {ins:<30} t{op.output} {shape:<16} {params}")
            for o in op.more_outputs:  # a layer's further outputs (return_state), one a line
                lines.append(f"{'':>6}{'':<28} {'':<30} t{o} {str((None, *g.tensors[o].shape))}")
            if op.fused:
                lines.append(f"{'':>6}fused: {', '.join(op.fused)}")
            if op.layer.name in folded:
                lines.append(f"{'':>6}inference: folded into {folded[op.layer.name]}")
            if op.layer.name in self.conv_algorithms:
                algo = self.conv_algorithms[op.layer.name]
                other = self.algorithms(False).get(op.layer.name, algo)
                lines.append(f"{'':>6}algorithm: {algo}"
                             + (f" (inference: {other})" if other != algo else ""))
        lines.append(f"outputs: {', '.join(f't{o}' for o in g.outputs)}")
        return "\n".join(lines)

    __str__ = describe


def make_plan(function: Function, device: str = "cpu",
              can_fuse: Callable[[str], bool] | None = None) -> Plan:
    """Plans ``function``: lower, infer shapes, fuse, choose each Conv2D's algorithm (on the
    CPU; ``nexec.planner.algorithms``). Runs no kernels.

    Args:
        function: The graph to plan: a built ``Model`` or ``Sequential``.
        device: The device whose kernels decide what can fuse.
        can_fuse: Override of the fusion capability per op kind (for tests).
    """
    if can_fuse is None:
        def can_fuse(kind: str) -> bool:
            k = registry().kernels.get((kind, device))
            return bool(k is not None and k.fuses_activation)

    def folds(kind: str) -> bool:
        k = registry().kernels.get((kind, device))
        return bool(k is not None and k.applies_activation_only)

    def folds_into(kind: str) -> tuple[str, str] | None:
        k = registry().kernels.get((kind, device))
        names = None if k is None else getattr(k, "folds_channel_affine", None)
        if names is not None and not (isinstance(names, tuple) and len(names) == 2
                                      and all(isinstance(n, str) for n in names)):
            raise PluginError(f"{k!r}.folds_channel_affine must be None or a (weight, bias) "
                              f"pair of parameter names, got {names!r}.")
        return names

    def is_affine(kind: str) -> bool:
        k = registry().kernels.get((kind, device))
        if k is None or not getattr(k, "applies_channel_affine", False):
            return False
        own = getattr(type(k), "channel_affine", None)
        if not callable(getattr(k, "channel_affine", None)) or own is Kernel.channel_affine:
            raise PluginError(f"{k!r} says applies_channel_affine but does not implement "
                              "channel_affine(call), the calls that write its inference "
                              "scale and shift.")
        return True

    def fused_graph() -> tuple[Graph, dict]:
        graph = lower(function)
        split_input_activations(graph, can_fuse)
        params = infer_shapes(graph)
        fuse_activations(graph, can_fuse, folds)
        return graph, params

    graph, params = fused_graph()
    inference_graph = None
    if any(is_affine(op.kind) for op in graph.ops):  # lowered again: the graphs share no op
        inference_graph, _ = fused_graph()
        fold_channel_affines(inference_graph, params, folds_into, is_affine)
        fuse_activations(inference_graph, can_fuse, folds)
        if len(inference_graph.ops) == len(graph.ops):
            inference_graph = None
    mode = conv_algorithm_mode()
    if device != "cpu":
        return Plan(function.name, graph, params, device, {}, mode,
                    inference_graph=inference_graph)
    inference = choose_conv_algorithms(inference_graph or graph, mode, training=False)
    training = choose_conv_algorithms(graph, mode)  # last: the layers record these
    return Plan(function.name, graph, params, device, training, mode, inference,
                inference_graph)
