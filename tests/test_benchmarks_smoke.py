"""The asv suite in ``benchmarks/`` must not rot: run every benchmark once, on tiny sizes.

Benchmarks are discovered the way asv discovers them (every module of the ``benchmarks``
package; functions and class methods named ``time_``, ``timeraw_``, ``peakmem_``, ``mem_``,
``track_``), then for each benchmark and each of its parameter combinations: ``setup``, the
method, ``teardown``. ``timeraw_`` code runs in a fresh interpreter, as asv runs it (of the
cold first fit, only its setup: see ``_check_fresh_cache``). Small mode
(``benchmarks.models.SMALL``) shrinks sample counts, batch sizes and depth; asv itself is not
needed. The scripts (``nexec_peer``, ``compare``, ``blas_peak``) get a quick run of their
pure parts too.
"""
from __future__ import annotations

import importlib
import inspect
import itertools
import json
import pkgutil
import re
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import os  # noqa: E402

_env = dict(os.environ)
import benchmarks  # noqa: E402
from benchmarks import models  # noqa: E402

# benchmarks/__init__.py pins thread counts for benchmark processes; keep this pytest
# process's environment (inherited by other tests' subprocesses) as it was.
for _var in set(os.environ) - set(_env):
    del os.environ[_var]

BENCH_NAME = re.compile(r"^(time|timeraw|peakmem|mem|track)_")
PEERS = REPO.parent / "shared" / "peers"


def _modules():
    return [importlib.import_module(f"benchmarks.{m.name}")
            for m in pkgutil.iter_modules(benchmarks.__path__)]


def _collect():
    """(id, owner class or module, attribute) for every benchmark asv would find."""
    found = []
    for mod in _modules():
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and obj.__module__ == mod.__name__:
                for attr in dir(obj):
                    if BENCH_NAME.match(attr) and callable(getattr(obj, attr)):
                        found.append((f"{mod.__name__.split('.')[-1]}.{name}.{attr}", obj,
                                      attr))
            elif inspect.isfunction(obj) and BENCH_NAME.match(name) \
                    and obj.__module__ == mod.__name__:
                found.append((f"{mod.__name__.split('.')[-1]}.{name}", mod, name))
    return found


BENCHMARKS = _collect()


@pytest.fixture(autouse=True)
def small_sizes(monkeypatch):
    monkeypatch.setattr(models, "SMALL", True)


def _param_combinations(owner):
    params = getattr(owner, "params", None) if inspect.isclass(owner) else None
    if not params:
        return [()]
    if not isinstance(params[0], (list, tuple)):
        params = [params]
    return list(itertools.product(*params))


def _run(owner, attr):
    from benchmarks.bench_compile import run_code

    results = []
    for combo in _param_combinations(owner):
        obj = owner() if inspect.isclass(owner) else owner  # a module: a plain function
        if inspect.isclass(owner) and hasattr(obj, "setup"):
            obj.setup(*combo)
        try:
            value = getattr(obj, attr)(*combo)
            if attr.startswith("timeraw_"):
                stmt, setup = value if isinstance(value, tuple) else (value, "")
                if attr == "timeraw_cold_first_fit":
                    _check_fresh_cache(setup, obj.base)
                else:
                    run_code(stmt, setup, timeout=120)
            results.append(value)
        finally:
            if inspect.isclass(owner) and hasattr(obj, "teardown"):
                obj.teardown(*combo)
    return results


def _check_fresh_cache(setup, base):
    """The cold first fit's setup points Numba at a new, empty folder under ``base``.

    Its statements are the warm benchmark's (which runs them, on the session's cache): run
    cold here, they compiled every kernel of two models from nothing, ~90 s of CI's two
    cores, for what ``tests/test_warmup.py`` already checks (an empty cache compiles).
    """
    from benchmarks.bench_compile import run_code

    out = run_code("import os; print(os.environ['NUMBA_CACHE_DIR'])", setup, timeout=60)
    folder = Path(out.stdout.strip())
    assert folder.parent == Path(base) and folder.is_dir() and not any(folder.iterdir())


