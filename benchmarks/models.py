"""The benchmark workloads as nexec models, plus their data.

Shared by the asv suite (``bench_*.py``), ``nexec_peer.py`` (the nexec side of
``compare.py``) and ``tests/test_benchmarks_smoke.py``.

The models are the ones of ``workloads.py`` (a mirror of ``shared/peers/workloads.py``), built
with nexec's Keras API exactly as ``shared/peers/keras_peer.py`` builds them, and the data
come from the same ``make_data`` with the same seed, so nexec, PyTorch and Keras train on
the same arrays.

Small mode (``NEXEC_BENCH_SMALL=1`` in the environment, or ``models.SMALL = True``) shrinks
sample counts, kernel batch sizes and model depth so that every benchmark runs in well under
a second once kernels are compiled; the smoke test uses it. Benchmarks read sizes through the
functions here at ``setup`` time, never at import time, so flipping ``SMALL`` after import
works.
"""
from __future__ import annotations

import os

from benchmarks import workloads as W

__all__ = ["WORKLOADS", "PEER_WORKLOADS", "SMALL", "small", "spec", "input_shape", "data",
           "build", "compile_model", "warm_up_rows", "warm_up", "prepared", "kernel_batch",
           "gemm_flops_per_sample", "PLANNING_BLOCKS", "COMPARE_WORKLOADS"]

#: Workloads that PyTorch and Keras peers also implement (``shared/peers``).
PEER_WORKLOADS = ("seed_mlp", "wide_mlp", "cnn")
#: All workloads of the asv suite (the residual stack is nexec-only).
WORKLOADS = PEER_WORKLOADS + ("residual",)
#: Workloads ``compare.py`` runs: the peers' plus the ResNet-18-style network, whose peer
#: sides live in ``benchmarks/peers_resnet.py`` (not in the asv suite: seconds per epoch).
COMPARE_WORKLOADS = PEER_WORKLOADS + ("resnet18",)

SMALL = False
#: 50 residual blocks of 4 layers: the 200-layer model whose planning time is tracked.
PLANNING_BLOCKS = 50

_SPECS = {"seed_mlp": W.SEED_MLP, "wide_mlp": W.WIDE_MLP, "cnn": W.CNN, "residual": W.RESIDUAL,
          "resnet18": W.RESNET18}
_SMALL_N = {"seed_mlp": 232, "wide_mlp": 256, "cnn": 32, "residual": 256, "resnet18": 12}
_SMALL_BATCH = {"cnn": 16, "resnet18": 8}


def small() -> bool:
    """Whether benchmarks run on tiny sizes (smoke test)."""
    return bool(SMALL) or os.environ.get("NEXEC_BENCH_SMALL", "") not in ("", "0")


def spec(name: str) -> dict:
    """A copy of the workload's spec; ``n``, ``batch``, ``epochs`` shrunk in small mode."""
    s = dict(_SPECS[name])
    if small():
        s["n"] = _SMALL_N[name]
        s["batch"] = _SMALL_BATCH.get(name, s["batch"])
        s["epochs"] = 2
        if name == "residual":
            s["blocks"] = 2
    return s


def input_shape(name: str) -> tuple:
    s = _SPECS[name]
    return tuple(s["image"]) if "image" in s else (s["features"],)


def data(name: str) -> tuple:
    """``(x, y)`` float32, identical to the peers' (``make_data`` with the original spec)."""
    x, y = W.make_data(_SPECS[name], input_shape(name))
    n = spec(name)["n"]
    return x[:n], y[:n]


def _mlp(s: dict):
    from nexec import Input, Model, layers

    i = Input(shape=(s["features"],))
    x = i
    for h in s["hidden"]:
        x = layers.Dense(h, activation="relu")(x)
    return Model(i, layers.Dense(s["classes"], activation="softmax")(x))


def _cnn():
    from nexec import Input, Model, layers

    i = Input(shape=W.CNN["image"])

    def conv(f, k, s=1, act="relu"):
        return layers.Conv2D(f, k, strides=s, padding="same", activation=act)

    s = conv(32, 3)(i)
    m = layers.Concatenate()([conv(32, 1)(s), conv(32, 3)(conv(24, 1)(s)),
                              conv(16, 5)(conv(8, 1)(s))])
    d = conv(64, 3, 2)(m)
    d = layers.Activation("relu")(layers.Add()([d, conv(64, 3, act=None)(conv(64, 3)(d))]))
    d = conv(64, 3, 2)(d)
    return Model(i, layers.Dense(W.CNN["classes"], activation="softmax")(layers.Flatten()(d)))


def _residual(blocks: int, width: int = 256, classes: int = 10):
    from nexec import Input, Model, layers

    i = Input(shape=(width,))
    x = i
    for _ in range(blocks):
        h = layers.Dense(width, activation="relu")(x)
        h = layers.Dense(width)(h)
        x = layers.Activation("relu")(layers.Add()([x, h]))
    return Model(i, layers.Dense(classes, activation="softmax")(x))


def _resnet18(s: dict):
    """ResNet-18-style network of ``workloads.RESNET18`` (BasicBlocks, BN, projections): the
    Keras peer's code (``peers_resnet.functional_resnet``) with nexec's import."""
    from benchmarks.peers_resnet import functional_resnet
    from nexec import Input, Model, layers

    return functional_resnet(Input, Model, layers, s)


