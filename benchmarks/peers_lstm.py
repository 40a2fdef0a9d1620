"""PyTorch and Keras sides of the LSTM sequence-classification workload (``LSTM_TEXT``).

    python benchmarks/peers_lstm.py pytorch [--threads 2]
    KERAS_BACKEND=jax python benchmarks/peers_lstm.py keras [--threads 2]

Written in the style of ``shared/peers`` (which is read-only here): the same model, data,
optimizer and batch size as ``benchmarks/bench_lstm.py``'s nexec side, one JSON line with the
peers' fields (median steady-state epoch, first epoch, median of 5 predict passes, peak RSS).
Model: float sequences (batch, 50 steps, 32 features) -> LSTM(64) -> Dense(2, softmax),
Adam(1e-3), categorical crossentropy; a stand-in for an Embedding(10000, 64) front end,
which this benchmark leaves out so only the recurrence is measured.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

LSTM_TEXT = dict(n=2048, steps=50, features=32, units=64, classes=2, batch=64, epochs=4,
                 optimizer="adam", lr=1e-3)


def make_data(spec: dict, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 sequences in [-1, 1); the label is whether the first feature sums above 0
    over the sequence (learnable, so the final loss says the peers train the same thing)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (spec["n"], spec["steps"], spec["features"])).astype(np.float32)
    labels = (x[:, :, 0].sum(1) > 0).astype(np.int64)
    return x, np.eye(spec["classes"], dtype=np.float32)[labels]


def peak_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def record(framework: str, version: str, threads: int, params: int, epochs: list[float],
           preds: list[float], final_loss: float, **extra: object) -> dict:
    spec = LSTM_TEXT
    steady = statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]
    p = statistics.median(preds)
    return dict(framework=framework, version=version, workload="lstm_text", threads=threads,
                params=params, first_epoch_s=epochs[0], epoch_s=steady,
                train_samples_per_s=spec["n"] / steady, predict_s=p,
                predict_samples_per_s=spec["n"] / p, final_loss=final_loss,
                peak_rss_mb=peak_rss_mb(), **extra)


def run_pytorch(threads: int) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = LSTM_TEXT

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(spec["features"], spec["units"], batch_first=True)
            self.head = nn.Linear(spec["units"], spec["classes"])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            _, (h, _) = self.lstm(x)
            return self.head(h[0])  # softmax lives in the loss

    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=spec["lr"], eps=1e-7)
    x, y = make_data(spec)
    xb, yb = torch.from_numpy(x), torch.from_numpy(y)
    epochs = []
    loss = torch.zeros(())
    for _ in range(spec["epochs"]):
        t = time.perf_counter()
        for i in range(0, len(xb), spec["batch"]):
            opt.zero_grad(set_to_none=True)
            logits = model(xb[i:i + spec["batch"]])
            loss = -(yb[i:i + spec["batch"]] * torch.log_softmax(logits, 1)).sum(1).mean()
            loss.backward()
            opt.step()
        epochs.append(time.perf_counter() - t)
    preds = []
    with torch.no_grad():
        for _ in range(5):
            t = time.perf_counter()
            for i in range(0, len(xb), spec["batch"]):
                torch.softmax(model(xb[i:i + spec["batch"]]), 1)
            preds.append(time.perf_counter() - t)
    return record("pytorch", torch.__version__, torch.get_num_threads(),
                  sum(p.numel() for p in model.parameters()), epochs, preds, float(loss))


def run_keras(threads: int) -> dict:
    import keras
    from keras import Input, Model, layers, optimizers

    keras.utils.set_random_seed(0)
    spec = LSTM_TEXT
    inp = Input(shape=(spec["steps"], spec["features"]))
    out = layers.Dense(spec["classes"], activation="softmax")(layers.LSTM(spec["units"])(inp))
    model = Model(inp, out)
    model.compile(optimizer=optimizers.Adam(spec["lr"]), loss="categorical_crossentropy")

    class Timer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):  # noqa: ANN001, ANN202
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # noqa: ANN001, ANN202
            self.times.append(time.perf_counter() - self.t)

    x, y = make_data(spec)
    timer = Timer()
    h = model.fit(x, y, epochs=spec["epochs"], batch_size=spec["batch"], verbose=0,
                  callbacks=[timer])
    preds = []
    for _ in range(5):
        t = time.perf_counter()
        model.predict(x, batch_size=spec["batch"], verbose=0)
        preds.append(time.perf_counter() - t)
    return record("keras", f"{keras.__version__}/{keras.backend.backend()}", threads,
                  model.count_params(), timer.times, preds, float(h.history["loss"][-1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("framework", choices=["pytorch", "keras"])
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(a.threads))
    r = run_pytorch(a.threads) if a.framework == "pytorch" else run_keras(a.threads)
    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
