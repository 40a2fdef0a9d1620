"""Convolution shards that run at once split one column-matrix block between them.

The planner sizes each shard's im2col and Winograd blocks from the number of shards
(``nexec.ops.geometry.block_elements``): two shards with a whole block each contend for the
shared last-level cache. Plain Python: no kernel runs.
"""
from __future__ import annotations

import pytest

from nexec import layers
from nexec.devices.threads import set_num_threads
from nexec.ops.builtin import Conv2DKernel
from nexec.ops.geometry import block_elements
from nexec.ops.winograd import set_algorithm
from nexec.plugins import registry
from tests.runtime.test_threads import restore_threads  # noqa: F401 - autouse


def _workspaces(layer, in_shape, batch, training, threads):
    set_num_threads(threads)
    kernel = Conv2DKernel(registry().device("cpu"))
    ho, wo, _, _ = kernel._geometry(layer, in_shape)
    return kernel, kernel.workspaces(layer, [in_shape], (ho, wo, layer.filters), batch,
                                     training)


@pytest.mark.parametrize("training", [False, True])
def test_im2col_blocks_split_between_shards(training):
    """The benchmark CNN's strided 3x3 over 80 channels, batch 64: K = 720."""
    in_shape, batch, k, f = (32, 32, 80), 64, 720, 64
    layer = layers.Conv2D(f, 3, strides=2, padding="same")
    set_algorithm(layer, "im2col")
    extra = f if training else 0
    kernel, one = _workspaces(layer, in_shape, batch, training, threads=1)
    assert kernel._shards(layer, in_shape, batch) == 1
    assert one["cols"].shape == (1, block_elements(1) // k + extra, k)
    kernel, two = _workspaces(layer, in_shape, batch, training, threads=2)
    assert kernel._shards(layer, in_shape, batch) == 2
    assert two["cols"].shape == (2, block_elements(2) // k + extra, k)
    assert block_elements(2) * 2 == block_elements(1)


@pytest.mark.parametrize("training", [False, True])
def test_winograd_blocks_split_between_shards(training):
    """A 16x16x64 -> 64 F(2x2, 3x3) layer at batch 64: 64 tiles an image, V and M 16 x 128
    elements a tile."""
    in_shape, batch = (16, 16, 64), 64
    layer = layers.Conv2D(64, 3, padding="same")
    set_algorithm(layer, "winograd")
    tiles = {1: block_elements(1) // (16 * 128), 2: block_elements(2) // (16 * 128)}
    assert tiles == {1: 512, 2: 256}  # both fewer than a shard's 32 x 64 tiles
    for threads in (1, 2):
        kernel, ws = _workspaces(layer, in_shape, batch, training, threads)
        shards = kernel._shards(layer, in_shape, batch)
        assert shards == threads
        assert ws["V"].shape == (shards, 16, tiles[threads], 64)
        assert ws["M"].shape == (shards, 16, tiles[threads], 64)
        if training:
            assert ws["dV"].shape == (shards, 16, tiles[threads], 64)
