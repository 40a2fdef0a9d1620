"""Keras' ``optimizers`` namespace (with ``optimizers.schedules``)."""
from nexec.training import schedules
from nexec.training.optimizers import (
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    Nadam,
    Optimizer,
    RMSprop,
    get,
)

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "Nadam", "Adamax", "Adagrad",
           "Adadelta", "Lion", "get", "schedules"]
