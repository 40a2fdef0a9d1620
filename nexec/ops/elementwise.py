"""Elementwise ops split over the intra-op shards of the convolutions around them.

Why: a convolution split over the images of its batch (``Conv2DKernel``) leaves shard ``i``'s
output rows in core ``i``'s cache. An elementwise op after it (the residual ``Add``, a
standalone activation, BatchNormalization's inference pass) that ran as one call read half
its inputs from the other core's cache, on one core: the issue measured a residual Add going
from 0.27 to 0.62 ms that way. Split over the same images (the same bounds as
``builtin._shard_slices``, and ``run_shards`` gives shard ``i`` to the same thread), each core
reads what it wrote. Each row of an elementwise op is computed by the same kernel code on
the same values, so the results are bit-identical to the single call whatever the split.

Only batch-led image tensors (rank 4, as convolutions produce) are split, and only when large
enough: a memory-bound op (a merge, ReLU, BatchNormalization's ``x * a + b``) once its output
alone fills a core's L2 cache (``MIN_SHARD_BYTES``), an op that evaluates ``exp``/``tanh``/
``erf`` per element (``costly``) from ``MIN_SHARD_ELEMENTS_COSTLY`` elements. Below those,
waking the second thread costs more than it saves (measured with 2 threads: a ReLU-fused Add
of 2 MiB float32 outputs, its inputs written by two convolution shards, ran in 205 instead of
344 us at best, 322 instead of 454 us median; at 1 MiB about even, at 0.5 MiB 29% slower;
GELU was 1.6x faster split from 64 Ki elements). A Dense/sequence model has no convolution
shards whose cache to follow (a shard there would also hold BLAS at one thread for the whole
step, ``devices/threads.py``).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from nexec.kernels.activations import HARD_SIGMOID, LEAKY_RELU, LINEAR, RELU, RELU6, SOFTSIGN
from nexec.ops.base import BoundCall

__all__ = ["MIN_SHARD_BYTES", "MIN_SHARD_ELEMENTS_COSTLY", "costly", "shard_count", "row_slices",
           "split_rows", "run_in_order"]

#: A memory-bound elementwise op is split from this many output bytes (one core's L2 cache on
#: the machine measured: below it one core streams the op from its own cache about as fast).
MIN_SHARD_BYTES = 2 << 20
#: An op that evaluates a transcendental function per element is split from this many
#: elements (compute, not memory, bound: 1.4-1.6x faster split at 32-64 Ki elements).
MIN_SHARD_ELEMENTS_COSTLY = 1 << 15
#: Activation codes cheap enough that an op applying them stays memory-bound.
_CHEAP = (LINEAR, RELU, LEAKY_RELU, RELU6, HARD_SIGMOID, SOFTSIGN)


def costly(activation: int) -> bool:
    """Whether applying ``activation`` (a code of ``nexec.kernels.activations``, or a
    plugin's) makes an elementwise op compute-bound: exp, tanh, erf per element."""
    return activation not in _CHEAP


def shard_count(device: Any, shape: tuple, itemsize: int, compute_bound: bool = False) -> int:
    """How many shards an elementwise op on a batch-led array of ``shape`` takes: 1 for a
    small or non-image tensor or a device without intra-op threads.

    Args:
        device: The ``nexec.devices.Device`` the op runs on.
        shape: The op's output shape, batch first.
        itemsize: Bytes per element.
        compute_bound: The op evaluates a transcendental function per element (``costly``).
    """
    shape = tuple(shape)
    if len(shape) != 4:
        return 1
    n = int(np.prod(shape))
    if n * itemsize < MIN_SHARD_BYTES and not (compute_bound and
                                               n >= MIN_SHARD_ELEMENTS_COSTLY):
        return 1
    return max(1, min(device.threads(), shape[0]))


def row_slices(device: Any, a: Any, compute_bound: bool = False) -> list[slice]:
    """The rows of ``rows(a)`` each shard takes: whole images of ``a``'s batch, split as a
    convolution splits it (``[slice(None)]``: one call, see :func:`shard_count`).

    Args:
        device: The ``nexec.devices.Device`` the op runs on.
        a: The op's batch-led output array, in its own shape.
        compute_bound: As :func:`shard_count`.
    """
    shape = tuple(a.shape)
    shards = shard_count(device, shape, np.dtype(a.dtype).itemsize, compute_bound)
    if shards == 1:
        return [slice(None)]
    batch, per_item = shape[0], shape[1] * shape[2]  # rows of the 2-D view per image
    bounds = [batch * i // shards for i in range(shards + 1)]  # as builtin._shard_slices
    return [slice(lo * per_item, hi * per_item) for lo, hi in zip(bounds, bounds[1:])]


def run_in_order(calls: tuple) -> None:
    """Runs the ``(function, args)`` pairs of ``calls`` one after the other: one shard's part
    of an op that takes several kernel calls."""
    for fn, args in calls:
        fn(*args)


def _rows_of(s: slice) -> Callable[[Any], Any]:
    """``part`` of the shard taking rows ``s``."""
    return lambda a: a[s]


def split_rows(device: Any, like: Any,
               build: Callable[[Callable[[Any], Any]], list[BoundCall]],
               compute_bound: bool = False) -> list[BoundCall]:
    """An elementwise op's calls, split into shards by :func:`row_slices` of ``like``.

    Args:
        device: The device the op runs on.
        like: The batch-led array whose shape decides the split (the op's output).
        build: Given ``part`` (which maps a 2-D row view of any of the op's arrays to this
            shard's rows; the identity for the whole), returns that part's calls in order.
            Zero-row "skip" arrays stay zero-row under ``part``.
        compute_bound: As :func:`shard_count` (the op applies a ``costly`` activation).
    """
    slices = row_slices(device, like, compute_bound)
    if len(slices) == 1:
        return build(lambda a: a)
    shards = [build(_rows_of(s)) for s in slices]
    if not shards[0]:
        return []
    return device.parallel([calls[0] if len(calls) == 1 else (run_in_order, (tuple(calls),))
                            for calls in shards])
