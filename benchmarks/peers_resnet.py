"""PyTorch, Keras and ONNX Runtime sides of the ResNet-18-style workload (``RESNET18``).

    python benchmarks/peers_resnet.py pytorch [--threads 2]
    python benchmarks/peers_resnet.py keras [--threads 2]        # Keras 3, any backend
    python benchmarks/peers_resnet.py onnxruntime [--threads 2]  # inference only
    python benchmarks/peers_resnet.py pytorch --params-only      # counts, no timing

Written in the style of ``shared/peers`` (which is read-only here), one JSON line with the
peers' fields (median steady-state epoch, first epoch, median of 5 predict passes, peak
RSS). The spec and data come from ``benchmarks/workloads.py`` (``RESNET18``, ``make_data``),
loaded by path so this script needs neither nexec nor the ``benchmarks`` package: it runs
under another interpreter (a TensorFlow virtualenv) too. ``benchmarks/models.py`` builds
the same network in nexec.

"same" padding follows Keras/TF (odd padding goes to the bottom/right), so the PyTorch
model pads explicitly where PyTorch's symmetric ``padding=`` would differ (the stride-2
convolutions and the max pool); BatchNorm uses Keras' epsilon 1e-3 and momentum 0.99
(PyTorch ``momentum=0.01``). ONNX Runtime runs the PyTorch model exported in eval mode with
the softmax, as ``shared/peers/ort_peer.py`` does for the other workloads, but through
torch's ``dynamo=True`` exporter, which folds those pads into the Conv nodes (after ORT's
optimisations the graph is 20 Conv, 1 MaxPool, no Pad). ``params`` counts
every weight including BatchNorm's moving statistics (Keras' ``count_params``); PyTorch's
``num_batches_tracked`` is not a weight and is left out.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

FRAMEWORKS = ("pytorch", "keras", "onnxruntime")


def _workloads():  # noqa: ANN202
    path = Path(__file__).resolve().with_name("workloads.py")
    spec = importlib.util.spec_from_file_location("_nexec_bench_workloads", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


W = _workloads()
RESNET18 = W.RESNET18


def same_padding(size: int, k: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of Keras' "same" for one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def data(channels_first: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The workload's float32 images (NHWC, or NCHW for PyTorch/ONNX) and one-hot labels."""
    x, y = W.make_data(RESNET18, RESNET18["image"])
    if channels_first:
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x, y


def record(framework: str, version: str, threads: int, params: int, trainable: int,
           epochs: list[float] | None, preds: list[float], final_loss: float | None) -> dict:
    n = RESNET18["n"]
    p = statistics.median(preds)
    r = dict(framework=framework, version=version, workload="resnet18", threads=threads,
             params=params, trainable_params=trainable, predict_s=p,
             predict_samples_per_s=n / p)
    if epochs:  # a training peer; ONNX Runtime's process also holds torch: no peak RSS
        r["peak_rss_mb"] = W.peak_rss_mb()
        steady = statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]
        r.update(first_epoch_s=epochs[0], epoch_s=steady, train_samples_per_s=n / steady,
                 final_loss=final_loss)
    return r


# ----------------------------------------------------------------------------- PyTorch


