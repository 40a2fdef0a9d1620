"""Dense + BatchNormalization + Dropout + Dense: trains, and the loss falls."""
import numpy as np

import nexec
from nexec import Input, Model, layers, optimizers


def test_dense_batchnorm_dropout_model_trains():
    nexec.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(96, 6)) * [1, 5, 0.2, 1, 3, 1] + 4).astype("float32")  # unscaled
    labels = ((x[:, 0] - 4) + (x[:, 1] - 4) / 5 > 0).astype(int)
    inp = Input(shape=(6,))
    h = layers.Dense(16)(inp)
    # momentum 0.9: the moving statistics settle within the 60 steps of this test
    h = layers.Activation("relu")(layers.BatchNormalization(momentum=0.9)(h))
    h = layers.Dropout(0.2, seed=3)(h)
    model = Model(inp, layers.Dense(2, activation="softmax")(h))
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, labels, epochs=10, batch_size=16, verbose=0,
                        validation_data=(x[:32], labels[:32]))
    losses = history.history["loss"]
    assert losses[-1] < 0.6 * losses[0], losses
    assert history.history["val_accuracy"][-1] > 0.75  # inference: moving statistics
