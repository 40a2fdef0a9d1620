"""The performance numbers the docs quote, rendered from ``benchmarks/results/*.json``.

Docs never type a measured number: they mark it, and this script fills it in from the one
results file that holds it, so README, ``docs/index.md`` and ``docs/performance.md`` cannot
disagree (they once said 6.6x and 9.2x for the same speedup)::

    the seed MLP trained <!-- number:seed_mlp_train_vs_pytorch -->9.2x<!-- /number --> ...

    <!-- table:compare -->
    | workload | metric | ... |
    <!-- /table -->

A number's name is a key of :data:`NUMBERS`, a table's of :data:`TABLES`. Run
``python benchmarks/doc_numbers.py`` after a benchmark wrote new results (it rewrites the
marked spans in place), ``--check`` to list the spans that differ from the results (exit 1);
``tests/test_doc_numbers.py`` runs the check. Benchmarks are not re-run here.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import statistics
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

#: Training / forward GEMM FLOPs per sample (``benchmarks/models.gemm_flops_per_sample``).
TRAIN_FLOPS = {"seed_mlp": 16_256, "wide_mlp": 3_209_216}
PREDICT_FLOPS = {"seed_mlp": 6_784, "wide_mlp": 1_337_344}

NUMBER = re.compile(r"<!-- number:([a-z0-9_]+) -->(.*?)<!-- /number -->", re.S)
TABLE = re.compile(r"(<!-- table:([a-z0-9_]+) -->\n)(.*?)(<!-- /table -->)", re.S)


@lru_cache(maxsize=None)
def results(name: str) -> dict:
    """One results file, parsed."""
    return json.loads((RESULTS / name).read_text())


def _median(file: str, workload: str, framework: str, metric: str) -> float:
    return results(file)["medians"][workload][framework][metric]


def _ratio(file: str, workload: str, peer: str, metric: str) -> float:
    return results(file)["ratios"][workload][peer][metric]


def _blas_peak() -> float:
    """The sgemm peak the docs compare with: Numba's best on the large squares."""
    rows = results("blas_peak.json")["rows"]
    return max(r["numba_best_gflops"] for r in rows if r["shape"].startswith("square")
               and r["m"] <= 1024)


def _x(value: float, digits: int) -> str:
    return f"{value:.{digits}f}x"


def _grouped(value: float) -> str:
    return f"{value:,.0f}"


C, C5 = "compare.json", "compare-cnn-5.json"
SL, SJ, R5 = "compare-seed-loop.json", "compare-seed-jit.json", "compare-conv-round5.json"
SL6, SJ6 = "compare-seed-round6-loop.json", "compare-seed-round6-jit.json"
SL7, SJ7 = "compare-seed-round7-loop.json", "compare-seed-round7-jit.json"
R8 = "compare-conv-round8.json"
SJ8, SJ9 = "compare-seed-round8-jit.json", "compare-seed-round9-jit.json"
# Round 10, an AVX2 machine (AMD Zen 3): before the round's kernels, and after
Z0, Z10 = "compare-round10-zen3-before.json", "compare-conv-round10-zen3.json"
ZJ10 = "compare-seed-round10-zen3-jit.json"
# Round 11, the same kind of machine, with Keras: the start and the end of the round
Z11S, Z11E = "compare-round11-zen3-start.json", "compare-round11-zen3-end.json"
Z11E1 = "compare-round11-zen3-end-first.json"  # the end, an earlier run (kernels compiling)
L11 = "layers-round11-zen3-alternating.json"
B12 = "conv-blocks-round12-zen3.json"  # round 12: conv blocks split between shards, A/B
Z12 = "compare-round12-zen3.json"  # round 12, side by side after the block split
MEM = "memory-plan.json"  # benchmarks/bench_memory.py: the planned arena per workload
PB14 = "pointwise-blocks-round14-zen3.json"  # round 14: 1x1 convolutions in row blocks
Z15 = "compare-round15-zen4.json"  # round 15: CNN and ResNet-18 on an AVX-512 Zen 4
ZS15 = "compare-seed-round15-zen4-jit.json"  # round 15: the seed MLP (whole step) there
ZS15B = "compare-seed-round15-zen4-jit-before.json"  # the same, before the per-step fix
ZW15 = "compare-wide-round15-zen4.json"  # round 15: the wide MLP there
L15 = "layers-cnn-round15-zen4.json"  # round 15: layer_profile.py cnn there
LR15B, LR15 = "layers-resnet18-round15-zen4-before.json", "layers-resnet18-round15-zen4.json"
SMW15 = "small-map-winograd-round15-zen4.json"  # round 15: Winograd on 4x4 maps, A/B
Z16 = "compare-round16-zen4.json"  # round 16: CNN and ResNet-18 after prepared weights
Z16A = "compare-round16-zen4-first.json"  # the same, an earlier median-of-3 run, no Keras
LR16B, LR16 = "layers-resnet18-round16-zen4-before.json", "layers-resnet18-round16-zen4.json"
PW16 = "prepared-weights-round16-zen4.json"  # round 16: prepared weights and Toeplitz, A/B
FB17 = "folded-batchnorm-round17-xeon.json"  # round 17: BatchNormalization folded, A/B
TP17 = "toeplitz-round17-xeon.json"  # round 17: prepared_weights.py runs on the Xeon
Z17A = "compare-round17-xeon-first.json"  # round 17: CNN and ResNet-18 (Toeplitz modelled)
Z17 = "compare-round17-xeon.json"  # round 17: ResNet-18 again, Toeplitz left to "auto"
LR17 = "layers-resnet18-round17-xeon.json"  # round 17: layer_profile.py, Toeplitz modelled
TPS, PPS = "train_samples_per_s", "predict_samples_per_s"

