"""Keras' ``models`` namespace: building and loading whole models."""
from __future__ import annotations

from nexec.model import Model, Sequential
from nexec.saving import load_model, model_from_json

__all__ = ["Model", "Sequential", "model_from_json", "load_model"]
