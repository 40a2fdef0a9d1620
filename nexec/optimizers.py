"""Keras' ``optimizers`` namespace."""
from nexec.training.optimizers import SGD, Adam, Optimizer, RMSprop, get

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "get"]
