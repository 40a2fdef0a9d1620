"""What the memory planner promises, per workload, batch 128, training and inference.

``arena_bytes``: the one arena the executor allocates for intermediates (parameters and
optimizer state are not in it). ``lower_bound_bytes``: the most bytes live at one step of
the same schedule; the arena can not be smaller. ``naive_bytes``: one buffer per tensor, no
reuse: what the arena saves. These are deterministic: a change is a planner change.
"""
from benchmarks import models

BATCH = 128


class TrackMemoryPlan:
    params = [list(models.WORKLOADS), ["training", "inference"]]
    param_names = ["workload", "mode"]
    unit = "bytes"

    def setup(self, workload, mode):
        model = models.build(workload)
        self.plan = model.memory_plan(batch_size=models.kernel_batch(BATCH),
                                      training=mode == "training")

    def track_arena_bytes(self, workload, mode):
        return self.plan.arena_bytes

    def track_lower_bound_bytes(self, workload, mode):
        return self.plan.lower_bound_bytes

    def track_naive_bytes(self, workload, mode):
        return self.plan.naive_bytes
