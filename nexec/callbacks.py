"""Keras' ``callbacks`` namespace."""
from nexec.training.callbacks import Callback, EarlyStopping, History

__all__ = ["Callback", "History", "EarlyStopping"]
