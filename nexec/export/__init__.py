"""Exporting a model for other runtimes: ``Model.export(path, format="onnx")``.

``nexec.export.onnx`` walks a model's graph and builds the ONNX file with the ``onnx``
package (``pip install 'nexec[onnx]'``); ``nexec.export.onnx_layers`` says how each built-in
layer becomes ONNX nodes, registered through the ``nexec_onnx_exporters`` plugin hook like any
plugin's. Importing this package imports neither ``onnx`` nor anything that needs it; the
planner and kernels know nothing of ONNX.
"""
from __future__ import annotations

import os
from typing import Any

from nexec.checks import ArgumentError, ArgumentTypeError

__all__ = ["FORMATS", "KERAS_FORMATS", "export_model"]

#: The formats nexec writes.
FORMATS = ("onnx",)
#: Keras 3's other formats, refused by name (no TensorFlow, OpenVINO, LiteRT or PyTorch here).
KERAS_FORMATS = ("tf_saved_model", "openvino", "litert", "torch")
#: Keyword arguments of ``export`` besides ``filepath``, ``format``, ``verbose`` and
#: ``input_signature``, by format.
_FORMAT_KWARGS = {"onnx": ("opset_version",)}


def export_model(model: Any, filepath: Any, format: Any = "onnx", verbose: Any = None,
                 input_signature: Any = None, **kwargs: Any) -> None:
    """Checks ``Model.export``'s arguments (Keras 3's spelling), then writes the file.

    Args:
        model: A built model.
        filepath: Where to write (a ``str`` or ``os.PathLike``), atomically.
        format: ``"onnx"``.
        verbose: Print where the file went (True); None or False print nothing.
        input_signature: Only None: the model's own input shapes and dtypes, with a dynamic
            batch axis.
        **kwargs: ``opset_version`` (format ``"onnx"``).

    Raises:
        ArgumentError, ArgumentTypeError: A bad argument, before anything is built.
        nexec.errors.ExportError: A layer that cannot be exported (nothing is written).
    """
    if not isinstance(format, str):
        raise ArgumentTypeError(f"Model.export: format must be a string, got {format!r}; "
                                f"nexec writes {', '.join(map(repr, FORMATS))}.")
    if format not in FORMATS:
        why = (" (a Keras format that needs TensorFlow, OpenVINO, LiteRT or PyTorch, which "
               "nexec does not use)" if format in KERAS_FORMATS else "")
        raise ArgumentError(f"Model.export: format={format!r} is not supported{why}; nexec "
                            f"writes {', '.join(map(repr, FORMATS))}.")
    if not isinstance(filepath, (str, os.PathLike)):
        raise ArgumentTypeError(f"Model.export: filepath must be a str or os.PathLike, got "
                                f"{type(filepath).__name__} ({filepath!r}).")
    if verbose is not None and not isinstance(verbose, bool):
        raise ArgumentTypeError(f"Model.export: verbose must be True, False or None, got "
                                f"{verbose!r}.")
    if input_signature is not None:
        raise ArgumentError("Model.export: input_signature is not supported (got "
                            f"{input_signature!r}); nexec exports the model's own input "
                            "shapes and dtypes, with a dynamic batch axis. Leave it None.")
    allowed = _FORMAT_KWARGS[format]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ArgumentError(f"Model.export: unknown argument(s) {', '.join(unknown)} for "
                            f"format={format!r}; accepted: filepath, format, verbose, "
                            f"input_signature, {', '.join(allowed)}.")
    from nexec.export.onnx import export_onnx

    path = os.fspath(filepath)
    opset = export_onnx(model, path, opset_version=kwargs.get("opset_version"))
    if verbose:
        print(f"Saved the ONNX model (opset {opset}) to {path}")