def _seed_round(tag: str, loop: str, jit: str) -> dict[str, Callable[[], str]]:
    """The numbers of one round's seed-MLP runs (``loop`` and ``jit_step=True`` files)."""
    def both(framework: str, metric: str) -> Callable[[], str]:
        return lambda: (f"{_grouped(_median(loop, 'seed_mlp', framework, metric))}"
                        f" / {_grouped(_median(jit, 'seed_mlp', framework, metric))}")

    def ms(framework: str) -> Callable[[], str]:
        return lambda: f"{_median(jit, 'seed_mlp', framework, 'epoch_s') * 1e3:.2f} ms"

    numbers: dict[str, Callable[[], str]] = {
        f"seed_{tag}_pytorch_train_sps": both("pytorch", TPS),
        f"seed_{tag}_pytorch_predict_sps": both("pytorch", PPS),
        f"seed_{tag}_ort_predict_sps": both("onnxruntime", PPS),
        f"seed_{tag}_jit_epoch_ms": ms("nexec"),
        f"seed_{tag}_pytorch_epoch_ms": ms("pytorch"),
    }
    for kind, path in (("loop", loop), ("jit", jit)):
        numbers.update({
            f"seed_{tag}_{kind}_train_vs_pytorch":
                lambda p=path: _x(_ratio(p, "seed_mlp", "pytorch", TPS), 2),
            f"seed_{tag}_{kind}_predict_vs_ort":
                lambda p=path: _x(_ratio(p, "seed_mlp", "onnxruntime", PPS), 2),
            f"seed_{tag}_{kind}_train_sps":
                lambda p=path: _grouped(_median(p, "seed_mlp", "nexec", TPS)),
            f"seed_{tag}_{kind}_predict_sps":
                lambda p=path: _grouped(_median(p, "seed_mlp", "nexec", PPS)),
        })
    return numbers


