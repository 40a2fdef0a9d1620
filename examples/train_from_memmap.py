"""Training from a memory-mapped file on disk: the data never has to fit in memory.

Writes the 5,000 MNIST digits of ``nexec.datasets.mnist_5k`` (``pip install
nexec[datasets]``) to ``.npy`` files, opens them as memory maps, and trains a small CNN from
them: each batch's rows are read from disk and cast to float32 on a background thread while
the previous step runs; the whole array is never copied.

    python examples/train_from_memmap.py [directory] [--epochs N] [--repeat R]

``--repeat`` writes the images R times over (shifted by a pixel each time) to make a larger
file, e.g. ``--repeat 64`` for about 200 MB.
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import nexec
from nexec import Input, Model, layers
from nexec.datasets import mnist_5k


def write_memmaps(directory: str, repeat: int = 1) -> tuple[str, str]:
    """``x.npy`` (uint8, n x 28 x 28 x 1) and ``y.npy`` (uint8 labels), written row block by
    row block."""
    (x, y), _ = mnist_5k.load_data(test_split=0.2)
    x_path, y_path = os.path.join(directory, "x.npy"), os.path.join(directory, "y.npy")
    xs = np.lib.format.open_memmap(x_path, "w+", np.uint8, (len(x) * repeat, 28, 28, 1))
    ys = np.lib.format.open_memmap(y_path, "w+", np.uint8, (len(y) * repeat,))
    for r in range(repeat):
        xs[r * len(x):(r + 1) * len(x), :, :, 0] = np.roll(x, r % 3 - 1, axis=2) if r else x
        ys[r * len(y):(r + 1) * len(y)] = y
    xs.flush()
    ys.flush()
    del xs, ys
    return x_path, y_path


def build() -> Model:
    inputs = Input(shape=(28, 28, 1))
    h = layers.Rescaling(1 / 255)(inputs)
    h = layers.Conv2D(8, 3, activation="relu")(h)
    h = layers.MaxPooling2D(2)(h)
    h = layers.Flatten()(h)
    outputs = layers.Dense(10, activation="softmax")(h)
    model = Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", nargs="?", help="where to write the files (default: a "
                        "temporary directory)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    directory = args.directory or tempfile.mkdtemp(prefix="nexec-memmap-")
    os.makedirs(directory, exist_ok=True)
    x_path, y_path = write_memmaps(directory, args.repeat)
    x = np.load(x_path, mmap_mode="r")  # np.memmap: nothing read yet
    y = np.load(y_path, mmap_mode="r")
    print(f"{x_path}: {x.shape} {x.dtype}, {x.nbytes / 1e6:.0f} MB on disk")
    nexec.set_random_seed(0)
    model = build()
    model.fit(x, y, batch_size=64, epochs=args.epochs, validation_split=0.1, verbose=2)
    (_, _), (x_test, y_test) = mnist_5k.load_data(test_split=0.2)
    loss, acc = model.evaluate(x_test[..., None], y_test, verbose=0)
    print(f"test accuracy: {acc:.3f}")


if __name__ == "__main__":
    main()