def test_discovery_finds_the_suite():
    names = {b[0] for b in BENCHMARKS}
    for expected in ["bench_training.TimeTraining.time_train_epoch",
                     "bench_training.TimeTraining.time_predict",
                     "bench_training.PeakMemTraining.peakmem_train",
                     "bench_kernels.TimeDenseKernels.time_dense_forward",
                     "bench_kernels.TimeConvKernels.time_conv2d_backward",
                     "bench_kernels.TimeMergeKernels.time_add_forward",
                     "bench_planning.TimePlanning.time_memory_plan_training",
                     "bench_compile.TimerawColdFirstFit.timeraw_cold_first_fit",
                     "bench_compile.TimerawWarmFirstFit.timeraw_warm_first_fit",
                     "bench_compile.timeraw_import_nexec",
                     "bench_memory.TrackMemoryPlan.track_arena_bytes"]:
        assert expected in names, f"{expected} not found among {sorted(names)}"


@pytest.mark.parametrize("owner,attr", [(b[1], b[2]) for b in BENCHMARKS],
                         ids=[b[0] for b in BENCHMARKS])
def test_benchmark_runs(owner, attr):
    results = _run(owner, attr)
    if attr.startswith("track_"):
        assert all(isinstance(r, (int, float)) and r > 0 for r in results), results


def test_memory_plan_numbers_are_consistent():
    from benchmarks.bench_memory import TrackMemoryPlan

    for workload, mode in _param_combinations(TrackMemoryPlan):
        b = TrackMemoryPlan()
        b.setup(workload, mode)
        arena = b.track_arena_bytes(workload, mode)
        assert b.track_lower_bound_bytes(workload, mode) <= arena <= \
            b.track_naive_bytes(workload, mode), (workload, mode)


def test_workloads_mirror_the_peers():
    """benchmarks/workloads.py is a copy of shared/peers/workloads.py (when that exists)."""
    from benchmarks import workloads as ours

    assert ours.SEED_MLP["n"] == 1000 and ours.WIDE_MLP["hidden"] == (512, 512)
    if not (PEERS / "workloads.py").is_file():
        return  # a bare clone: nothing to compare with
    from benchmarks.compare import load_module, spec_mismatches

    assert spec_mismatches(PEERS / "workloads.py") == []
    theirs = load_module(PEERS / "workloads.py", "_peers_workloads_test")
    for name, shape in [("SEED_MLP", (64,)), ("CNN", (32, 32, 3))]:
        xa, ya = ours.make_data(getattr(ours, name), shape)
        xb, yb = theirs.make_data(getattr(theirs, name), shape)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_models_match_the_peer_architectures():
    # Parameter counts of torch_peer.py / keras_peer.py for the same models.
    expected = {"seed_mlp": 3466, "wide_mlp": 669706, "cnn": 211066}
    for name, count in expected.items():
        assert models.build(name).count_params() == count, name
    assert len(models.build("residual", blocks=models.PLANNING_BLOCKS).layers) >= 200
    flops = models.gemm_flops_per_sample("wide_mlp")
    assert flops["forward"] == 2 * (784 * 512 + 512 * 512 + 512 * 10)


def test_nexec_peer_prints_the_peer_fields(capsys):
    from benchmarks import nexec_peer

    record = nexec_peer.measure("seed_mlp", threads=2)
    fields = {"framework", "version", "workload", "threads", "params", "first_epoch_s",
              "epoch_s", "train_samples_per_s", "predict_s", "predict_samples_per_s",
              "final_loss", "peak_rss_mb"}
    assert fields <= set(record)
    assert record["params"] == 3466 and np.isfinite(record["final_loss"])
    json.dumps(record)