#: Every number a doc may quote: name -> function giving its text.
NUMBERS: dict[str, Callable[[], str]] = {
    # compare.json: the side-by-side run (seed MLP, wide MLP, CNN)
    "seed_mlp_train_vs_pytorch": lambda: _x(_ratio(C, "seed_mlp", "pytorch", TPS), 1),
    "seed_mlp_train_vs_keras": lambda: _x(_ratio(C, "seed_mlp", "keras", TPS), 0),
    "seed_mlp_train_vs_pytorch_2": lambda: _x(_ratio(C, "seed_mlp", "pytorch", TPS), 2),
    "seed_mlp_predict_vs_pytorch": lambda: _x(_ratio(C, "seed_mlp", "pytorch", PPS), 2),
    "wide_mlp_train_vs_pytorch": lambda: _x(_ratio(C, "wide_mlp", "pytorch", TPS), 2),
    "wide_mlp_train_vs_keras": lambda: _x(_ratio(C, "wide_mlp", "keras", TPS), 2),
    "wide_mlp_predict_vs_pytorch": lambda: _x(_ratio(C, "wide_mlp", "pytorch", PPS), 2),
    "wide_mlp_predict_vs_keras": lambda: _x(_ratio(C, "wide_mlp", "keras", PPS), 2),
    "cnn_train_vs_keras": lambda: _x(_ratio(C, "cnn", "keras", TPS), 2),
    "cnn_predict_vs_keras": lambda: _x(_ratio(C, "cnn", "keras", PPS), 2),
    "seed_mlp_rss_vs_pytorch": lambda: _x(_ratio(C, "seed_mlp", "pytorch", "peak_rss_mb"), 2),
    "wide_mlp_rss_vs_pytorch": lambda: _x(_ratio(C, "wide_mlp", "pytorch", "peak_rss_mb"), 2),
    "cnn_rss_vs_pytorch": lambda: _x(_ratio(C, "cnn", "pytorch", "peak_rss_mb"), 2),
    "seed_mlp_train_msps": lambda: f"{_median(C, 'seed_mlp', 'nexec', TPS) / 1e6:.2f} M",
    "seed_mlp_epoch_ms": lambda: f"{_median(C, 'seed_mlp', 'nexec', 'epoch_s') * 1e3:.2f} ms",
    "seed_mlp_step_us": lambda: f"{_median(C, 'seed_mlp', 'nexec', 'epoch_s') / 8 * 1e6:.0f} µs",
    "seed_mlp_train_gflops": lambda: f"{_median(C, 'seed_mlp', 'nexec', TPS) * TRAIN_FLOPS['seed_mlp'] / 1e9:.0f} GFLOP/s",  # noqa: E501
    "seed_mlp_epoch_ms_pytorch": lambda: f"{_median(C, 'seed_mlp', 'pytorch', 'epoch_s') * 1e3:.1f} ms",  # noqa: E501
    "seed_mlp_first_epoch_s": lambda: f"{_median(C, 'seed_mlp', 'nexec', 'first_epoch_s'):.2f} s",  # noqa: E501
    "seed_mlp_first_epoch_s_pytorch": lambda: f"{_median(C, 'seed_mlp', 'pytorch', 'first_epoch_s'):.2f} s",  # noqa: E501
    "seed_mlp_first_epoch_s_keras": lambda: f"{_median(C, 'seed_mlp', 'keras', 'first_epoch_s'):.2f} s",  # noqa: E501
    "seed_mlp_first_epoch_range": lambda: (
        f"{_median(C, 'seed_mlp', 'nexec', 'first_epoch_s_min'):.2f}–"
        f"{_median(C, 'seed_mlp', 'nexec', 'first_epoch_s_max'):.2f} s"),
    "seed_mlp_train_of_peak": lambda: f"{_median(C, 'seed_mlp', 'nexec', TPS) * TRAIN_FLOPS['seed_mlp'] / 1e9 / _blas_peak():.0%}",  # noqa: E501
    "wide_mlp_epoch_s": lambda: f"{_median(C, 'wide_mlp', 'nexec', 'epoch_s'):.2f} s",
    "wide_mlp_train_sps": lambda: _grouped(_median(C, "wide_mlp", "nexec", TPS)),
    "wide_mlp_predict_sps": lambda: _grouped(_median(C, "wide_mlp", "nexec", PPS)),
    "wide_mlp_train_gflops": lambda: f"{_median(C, 'wide_mlp', 'nexec', TPS) * TRAIN_FLOPS['wide_mlp'] / 1e9:.0f} GFLOP/s",  # noqa: E501
    "wide_mlp_predict_gflops": lambda: f"{_median(C, 'wide_mlp', 'nexec', PPS) * PREDICT_FLOPS['wide_mlp'] / 1e9:.0f} GFLOP/s",  # noqa: E501
    "wide_mlp_train_of_peak": lambda: f"{_median(C, 'wide_mlp', 'nexec', TPS) * TRAIN_FLOPS['wide_mlp'] / 1e9 / _blas_peak():.0%}",  # noqa: E501
    "wide_mlp_predict_of_peak": lambda: f"{_median(C, 'wide_mlp', 'nexec', PPS) * PREDICT_FLOPS['wide_mlp'] / 1e9 / _blas_peak():.0%}",  # noqa: E501
    # compare-cnn-5.json: the CNN alone, 5 runs
    "cnn5_nexec_train": lambda: f"{_median(C5, 'cnn', 'nexec', TPS):.1f}",
    "cnn5_nexec_predict": lambda: _grouped(_median(C5, "cnn", "nexec", PPS)),
    "cnn5_pytorch_train": lambda: f"{_median(C5, 'cnn', 'pytorch', TPS):.1f}",
    "cnn5_pytorch_predict": lambda: _grouped(_median(C5, "cnn", "pytorch", PPS)),
    "cnn5_keras_train": lambda: f"{_median(C5, 'cnn', 'keras', TPS):.1f}",
    "cnn5_keras_predict": lambda: _grouped(_median(C5, "cnn", "keras", PPS)),
    "cnn5_train_vs_keras": lambda: _x(_ratio(C5, "cnn", "keras", TPS), 2),
    "cnn5_predict_vs_keras": lambda: _x(_ratio(C5, "cnn", "keras", PPS), 2),
    "cnn5_train_vs_pytorch": lambda: _x(_ratio(C5, "cnn", "pytorch", TPS), 2),
    "cnn5_predict_vs_pytorch": lambda: _x(_ratio(C5, "cnn", "pytorch", PPS), 2),
    # compare-seed-loop.json / compare-seed-jit.json: the seed MLP, loop and jit_step=True
    "seed_loop_train_vs_pytorch": lambda: _x(_ratio(SL, "seed_mlp", "pytorch", TPS), 2),
    "seed_jit_train_vs_pytorch": lambda: _x(_ratio(SJ, "seed_mlp", "pytorch", TPS), 2),
    "seed_loop_predict_vs_ort": lambda: _x(_ratio(SL, "seed_mlp", "onnxruntime", PPS), 2),
    "seed_jit_predict_vs_ort": lambda: _x(_ratio(SJ, "seed_mlp", "onnxruntime", PPS), 2),
    # compare-seed-round6-*.json (after round 6's kernels and tails), compare-seed-round7-*.json
    **_seed_round("r6", SL6, SJ6),
    **_seed_round("r7", SL7, SJ7),
    # compare-seed-round8/9-jit.json: jit_step=True, round 8's run with slow peers, round 9's
    "seed_r8_jit_train_vs_pytorch": lambda: _x(_ratio(SJ8, "seed_mlp", "pytorch", TPS), 1),
    "seed_r8_jit_predict_vs_ort": lambda: _x(_ratio(SJ8, "seed_mlp", "onnxruntime", PPS), 1),
    "seed_r9_jit_train_vs_pytorch": lambda: _x(_ratio(SJ9, "seed_mlp", "pytorch", TPS), 2),
    "seed_r9_jit_predict_vs_ort": lambda: _x(_ratio(SJ9, "seed_mlp", "onnxruntime", PPS), 2),
    "seed_r9_jit_epoch_ms":
        lambda: f"{_median(SJ9, 'seed_mlp', 'nexec', 'epoch_s') * 1e3:.2f} ms",
    "seed_r9_pytorch_epoch_ms":
        lambda: f"{_median(SJ9, 'seed_mlp', 'pytorch', 'epoch_s') * 1e3:.2f} ms",
    # compare-conv-round5.json: CNN and ResNet-18 against PyTorch, Keras and ONNX Runtime
    "r5_cnn_train_vs_pytorch": lambda: _x(_ratio(R5, "cnn", "pytorch", TPS), 2),
    "r5_cnn_predict_vs_ort": lambda: _x(_ratio(R5, "cnn", "onnxruntime", PPS), 2),
    "r5_resnet_train_vs_pytorch": lambda: _x(_ratio(R5, "resnet18", "pytorch", TPS), 2),
    "r5_resnet_predict_vs_ort": lambda: _x(_ratio(R5, "resnet18", "onnxruntime", PPS), 2),
    # compare-conv-round8.json: the same after 512-bit vectors and the cost model by default
    "r8_cnn_train_vs_keras": lambda: _x(_ratio(R8, "cnn", "keras", TPS), 2),
    "r8_cnn_train_vs_pytorch": lambda: _x(_ratio(R8, "cnn", "pytorch", TPS), 2),
    "r8_cnn_predict_vs_ort": lambda: _x(_ratio(R8, "cnn", "onnxruntime", PPS), 2),
    "r8_resnet_train_vs_pytorch": lambda: _x(_ratio(R8, "resnet18", "pytorch", TPS), 2),
    "r8_resnet_predict_vs_ort": lambda: _x(_ratio(R8, "resnet18", "onnxruntime", PPS), 2),
    # compare-round10-zen3-before.json / compare-conv-round10-zen3.json /
    # compare-seed-round10-zen3-jit.json: an AVX2 machine, before and after round 10
    **{f"z{tag}_cnn_{what}_vs_{peer}": (lambda f=f, peer=peer, metric=metric:
                                          _x(_ratio(f, "cnn", peer, metric), 2))
       for tag, f in (("0", Z0), ("10", Z10))
       for what, metric in (("train", TPS), ("predict", PPS))
       for peer in ("pytorch", "onnxruntime") if (what, peer) != ("train", "onnxruntime")},
    "seed_z10_jit_train_vs_pytorch": lambda: _x(_ratio(ZJ10, "seed_mlp", "pytorch", TPS), 2),
    "seed_z10_jit_predict_vs_ort": lambda: _x(_ratio(ZJ10, "seed_mlp", "onnxruntime", PPS), 2),
    "seed_z15_jit_train_vs_pytorch": lambda: _x(_ratio(ZS15, "seed_mlp", "pytorch", TPS), 2),
    "seed_z15_jit_predict_vs_ort": lambda: _x(_ratio(ZS15, "seed_mlp", "onnxruntime", PPS), 2),
    "seed_z15b_jit_train_vs_pytorch": lambda: _x(_ratio(ZS15B, "seed_mlp", "pytorch", TPS), 2),
    "seed_z15b_jit_predict_vs_ort":
        lambda: _x(_ratio(ZS15B, "seed_mlp", "onnxruntime", PPS), 2),
    "wide_z15_train_vs_pytorch": lambda: _x(_ratio(ZW15, "wide_mlp", "pytorch", TPS), 2),
    "wide_z15_predict_vs_pytorch": lambda: _x(_ratio(ZW15, "wide_mlp", "pytorch", PPS), 2),
    "z15_blas_peak": lambda: f"{results(L15)['blas_peak_gflops']:.0f} GFLOP/s",
    **{f"r15_small_map{tag}": (lambda control=control: _small_map_range(control))
       for tag, control in (("", False), ("_control", True))},
    **{f"r16_prepared_{side}{tag}": (lambda side=side, control=control:
                                     _prepared_range(side, control))
       for side in ("new", "kept") for tag, control in (("", False), ("_control", True))},
    **{f"r17_folded{name}{tag}": (lambda toeplitz=toeplitz, control=control:
                                   _folded_range(toeplitz, control))
       for name, toeplitz in (("", False), ("_toeplitz", True))
       for tag, control in (("", False), ("_control", True))},
    "r17_resnet_steps_unfolded": lambda: str(_folded_steps("unfolded")),
    "r17_resnet_steps_folded": lambda: str(_folded_steps("folded")),
    **{f"z17{tag}_{workload}_{what}_vs_{peer}": (lambda f=f, w=workload, peer=peer,
                                                  metric=metric: _x(_ratio(f, w, peer, metric), 2))
       for tag, f, workload in (("", Z17, "resnet18"), ("a", Z17A, "cnn"),
                                ("a", Z17A, "resnet18"))
       for what, metric in (("train", TPS), ("predict", PPS))
       for peer in ("pytorch", "keras", "onnxruntime") if (what, peer) != ("train", "onnxruntime")},
    **{f"{tag}_toeplitz_layer_ms": (lambda f=f: f"{_toeplitz_layer_ms(f):.1f} ms")
       for tag, f in (("r16", LR16), ("r17", LR17))},
    # a Toeplitz layer's matrix (2x2 maps, 512 -> 512 channels: 16 MiB) read once a step
    "r17_toeplitz_stream": lambda: f"{16 * 2 ** 20 / (_toeplitz_layer_ms(LR17) * 1e6):.0f} GB/s",
    # toeplitz-round17-xeon.json: prepared_weights.py's "new" (Toeplitz) over "kept" (im2col)
    "r17_toeplitz": lambda: _runs_range([run["median_ms"]["new"] / run["median_ms"]["kept"]
                                         for run in results(TP17)["runs"]]),
    **{f"r16_resnet_infer_{tag}": (lambda f=f: f"{results(f)['infer_step_ms']:.1f} ms")
       for tag, f in (("before", LR16B), ("after", LR16))},
    **{f"z{tag}_resnet18_nexec_rss":
       (lambda f=f: f"{_median(f, 'resnet18', 'nexec', 'peak_rss_mb'):.0f} MB")
       for tag, f in (("15", Z15), ("16", Z16))},
    **{f"z16{tag}_{workload}_{what}_vs_{peer}": (lambda f=f, w=workload, peer=peer, metric=metric:
                                                  _x(_ratio(f, w, peer, metric), 2))
       for tag, f, workload, what, metric, peer in (
           ("", Z16, "resnet18", "predict", PPS, "onnxruntime"),
           ("", Z16, "cnn", "predict", PPS, "onnxruntime"),
           ("", Z16, "cnn", "train", TPS, "keras"),
           ("a", Z16A, "resnet18", "predict", PPS, "onnxruntime"))},
    **{f"z{tag}_cnn_{fw}_train_rate": (lambda f=f, fw=fw: f"{_median(f, 'cnn', fw, TPS):.0f}")
       for tag, f in (("15", Z15), ("16", Z16)) for fw in ("nexec", "keras")},
    # compare-round11-zen3-start.json / -end.json: CNN and ResNet-18 against all three peers
    **{f"z{tag}_{workload}_{what}_vs_{peer}": (lambda f=f, w=workload, peer=peer, metric=metric:
                                                _x(_ratio(f, w, peer, metric), 2))
       for tag, f in (("11s", Z11S), ("11e", Z11E), ("11e1", Z11E1), ("12", Z12), ("15", Z15))
       for workload in ("cnn", "resnet18")
       for what, metric in (("train", TPS), ("predict", PPS))
       for peer in ("pytorch", "keras", "onnxruntime") if (what, peer) != ("train", "onnxruntime")},
    # layers-round11-zen3-alternating.json: the CNN end to end, before and after round 11
    **{f"r11_cnn_ab_{what}_{side}": (lambda what=what, side=side: _grouped(
        statistics.median(results(L11)["cnn_end_to_end"][side][what])))
       for what in ("train", "predict") for side in ("before", "after")},
    # conv-blocks-round12-zen3.json: blocks split between shards, median split / whole
    **{f"r12_blocks_{w}_{step}{tag}": (lambda w=w, step=step, control=control:
                                       _x(_blocks_ratio(w, step, control), 2))
       for w in ("cnn", "resnet18") for step in ("train", "infer")
       for tag, control in (("", False), ("_control", True))},
    # memory-plan.json (benchmarks/bench_memory.py): planned, not timed
    "memory_threads": lambda: str(results(MEM)["threads"]),
    **{f"memory_{w}_train_share": (lambda w=w: _memory_share(w)) for w in ("cnn", "residual")},
    **{f"memory_picture_{key}": (lambda key=key: _mib(results(MEM)["picture"][f"{key}_bytes"]))
       for key in ("arena", "naive")},
    # blas_peak.json
    "blas_peak": lambda: f"{_blas_peak():.0f} GFLOP/s",
}


