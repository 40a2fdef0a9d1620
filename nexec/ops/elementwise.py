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
enough, else waking the second thread costs more than it saves. A memory-bound op (a merge,
ReLU, BatchNormalization's ``x * a + b``) is split once the bytes it reads and writes reach
``MIN_SHARD_BYTES``; an op that evaluates ``exp``/``tanh``/``erf`` per element (a ``costly``
activation, fused into an Add or standalone) from ``MIN_SHARD_ELEMENTS_COSTLY`` elements. A
Dense/sequence model has no convolution shards whose cache to follow (a shard there would
also hold BLAS at one thread for the whole step, ``devices/threads.py``).

Measured with 2 threads on a shared 2-core machine, alternating runs (medians, and the best
run, which is what an idle second core gives): the CNN benchmark's residual Add (4 MiB
output, inputs from two convolution shards) 1.40 -> 1.31 ms forward, 3.14 -> 2.93 ms backward
(best 1.06 -> 0.76, 2.41 -> 1.46); the ResNet-18-style stage-1 Adds (2 MiB outputs, 6 MiB
touched) 0.56 -> 0.40 ms in predict, 0.60 -> 0.46 ms forward and 1.61 -> 0.97 ms backward in
training, its stem BatchNormalization (8 MiB output) 1.52 -> 0.93 ms; a standalone ReLU on 2
MiB (4 MiB touched) was no faster split, BatchNormalization's 4 MiB 0.19 -> 0.23 ms slower,
hence the threshold above them.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from nexec.kernels.activations import HARD_SIGMOID, LEAKY_RELU, LINEAR, RELU, RELU6, SOFTSIGN
from nexec.ops.base import BoundCall

__all__ = ["MIN_SHARD_BYTES", "MIN_SHARD_ELEMENTS_COSTLY", "costly", "shard_count", "row_slices",
           "split_rows", "run_in_order"]

#: A memory-bound elementwise op is split from this many bytes read and written (an Add of
#: 2 MiB arrays, 6 MiB, measured 1.2-1.5x faster split at best; BatchNormalization's 4 MiB
#: slower).
MIN_SHARD_BYTES = 5 << 20
#: A compute-bound op is split from this many elements (GELU measured 1.4-1.6x faster split
#: at 32-64 Ki elements).
MIN_SHARD_ELEMENTS_COSTLY = 1 << 15
#: Activation codes cheap enough that an op applying them stays memory-bound.
_CHEAP = (LINEAR, RELU, LEAKY_RELU, RELU6, HARD_SIGMOID, SOFTSIGN)


def costly(activation: int) -> bool:
    """Whether applying ``activation`` (a code of ``nexec.kernels.activations``, or a
    plugin's) makes an elementwise op compute-bound: exp, tanh, erf per element."""
    return activation not in _CHEAP


def shard_count(device: Any, shape: tuple, itemsize: int, arrays: int = 2,
                compute_bound: bool = False) -> int:
    """How many shards an elementwise op on a batch-led array of ``shape`` takes: 1 for a
    small or non-image tensor or a device without intra-op threads.

    Args:
        device: The ``nexec.devices.Device`` the op runs on.
        shape: The op's output shape, batch first.
        itemsize: Bytes per element.
        arrays: How many arrays of that shape the op reads or writes (an in-place array
            counts twice): its bytes touched are ``arrays`` times the output's.
        compute_bound: The op's arithmetic, not its memory traffic, takes the time
            (:func:`costly` activations, the standalone activation kernels).
    """
    shape = tuple(shape)
    if len(shape) != 4:
        return 1
    n = int(np.prod(shape))
    if n * itemsize * arrays < MIN_SHARD_BYTES and not (compute_bound and
                                                        n >= MIN_SHARD_ELEMENTS_COSTLY):
        return 1
    return max(1, min(device.threads(), shape[0]))


def row_slices(device: Any, a: Any, arrays: int = 2, compute_bound: bool = False
               ) -> list[slice]:
    """The rows of ``rows(a)`` each shard takes: whole images of ``a``'s batch, split as a
    convolution splits it (``[slice(None)]``: one call, see :func:`shard_count`).

    Args:
        device: The ``nexec.devices.Device`` the op runs on.
        a: The op's batch-led output array, in its own shape.
        arrays, compute_bound: As :func:`shard_count`.
    """
    shape = tuple(a.shape)
    shards = shard_count(device, shape, np.dtype(a.dtype).itemsize, arrays, compute_bound)
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
               build: Callable[[Callable[[Any], Any]], list[BoundCall]], arrays: int = 2,
               compute_bound: bool = False) -> list[BoundCall]:
    """An elementwise op's calls, split into shards by :func:`row_slices` of ``like``.

    Args:
        device: The device the op runs on.
        like: The batch-led array whose shape decides the split (the op's output).
        build: Given ``part`` (which maps a 2-D row view of any of the op's arrays to this
            shard's rows; the identity for the whole), returns that part's calls in order.
            Zero-row "skip" arrays stay zero-row under ``part``.
        arrays, compute_bound: As :func:`shard_count`.
    """
    slices = row_slices(device, like, arrays, compute_bound)
    if len(slices) == 1:
        return build(lambda a: a)
    shards = [build(_rows_of(s)) for s in slices]
    if not shards[0]:
        return []
    return device.parallel([calls[0] if len(calls) == 1 else (run_in_order, (tuple(calls),))
                            for calls in shards])
