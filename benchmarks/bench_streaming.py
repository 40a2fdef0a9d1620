"""Streamed data against in-memory arrays: one wide-MLP epoch from a generator, a PyDataset
and a memory-mapped file, beside the same epoch from arrays.

With the prefetch thread reading, checking and casting the next batch while the step runs,
a stream that keeps up should cost (almost) no step time. Run as a script for the ratios
and, with ``--memmap-gb``, the peak RSS of training from a memory map of that size:

    python -m benchmarks.bench_streaming [--repeat 5] [--memmap-gb 1]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np

from benchmarks import models

SOURCES = ["arrays", "generator", "pydataset", "memmap"]
WORKLOAD = "wide_mlp"


def _batches(x, y, batch):
    for lo in range(0, len(x), batch):
        yield x[lo:lo + batch], y[lo:lo + batch]


def make_source(kind: str, x, y, batch: int, directory: str):
    """``(x, y)`` arguments for fit: the same data as ``kind``."""
    from nexec.utils import PyDataset

    if kind == "arrays":
        return x, y
    if kind == "generator":
        return _batches(x, y, batch), None
    if kind == "pydataset":
        class Batches(PyDataset):
            def __len__(self):
                return -(-len(x) // batch)

            def __getitem__(self, i):
                return x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
        return Batches(), None
    path = os.path.join(directory, "x.npy")
    mm = np.lib.format.open_memmap(path, "w+", x.dtype, x.shape)
    mm[:] = x
    mm.flush()
    del mm
    return np.load(path, mmap_mode="r"), y


class TimeStreaming:
    """Seconds per wide-MLP epoch (no shuffle) by data source."""

    params = [SOURCES]
    param_names = ["source"]
    number = 1
    repeat = (1, 5, 60.0)
    warmup_time = 0.0
    timeout = 900

    def setup(self, source):
        self.model, self.x, self.y, self.spec = models.prepared(WORKLOAD)
        self.dir = tempfile.mkdtemp(prefix="nexec-bench-")
        self.source = source

    def teardown(self, source):
        shutil.rmtree(self.dir, ignore_errors=True)

    def time_epoch(self, source):
        x, y = make_source(source, self.x, self.y, self.spec["batch"], self.dir)
        self.model.fit(x, y, epochs=1, batch_size=self.spec["batch"], shuffle=False, verbose=0)


def _epoch_times(repeat: int) -> dict[str, float]:
    model, x, y, s = models.prepared(WORKLOAD)
    best = {}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(repeat):
            for kind in SOURCES:
                data = make_source(kind, x, y, s["batch"], d)
                t0 = time.perf_counter()
                model.fit(*data, epochs=1, batch_size=s["batch"], shuffle=False, verbose=0)
                best[kind] = min(best.get(kind, np.inf), time.perf_counter() - t0)
    return best


def _anon_mb() -> float:
    """This process's anonymous resident memory (heap, arrays; not file pages) in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _memmap_peak(gigabytes: float) -> tuple[float, float, float]:
    """(file MB, anonymous RSS MB before the epoch, its peak during the epoch) for one epoch
    of a softmax regression over a uint8 memory map of ``gigabytes``, written block by block.

    Anonymous memory, sampled every 5 ms on Linux: the file's pages in the page cache count
    in plain RSS while mapped, but the kernel can drop them; a copy of the data could not be.
    """
    import threading

    from nexec import Input, Model, layers

    feats, batch = 1024, 512
    rows = int(gigabytes * 2**30) // feats
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "big.npy")
        mm = np.lib.format.open_memmap(path, "w+", np.uint8, (rows, feats))
        block = np.random.default_rng(0).integers(0, 255, (8192, feats), dtype=np.uint8)
        for lo in range(0, rows, len(block)):
            mm[lo:lo + len(block)] = block[:rows - lo]
        mm.flush()
        del mm
        x = np.load(path, mmap_mode="r")
        y = np.arange(rows) % 10
        i = Input((feats,))
        model = Model(i, layers.Dense(10, activation="softmax")(i))
        model.compile("sgd", "sparse_categorical_crossentropy")
        model.fit(x[:batch], y[:batch], batch_size=batch, verbose=0)  # compiled, bound
        before = _anon_mb()
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.005):
                peak[0] = max(peak[0], _anon_mb())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        done.set()
        sampler.join()
        return x.nbytes / 2**20, before, max(peak[0], _anon_mb())


def main() -> None:
    parser = argparse.ArgumentParser(description="Streamed data against arrays.")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--memmap-gb", type=float, default=0.0)
    args = parser.parse_args()
    times = _epoch_times(args.repeat)
    for kind in SOURCES:
        print(f"{WORKLOAD} epoch from {kind:9s}: {times[kind] * 1e3:8.1f} ms "
              f"({times[kind] / times['arrays'] - 1:+.1%} against arrays)")
    if args.memmap_gb:
        size, before, after = _memmap_peak(args.memmap_gb)
        print(f"memmap of {size:.0f} MB: anonymous RSS {before:.0f} MB before the epoch, "
              f"peak {after:.0f} MB during it (+{after - before:.0f} MB)")


if __name__ == "__main__":
    main()