@lru_cache(maxsize=None)
def _script(name: str) -> Any:
    """``benchmarks/<name>.py`` loaded as a module, so its own formatter renders its results
    (``compare.format_table``, ``layer_profile.table``: one formatter for each)."""
    spec = importlib.util.spec_from_file_location(f"nexec_bench_{name}",
                                                  ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _layers_table(file: str) -> str:
    """A ``layer_profile.py --json`` run as its own table, against the peak it measured."""
    d = results(file)
    return _script("layer_profile").table(d, d["blas_peak_gflops"])


def _small_map_range(control: bool) -> str:
    """The new/old predict ratios of ``small_map_winograd.py``'s runs (or its A/A runs)."""
    r = [run["ratio_of_medians"] for run in results(SMW15)["runs"] if run["control"] == control]
    return f"{min(r):.2f}–{max(r):.2f}x ({len(r)} runs)"


def _prepared_range(side: str, control: bool) -> str:
    """``prepared_weights.py``'s ``side``/old predict ratios over its runs (or A/A runs)."""
    return _runs_range([run["ratio_to_old"][side] for run in results(PW16)["runs"]
                        if run["control"] == control])


def _runs_range(r: list[float]) -> str:
    """Ratios of several runs as one figure: ``0.87–0.91x (3 runs)``."""
    if len(r) == 1:
        return f"{r[0]:.2f}x (1 run)"
    return f"{min(r):.2f}–{max(r):.2f}x ({len(r)} runs)"


def _folded_range(toeplitz: bool, control: bool) -> str:
    """``folded_batchnorm.py``'s folded/unfolded predict ratios over its runs (or A/A), with
    the 2x2 maps as Toeplitz matrices or not."""
    return _runs_range([run["ratio"] for run in results(FB17)["runs"]
                        if run["control"] == control and run["toeplitz_2x2"] == toeplitz])


def _toeplitz_layer_ms(file: str) -> float:
    """The median inference time of a ``layer_profile.py`` run's Toeplitz layers."""
    return statistics.median(r["infer_ms"] for r in results(file)["rows"]
                             if r.get("infer_algorithm") == "toeplitz")


def _folded_steps(side: str) -> int:
    """ResNet-18's inference steps with and without the folds (``folded_batchnorm.py``)."""
    (steps,) = {run["inference_steps"][side] for run in results(FB17)["runs"]
                if not run["control"]}
    return steps


def _prepared_layers_table() -> str:
    """ResNet-18's layers with prepared weights in inference: inference ms, both profiles."""
    before = {r["layer"]: r for r in results(LR16B)["rows"]}
    rows = ["| layer | shape | inference algorithm | before ms | after ms |",
            "|---|---|---|---:|---:|"]
    for r in results(LR16)["rows"]:
        algorithm = r.get("infer_algorithm", "")
        if algorithm in ("winograd", "toeplitz"):
            was = before[r["layer"]]["infer_algorithm"]
            rows.append(f"| {r['layer']} | {r['shape']} | "
                        f"{algorithm if was == algorithm else f'{was} → {algorithm}'} | "
                        f"{before[r['layer']]['infer_ms']:.2f} | {r['infer_ms']:.2f} |")
    return "\n".join(rows)


def _small_map_layers_table() -> str:
    """ResNet-18's layers whose inference choice differs: inference ms, both profiles."""
    before = {r["layer"]: r for r in results(LR15B)["rows"]}
    rows = ["| layer | shape | before: im2col, infer ms | after: Winograd, infer ms |",
            "|---|---|---:|---:|"]
    for r in results(LR15)["rows"]:
        if r.get("infer_algorithm", r["algorithm"]) != r["algorithm"]:
            rows.append(f"| {r['layer']} | {r['shape']} | {before[r['layer']]['infer_ms']:.2f} "
                        f"| {r['infer_ms']:.2f} |")
    return "\n".join(rows)


def _compare_table(file: str) -> str:
    compare = _script("compare")
    d = results(file)
    frameworks = list(next(iter(d["medians"].values())))
    return compare.format_table(d["medians"], d["ratios"], frameworks)


def _load_table(file: str) -> str:
    """The under-load table of a ``compare.py --busy 0,1`` run (``format_load_table``)."""
    d = results(file)
    levels = [int(lv) for lv in d["busy"]]
    by = {int(k): v["medians"] for k, v in d["by_busy"].items()}
    frameworks = list(dict.fromkeys(fw for w in by[levels[0]].values() for fw in w))
    return _script("compare").format_load_table(by, levels, frameworks)


def _layers_r11_table() -> str:
    """Round 11's per-layer medians, before and after, of the layers its kernels changed."""
    d = results(L11)
    picks = {"resnet18": ("max_pooling2d", "conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4",
                          "conv2d_6", "conv2d_8", "conv2d_9"),
             "cnn": ("conv2d_8", "conv2d_7")}
    lines = ["| workload | layer | algorithm | inference ms, before → after "
             "| training (forward + backward) ms, before → after |", "|---|---|---|---|---|"]

    def med(runs: list, i: int, key: Callable[[dict], float]) -> float:
        return statistics.median(key(r["rows"][i]) for r in runs)

    def train(row: dict) -> float:
        return row["train_forward_ms"] + row["train_backward_ms"]

    for workload, layers in picks.items():
        before, after = d["runs"][workload]["before"], d["runs"][workload]["after"]
        rows = before[0]["rows"]
        for name in layers:
            i = next(k for k, r in enumerate(rows) if r["layer"] == name)
            lines.append(
                f"| {workload} | {name} | {rows[i]['algorithm'] or rows[i]['type']} | "
                f"{med(before, i, lambda r: r['infer_ms']):.2f} → "
                f"{med(after, i, lambda r: r['infer_ms']):.2f} | "
                f"{med(before, i, train):.1f} → {med(after, i, train):.1f} |")
        steps = [statistics.median(r[k] for r in runs) for k in ("infer_step_ms", "train_step_ms")
                 for runs in (before, after)]
        lines.append(f"| {workload} | whole step | | {steps[0]:.1f} → {steps[1]:.1f} | "
                     f"{steps[2]:.1f} → {steps[3]:.1f} |")
    return "\n".join(lines)


def _blocks_ratio(workload: str, step: str, control: bool = False) -> float:
    """Median over round 12's conv_blocks.py runs of split / whole (A/B or A/A runs)."""
    runs = [r for r in results(B12)["runs"] if r["kind"].startswith("control") == control]
    return statistics.median(r["results"][workload]["split"][step]
                             / r["results"][workload]["whole"][step] for r in runs)


def _blocks_r12_table() -> str:
    """Every run of round 12's conv_blocks.py: split / whole per workload and step."""
    d = results(B12)
    cols = [(w, s) for w in ("cnn", "resnet18") for s in ("train", "infer")]
    names = {"cnn": "CNN", "resnet18": "ResNet-18", "train": "training", "infer": "predict"}
    lines = ["| run | " + " | ".join(f"{names[w]} {names[s]}" for w, s in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for r in d["runs"]:
        res = r["results"]
        lines.append(f"| {r['kind']} | " + " | ".join(
            f"{res[w]['whole'][s]:.1f} → {res[w]['split'][s]:.1f} "
            f"({res[w]['split'][s] / res[w]['whole'][s]:.2f})" for w, s in cols) + " |")
    return "\n".join(lines)


def _pointwise_blocks_table() -> str:
    """pointwise_blocks.py's runs: per case the median ms of both ways and each run's ratio."""
    runs = results(PB14)["runs"]
    lines = ["| layer | BLAS threads, rows | block | forward ms, one → blocks (each run) | "
             "backward ms, one → blocks (each run) |", "|---|---|---:|---|---|"]
    for i, case in enumerate(runs[0]):
        rows = [run[i] for run in runs]
        cells = []
        for p in ("fwd", "bwd"):
            one = statistics.median(r[p + "_one"] for r in rows)
            blocks = statistics.median(r[p + "_blocks"] for r in rows)
            each = ", ".join(f"{r[p + '_blocks'] / r[p + '_one']:.2f}" for r in rows)
            cells.append(f"{one:.2f} → {blocks:.2f} ({each})")
        name = case["layer"].replace("->", " → ").replace("x", "×")
        lines.append(f"| {name} | {case['threads']}, "
                     f"{case['rows']:,} | {case['block']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.{2 if nbytes < 10 * 2**20 else 1}f} MiB"


def _memory_share(workload: str) -> str:
    """The training arena as a share of one buffer per tensor (``memory-plan.json``)."""
    row = results(MEM)["rows"][workload]["training"]
    return f"{row['arena_bytes'] / row['naive_bytes']:.2f}"


def _memory_table() -> str:
    """Arena and naive bytes per workload, training and inference (``bench_memory.py``)."""
    lines = ["| workload | training arena (= lower bound) | naive | inference arena | naive |",
             "|---|---:|---:|---:|---:|"]
    for workload, modes in results(MEM)["rows"].items():
        name = "residual (20 blocks)" if workload == "residual" else workload
        lines.append(f"| {name} | " + " | ".join(
            _mib(modes[mode][key]) for mode in ("training", "inference")
            for key in ("arena_bytes", "naive_bytes")) + " |")
    return "\n".join(lines)


def _blas_label(shape: str) -> str:
    if shape.startswith("square "):
        return f"{shape.split()[1]}²"
    for short, long in (("wide ", "wide MLP "), ("seed ", "seed MLP ")):
        if shape.startswith(short):
            shape = long + shape[len(short):]
    return re.sub(r"(\d)x(\d)", r"\1×\2", shape)


def _blas_table() -> str:
    rows = ["| shape (M×K @ K×N) | NumPy `np.dot` | Numba `np.dot` (what nexec calls) |",
            "|---|---:|---:|"]
    for r in results("blas_peak.json")["rows"]:
        rows.append(f"| {_blas_label(r['shape'])} | {r['numpy_best_gflops']:.0f} | "
                    f"{r['numba_best_gflops']:.0f} |")
    return "\n".join(rows)


#: Every table a doc may include: name -> function giving its Markdown (no final newline).
TABLES: dict[str, Callable[[], str]] = {
    "compare": lambda: _compare_table(C),
    "blas_peak": _blas_table,
    "compare_load": lambda: _load_table("compare-load.json"),
    "compare_load_fixed": lambda: _load_table("compare-load-fixed-threads.json"),
    "compare_zen3_cnn": lambda: _compare_table(Z10),
    "compare_zen3_seed_jit": lambda: _compare_table(ZJ10),
    "compare_z11_start": lambda: _compare_table(Z11S),
    "compare_z11_end": lambda: _compare_table(Z11E),
    "blocks_r12": _blocks_r12_table,
    "compare_z12": lambda: _compare_table(Z12),
    "compare_z15": lambda: _compare_table(Z15),
    "compare_z15_seed": lambda: _compare_table(ZS15),
    "compare_z15_wide": lambda: _compare_table(ZW15),
    "layers_z15": lambda: _layers_table(L15),
    "small_map_layers": _small_map_layers_table,
    "prepared_layers": _prepared_layers_table,
    "compare_z16": lambda: _compare_table(Z16),
    "compare_z17": lambda: _compare_table(Z17),
    "compare_z17_first": lambda: _compare_table(Z17A),
    "layers_r11": _layers_r11_table,
    "memory_plan": _memory_table,
    "pointwise_blocks": _pointwise_blocks_table,
}


def documents() -> list[Path]:
    """The files whose marked numbers are rendered."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def render(text: str) -> str:
    """``text`` with every marked number and table filled in from the results.

    Raises:
        KeyError: A marker names no known number or table.
    """
    def number(m: re.Match) -> str:
        name = m.group(1)
        if name not in NUMBERS:
            raise KeyError(f"unknown number {name!r} (known: {', '.join(sorted(NUMBERS))})")
        return f"<!-- number:{name} -->{NUMBERS[name]()}<!-- /number -->"

    def table(m: re.Match) -> str:
        name = m.group(2)
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r} (known: {', '.join(sorted(TABLES))})")
        return f"{m.group(1)}{TABLES[name]()}\n{m.group(4)}"

    return TABLE.sub(table, NUMBER.sub(number, text))


def used(text: str) -> set[str]:
    """Names of the numbers and tables ``text`` marks."""
    return {m.group(1) for m in NUMBER.finditer(text)} | \
        {m.group(2) for m in TABLE.finditer(text)}


def differences(path: Path) -> list[str]:
    """One line per marked span of ``path`` whose text differs from the results."""
    text = path.read_text()
    out = []
    for m in NUMBER.finditer(text):
        want = NUMBERS[m.group(1)]() if m.group(1) in NUMBERS else "<unknown number>"
        if m.group(2) != want:
            out.append(f"{path.name}: number {m.group(1)} reads {m.group(2)!r}, the results "
                       f"say {want!r}")
    for m in TABLE.finditer(text):
        want = TABLES[m.group(2)]() if m.group(2) in TABLES else "<unknown table>"
        if m.group(3).rstrip("\n") != want:
            out.append(f"{path.name}: table {m.group(2)} differs from the results")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="list the marked numbers that differ from the results; exit 1 if any")
    a = ap.parse_args(argv)
    if a.check:
        problems = [p for doc in documents() for p in differences(doc)]
        print("\n".join(problems) or "every marked number matches benchmarks/results")
        return 1 if problems else 0
    for doc in documents():
        text = doc.read_text()
        new = render(text)
        if new != text:
            doc.write_text(new)
            print(f"updated {doc.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
