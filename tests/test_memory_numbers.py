"""The memory figures docs/performance.md quotes are what the planner gives today: a planner
change that moves them fails here until ``python -m benchmarks.bench_memory`` rewrites
``benchmarks/results/memory-plan.json`` (and ``doc_numbers.py`` the docs)."""
import json

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
