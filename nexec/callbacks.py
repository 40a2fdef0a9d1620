"""Keras' ``callbacks`` namespace."""
from nexec.training.callbacks import (
                                      BackupAndRestore,
                                      Callback,
                                      CSVLogger,
                                      EarlyStopping,
                                      History,
                                      LambdaCallback,
                                      LearningRateScheduler,
                                      ModelCheckpoint,
                                      ReduceLROnPlateau,
                                      TerminateOnNaN,
)

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "CSVLogger",
           "ReduceLROnPlateau", "LearningRateScheduler", "LambdaCallback", "TerminateOnNaN",
           "BackupAndRestore"]
