"""The checks that need a real NVIDIA GPU, in one script sized to finish in under 5 minutes.

    python benchmarks/gpu_check.py            # on a machine with a GPU and `pip install -e '.[cuda]'`

1. the CUDA kernel tests and the whole-model CUDA tests against the CPU, on the device
   (NUMBA_ENABLE_CUDASIM=0, so the real launch shapes run);
2. the benchmark workloads trained on the GPU: samples/s for training and predict, and the
   final loss next to a CPU run's;
3. the dense GEMM and conv kernels alone: GFLOP/s and the fraction of the GPU's peak FP32
   rate (SMs x FP32 lanes per SM x clock x 2).

Prints one report; `--json FILE` also writes it. Exits non-zero if a check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ["NUMBA_ENABLE_CUDASIM"] = "0"  # before numba: this script is for the real device

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

# FP32 lanes per SM by compute capability major (minor where it differs).
FP32_PER_SM = {(3, 0): 192, (5, 0): 128, (6, 0): 64, (6, 1): 128, (7, 0): 64, (7, 5): 64,
               (8, 0): 64, (8, 6): 128, (8, 9): 128, (9, 0): 128, (10, 0): 128, (12, 0): 128}


def peak_fp32_gflops(device) -> float:  # noqa: ANN001
    cc = device.compute_capability
    lanes = FP32_PER_SM.get(cc, FP32_PER_SM.get((cc[0], 0), 128))
    sms = device.MULTIPROCESSOR_COUNT
    clock_ghz = device.CLOCK_RATE / 1e6  # kHz
    return sms * lanes * clock_ghz * 2


def timed(fn, repeats: int = 10) -> float:  # noqa: ANN001
    from nexec.kernels.cuda import backend

    fn()
    backend.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        backend.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def run_tests() -> dict:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/kernels/cuda",
                           "tests/runtime"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}, timeout=240)
    tail = done.stdout.strip().splitlines()[-1:] or [done.stderr[-300:]]
    return {"ok": done.returncode == 0, "summary": tail[0], "seconds": time.perf_counter() - t}


def train_workloads(names: list[str]) -> list[dict]:
    import models  # benchmarks/models.py

    import nexec

    rows = []
    for name in names:
        result = {"workload": name}
        for device in ("cuda", "cpu"):
            nexec.clear_session()
            nexec.set_random_seed(0)
            model = models.build(name)
            spec = models.spec(name)
            x, y = models.data(name)
            model.compile(optimizer=models.optimizer(spec), loss="categorical_crossentropy",
                          device=device)
            epochs = 2
            t = time.perf_counter()
            h = model.fit(x, y, epochs=epochs, batch_size=spec["batch"], verbose=0)
            train_s = (time.perf_counter() - t) / epochs
            t = time.perf_counter()
            model.predict(x, batch_size=spec["batch"])
            predict_s = time.perf_counter() - t
            result[device] = {"train_samples_per_s": len(x) / train_s,
                              "predict_samples_per_s": len(x) / predict_s,
                              "final_loss": h.history["loss"][-1]}
        rows.append(result)
    return rows


def kernel_rates(peak: float) -> list[dict]:
    from nexec.kernels.activations import RELU
    from nexec.kernels.cpu.conv import conv2d_geometry, conv2d_workspace_shapes
    from nexec.kernels.cuda import backend, conv, dense

    rng = np.random.default_rng(0)
    out = []
    for n, i, o in [(128, 784, 512), (1024, 1024, 1024), (4096, 4096, 4096)]:
        x = backend.to_device(rng.random((n, i), dtype=np.float32))
        w = backend.to_device(rng.random((i, o), dtype=np.float32))
        b = backend.to_device(np.zeros(o, np.float32))
        y = backend.device_array((n, o), np.float32)
        s = timed(lambda: dense.dense_forward(x, w, b, RELU, y, y))
        gf = 2 * n * i * o / s / 1e9
        out.append({"kernel": f"dense {n}x{i}@{i}x{o}", "gflops": gf, "of_peak": gf / peak})
    for (h, c, f, k, st) in [(32, 24, 32, 3, 1), (32, 80, 64, 3, 2), (16, 64, 64, 3, 1)]:
        nb = 64
        ho, wo, pt, pl = conv2d_geometry(h, h, k, k, st, st, "same")
        ws = conv2d_workspace_shapes(nb, h, h, c, k, k, f, ho, wo, st, st, False)
        x = backend.to_device(rng.random((nb, h, h, c), dtype=np.float32))
        w = backend.to_device(rng.random((k, k, c, f), dtype=np.float32))
        b = backend.to_device(np.zeros(f, np.float32))
        cols = backend.device_array(ws["cols"], np.float32)
        y = backend.device_array((nb * ho * wo, f), np.float32)
        s = timed(lambda: conv.conv2d_forward(x, w, b, st, st, pt, pl, ho, wo, RELU, cols, y, y))
        gf = 2 * nb * ho * wo * k * k * c * f / s / 1e9
        out.append({"kernel": f"conv {h}x{h}x{c}->{f} {k}x{k}/s{st} b{nb}", "gflops": gf,
                    "of_peak": gf / peak})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="seed_mlp,wide_mlp,cnn")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    from nexec.kernels.cuda import backend

    if not backend.is_available() or backend.is_simulator():
        print(f"No CUDA GPU here ({backend.unavailable_reason()}); this script needs one.")
        return 2
    device = backend.cuda.get_current_device()
    peak = peak_fp32_gflops(device)
    report = {"gpu": device.name.decode() if isinstance(device.name, bytes) else device.name,
              "compute_capability": device.compute_capability, "peak_fp32_gflops": peak}
    if not a.skip_tests:
        report["tests"] = run_tests()
    report["training"] = train_workloads(a.workloads.split(","))
    report["kernels"] = kernel_rates(peak)
    print(json.dumps(report, indent=2, default=str))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2, default=str))
    return 0 if report.get("tests", {"ok": True})["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
