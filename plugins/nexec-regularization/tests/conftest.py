import pytest

import nexec


@pytest.fixture(autouse=True)
def fresh_session():
    """Predictable auto-names and weights in every test."""
    nexec.clear_session()
    nexec.set_random_seed(1234)
    yield
    nexec.clear_session()


def training_mode_gradients(model, x, y, loss, before_forward=lambda: None):
    """Like ``nexec.testing.model_gradients``, but ``loss_fn`` runs the *training* forward.

    ``model_gradients`` evaluates the loss in inference mode, where Dropout is the identity
    and BatchNormalization uses its moving statistics, so it cannot check the training-mode
    backward of these layers. Here the analytic gradients come from one training step (SGD
    with learning rate 0) and ``loss_fn`` runs the training executor's forward and loss only;
    ``before_forward`` runs before each pass (e.g. rewinding a Dropout's random stream, so
    every pass draws the mask the gradients were computed with).
    """
    import numpy as np

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


@pytest.fixture
def train_grads():
    return training_mode_gradients
