"""The memory figures docs/performance.md quotes are what the planner gives today: a planner
change that moves them fails here until ``python -m benchmarks.bench_memory`` rewrites
``benchmarks/results/memory-plan.json`` (and ``doc_numbers.py`` the docs); the README's
picture of ``nexec demo``'s plan shows the recorded figures."""
import json
from pathlib import Path

from benchmarks import bench_memory
from nexec.devices import threads


def test_recorded_memory_plan_is_the_planners():
    recorded = json.loads(bench_memory.RESULTS.read_text())
    assert recorded["batch"] == bench_memory.BATCH
    assert bench_memory.figures(recorded["threads"]) == recorded


def test_figures_are_planned_for_the_thread_count_asked_and_restore_it():
    before = threads.get_num_threads()
    one, four = bench_memory.figures(1), bench_memory.figures(4)
    assert threads.get_num_threads() == before
    # per-shard convolution workspaces: only the CNN's naive bytes depend on the shards
    assert one["rows"]["seed_mlp"] == four["rows"]["seed_mlp"]
    assert one["rows"]["cnn"]["training"]["naive_bytes"] \
        != four["rows"]["cnn"]["training"]["naive_bytes"]
    for figures in (one, four):
        for modes in figures["rows"].values():
            for row in modes.values():
                assert row["lower_bound_bytes"] <= row["arena_bytes"] <= row["naive_bytes"]


def test_the_readme_picture_of_the_demo_plan_shows_the_recorded_figures():
    """Redrawn by ``python -m benchmarks.bench_memory --demo-picture docs/demo_cnn_memory.svg``."""
    demo = json.loads(bench_memory.RESULTS.read_text())["demo_picture"]
    readme = Path(bench_memory.__file__).resolve().parents[1] / "README.md"
    assert "docs/demo_cnn_memory.svg" in readme.read_text()
    svg = (readme.parent / "docs" / "demo_cnn_memory.svg").read_text()
    for key in ("arena_bytes", "naive_bytes"):
        assert f"{demo[key] / 2**20:.2f} MiB" in svg, key
