"""Which algorithm each Conv2D runs: im2col + GEMM, Winograd, direct or Toeplitz, chosen at
plan time.

The switch is ``NEXEC_CONV_ALGORITHM`` (or :func:`use_conv_algorithm` around ``compile`` /
``plan``): ``"model"`` (the default: each layer gets the cost model's choice,
:func:`modelled_choice`), ``"auto"`` (the same, then measured), or one algorithm forced:
``"im2col"``, ``"winograd"`` (F(2x2,3x3)), ``"winograd4"`` (F(4x4,3x3)), ``"direct"``
(few input channels) or ``"toeplitz"`` (inference over small maps). A forced Winograd applies
to the layers it can run (3x3, stride 1), a forced direct to those with at most
:func:`nexec.ops.conv_direct.direct_limit` input channels (32, or 16 for a 1x1 kernel), a
forced Toeplitz to inference steps whose matrix fits
:data:`nexec.ops.conv_toeplitz.TOEPLITZ_MAX_BYTES`; the others stay im2col. Forcing
``"im2col"`` gives the rounding of a plain matrix product (and of nexec before round 8).
``"auto"`` looks each layer's shape up in the table of
measurements that :mod:`nexec.runtime.autotune` keeps (in memory and in
``<nexec cache dir>/conv_algorithms.json``); a shape not measured yet gets the cost model
until the executor measures it when it binds a batch size (which compiles and times every
candidate: seconds on a first run, hence not the default).

This module runs no kernels (the planner never does): it only reads the table.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nexec.checks import ArgumentError
from nexec.kernels import sources_stamp
from nexec.ops.conv_direct import direct_applies
from nexec.ops.conv_toeplitz import toeplitz_applies, toeplitz_pays
from nexec.ops.winograd import ALGORITHMS, set_algorithm, winograd_applies

__all__ = ["MODES", "ENV_VAR", "STAMP_KEY", "conv_algorithm_mode", "use_conv_algorithm",
           "shape_key", "measured", "record", "table_path", "current_entries",
           "MIN_MODELLED_WORK", "modelled_choice", "candidates", "choose_conv_algorithms",
           "apply_choices"]

MODES = ("auto", *ALGORITHMS, "model")
ENV_VAR = "NEXEC_CONV_ALGORITHM"
_DEFAULT = "model"

_local = threading.local()
_table: dict[str, Any] | None = None
_lock = threading.Lock()
#: The table's key for the kernel sources' stamp its measurements were made with
#: (:func:`nexec.kernels.sources_stamp`).
STAMP_KEY = "kernels"


def _checked(mode: Any, where: str) -> str:
    if not isinstance(mode, str) or mode.lower() not in MODES:
        raise ArgumentError(f"{where} must be one of {', '.join(MODES)}; got {mode!r}")
    return mode.lower()


def conv_algorithm_mode() -> str:
    """The mode in force: :func:`use_conv_algorithm`'s, else ``NEXEC_CONV_ALGORITHM``, else
    ``"model"``.

    Raises:
        ArgumentError: the environment variable holds an unknown mode.
    """
    mode = getattr(_local, "mode", None)
    if mode is not None:
        return mode
    return _checked(os.environ.get(ENV_VAR, _DEFAULT), ENV_VAR)


@contextlib.contextmanager
def use_conv_algorithm(mode: str) -> Iterator[None]:
    """Plans made inside the block (``compile``, ``plan()``, ``memory_plan()``) use ``mode``.

    Args:
        mode: One of :data:`MODES`.

    Raises:
        ArgumentError: unknown mode (before the block runs).
    """
    mode = _checked(mode, "conv_algorithm")
    before = getattr(_local, "mode", None)
    _local.mode = mode
    try:
        yield
    finally:
        _local.mode = before


def shape_key(h: int, w: int, cin: int, f: int, padding: str, dtype: str, batch: int,
              threads: int, training: bool, kernel: tuple[int, int] = (3, 3),
              strides: tuple[int, int] = (1, 1)) -> str:
    """The measurement table's key of one convolution shape, batch size, thread count and
    kind of step (training times forward + backward, inference forward).

    A 3x3 stride-1 kernel keeps the key it had before other kernels were measured; any
    other adds ``/k<KH>x<KW>s<SH>x<SW>``.
    """
    step = "train" if training else "infer"
    window = "" if (tuple(kernel), tuple(strides)) == ((3, 3), (1, 1)) else \
        f"/k{kernel[0]}x{kernel[1]}s{strides[0]}x{strides[1]}"
    return f"{h}x{w}x{cin}->{f}/{padding.lower()}{window}/{dtype}/b{batch}/t{threads}/{step}"


def table_path() -> Path:
    """``conv_algorithms.json`` in nexec's cache directory (``NEXEC_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/nexec`` or ``~/.cache/nexec``)."""
    base = os.environ.get("NEXEC_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "nexec")
    return Path(base) / "conv_algorithms.json"


def current_entries(data: Any) -> dict[str, Any]:
    """A table read from disk if it was measured with these kernels, else an empty one;
    either way stamped with :func:`nexec.kernels.sources_stamp`."""
    if isinstance(data, dict) and data.get(STAMP_KEY) == sources_stamp():
        return data
    return {STAMP_KEY: sources_stamp()}


def _load() -> dict[str, Any]:
    global _table
    with _lock:
        if _table is None:
            try:
                _table = current_entries(json.loads(table_path().read_text()))
            except (OSError, ValueError):
                _table = current_entries(None)
        return _table


def measured(key: str) -> dict[str, Any] | None:
    """The measurement of ``key`` (``{"choice": ..., "seconds": {...}}``), or None."""
    return _load().get(key)


def record(key: str, entry: dict[str, Any]) -> None:
    """Adds a measurement to the in-memory table (``autotune`` saves it to disk)."""
    _load()[key] = entry


#: Multiply-adds per image (``H*W*Cin*F*KH*KW``) below which the cost model keeps
#: im2col: on layers this small the algorithm saves little, while each other algorithm a
#: model uses is another family of kernels to compile on a first run (the demo CNN's
#: first fit took 43.6 s instead of 29.3 s with its tiny layers split between direct and
#: im2col, docs/performance.md).
MIN_MODELLED_WORK = 1 << 19


def modelled_choice(h: int, w: int, cin: int, f: int, direct: bool = False,
                    window: int = 9, training: bool = True, toeplitz: bool = False,
                    auto: bool = False) -> str:
    """The cost model's choice (the default mode, and ``"auto"``'s before measuring) for a
    ``window``-tap Conv2D over ``h x w x cin`` into ``f`` filters, in a training step or in
    inference. Layers with less work than :data:`MIN_MODELLED_WORK` stay im2col.
    F(2x2,3x3) saves 9/4 of the GEMM flops but adds transforms of about ``16 * (Cin + F)``
    flops per tile, which pay off once both channel counts are wide and the image has a few
    tiles: 64 pixels, or 16 in inference (a 4x4 map's four tiles: its forward is cheaper,
    its backward twice im2col's; docs/performance.md, round 15). Where the direct kernel
    applies (``direct``) and Winograd is not the choice, direct is: up to 8 input channels,
    where im2col's column matrix is thin and its copy a large part of the work, and with
    filters in whole blocks of 32 (its wide register block). Measured with 512-bit vectors
    (docs/performance.md, "Full-width vectors"): the benchmark CNN's and ResNet-18's
    inference steps 18-25% faster than all-im2col, training about even. In inference, a
    layer whose Toeplitz matrix applies and saves at least half of the multiply-adds
    (``toeplitz``: :func:`nexec.ops.conv_toeplitz.toeplitz_pays`, a 3x3 on a 2x2 map) runs
    as its Toeplitz matrix only under ``"auto"`` (``auto``), which measures it: it streams
    a matrix 16/9 the size of im2col's weights through rows of one image each, and whether
    that pays depends on the machine's memory (docs/performance.md, round 17)."""
    if h * w * cin * f * window < MIN_MODELLED_WORK:
        return "im2col"
    if toeplitz and auto and not training:
        return "toeplitz"
    if min(cin, f) >= 32 and h * w >= (64 if training else 16):
        return "winograd"
    if direct and (cin <= 8 or f % 32 == 0):
        return "direct"
    return "im2col"


def candidates(layer: Any, cin: int, in_shape: tuple | None = None,
               training: bool = True, itemsize: int = 4) -> tuple[str, ...]:
    """What ``"auto"`` chooses between for one Conv2D: im2col, and Winograd F(2x2,3x3) and
    direct where they apply (F(4x4,3x3) only when forced: its float32 error is larger), and
    in inference Toeplitz where it applies and pays (``in_shape``: the input's H, W, Cin;
    ``itemsize``: the bytes of the model's dtype)."""
    found = ["im2col"]
    if winograd_applies(layer):
        found.append("winograd")
    if direct_applies(layer, cin):
        found.append("direct")
    if not training and in_shape is not None and _toeplitz_fits(layer, in_shape, itemsize):
        found.append("toeplitz")
    return tuple(found)


def _toeplitz_fits(layer: Any, in_shape: tuple, itemsize: int) -> bool:
    return toeplitz_applies(layer, in_shape, itemsize) and toeplitz_pays(layer, in_shape)


def choose_conv_algorithms(graph: Any, mode: str | None = None,
                           training: bool = True) -> dict[str, str]:
    """Records each Conv2D op's algorithm on its layer; returns layer name -> algorithm.

    ``"model"`` and ``"auto"`` give the cost model's choice here (the batch size is not
    known at plan time); under ``"auto"`` the executor replaces it by a measurement when it
    binds (``nexec.runtime.autotune``).

    Args:
        graph: The lowered graph (shapes inferred).
        mode: One of :data:`MODES`; default :func:`conv_algorithm_mode`.
        training: Choose for training steps (forward and backward) or for inference.
    """
    mode = conv_algorithm_mode() if mode is None else _checked(mode, "mode")
    itemsize = np.dtype(graph.dtype).itemsize  # the Toeplitz matrix's bytes
    chosen: dict[str, str] = {}
    for op in graph.ops:
        if op.kind != "Conv2D":
            continue
        h, w, cin = graph.tensors[op.inputs[0]].shape
        algo = "im2col"
        if mode in ("auto", "model"):
            kh, kw = op.layer.kernel_size
            algo = modelled_choice(h, w, cin, op.layer.filters,
                                   direct=direct_applies(op.layer, cin), window=kh * kw,
                                   training=training,
                                   toeplitz=_toeplitz_fits(op.layer, (h, w, cin), itemsize),
                                   auto=mode == "auto")
            if algo == "winograd" and not winograd_applies(op.layer):
                algo = "im2col"
        elif mode == "direct":
            algo = "direct" if direct_applies(op.layer, cin) else "im2col"
        elif mode == "toeplitz":
            algo = "toeplitz" if not training and toeplitz_applies(op.layer, (h, w, cin),
                                                                   itemsize) else "im2col"
        elif mode != "im2col" and winograd_applies(op.layer):
            algo = mode
        set_algorithm(op.layer, algo, cin)
        chosen[op.layer.name] = algo
    return chosen


def apply_choices(plan: Any, training: bool = True) -> None:
    """Records ``plan.algorithms(training)`` on the layers, where the Conv2D kernel reads
    them when it sizes workspaces and binds (another plan of the same model, or this plan's
    choices for the other kind of step, may have been recorded since)."""
    chosen = plan.algorithms(training)
    for op in plan.graph.ops:
        if op.layer.name in chosen:
            set_algorithm(op.layer, chosen[op.layer.name])
