"""1x1 convolutions a block of rows at a time against all rows at once, kernel by kernel.

    python benchmarks/pointwise_blocks.py [--rounds 21] [--repeats 2] [--json F]

A 1x1 stride-1 convolution is one GEMM over ``x`` viewed as (N*H*W, Cin) and an epilogue
(bias + activation; backward: the activation's gradient and the bias sums). ``conv2d_forward``
and ``conv2d_backward`` run them ``R`` rows at a time, ``R`` the rows of their ``cols``
workspace (``(R, 0)``: a 1x1 layer has no column matrix; backward's ``dz`` then holds one
block), or all at once for ``(0, 0)``.
This times both on the benchmark CNN's three 1x1 layers (32x32x32 input, ReLU, F = 32 into
an 80-wide concatenation, 24 and 8) and two more shapes, at one BLAS thread over a shard's
32 images, as the executor runs them, and at two threads over a whole batch of 64. The block
is ``nexec.ops.geometry.pointwise_block``'s; ``pointwise_rows`` says where nexec uses it (in
shards, outputs of 16 channels or more, blocks of at least 4 rows per input channel). Calls
alternate between the two ways, the order flipped every round; medians in ms.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# (name, images, side, channels in, filters, row stride of the output, BLAS threads)
CASES = (
    ("1x1 32->32, into the 80-wide concatenation", 32, 32, 32, 32, 80, 1),
    ("1x1 32->24", 32, 32, 32, 24, 24, 1),
    ("1x1 32->8", 32, 32, 32, 8, 8, 1),
    ("1x1 64->64", 32, 32, 64, 64, 64, 1),
    ("1x1 256->256 (8x8 maps)", 32, 8, 256, 256, 256, 1),
    ("1x1 32->32, into the 80-wide concatenation", 64, 32, 32, 32, 80, 2),
    ("1x1 64->64", 64, 32, 64, 64, 64, 2),
    ("1x1 256->256 (8x8 maps)", 64, 8, 256, 256, 256, 2),
)


def measure_case(images: int, side: int, cin: int, f: int, stride: int, threads: int,
                 rounds: int) -> dict[str, float]:
    """Median ms of forward and backward, one block and blocks, for one layer shape."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from nexec.kernels.activations import RELU
    from nexec.kernels.cpu.conv import conv2d_backward, conv2d_forward
    from nexec.ops.geometry import pointwise_block

    rng = np.random.default_rng(0)
    m = images * side * side
    x = rng.random((images, side, side, cin), dtype=np.float32)
    w = (rng.random((1, 1, cin, f), dtype=np.float32) - 0.5) / cin
    b = rng.random(f, dtype=np.float32)
    y = np.zeros((m, stride), np.float32)[:, :f]
    dy = (rng.random((m, stride), dtype=np.float32) - 0.5)[:, :f]
    dx = np.empty_like(x)
    dw, db = np.empty_like(w), np.empty_like(b)
    empty = np.empty((0, 0), np.float32)
    block = pointwise_block(cin, f)
    cols = {"one": empty, "blocks": np.empty((block, 0), np.float32)}
    dz = {"one": np.empty((m, f), np.float32), "blocks": np.empty((block, f), np.float32)}

    def forward(way: str) -> None:
        conv2d_forward(x, w, b, 1, 1, 0, 0, side, side, RELU, cols[way], y, y)

    def backward(way: str) -> None:
        conv2d_backward(x, w, y, dy, 1, 1, 0, 0, side, side, RELU, cols[way], dz[way], empty,
                        dx, dw, db)

    calls = {(p, way): (fn, way) for p, fn in (("fwd", forward), ("bwd", backward))
             for way in cols}
    for fn, way in calls.values():  # compile and load BLAS before limiting its threads
        fn(way)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
    with threadpool_limits(threads):
        for r in range(rounds):
            for key in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
                fn, way = calls[key]
                t = time.perf_counter()
                fn(way)
                times[key].append(time.perf_counter() - t)
    out = {f"{p}_{way}": statistics.median(t) * 1e3 for (p, way), t in times.items()}
    out["block"] = block
    return out


def measure(rounds: int, cases: tuple = CASES) -> list[dict]:
    """One row per case of ``cases`` (:data:`CASES`' layout)."""
    return [{"layer": name, "images": images, "rows": images * side * side, "threads": threads,
             **measure_case(images, side, cin, f, stride, threads, rounds)}
            for name, images, side, cin, f, stride, threads in cases]


def format_table(runs: list[list[dict]]) -> str:
    """Markdown rows: layer, threads and rows, block, forward and backward one → blocks."""
    lines = ["| run | layer | BLAS threads, rows | block | forward ms, one → blocks | "
             "backward ms, one → blocks |", "|---|---|---|---:|---|---|"]
    for i, rows in enumerate(runs, start=1):
        for r in rows:
            cells = [f"{r[p + '_one']:.2f} → {r[p + '_blocks']:.2f} "
                     f"({r[p + '_blocks'] / r[p + '_one']:.2f})" for p in ("fwd", "bwd")]
            lines.append(f"| {i} | {r['layer']} | {r['threads']}, {r['rows']:,} | "
                         f"{r['block']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--repeats", type=int, default=2, help="measurement runs, one after another")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.dirname(HERE))
    from benchmarks import pin_threads

    pin_threads(2)  # before NumPy loads: BLAS on both cores where a row asks for it
    runs = [measure(args.rounds) for _ in range(args.repeats)]
    print(format_table(runs))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rounds": args.rounds, "runs": runs}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
