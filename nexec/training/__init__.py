"""Training: compile/fit/evaluate/predict, losses, optimizers, metrics, callbacks."""
