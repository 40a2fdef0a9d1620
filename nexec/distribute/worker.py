"""One data-parallel worker: a compiled replica of the model that returns gradients.

Ray runs it as an actor. It is built from the model's config and compile settings (no
pickled layers); it holds no optimizer state and keeps no weights between steps: each step
brings the driver's current weights, so a worker Ray restarts is at once as good as new.
"""
from __future__ import annotations

import os
import socket
from typing import Any

import numpy as np

from nexec.distribute.sources import open_source

__all__ = ["Replica"]


class Replica:
    """A replica that computes the gradient of its shard of each global batch.

    Args:
        rank: Its place in the fixed reduction order.
        model_json: ``model.to_json()`` of the driver's model.
        compile_config: The trainer's compile settings (losses, loss weights, metrics).
        sizes: The driver's ``(parameters, trainable parameters)``, checked here.
        threads: Threads its kernels may use (its Ray CPUs).
        jit_step: As ``compile(jit_step=...)``.
    """

    def __init__(self, rank: int, model_json: str, compile_config: dict[str, Any],
                 sizes: tuple[int, int], threads: int, jit_step: bool | str) -> None:
        from nexec.devices.threads import set_num_threads
        from nexec.model import model_from_json

        set_num_threads(threads)
        # Compile helper processes within the actor's CPUs (runtime/compile_workers.py),
        # not one fewer than the machine's: every replica compiles at the same time.
        os.environ.setdefault("NEXEC_COMPILE_PROCESSES", str(max(0, threads - 1)))
        model = model_from_json(model_json)
        names = model.output_names
        # The optimizer is never run here (the driver applies the update): plain SGD.
        model.compile(optimizer="sgd", loss=dict(zip(names, compile_config["loss"])),
                      metrics=dict(zip(names, compile_config["metrics"])),
                      loss_weights=dict(zip(names, compile_config["loss_weights"])),
                      jit_step=jit_step)
        self.rank = rank
        self.trainer = model._trainer
        self.store = self.trainer.store
        self.executor = self.trainer.train_executor
        if (self.store.size, self.store.trainable_size) != tuple(sizes):
            raise RuntimeError(f"worker {rank}: the rebuilt model has {self.store.size} "
                               f"parameters ({self.store.trainable_size} trainable), the "
                               f"driver's {sizes[0]} ({sizes[1]}).")
        self.sources: list[np.ndarray] = []
        self.data_key = -1

    def where(self) -> dict[str, Any]:
        """Rank, actor, node, host and process: what an error about this worker names."""
        import ray

        ctx = ray.get_runtime_context()
        return {"rank": self.rank, "actor_id": ctx.get_actor_id(), "node_id": ctx.get_node_id(),
                "host": socket.gethostname(), "pid": os.getpid(), "data_key": self.data_key}

    def set_data(self, key: int, specs: list[tuple]) -> int:
        """Opens the arrays of the current ``fit`` (inputs then targets)."""
        import ray

        self.sources = [open_source(s, ray.get) for s in specs]
        self.data_key = key
        return key

    def step(self, values: np.ndarray, rows: np.ndarray) -> tuple:
        """The gradient of the mean loss over ``rows`` at weights ``values``.

        Returns:
            ``(gradients, non-trainable values, per-output losses, total loss, metric
            sums, metric totals)``; the gradient is the trainable prefix of the store's.
        """
        ex, store = self.executor, self.store
        store.values[:] = values
        n = len(rows)
        with ex.lock:
            prog = ex.program(n)
            ex.load(prog, self.sources, 0, n, rows)
            counts = [0 if s.shape[0] == 1 else np.zeros(s.shape[0], s.dtype)
                      for _, _, s, _ in prog.metric_slots]
            losses = [0.0] * len(prog.loss_slots)
            total = ex.gradients(prog, losses, counts)
            t = store.trainable_size
            return (store.grads[:t].copy(), store.values[t:].copy(), losses, total, counts,
                    [m[3] for m in prog.metric_slots])
