"""Compiling nexec's kernels ahead of time (``nexec warmup``, :func:`warmup`).

Numba compiles each kernel the first time a process calls it with new argument types and
keeps the machine code in its cache on disk, so only the first run after an install pays
(seconds for a small model, tens for a CNN). ``warmup`` pays it up front, e.g. in a Docker
build step: it builds small models that together use every built-in layer, loss, optimizer
and metric, and binds their training, evaluation and inference programs, which compiles
the kernels with the argument types real models of the same dtype bind (including the
row-strided outputs of layers writing into a ``Concatenate``). A model that lays its arrays
out in a way none of these models does can still compile a variant at its first fit.

Where the cache lives: Numba's, ``NUMBA_CACHE_DIR`` if set, else ``__pycache__`` beside the
kernel sources (inside the installed ``nexec`` package), or, where that is not writable, a
per-user folder (``~/.cache/numba``-like, see Numba's docs on caching);
:func:`cache_locations` says which. The whole-step compiler's generated steps (one per model,
so not warmed here) go to ``NEXEC_CACHE_DIR`` (default ``~/.cache/nexec``). A warm cache is
valid for the same nexec sources, Numba version and CPU; in a Docker image, run the warm-up
as the user (and with the ``NUMBA_CACHE_DIR``) that will run the models.

Numba holds one global compiler lock (threads gain nothing); the kernels each model binds are
shared out to helper processes (``nexec.runtime.compile_workers``), which save to the same
cache (``nexec.kernels.cache_index`` makes that safe).
"""
from __future__ import annotations

import sys
import time
from typing import IO, Any, Callable, Sequence

import numpy as np

from nexec.checks import ArgumentError

__all__ = ["GROUPS", "warmup", "cache_locations"]

#: Rows per batch of the warm-up data (more than one, so no array is both C and F ordered).
_BATCH = 4


def _fit_all(model: Any, x: Any, y: Any, loss: str = "categorical_crossentropy",
             optimizer: Any = "rmsprop", metrics: Any = ("accuracy",)) -> None:
    """Compiles ``model`` and binds (so compiles) its training, evaluation and inference
    programs by running one tiny step of each."""
    model.compile(optimizer=optimizer, loss=loss, metrics=list(metrics))
    model.fit(x, y, batch_size=_BATCH, epochs=1, verbose=0, shuffle=False)
    model.evaluate(x, y, batch_size=_BATCH, verbose=0)
    model.predict(x, batch_size=_BATCH, verbose=0)