def torch_model():  # noqa: ANN201
    """The network in PyTorch (NCHW), padded like Keras' "same"; logits (softmax in loss)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    s = RESNET18
    eps, momentum = s["bn_epsilon"], 1.0 - s["bn_momentum"]

    class ConvBN(nn.Module):
        def __init__(self, cin: int, cout: int, k: int, stride: int, size: int,
                     relu: bool) -> None:
            super().__init__()
            self.pad = same_padding(size, k, stride)
            sym = self.pad[0] == self.pad[1]
            self.explicit = None if sym else (self.pad[0], self.pad[1]) * 2
            self.conv = nn.Conv2d(cin, cout, k, stride=stride, bias=False,
                                  padding=self.pad[0] if sym else 0)
            self.bn = nn.BatchNorm2d(cout, eps=eps, momentum=momentum)
            self.relu = relu
            self.out = -(-size // stride)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.explicit is not None:
                x = F.pad(x, self.explicit)
            x = self.bn(self.conv(x))
            return torch.relu(x) if self.relu else x

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, size: int) -> None:
            super().__init__()
            self.a = ConvBN(cin, cout, 3, stride, size, True)
            self.b = ConvBN(cout, cout, 3, 1, self.a.out, False)
            self.short = ConvBN(cin, cout, 1, stride, size, False) if stride != 1 else None
            self.out = self.a.out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            short = x if self.short is None else self.short(x)
            return torch.relu(self.b(self.a(x)) + short)

    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            h, _, c = s["image"]
            k, st = s["stem"]
            self.stem = ConvBN(c, s["widths"][0], k, st, h, True)
            size = self.stem.out
            # Keras' "same" max pool pads only after (0, 1 here): ceil_mode's partial last
            # window is exactly that, without a Pad node in the ONNX graph.
            assert same_padding(size, 3, 2)[0] == 0
            size = -(-size // 2)
            blocks, cin = [], s["widths"][0]
            for stage, (width, n) in enumerate(zip(s["widths"], s["blocks"])):
                for b in range(n):
                    blk = Block(cin, width, 2 if stage > 0 and b == 0 else 1, size)
                    blocks.append(blk)
                    size, cin = blk.out, width
            self.blocks = nn.Sequential(*blocks)
            self.head = nn.Linear(cin, s["classes"])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            x = F.max_pool2d(x, 3, 2, ceil_mode=True)
            x = self.blocks(x)
            return self.head(x.mean((2, 3)))

    return ResNet()


def torch_counts(model) -> tuple[int, int]:  # noqa: ANN001
    """(every weight incl. BN moving statistics, trainable) of a PyTorch module."""
    trainable = sum(p.numel() for p in model.parameters())
    moving = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean",
                                                                           "running_var")))
    return trainable + moving, trainable


def run_pytorch(threads: int, params_only: bool = False) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    s = RESNET18
    model = torch_model()
    total, trainable = torch_counts(model)
    if params_only:
        return dict(framework="pytorch", workload="resnet18", params=total,
                    trainable_params=trainable)
    opt = torch.optim.SGD(model.parameters(), lr=s["lr"], momentum=s["momentum"])
    x, y = data(channels_first=True)
    xb, yb = torch.from_numpy(x), torch.from_numpy(y)
    b = s["batch"]
    epochs = []
    loss = torch.zeros(())
    model.train()
    for _ in range(s["epochs"]):
        t = time.perf_counter()
        for i in range(0, len(xb), b):
            opt.zero_grad(set_to_none=True)
            logits = model(xb[i:i + b])
            loss = -(yb[i:i + b] * torch.log_softmax(logits, 1)).sum(1).mean()
            loss.backward()
            opt.step()
        epochs.append(time.perf_counter() - t)
    model.eval()
    preds = []
    with torch.no_grad():
        for _ in range(5):
            t = time.perf_counter()
            for i in range(0, len(xb), b):
                torch.softmax(model(xb[i:i + b]), 1)
            preds.append(time.perf_counter() - t)
    return record("pytorch", torch.__version__, torch.get_num_threads(), total, trainable,
                  epochs, preds, float(loss))


# ----------------------------------------------------------------------------- ONNX Runtime


def run_onnxruntime(threads: int) -> dict:
    import onnxruntime as ort
    import torch

    torch.manual_seed(0)
    s = RESNET18
    model = torch_model().eval()
    total, trainable = torch_counts(model)

    class WithSoftmax(torch.nn.Module):
        def __init__(self, m: torch.nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.m(x), 1)

    x, _ = data(channels_first=True)
    b = s["batch"]
    # The torch.export-based exporter (onnxscript) folds the explicit "same" pads into the
    # Conv nodes' pads; the TorchScript one leaves Pad nodes that ORT does not fuse.
    net, example = WithSoftmax(model).eval(), (torch.from_numpy(x[:b]),)
    prog = torch.onnx.export(net, example, dynamo=True, input_names=["x"], output_names=["p"],
                             dynamic_shapes={"x": {0: torch.export.Dim("n")}}, verbose=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(prog.model_proto.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    with torch.no_grad():  # the export computes what PyTorch computes
        np.testing.assert_allclose(sess.run(None, {"x": x[:b]})[0], net(*example).numpy(),
                                   atol=1e-5)
    for i in range(0, len(x), b):  # warm-up pass
        sess.run(None, {"x": x[i:i + b]})
    preds = []
    for _ in range(5):
        t = time.perf_counter()
        for i in range(0, len(x), b):
            sess.run(None, {"x": x[i:i + b]})
        preds.append(time.perf_counter() - t)
    return record("onnxruntime", ort.__version__, threads, total, trainable, None, preds, None)


# ----------------------------------------------------------------------------- Keras


def functional_resnet(Input, Model, layers, s: dict = RESNET18):  # noqa: ANN001, ANN201, N803
    """The network in the Keras functional API of whichever library gives ``Input``,
    ``Model`` and ``layers`` (Keras 3 here, nexec in ``benchmarks/models.py``: the same code,
    another import), NHWC."""
    def conv_bn(x, filters: int, k: int, stride: int = 1, relu: bool = True):  # noqa: ANN001, ANN202
        x = layers.Conv2D(filters, k, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=s["bn_momentum"], epsilon=s["bn_epsilon"])(x)
        return layers.Activation("relu")(x) if relu else x

    i = Input(shape=s["image"])
    k, st = s["stem"]
    x = conv_bn(i, s["widths"][0], k, st)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage, (width, blocks) in enumerate(zip(s["widths"], s["blocks"])):
        for b in range(blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            h = conv_bn(x, width, 3, stride)
            h = conv_bn(h, width, 3, relu=False)
            short = conv_bn(x, width, 1, stride, relu=False) if stride != 1 else x
            x = layers.Activation("relu")(layers.Add()([h, short]))
    x = layers.GlobalAveragePooling2D()(x)
    return Model(i, layers.Dense(s["classes"], activation="softmax")(x))


def keras_model():  # noqa: ANN201
    """The network in Keras 3."""
    from keras import Input, Model, layers

    return functional_resnet(Input, Model, layers)


def run_keras(threads: int, params_only: bool = False) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    keras.utils.set_random_seed(0)
    s = RESNET18
    model = keras_model()
    total = model.count_params()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    if params_only:
        return dict(framework="keras", workload="resnet18", params=total,
                    trainable_params=trainable,
                    weight_shapes=sorted(list(map(int, w.shape)) for w in model.weights))
    model.compile(optimizer=keras.optimizers.SGD(s["lr"], momentum=s["momentum"]),
                  loss="categorical_crossentropy")

    class Timer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):  # noqa: ANN001, ANN202
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # noqa: ANN001, ANN202
            self.times.append(time.perf_counter() - self.t)

    x, y = data()
    timer = Timer()
    h = model.fit(x, y, epochs=s["epochs"], batch_size=s["batch"], verbose=0,
                  callbacks=[timer])
    preds = []
    for _ in range(5):
        t = time.perf_counter()
        model.predict(x, batch_size=s["batch"], verbose=0)
        preds.append(time.perf_counter() - t)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        backend = f"tf{tf.__version__}"
    return record("keras", f"{keras.__version__}/{backend}", threads, total,
                  trainable, timer.times, preds, float(h.history["loss"][-1]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("framework", choices=FRAMEWORKS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--params-only", action="store_true",
                    help="print the parameter counts (pytorch, keras) without training")
    a = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(a.threads))
    if a.framework == "pytorch":
        r = run_pytorch(a.threads, a.params_only)
    elif a.framework == "keras":
        r = run_keras(a.threads, a.params_only)
    else:
        r = run_onnxruntime(a.threads)
    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