def build(name: str, blocks: int | None = None):
    """The uncompiled nexec model of workload ``name`` (weights seeded with 0).

    ``blocks`` overrides the residual stack's depth (the planning benchmark's 200 layers).
    """
    import nexec

    nexec.set_random_seed(0)
    if name in ("seed_mlp", "wide_mlp"):
        return _mlp(_SPECS[name])
    if name == "cnn":
        return _cnn()
    if name == "resnet18":
        return _resnet18(_SPECS[name])
    if name == "residual":
        return _residual(blocks if blocks is not None else spec(name)["blocks"],
                         W.RESIDUAL["width"], W.RESIDUAL["classes"])
    raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS + ('resnet18',))}")


def optimizer(s: dict):
    from nexec import optimizers

    if s["optimizer"] == "rmsprop":
        return optimizers.RMSprop(s["lr"])
    if s["optimizer"] == "adam":
        return optimizers.Adam(s["lr"])
    return optimizers.SGD(s["lr"], momentum=s["momentum"])


def jit_step() -> bool | str:
    """``compile(jit_step=...)`` of the benchmark models: ``NEXEC_BENCH_JIT_STEP`` (``1``/
    ``true``, ``auto``; default ``0``, the loop), so ``compare.py --nexec-env
    NEXEC_BENCH_JIT_STEP=1`` measures the whole-step compiler side by side with the peers."""
    value = os.environ.get("NEXEC_BENCH_JIT_STEP", "0").strip().lower()
    choices = {"0": False, "false": False, "1": True, "true": True, "auto": "auto"}
    if value not in choices:
        raise ValueError(f"NEXEC_BENCH_JIT_STEP must be one of {', '.join(choices)}; "
                         f"got {value!r}")
    return choices[value]


def compile_model(model, name: str):
    model.compile(optimizer=optimizer(_SPECS[name]), loss="categorical_crossentropy",
                  jit_step=jit_step())
    return model


def warm_up_rows(s: dict) -> int:
    """Rows that bind every program an epoch uses: one full batch plus the last, partial one."""
    rest = s["n"] % s["batch"]
    return min(s["n"], s["batch"] + rest)


def warm_up(model, x, y, s: dict) -> None:
    """JIT-compiles (or loads from Numba's cache) and binds everything one epoch and one
    predict pass run, on as few rows as possible."""
    k = warm_up_rows(s)
    model.fit(x[:k], y[:k], epochs=1, batch_size=s["batch"], verbose=0)
    model.predict(x[:k], batch_size=s["batch"])


def prepared(name: str):
    """``(model, x, y, spec)``: built, compiled, warmed up; ready to time."""
    s = spec(name)
    x, y = data(name)
    model = compile_model(build(name), name)
    warm_up(model, x, y, s)
    return model, x, y, s


def kernel_batch(n: int) -> int:
    """The batch size of a kernel benchmark (2 in small mode)."""
    return 2 if small() else n


# ----- arithmetic (for reading results: achieved GEMM rate vs the BLAS peak) ------------------

# (H, W, Cin, F, k, stride) of every convolution of the CNN, in order; "same" padding.
CNN_CONVS = [
    (32, 32, 3, 32, 3, 1),    # stem
    (32, 32, 32, 32, 1, 1),   # inception 1x1
    (32, 32, 32, 24, 1, 1),   # inception 1x1 -> 3x3
    (32, 32, 24, 32, 3, 1),
    (32, 32, 32, 8, 1, 1),    # inception 1x1 -> 5x5
    (32, 32, 8, 16, 5, 1),
    (32, 32, 80, 64, 3, 2),   # downsample
    (16, 16, 64, 64, 3, 1),   # residual branch
    (16, 16, 64, 64, 3, 1),
    (16, 16, 64, 64, 3, 2),   # downsample
]


def gemm_flops_per_sample(name: str) -> dict:
    """Multiply-add FLOPs (2 per MAC) per sample of the GEMMs (dense and im2col'd conv).

    ``forward``: the forward pass. ``training``: forward + weight gradient + input gradient
    (skipped for the first layer, whose input needs none). Elementwise work (bias,
    activations, im2col, optimizer) is not counted.
    """
    fwd: list[int] = []
    if name in ("seed_mlp", "wide_mlp", "residual"):
        s = _SPECS[name]
        if name == "residual":
            w = s["width"]
            dims = [(w, w)] * (2 * s["blocks"]) + [(w, s["classes"])]
        else:
            d = [s["features"], *s["hidden"], s["classes"]]
            dims = list(zip(d[:-1], d[1:]))
        fwd = [2 * a * b for a, b in dims]
    elif name == "cnn":
        for h, w, cin, f, k, st in CNN_CONVS:
            ho, wo = -(-h // st), -(-w // st)
            fwd.append(2 * ho * wo * k * k * cin * f)
        fwd.append(2 * 8 * 8 * 64 * W.CNN["classes"])
    else:
        raise ValueError(name)
    forward = sum(fwd)
    return {"forward": forward, "training": 2 * forward + sum(fwd[1:])}
