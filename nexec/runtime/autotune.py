"""Measures im2col against Winograd and direct on each Conv2D shape of a plan, once per machine.

The planner never runs kernels, so ``conv_algorithm="auto"`` is settled here, when the
executor binds a batch size: every Conv2D with another candidate than im2col (3x3 stride 1:
Winograd; few input channels: direct; :func:`nexec.planner.algorithms.candidates`) whose
(shape, kernel, strides, dtype, batch size, thread count, training or inference) has no
measurement of all its candidates yet is run alone on random arrays, each algorithm a few
times alternately, and the fastest median wins. Results
go to the table of :mod:`nexec.planner.algorithms` (memory) and to
``<nexec cache dir>/conv_algorithms.json`` (written atomically), so later processes on the
machine plan without measuring; the file is stamped with the kernel sources measured
(``nexec.kernels.sources_stamp``), and another nexec's measurements are not reused.
"""
from __future__ import annotations

import json
import statistics
import time
from typing import Any

import numpy as np

from nexec.io import atomic_write
from nexec.kernels.activations import LINEAR
from nexec.ops.base import Call
from nexec.ops.geometry import conv2d_geometry
from nexec.ops.winograd import algorithm_of, set_algorithm
from nexec.planner import algorithms
from nexec.plugins import registry

__all__ = ["CANDIDATES", "time_conv", "calibrate"]

#: Every algorithm "auto" may choose (per layer: ``nexec.planner.algorithms.candidates``);
#: F(4x4,3x3) only when forced, its float32 error is larger; Toeplitz in inference only.
CANDIDATES = ("im2col", "winograd", "direct", "toeplitz")


def _run(device: Any, calls: list) -> None:
    with device.step_guard(device.threaded(calls)):
        for fn, args in calls:
            fn(*args)


def time_conv(layer: Any, in_shape: tuple, batch: int, dtype: str, algorithm: str,
              training: bool, device: Any, repeats: int = 3) -> list[float]:
    """Seconds of ``repeats`` steps (forward, plus backward when ``training``) of one Conv2D.

    The layer's recorded algorithm is restored afterwards. Arrays are made here, once; the
    first (untimed) step loads the compiled kernels.
    """
    kernel = registry().kernel("Conv2D", device.name)
    before = algorithm_of(layer)
    h, w, cin = in_shape
    set_algorithm(layer, algorithm, cin)
    try:
        (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
        ho, wo, _, _ = conv2d_geometry(h, w, kh, kw, sh, sw, layer.padding)
        f = layer.filters
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, h, w, cin)).astype(dtype)
        params = {"kernel": rng.standard_normal((kh, kw, cin, f)).astype(dtype)}
        grads = {"kernel": np.empty_like(params["kernel"])}
        if layer.use_bias:
            params["bias"] = np.zeros(f, dtype)
            grads["bias"] = np.empty(f, dtype)
        y = np.empty((batch, ho, wo, f), dtype)
        dy = np.asarray(rng.standard_normal(y.shape), dtype)
        dx = np.empty_like(x)
        wanted = kernel.workspaces(layer, [in_shape], (ho, wo, f), batch, training)
        ws = {name: np.zeros(one.shape, one.dtype or dtype) for name, one in wanted.items()}
        call = Call(layer, LINEAR, [x], y, params, ws, training, device=device)
        if not training:  # prepared weights are made once, not every step: not timed
            _run(device, kernel.prepare(call))
        calls = kernel.forward(call)
        if training:
            calls += kernel.backward(Call(layer, LINEAR, [x], y, params, ws, True, dy, [dx],
                                          grads, device=device))
        _run(device, calls)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            _run(device, calls)
            times.append(time.perf_counter() - t0)
        return times
    finally:
        set_algorithm(layer, before)


def calibrate(plan: Any, batch: int, training: bool, device: Any, save: bool = True
              ) -> dict[str, str]:
    """Settles ``plan``'s ``"auto"`` Conv2D choices for ``batch`` by measurement.

    Does nothing unless the plan was made under ``"auto"``. Updates
    ``plan.algorithms(training)`` and returns it.
    """
    chosen = plan.algorithms(training)
    if plan.conv_mode != "auto" or device.name != "cpu":
        return chosen
    g = plan.graph
    threads = device.threads()
    changed = False
    for op in g.ops:
        if op.kind != "Conv2D":
            continue
        h, w, cin = g.tensors[op.inputs[0]].shape
        candidates = algorithms.candidates(op.layer, cin, (h, w, cin), training,
                                           np.dtype(g.dtype).itemsize)
        if len(candidates) == 1:
            continue
        key = algorithms.shape_key(h, w, cin, op.layer.filters, op.layer.padding, g.dtype,
                                   batch, threads, training, tuple(op.layer.kernel_size),
                                   tuple(op.layer.strides))
        entry = algorithms.measured(key)
        if entry is None or not set(candidates) <= set(entry.get("seconds", ())):
            runs: dict[str, list[float]] = {a: [] for a in candidates}
            for _ in range(3):  # alternate, so a noisy neighbour hurts all alike
                for a in candidates:
                    runs[a] += time_conv(op.layer, (h, w, cin), batch, g.dtype, a, training,
                                         device, repeats=1)
            seconds = {a: statistics.median(t) for a, t in runs.items()}
            entry = {"choice": min(seconds, key=seconds.__getitem__), "seconds": seconds}
            algorithms.record(key, entry)
            changed = True
        chosen[op.layer.name] = entry["choice"]
    if changed and save:
        _save()
    return chosen


def _save() -> None:
    path = algorithms.table_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        table = dict(algorithms._load())
        try:  # keep what other processes measured with these kernels since this one read
            table = {**algorithms.current_entries(json.loads(path.read_text())), **table}
        except (OSError, ValueError):
            pass
        text = json.dumps(table, indent=1, sort_keys=True).encode()
        atomic_write(str(path), lambda f: f.write(text))
    except OSError:  # a read-only cache: the choice still holds for this process
        pass
