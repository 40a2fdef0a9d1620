"""Shared checks of the plugin tests."""
import importlib.util

import numpy as np


def has_plugin(module: str) -> bool:
    return importlib.util.find_spec(module) is not None




def training_mode_gradients(model, x, y, loss, before_forward=lambda: None):
    """``nexec.testing.model_gradients`` whose ``loss_fn`` runs the *training* forward.

    (``model_gradients`` evaluates in inference mode, where Dropout is the identity and
    BatchNormalization uses moving statistics.) ``before_forward`` runs before every pass,
    e.g. to rewind a Dropout's random stream so each pass draws the same mask.
    """
    from nexec.testing import model_gradients
    from nexec.training.data import as_inputs, as_targets

    before_forward()
    _, grads = model_gradients(model, x, y, loss)
    trainer = model._trainer
    xs = as_inputs(x, model, trainer.dtype)
    ys = as_targets(y, model, trainer.losses, trainer.dtype)
    executor = trainer.train_executor

    def loss_fn():
        before_forward()
        prog = executor.program(len(xs[0]))
        for dst, src in zip(prog.inputs + prog.targets, xs + ys):
            np.copyto(dst, src)
        return executor.evaluate_step(prog, [0.0] * len(ys), [0] * len(prog.metrics))

    return loss_fn, grads
