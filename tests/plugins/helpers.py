"""Shared checks of the plugin tests."""


def training_mode_gradients(model, x, y, loss, before_forward=None):
    """``nexec.testing.model_gradients`` with the loss evaluated in training mode (Dropout
    masks, batch statistics); ``before_forward`` rewinds random streams before each pass."""
    from nexec.testing import model_gradients

    return model_gradients(model, x, y, loss, training=True, before_forward=before_forward)
