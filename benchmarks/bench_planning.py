"""Planning cost of a deep model: 50 residual blocks = 200 layers (plus input and head).

``plan()`` is lowering, shape inference and fusion; ``memory_plan()`` adds the schedule
(liveness) and the arena placement (batch 128); ``compile()`` plans and builds the three
executors (no kernel runs or compiles there: binding happens on the first step).
"""
from benchmarks import models


class TimePlanning:
    def setup(self):
        blocks = 2 if models.small() else models.PLANNING_BLOCKS
        self.model = models.build("residual", blocks=blocks)
        self.batch = models.kernel_batch(128)

    def time_plan(self):
        self.model.plan()

    def time_memory_plan_training(self):
        self.model.memory_plan(batch_size=self.batch, training=True)

    def time_memory_plan_inference(self):
        self.model.memory_plan(batch_size=self.batch, training=False)

    def time_compile(self):
        models.compile_model(self.model, "residual")
