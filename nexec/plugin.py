"""The public plugin API: everything a third-party package needs, and nothing internal.

A plugin package imports only this module (plus NumPy and Numba). It contributes through
``@hookimpl`` functions in one module, named in its ``pyproject.toml`` under the entry-point
group ``nexec``; nexec finds it when the registry is first used, with no import by the user::

    [project.entry-points.nexec]
    pooling = "nexec_pooling.plugin"

A plugin layer takes four pieces (``docs/plugins.md`` walks through a complete one):

1. a **layer description**, a :class:`Layer` subclass: constructor arguments,
   ``compute_output_shape`` (the feature shape, batch axis left out: a tuple of positive ints),
   ``param_specs`` (one :class:`ParamSpec` per parameter; ``trainable=False`` for state the
   optimizer must not touch, such as moving statistics) and ``get_config``. A layer that
   behaves differently in training sets ``has_training_mode = True``;
2. **kernel functions**: ``@kernel`` (``numba.njit(cache=True, nogil=True)``, see
   ``kernels/jit.py``) or
   ``@parallel_kernel`` functions over arrays that write into given outputs and never
   allocate;
3. an **op kernel**, a :class:`Kernel` subclass with ``layer_type`` (the layer's class name)
   and ``device``: ``workspaces`` asks for scratch memory (:class:`Workspace`; ``saved=True``
   keeps it from forward to backward, e.g. a dropout mask), ``forward`` and ``backward`` take
   a :class:`Call` (the arena views bound to one op; ``call.training`` says whether the
   executor trains, ``call.params`` holds every parameter, trainable or not) and return
   :data:`BoundCall` pairs ``(function, args)`` that every step then runs. An op kernel with
   ``fuses_activation = True`` applies ``call.activation`` (a code: ``LINEAR``, ``RELU``...)
   itself, with ``activation_forward``/``activation_backward`` or, inside its own Numba code,
   ``activate_row_inplace``/``activate_row_grad``;
4. the **hooks**: ``nexec_layers`` returns the layer classes, ``nexec_kernels`` the op kernel
   instances; ``nexec_activations`` (:class:`Activation` values, or a dict of names to
   fused codes), ``nexec_losses``, ``nexec_metrics``, ``nexec_optimizers``,
   ``nexec_initializers`` and ``nexec_devices`` contribute the other kinds, and
   ``nexec_onnx_exporters`` how the layers go into ``model.export(path, format="onnx")``.

Activations, losses and metrics need no kernels of their own: ``Activation(name,
forward=f, derivative=d)``, ``Loss(name, elementwise=(fn, dfn))`` and ``Metric(name,
elementwise=fn)`` take plain scalar Python functions that every device (CPU, CUDA) compiles
into its own kernels.

The plugin module declares the API it was written for: ``NEXEC_API_VERSION = "1.2"``. A
plugin for another major version is refused with a :class:`PluginWarning` naming it, and so
is one that fails to import, raises in a hook, or registers a name already taken; the rest of
nexec keeps working. ``nexec.plugins_info()`` and the ``nexec plugins`` command list what each
installed plugin registers and its errors.

Randomness (initial weights, a dropout mask's seed) comes from :func:`generator`, nexec's
stream seeded by ``nexec.set_random_seed``, so models stay reproducible.

Check kernels with :mod:`nexec.testing` (re-exported here as :data:`testing`):
``assert_close`` against a NumPy reference, ``numerical_gradient`` / ``check_gradients``
against central finite differences, ``model_gradients`` for a whole float64 model.

Example:
    >>> from nexec.plugin import API_VERSION, Layer, hookimpl
    >>> API_VERSION
    '1.2'
    >>> class Identity(Layer):
    ...     def compute_output_shape(self, input_shapes):
    ...         return input_shapes[0]
    >>> @hookimpl
    ... def nexec_layers():
    ...     return [Identity]
"""
from __future__ import annotations

import nexec.testing as testing
from nexec.activations import Activation
from nexec.devices.base import Device
from nexec.errors import PluginError, PluginWarning, ShapeError
from nexec.kernels.activations import CODES, LINEAR, RELU, SIGMOID, SOFTMAX, TANH, code_of
from nexec.kernels.cpu.activation import (
                                          activate_row_grad,
                                          activate_row_inplace,
                                          activation_backward,
                                          activation_forward,
)
from nexec.kernels.jit import kernel, parallel_kernel
from nexec.layers.base import Layer, ParamSpec, Shape
from nexec.layers.core import check_activation
from nexec.ops.base import BoundCall, Call, Kernel, Workspace, empty_like_skip, rows, view_2d
from nexec.ops.geometry import PADDINGS, conv2d_geometry, output_length, window_geometry_2d
from nexec.plugins.hookspecs import API_VERSION, compatible, hookimpl, hookspec
from nexec.random import generator
from nexec.training.losses import EPSILON, Loss, LossKernels
from nexec.training.metrics import Metric
from nexec.training.optimizers import Optimizer

__all__ = [
    # versions and hooks
    "API_VERSION", "compatible", "hookimpl", "hookspec",
    # layer descriptions
    "Layer", "ParamSpec", "Shape", "check_activation",
    # op kernels
    "Kernel", "Call", "Workspace", "BoundCall", "rows", "view_2d", "empty_like_skip",
    # convolution and pooling geometry
    "PADDINGS", "output_length", "window_geometry_2d", "conv2d_geometry",
    # kernel functions
    "kernel", "parallel_kernel",
    "LINEAR", "RELU", "SIGMOID", "TANH", "SOFTMAX", "CODES", "code_of",
    "activation_forward", "activation_backward", "activate_row_inplace", "activate_row_grad",
    # other contributions
    "Activation", "Loss", "LossKernels", "Metric", "EPSILON", "Optimizer", "Device",
    # randomness, errors, checks
    "generator", "ShapeError", "PluginError", "PluginWarning", "testing",
]
