"""``nexec demo``: the tour a new user runs first; needs no network and nothing but nexec.

1. The seed example: one MLP built as ``Sequential`` and with the functional API, both
   summaries, then ten epochs on random data exactly as the classic example does.
2. Graphs, not stacks: an Inception + residual CNN trained on the UCI handwritten digits that
   ship with nexec (held-out test accuracy printed), and a two-input / two-output model with a
   loss per output.
3. Pictures: the CNN's graph (DOT, plus PNG where Graphviz is installed) and its memory plan
   (SVG), written to the output folder.

``--quick`` does the same on less data and fewer epochs, in seconds (for CI).
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

__all__ = ["run_demo", "digits_cnn", "two_headed_model"]


def _section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 76 - len(title)), flush=True)


def seed_models() -> tuple[Any, Any]:
    """The classic 64-32-32-10 MLP, as ``Sequential`` and as a functional ``Model``."""
    import nexec.layers as layers
    from nexec.layers.core import Input
    from nexec.model import Model, Sequential

    seq_model = Sequential(name="seed_sequential")
    seq_model.add(layers.Dense(32, activation="relu", input_shape=(64,)))
    seq_model.add(layers.Dense(32, activation="relu"))
    seq_model.add(layers.Dense(10, activation="softmax"))
    input_tensor = Input(shape=(64,))
    x = layers.Dense(32, activation="relu")(input_tensor)
    x = layers.Dense(32, activation="relu")(x)
    output_tensor = layers.Dense(10, activation="softmax")(x)
    return seq_model, Model(input_tensor, output_tensor, name="seed_functional")


def digits_cnn() -> Any:
    """An Inception module (three parallel branches joined by ``Concatenate``) and a residual
    block (joined by ``Add``) for 8x8 grey images, 10 classes."""
    import nexec.layers as layers
    from nexec.layers.core import Input
    from nexec.model import Model

    image = Input(shape=(8, 8, 1), name="image")
    stem = layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(image)
    branch_1 = layers.Conv2D(16, 1, activation="relu", name="branch_1x1")(stem)
    branch_3 = layers.Conv2D(12, 1, activation="relu", name="branch_3x3_reduce")(stem)
    branch_3 = layers.Conv2D(16, 3, padding="same", activation="relu", name="branch_3x3")(branch_3)
    branch_5 = layers.Conv2D(4, 1, activation="relu", name="branch_5x5_reduce")(stem)
    branch_5 = layers.Conv2D(8, 5, padding="same", activation="relu", name="branch_5x5")(branch_5)
    mixed = layers.Concatenate(name="inception")([branch_1, branch_3, branch_5])  # 40 channels
    down = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu",
                         name="downsample")(mixed)                                 # 4x4x32
    y = layers.Conv2D(32, 3, padding="same", activation="relu", name="residual_a")(down)
    y = layers.Conv2D(32, 3, padding="same", name="residual_b")(y)
    y = layers.Activation("relu", name="residual_relu")(layers.Add(name="residual")([y, down]))
    digit = layers.Dense(10, activation="softmax", name="digit")(layers.Flatten()(y))
    return Model(image, digit, name="inception_residual_cnn")


def two_headed_model() -> Any:
    """Two inputs (the pixels, and the ink per image row) and two outputs (which digit, and
    whether it is even), each output with its own loss."""
    import nexec.layers as layers
    from nexec.layers.core import Input
    from nexec.model import Model

    pixels = Input(shape=(64,), name="pixels")
    row_ink = Input(shape=(8,), name="row_ink")
    features = layers.Concatenate(name="features")([
        layers.Dense(32, activation="relu", name="pixel_features")(pixels),
        layers.Dense(8, activation="relu", name="row_features")(row_ink)])
    digit = layers.Dense(10, activation="softmax", name="digit")(features)
    even = layers.Dense(1, activation="sigmoid", name="even")(features)
    return Model([pixels, row_ink], [digit, even], name="two_headed")


def run_demo(quick: bool = False, out_dir: str = "nexec-demo", verbose: Any = "auto") -> dict:
    """Runs the tour and returns what it measured (``test_accuracy``, picture paths).

    Args:
        quick: Seconds instead of a minute: fewer samples and epochs.
        out_dir: Folder for the pictures (created when missing).
        verbose: Progress bar setting passed to ``fit`` (Keras' values).
    """
    from nexec.datasets import digits
    from nexec.optimizers import Adam
    from nexec.plot import plot_model
    from nexec.random import set_random_seed
    from nexec.utils import to_categorical

    started = time.perf_counter()
    set_random_seed(0)

    _section("1. The seed example: one MLP, two ways of writing it")
    seq_model, model = seed_models()
    seq_model.summary()
    model.summary()
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    x_train = np.random.random((1000, 64))
    y_train = np.random.random((1000, 10))
    model.fit(x_train, y_train, epochs=2 if quick else 10, batch_size=128, verbose=verbose)

    _section("2. Graphs, not stacks: Inception + residual CNN on handwritten digits")
    (x_tr, y_tr), (x_te, y_te) = digits.load_data()
    if quick:
        x_tr, y_tr = x_tr[:512], y_tr[:512]
    images_tr = (x_tr / 16.0).astype(np.float32)[..., None]
    images_te = (x_te / 16.0).astype(np.float32)[..., None]
    print(f"UCI digits: {len(x_tr)} training and {len(x_te)} held-out test images, 8x8 grey.")
    cnn = digits_cnn()
    cnn.summary()
    cnn.compile(optimizer=Adam(1e-3), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])
    cnn.fit(images_tr, y_tr, epochs=3 if quick else 12, batch_size=32, validation_split=0.1,
            verbose=verbose)
    _, accuracy = cnn.evaluate(images_te, y_te, verbose=0)
    print(f"Test accuracy on {len(x_te)} held-out digits: {accuracy:.2%}")

    heads = two_headed_model()
    heads.summary()
    heads.compile(optimizer="adam",
                  loss={"digit": "categorical_crossentropy", "even": "binary_crossentropy"},
                  loss_weights={"digit": 1.0, "even": 0.5},
                  metrics={"digit": ["accuracy"], "even": ["accuracy"]})
    flat_tr = (x_tr / 16.0).reshape(len(x_tr), 64).astype(np.float32)
    row_ink = lambda x: (x.sum(axis=2) / 128.0).astype(np.float32)  # noqa: E731
    heads.fit({"pixels": flat_tr, "row_ink": row_ink(x_tr)},
              {"digit": to_categorical(y_tr, 10), "even": (y_tr % 2 == 0).astype(np.float32)},
              epochs=2 if quick else 8, batch_size=32, verbose=verbose)

    _section("3. Pictures")
    os.makedirs(out_dir, exist_ok=True)
    written = {"graph_dot": os.path.join(out_dir, "cnn.dot"),
               "memory_plan": os.path.join(out_dir, "cnn_memory.svg")}
    plot_model(cnn, written["graph_dot"], show_shapes=True, show_layer_activations=True)
    try:
        written["graph_png"] = os.path.join(out_dir, "cnn.png")
        plot_model(cnn, written["graph_png"], show_shapes=True, show_layer_activations=True)
    except ImportError as e:
        del written["graph_png"]
        print(f"(no PNG of the graph: {e})")
    plan = cnn.memory_plan(batch_size=32, training=True)
    plan.plot(written["memory_plan"])
    print(f"The CNN's graph:           {written.get('graph_png', written['graph_dot'])}")
    print(f"Its training memory plan:  {written['memory_plan']}  ({plan.arena_bytes / 2**20:.2f}"
          f" MiB arena; without reuse {plan.naive_bytes / 2**20:.2f} MiB)")
    print(f"\nDone in {time.perf_counter() - started:.1f} s. Next: docs/tutorial.md")
    return {"test_accuracy": float(accuracy), **written}