def test_compare_table_and_ratios():
    from benchmarks import compare

    runs = [dict(framework=fw, workload="seed_mlp", version="x", train_samples_per_s=t,
                 predict_samples_per_s=2 * t, first_epoch_s=1.0 / t, peak_rss_mb=100.0)
            for fw, t in [("nexec", 4.0), ("pytorch", 2.0), ("nexec", 6.0),
                          ("pytorch", 2.0)]]
    runs.append(dict(framework="keras", workload="seed_mlp", error="boom"))
    table = compare.medians(runs, ["nexec", "pytorch", "keras"], ["seed_mlp"])
    assert table["seed_mlp"]["nexec"]["train_samples_per_s"] == 5.0
    assert "keras" not in table["seed_mlp"]
    rat = compare.ratios(table)
    assert rat["seed_mlp"]["pytorch"]["train_samples_per_s"] == 2.5
    text = compare.format_table(table, rat, ["nexec", "pytorch", "keras"])
    assert "nexec/pytorch" in text and "2.50" in text
    scripts, notes = compare.available(REPO / "does-not-exist")
    assert {fw for fw, path in scripts.items() if path is not None} == {"nexec"}
    assert len(notes) == 3


def test_blas_peak_measures():
    from benchmarks import blas_peak

    rows = blas_peak.measure([64], repeats=1, min_time=0.001)
    assert rows[0]["numpy_best_gflops"] > 0 and rows[0]["numba_best_gflops"] > 0


def test_resnet18_mirrors_pytorch_and_keras():
    """nexec's ResNet-18-style model has the parameter counts PyTorch and Keras report for
    ``benchmarks/peers_resnet.py``'s models (recorded in ``results/resnet18_params.json`` by
    ``peers_resnet.py {pytorch,keras} --params-only``) and Keras' weight shapes."""
    from benchmarks import peers_resnet
    from nexec.ops.geometry import padding_before

    recorded = json.loads((REPO / "benchmarks" / "results" / "resnet18_params.json")
                          .read_text())
    model = models.build("resnet18")
    assert model.count_params() == 11191242  # 11,181,642 trainable + BN moving statistics
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    for fw in ("pytorch", "keras"):
        assert recorded[fw]["params"] == model.count_params(), fw
        assert recorded[fw]["trainable_params"] == trainable, fw
    shapes = sorted(list(w.shape) for w in model.get_weights())
    assert shapes == recorded["keras"]["weight_shapes"]
    assert model.output.shape == (None, 10)
    # The PyTorch side pads like Keras' "same" (nexec's geometry is Keras').
    for size, k, s in [(64, 7, 2), (32, 3, 2), (16, 3, 1), (16, 1, 2), (8, 3, 2), (5, 3, 2)]:
        assert peers_resnet.same_padding(size, k, s)[0] == padding_before(size, k, s, "same")
    x, y = peers_resnet.data(channels_first=True)
    xm, ym = models.data("resnet18")
    np.testing.assert_array_equal(x.transpose(0, 2, 3, 1)[:len(xm)], xm)
    np.testing.assert_array_equal(y[:len(ym)], ym)


