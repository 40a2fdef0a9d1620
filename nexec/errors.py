"""The exceptions nexec raises: each names the layer, tensor and shapes involved."""
from __future__ import annotations

__all__ = ["NexecError", "ShapeError", "GraphError", "PluginError", "PluginWarning",
           "DataError", "NotCompiledError", "SavedModelError", "ExportError"]


class NexecError(Exception):
    """Base of every error nexec raises on purpose."""


class ShapeError(NexecError, ValueError):
    """A layer was called on tensors whose shapes it cannot take."""


class GraphError(NexecError, ValueError):
    """A model's inputs and outputs do not form a valid graph."""


class PluginError(NexecError):
    """A plugin is broken or conflicts with another; the message names the plugin."""


class PluginWarning(UserWarning):
    """A plugin was skipped; the rest of nexec keeps working."""


class DataError(NexecError, ValueError):
    """Data given to fit/evaluate/predict does not match the model."""


class NotCompiledError(NexecError, RuntimeError):
    """Training was asked for before ``compile``."""


class SavedModelError(NexecError, ValueError):
    """A file given to ``load_model`` is not a model file this nexec can read."""


class ExportError(NexecError, ValueError):
    """A model cannot be exported (``Model.export``); nothing was written."""
