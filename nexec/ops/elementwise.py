"""Elementwise ops split over the intra-op shards of the convolutions around them.

Why: a convolution split over the images of its batch (``Conv2DKernel``) leaves shard ``i``'s
output rows in core ``i``'s cache. An elementwise op after it (the residual ``Add``, a
standalone activation, BatchNormalization's inference pass) that ran as one call read half
its inputs from the other core's cache, on one core: the issue measured a residual Add going
from 0.27 to 0.62 ms that way. Split over the same images (the same bounds as
``builtin._shard_slices``, and ``run_shards`` gives shard ``i`` to the same thread), each core
reads what it wrote. Each row of an elementwise op is computed by the same kernel code on
the same values, so the results are bit-identical to the single call whatever the split.

Only batch-led image tensors (rank 4, as convolutions produce) of at least
``MIN_SHARD_ELEMENTS`` elements are split: a smaller op costs less than waking a thread, and
a Dense/sequence model has no convolution shards whose cache to follow (a shard there would
also hold BLAS at one thread for the whole step, ``devices/threads.py``).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from nexec.ops.base import BoundCall

__all__ = ["MIN_SHARD_ELEMENTS", "shard_count", "row_slices", "split_rows", "run_in_order"]

#: Below this many elements an elementwise op runs as one call (waking the second thread
#: costs more than it saves); measured on the ResNet-18-style workload, 2 threads.
MIN_SHARD_ELEMENTS = 1 << 17


def shard_count(device: Any, shape: tuple) -> int:
    """How many shards an elementwise op on a batch-led array of ``shape`` takes: 1 for a
    small or non-image tensor or a device without intra-op threads."""
    shape = tuple(shape)
    if len(shape) != 4 or int(np.prod(shape)) < MIN_SHARD_ELEMENTS:
        return 1
    return max(1, min(device.threads(), shape[0]))


def row_slices(device: Any, a: Any) -> list[slice]:
    """The rows of ``rows(a)`` each shard takes: whole images of ``a``'s batch, split as a
    convolution splits it (``[slice(None)]``: one call, see :func:`shard_count`).

    Args:
        device: The ``nexec.devices.Device`` the op runs on.
        a: The op's batch-led output (or input) array, in its own shape.
    """
    shape = tuple(a.shape)
    shards = shard_count(device, shape)
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


def split_rows(device: Any, like: Any,
               build: Callable[[Callable[[Any], Any]], list[BoundCall]]) -> list[BoundCall]:
    """An elementwise op's calls, split into shards by :func:`row_slices` of ``like``.

    Args:
        device: The device the op runs on.
        like: The batch-led array whose shape decides the split (the op's output).
        build: Given ``part`` (which maps a 2-D row view of any of the op's arrays to this
            shard's rows; the identity for the whole), returns that part's calls in order.
            Zero-row "skip" arrays stay zero-row under ``part``.
    """
    slices = row_slices(device, like)
    if len(slices) == 1:
        return build(lambda a: a)
    shards = [build(lambda a, s=s: a[s]) for s in slices]
    if not shards[0]:
        return []
    return device.parallel([calls[0] if len(calls) == 1 else (run_in_order, (tuple(calls),))
                            for calls in shards])