def test_layer_profile_rows_and_rates(tmp_path, capsys, monkeypatch):
    """Every layer of the seed MLP gets a row with its direct flops (counted here from the
    layer sizes) and its times; the table prints a rate per layer."""
    from benchmarks import layer_profile

    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):  # main() pins them; restored after the test
        monkeypatch.setenv(var, os.environ.get(var, "2"))

    out = tmp_path / "profile.json"
    assert layer_profile.main(["seed_mlp", "--steps", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    s = models.spec("seed_mlp")
    dims = [s["features"], *s["hidden"], s["classes"]]
    rows = result["rows"]
    assert [r["type"] for r in rows] == ["Dense"] * 3
    for r, (a, b), first in zip(rows, zip(dims[:-1], dims[1:]), (True, False, False)):
        assert r["gflop_forward"] == pytest.approx(2 * s["batch"] * a * b / 1e9)
        assert r["gflop_backward"] == pytest.approx(r["gflop_forward"] * (1 if first else 2))
        assert r["infer_ms"] > 0 and r["train_forward_ms"] > 0 and r["train_backward_ms"] > 0
    assert result["train_step_ms"] >= sum(r["train_forward_ms"] + r["train_backward_ms"]
                                          for r in rows)
    assert result["blas_peak_gflops"] > 0  # measured here, not read from another machine's file
    text = capsys.readouterr().out
    assert text.count("| dense") == 3 and "GFLOP/s" in text


@pytest.mark.parametrize("value, expected", [("", False), ("0", False), ("1", True),
                                             ("True", True), ("auto", "auto")])
def test_benchmark_models_take_jit_step_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("NEXEC_BENCH_JIT_STEP", value)
    if value == "":
        monkeypatch.delenv("NEXEC_BENCH_JIT_STEP")
    assert models.jit_step() == expected


def test_benchmark_models_refuse_an_unknown_jit_step(monkeypatch):
    monkeypatch.setenv("NEXEC_BENCH_JIT_STEP", "fast")
    with pytest.raises(ValueError, match="NEXEC_BENCH_JIT_STEP must be one of .*'fast'"):
        models.jit_step()


def test_conv_blocks_whole_variant_and_table():
    """conv_blocks.py's 'whole' variant plans every shard a whole block (and restores the
    rule after); its table gives split / whole per workload and step. No kernel runs."""
    from benchmarks import conv_blocks
    from nexec.ops import geometry, winograd

    shape = (64, 32, 32, 80, 3, 3, 64, 16, 16, 2, 2, True)
    split = geometry.conv2d_workspace_shapes(*shape, tiled=True, shards=2)["cols"]
    with conv_blocks._whole_blocks():
        whole = geometry.conv2d_workspace_shapes(*shape, tiled=True, shards=2)["cols"]
        tiles = winograd.winograd_workspace_shapes(32, 16, 16, 64, 64, "same", 2, False,
                                                   shards=2)["V"]
    assert whole == geometry.conv2d_workspace_shapes(*shape, tiled=True)["cols"] != split
    assert tiles == winograd.winograd_workspace_shapes(32, 16, 16, 64, 64, "same", 2,
                                                       False)["V"]
    assert geometry.conv2d_workspace_shapes(*shape, tiled=True, shards=2)["cols"] == split
    table = conv_blocks.format_table({"cnn": {"split": {"train": 90.0, "infer": 30.0},
                                              "whole": {"train": 100.0, "infer": 30.0}}})
    assert "| cnn | train | 90.0 | 100.0 | 0.90 |" in table
    assert "| cnn | infer | 30.0 | 30.0 | 1.00 |" in table


def test_pointwise_blocks_rows_and_table():
    """pointwise_blocks.py times both ways of a (tiny) 1x1 layer and tabulates the ratios."""
    from benchmarks import pointwise_blocks

    rows = pointwise_blocks.measure(1, (("tiny", 2, 4, 8, 16, 20, 1),))
    (row,) = rows
    assert row["rows"] == 32 and row["threads"] == 1 and row["block"] == 1280
    assert all(row[f"{p}_{way}"] > 0 for p in ("fwd", "bwd") for way in ("one", "blocks"))
    table = pointwise_blocks.format_table([rows, rows])
    assert table.count("| tiny |") == 2 and "| 1, 32 | 1280 |" in table


def test_small_map_winograd_plans_the_two_copies_apart_and_the_control_alike():
    """small_map_winograd.py: the new rule gives the 4x4 layers Winograd in inference, the
    old one does not (A/A: both alike); both copies predict and are timed each round."""
    from benchmarks import small_map_winograd

    ab = small_map_winograd.measure(2, control=False)
    assert ab["winograd_layers"]["new"] == ab["winograd_layers"]["old"] + 3  # three 4x4 layers
    assert ab["new_ms"] > 0 and ab["old_ms"] > 0 and len(ab["round_ratios"]) == 2
    aa = small_map_winograd.measure(1, control=True)
    assert aa["winograd_layers"]["new"] == aa["winograd_layers"]["old"] == \
        ab["winograd_layers"]["new"]


def test_prepared_weights_plans_only_the_new_copy_with_toeplitz_layers():
    """prepared_weights.py: only ``new`` runs ResNet-18's three 2x2 layers as Toeplitz
    matrices; all three copies predict and are timed each round."""
    from benchmarks import prepared_weights

    ab = prepared_weights.measure(1, control=False)
    assert ab["toeplitz_layers"] == {"new": 3, "kept": 0, "old": 0}
    assert all(ms > 0 for ms in ab["median_ms"].values())
    assert len(ab["round_ratios_to_old"]["new"]) == 1
