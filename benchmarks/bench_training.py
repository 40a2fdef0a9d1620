"""End-to-end: one training epoch, one predict pass, peak memory of training.

Every workload is timed on exactly the data and batch size of ``workloads.py``, so an asv
number can be read next to ``compare.py``'s. Kernels are compiled (or loaded from Numba's
cache) and every program bound in ``setup``, so the timings are steady state; compile time
is tracked separately in ``bench_compile.py``.
"""
from benchmarks import models

WORKLOADS = list(models.WORKLOADS)


class TimeTraining:
    """Seconds per epoch (``fit(epochs=1)``) and per ``predict`` pass over the whole set."""

    params = [WORKLOADS]
    param_names = ["workload"]
    number = 1
    repeat = (1, 5, 60.0)
    warmup_time = 0.0
    timeout = 900  # the CNN epoch is tens of seconds on 2 cores

    def setup(self, workload):
        self.model, self.x, self.y, self.spec = models.prepared(workload)

    def time_train_epoch(self, workload):
        self.model.fit(self.x, self.y, epochs=1, batch_size=self.spec["batch"], verbose=0)

    def time_predict(self, workload):
        self.model.predict(self.x, batch_size=self.spec["batch"])


class PeakMemTraining:
    """Peak RSS of a process that builds, compiles and trains a workload for one epoch.

    asv reports the process's high-water mark, so this includes the interpreter, NumPy,
    Numba (and LLVM when kernels are not in the cache yet), the data and the arena. Kernels
    are not warmed up in ``setup`` on purpose: loading them is part of training.
    """

    params = [WORKLOADS]
    param_names = ["workload"]
    timeout = 900

    def setup(self, workload):
        self.x, self.y = models.data(workload)
        self.spec = models.spec(workload)

    def peakmem_train(self, workload):
        model = models.compile_model(models.build(workload), workload)
        model.fit(self.x, self.y, epochs=1, batch_size=self.spec["batch"], verbose=0)
