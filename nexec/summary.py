"""``model.summary()``: the Keras table of layers, output shapes and parameter counts.

The table is built in ``nexec.model`` (``Model.summary`` needs it, and the model imports
nothing above itself); this module is its function form.
"""
from __future__ import annotations

from nexec.model import is_sequential_like, summary_text

__all__ = ["summary_text", "is_sequential_like"]