def _data(shape: tuple, dtype: str, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((_BATCH, *shape)).astype(dtype)
    y = np.eye(classes, dtype=dtype)[rng.integers(0, classes, _BATCH)]
    return x, y


def _head(t: Any, classes: int = 3, activation: str = "softmax") -> Any:
    import nexec.layers as layers

    return layers.Dense(classes, activation=activation)(t)


def _slices(layers: Any, t: Any, make: Callable[[], Any]) -> Any:
    """Two layers made by ``make`` writing into one ``Concatenate``: their outputs are then
    row-strided slices of its buffer, a second specialisation of their kernels (only when
    nothing else reads them: the planner copies a tensor that is also read elsewhere)."""
    return layers.Concatenate()([make()(t), make()(t)])


def _seed(dtype: str) -> None:
    """The quickstart's MLP: Dense + ReLU, softmax, categorical cross-entropy, RMSprop."""
    import nexec.layers as layers
    from nexec.layers.core import Input
    from nexec.model import Model

    i = Input(shape=(8,), dtype=dtype)
    h = layers.Dense(6, activation="relu")(layers.Dense(6, activation="relu")(i))
    _fit_all(Model(i, _head(h)), *_data((8,), dtype))


def _dense(dtype: str) -> None:
    """Dense with each kind of activation, activation layers, normalisation, noise, merges."""
    import nexec.layers as layers
    from nexec.layers.core import Input
    from nexec.model import Model

    i = Input(shape=(8,), dtype=dtype)
    h = layers.Dense(6, activation="tanh")(layers.Rescaling(0.5)(i))
    a = layers.Dense(6, activation="sigmoid")(layers.Dropout(0.2)(h))
    b = layers.Dense(6, activation="elu", use_bias=False)(layers.GaussianNoise(0.1)(h))
    c = layers.BatchNormalization()(layers.Dense(6)(h))
    d = layers.LayerNormalization()(layers.ReLU()(c))
    e = layers.PReLU()(layers.LeakyReLU()(layers.ELU()(a)))
    merged = [layers.Add()([a, b]), layers.Subtract()([a, b]), layers.Multiply()([b, c]),
              layers.Average()([c, d]), layers.Maximum()([d, e]), layers.Minimum()([e, a]),
              layers.Dot(axes=1)([a, b])]
    h = layers.Concatenate()(merged)
    h = layers.Activation("gelu")(layers.Dense(6, activation="swish")(h))
    h = _slices(layers, h, lambda: layers.Dense(4, activation="relu"))
    out = layers.Softmax()(layers.Dense(3)(h))
    _fit_all(Model(i, out), *_data((8,), dtype))


def _losses(dtype: str) -> None:
    """Every built-in loss (with its fused softmax/sigmoid gradient where it has one) and
    the metrics Keras picks for it."""
    from nexec.layers.core import Input
    from nexec.model import Model
    from nexec.training.losses import BUILTIN_LOSSES

    for loss in BUILTIN_LOSSES:
        name = loss.name
        activation = {"categorical_crossentropy": "softmax",
                      "sparse_categorical_crossentropy": "softmax",
                      "binary_crossentropy": "sigmoid"}.get(name, "softplus")
        i = Input(shape=(5,), dtype=dtype)
        model = Model(i, _head(i, activation=activation))
        x, y = _data((5,), dtype)
        if loss.sparse:
            y = np.argmax(y, axis=1)
        metrics = ["accuracy"] if "crossentropy" in name else ["mae", "mse"]
        _fit_all(model, x, y, loss=name, metrics=metrics)
    i = Input(shape=(5,), dtype=dtype)  # the remaining metrics, on a binary output
    x, y = _data((5,), dtype, classes=1)
    _fit_all(Model(i, _head(i, 1, "sigmoid")), x, y, loss="binary_crossentropy",
             metrics=["binary_accuracy", "precision", "recall", "auc", "rmse"])
    i = Input(shape=(5,), dtype=dtype)
    _fit_all(Model(i, _head(i, 6)), *_data((5,), dtype, classes=6),
             metrics=["top_k_categorical_accuracy"])


def _optimizers(dtype: str) -> None:
    """Every built-in optimizer's update."""
    from nexec.layers.core import Input
    from nexec.model import Model
    from nexec.training.optimizers import BUILTIN_OPTIMIZERS

    for name in BUILTIN_OPTIMIZERS:
        i = Input(shape=(5,), dtype=dtype)
        _fit_all(Model(i, _head(i)), *_data((5,), dtype), optimizer=name, metrics=())


def _conv2d(dtype: str) -> None:
    """Images: the 2-D convolutions (each algorithm the default cost model may choose:
    ``nexec.planner.algorithms``), pooling, padding, resizing and reshaping layers."""
    from nexec.planner.algorithms import use_conv_algorithm

    for mode in ("im2col", "direct", "winograd", "toeplitz"):
        with use_conv_algorithm(mode):
            _fit_all(*_images(dtype))


def _images(dtype: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """:func:`_conv2d`'s model and data."""
    import nexec.layers as layers
    from nexec.layers.core import Input
    from nexec.model import Model

    i = Input(shape=(8, 8, 2), dtype=dtype)
    h = layers.Conv2D(4, 3, padding="same", activation="relu")(i)
    h = layers.BatchNormalization()(layers.Conv2D(4, 1)(h))
    a = layers.Conv2D(4, 3, strides=2, padding="same")(h)  # the others: 4x4 too
    b = layers.AveragePooling2D()(layers.DepthwiseConv2D(3, padding="same")(h))
    c = layers.MaxPooling2D()(layers.SeparableConv2D(4, 3, padding="same")(h))
    d = layers.Cropping2D(1)(layers.ZeroPadding2D(1)(layers.Conv2DTranspose(4, 3, strides=2,
                                                                            padding="same")(a)))
    d = layers.SpatialDropout2D(0.2)(layers.MaxPooling2D(4)(layers.UpSampling2D()(d)))
    h = layers.Concatenate()([layers.Add()([a, b]), c, d])
    h = _slices(layers, h, lambda: layers.Conv2D(3, 3, padding="same", activation="relu"))
    h = _slices(layers, h, lambda: layers.Conv2D(3, 1, activation="relu"))
    g = layers.Concatenate()([layers.GlobalAveragePooling2D()(h),
                              layers.GlobalMaxPooling2D()(h)])
    f = layers.Flatten()(layers.Permute((2, 1, 3))(layers.Reshape((4, 2, 12))(h)))
    return (Model(i, _head(layers.Concatenate()([f, g]))), *_data((8, 8, 2), dtype))


def _conv1d(dtype: str) -> None:
    """Sequences of vectors: 1-D convolutions, pooling and padding."""
    import nexec.layers as layers
    from nexec.layers.core import Input
    from nexec.model import Model

    i = Input(shape=(8, 3), dtype=dtype)
    h = layers.Conv1D(4, 3, padding="same", activation="relu")(layers.ZeroPadding1D(1)(i))
    h = layers.SpatialDropout1D(0.2)(layers.MaxPooling1D()(h))
    h = layers.AveragePooling1D()(layers.Conv1D(4, 3, padding="valid")(h))
    h = _slices(layers, h, lambda: layers.Conv1D(3, 3, padding="same", activation="relu"))
    g = layers.Concatenate()([layers.GlobalAveragePooling1D()(h),
                              layers.GlobalMaxPooling1D()(h)])
    _fit_all(Model(i, _head(g)), *_data((8, 3), dtype))


def _recurrent(dtype: str) -> None:
    """Token ids and recurrent layers: Embedding, LSTM, GRU, SimpleRNN, Bidirectional,
    TimeDistributed, RepeatVector."""
    import nexec.layers as layers
    from nexec.layers.core import Input
    from nexec.model import Model

    i = Input(shape=(6,), dtype="int32")
    e = layers.Embedding(20, 4, dtype=dtype)(i)
    a = layers.LSTM(4, return_sequences=True)(e)
    b = layers.GRU(4)(a)
    c = layers.SimpleRNN(4)(layers.TimeDistributed(layers.Dense(3))(e))
    d = layers.Bidirectional(layers.LSTM(3))(layers.RepeatVector(3)(b))
    model = Model(i, _head(layers.Concatenate()([b, c, d])))
    _, y = _data((1,), dtype)
    x = np.random.default_rng(0).integers(0, 20, (_BATCH, 6)).astype(np.int32)
    _fit_all(model, x, y)


#: What :func:`warmup` can compile, by name, in the order it does.
GROUPS: dict[str, Callable[[str], None]] = {
    "seed": _seed, "dense": _dense, "losses": _losses, "optimizers": _optimizers,
    "conv2d": _conv2d, "conv1d": _conv1d, "recurrent": _recurrent}


def cache_locations() -> dict[str, str]:
    """Where compiled kernels are kept: ``{"numba": folder, "wholestep": folder}``."""
    from numba import config

    from nexec.kernels.cpu.dense import dense_forward
    from nexec.runtime.wholestep import cache_dir

    cache = getattr(dense_forward, "_cache", None)  # Numba's FunctionCache of one kernel
    numba_dir = getattr(config, "CACHE_DIR", "") or getattr(cache, "_cache_path", "")
    return {"numba": str(numba_dir), "wholestep": str(cache_dir())}


def warmup(groups: Sequence[str] | None = None, dtypes: Sequence[str] = ("float32",),
           verbose: int = 1, stream: IO[str] | None = None) -> dict[str, float]:
    """Compiles (and caches on disk) the kernels of nexec's built-in layers, losses,
    optimizers and metrics, so a later process's first ``fit`` only loads them.

    Args:
        groups: Names from :data:`GROUPS` (default: all of them).
        dtypes: Float dtypes to compile for: ``"float32"`` (the default dtype of models)
            and/or ``"float64"``.
        verbose: 1 prints one line per group as it finishes and where the cache lives;
            0 prints nothing.
        stream: Where those lines go (standard output by default).

    Returns:
        Seconds spent per ``"group/dtype"``.

    Raises:
        ArgumentError: An unknown group or dtype.
    """
    from nexec.graph import clear_session
    from nexec.kernels.jit import generic_kernels
    from nexec.runtime import compiling

    names = list(GROUPS) if groups is None else list(groups)
    bad = [g for g in names if g not in GROUPS]
    if bad or not names:
        raise ArgumentError(f"warmup(): groups must be names from {sorted(GROUPS)}, got "
                            f"{bad or names!r}.")
    dtypes = [str(np.dtype(d)) if d in ("float32", "float64") else d for d in dtypes]
    if not dtypes or any(d not in ("float32", "float64") for d in dtypes):
        raise ArgumentError(f"warmup(): dtypes must be 'float32' and/or 'float64', got "
                            f"{list(dtypes)!r}.")
    out = stream or sys.stdout
    jobs = [(g, d) for d in dtypes for g in names]
    times: dict[str, float] = {}
    t_all = time.perf_counter()
    # The kernels for every activation (jit.generic_kernels), quietly: the lines below say it.
    with compiling.notices(False), generic_kernels():
        for k, (group, dtype) in enumerate(jobs, 1):
            t0 = time.perf_counter()
            GROUPS[group](dtype)
            clear_session()
            times[f"{group}/{dtype}"] = seconds = time.perf_counter() - t0
            if verbose:
                out.write(f"[{k}/{len(jobs)}] {group} ({dtype}) compiled in {seconds:.1f}s\n")
                out.flush()
    if verbose:
        where = cache_locations()
        out.write(f"nexec kernels ready in {time.perf_counter() - t_all:.1f}s; Numba cache: "
                  f"{where['numba']}\n")
        out.flush()
    return times
