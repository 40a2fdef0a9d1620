import pytest

import nexec


@pytest.fixture(autouse=True)
def fresh_session():
    """Predictable auto-names and weights in every test."""
    nexec.clear_session()
    nexec.set_random_seed(1234)
    yield
    nexec.clear_session()


def training_mode_gradients(model, x, y, loss, before_forward=None):
    """``nexec.testing.model_gradients`` with the loss evaluated in training mode (Dropout
    masks, batch statistics); ``before_forward`` rewinds random streams before each pass."""
    from nexec.testing import model_gradients

    return model_gradients(model, x, y, loss, training=True, before_forward=before_forward)


@pytest.fixture
def train_grads():
    return training_mode_gradients
