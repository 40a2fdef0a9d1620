"""``RayDataParallel``: synchronous data-parallel ``fit`` on Ray workers.

Design (docs/distributed.md explains the choice): the driver keeps the model, the optimizer
and its state. Each step it puts the current weights into Ray's object store once, every
worker reads them (one copy per node, shared memory within a node), computes the mean
gradient of its contiguous shard of the global batch and returns it; the driver sums the
shards' gradients in rank order, each weighted by its share of the rows, and applies the
update with the model's own optimizer. The result is deterministic (a fixed order of fixed
operations), the driver's weights are consistent after every step whatever a worker does, and
checkpoints (``BackupAndRestore``, ``ModelCheckpoint``) work unchanged on the driver.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from nexec.checks import ArgumentError, ArgumentTypeError, positive_finite_float, positive_int
from nexec.distribute.errors import WorkerError
from nexec.distribute.sources import Sources

if TYPE_CHECKING:
    from nexec.training.adapters import Batch

__all__ = ["RayDataParallel", "attach"]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError("nexec.distribute.RayDataParallel needs Ray: "
                          "pip install 'nexec[ray]' (ray>=2.9).") from None
    return ray


class RayDataParallel:
    """Synchronous data parallelism on Ray, as Keras 3's ``keras.distribution.DataParallel``.

    Pass it to ``model.compile(..., distribute=strategy)``; ``fit`` then splits every global
    batch of ``batch_size`` rows into ``num_workers`` contiguous shards, one per Ray actor,
    and the update is the one a single process would make on the whole global batch.
    ``evaluate``, ``predict``, validation and ``train_on_batch`` run on the driver.

    Args:
        num_workers: Ray actors (replicas), each reading its own shard of every batch.
        address: A Ray cluster to join (``"auto"``, ``"ray://host:10001"``); ``None`` starts
            Ray locally. Ignored when Ray is already initialised in this process.
        cpus_per_worker: Ray CPUs each actor reserves (and the threads its kernels use).
        max_restarts: How often Ray restarts a dead actor (a restarted actor rebuilds its
            replica by itself; the step that was running still fails).
        actor_options: More ``ray.remote`` options for the actors (``scheduling_strategy``,
            ``runtime_env``, ...).
        init_kwargs: More ``ray.init`` arguments when this strategy starts Ray.
        start_timeout: Seconds to wait for a worker to start (Ray waits for free CPUs
            forever; this turns a cluster too small for ``num_workers`` into an error).
    """

    def __init__(self, num_workers: int = 2, address: str | None = None, *,
                 cpus_per_worker: int = 1, max_restarts: int = 1,
                 actor_options: dict[str, Any] | None = None,
                 init_kwargs: dict[str, Any] | None = None,
                 start_timeout: float = 300.0) -> None:
        where = "RayDataParallel()"
        self.num_workers = positive_int(num_workers, "num_workers", where)
        if address is not None and not isinstance(address, str):
            raise ArgumentTypeError(f"{where}: address must be None (run locally) or a string "
                                    f"such as 'auto' or 'ray://host:10001', got {address!r}.")
        self.address = address
        self.cpus_per_worker = positive_int(cpus_per_worker, "cpus_per_worker", where)
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) \
                or max_restarts < -1:
            raise ArgumentError(f"{where}: max_restarts must be an int >= 0 (or -1: without "
                                f"limit), got {max_restarts!r}.")
        self.max_restarts = max_restarts
        for name, value in (("actor_options", actor_options), ("init_kwargs", init_kwargs)):
            if value is not None and not isinstance(value, dict):
                raise ArgumentTypeError(f"{where}: {name} must be a dict or None, got "
                                        f"{type(value).__name__}.")
        self.actor_options = dict(actor_options or {})
        self.init_kwargs = dict(init_kwargs or {})
        self.start_timeout = positive_finite_float(start_timeout, "start_timeout", where)
        self._attached: DataParallelRun | None = None

    def __repr__(self) -> str:
        return (f"RayDataParallel(num_workers={self.num_workers}, address={self.address!r}, "
                f"cpus_per_worker={self.cpus_per_worker})")

    @property
    def workers(self) -> list[Any]:
        """The Ray actor handles, in rank order (empty before the first ``fit``)."""
        return [] if self._attached is None else list(self._attached.actors)

    @property
    def worker_info(self) -> list[dict[str, Any]]:
        """Per worker, as its last ``fit`` found it: ``rank``, ``actor_id``, ``node_id``,
        ``host``, ``pid``."""
        if self._attached is None:
            return []
        return [{k: v for k, v in w.items() if k != "data_key"} for w in self._attached.where]

    def shutdown(self) -> None:
        """Ends the workers and releases the data they shared (Ray itself keeps running)."""
        if self._attached is not None:
            self._attached.shutdown()

    def attach(self, trainer: Any) -> DataParallelRun:
        """Binds this strategy to a compiled model (``compile`` calls it)."""
        return attach(self, trainer)


def attach(strategy: RayDataParallel, trainer: Any) -> DataParallelRun:
    """``strategy`` bound to ``trainer``: what ``compile(distribute=...)`` keeps.

    Raises:
        ArgumentError: The model does not train on the CPU.
    """
    if trainer.device != "cpu":
        raise ArgumentError(f"compile(): distribute={strategy!r} trains on CPU workers; "
                            f"got device={trainer.device!r}.")
    if strategy._attached is not None:
        strategy._attached.shutdown()  # one model per strategy: a recompile starts afresh
    strategy._attached = DataParallelRun(strategy, trainer)
    return strategy._attached


class DataParallelRun:
    """A strategy bound to one compiled model: its actors, its data, its epoch loop."""

    def __init__(self, strategy: RayDataParallel, trainer: Any) -> None:
        self.strategy = strategy
        self.trainer = trainer
        self.actors: list[Any] = []
        self.where: list[dict[str, Any]] = []
        self.sources = Sources()
        self.steps = 0  # completed distributed steps, for messages

    # ----- workers ------------------------------------------------------------------------------
    def _start_ray(self) -> Any:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.strategy.address, **self.strategy.init_kwargs)
        return ray

    def _new_actor(self, rank: int) -> Any:
        from nexec.distribute.worker import Replica

        ray = _ray()
        s, t = self.strategy, self.trainer
        options = {"num_cpus": s.cpus_per_worker, "max_restarts": s.max_restarts,
                   "max_task_retries": 0, **s.actor_options}
        return ray.remote(Replica).options(**options).remote(
            rank, t.model.to_json(), t.config, (t.store.size, t.store.trainable_size),
            s.cpus_per_worker, t.train_executor.jit_step)

    def _ensure_workers(self) -> None:
        """Starts the actors, replaces any that died for good, and learns where each runs."""
        ray = self._start_ray()
        n = self.strategy.num_workers
        while len(self.actors) < n:
            self.actors.append(self._new_actor(len(self.actors)))
        pings = [a.where.remote() for a in self.actors]
        self.where = []
        for rank, ping in enumerate(pings):
            try:
                self.where.append(self._started(ray, ping, rank))
            except ray.exceptions.RayActorError:
                warnings.warn(f"RayDataParallel: worker rank {rank} is dead; starting a new "
                              "one in its place.", RuntimeWarning, stacklevel=4)
                self.actors[rank] = self._new_actor(rank)
                self.where.append(self._started(ray, self.actors[rank].where.remote(), rank))

    def _started(self, ray: Any, ping: Any, rank: int) -> dict[str, Any]:
        s = self.strategy
        try:
            return ray.get(ping, timeout=s.start_timeout)
        except ray.exceptions.GetTimeoutError:
            raise WorkerError(
                f"RayDataParallel: worker rank {rank} did not start within {s.start_timeout:g} "
                f"s: {s.num_workers} workers x {s.cpus_per_worker} CPU(s) are more than the "
                f"Ray cluster has free ({ray.available_resources().get('CPU', 0):g} CPUs now); "
                "use fewer workers, or end other strategies with shutdown().",
                rank, "", "") from None

    def _send_data(self, arrays: list[np.ndarray]) -> None:
        ray = _ray()
        self.sources.update(arrays, ray.put)
        key = self.sources.key
        pending = [a.set_data.remote(key, self.sources.specs)
                   for a, w in zip(self.actors, self.where) if w["data_key"] != key]
        ray.get(pending)
        for w in self.where:
            w["data_key"] = key

    def shutdown(self) -> None:
        if self.actors:
            ray = _ray()
            for a in self.actors:
                ray.kill(a, no_restart=True)
        self.actors, self.where = [], []
        self.sources = Sources()

    def _gather(self, futures: list[Any], step: int) -> list[tuple]:
        """The workers' results in rank order, or a :class:`WorkerError` naming the first
        worker (in rank order) that failed."""
        ray = _ray()
        out = []
        for rank, f in enumerate(futures):
            try:
                out.append(ray.get(f))
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
                w = self.where[rank] if rank < len(self.where) else {}
                died = isinstance(e, ray.exceptions.RayActorError)
                what = "died" if died else "failed"
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise WorkerError(
                    f"Distributed fit: worker rank {rank} of {len(futures)} (actor "
                    f"{w.get('actor_id')}, node {w.get('node_id')}, host {w.get('host')}, "
                    f"pid {w.get('pid')}) {what} during step {step + 1} of this epoch "
                    f"({type(e).__name__}: {reason}). The model keeps the weights of the last "
                    f"completed step ({self.steps} distributed step(s) so far); call fit "
                    "again to continue (a dead worker is replaced; with BackupAndRestore the "
                    "run resumes from its last backup).",
                    rank, str(w.get("actor_id")), str(w.get("node_id"))) from e
        return out

    def check_batch(self, batch: int) -> None:
        """Refuses, before Ray starts, a global batch smaller than the worker count."""
        w = self.strategy.num_workers
        if batch < w:
            raise ArgumentError(f"fit(): the global batch_size ({batch}) is smaller than "
                                f"RayDataParallel's num_workers ({w}); every worker needs at "
                                "least one row of each batch.")

    # ----- the epoch ----------------------------------------------------------------------------
    def run_epoch(self, executor: Any, batches: Iterable[Batch], train: bool, bar: Any = None,
                  callbacks: Any = None) -> dict[str, float]:
        """``Trainer._run_epoch`` for training, with each step's gradient from the workers.

        ``batches`` are row ranges of one set of in-memory arrays (an ``ArrayFeed``'s), sent
        to the workers once; each worker then gets the row indices of its shard.
        """
        assert train, "validation and evaluate run on the driver"
        w = self.strategy.num_workers
        ray = self._start_ray()
        self._ensure_workers()
        trainer, store = self.trainer, self.trainer.store
        model = trainer.model
        t = store.trainable_size
        update_prog = executor.program(1)  # the update reads only the flat parameters
        k = len(model.outputs)
        out_sums = [0.0] * k
        loss_sum = 0.0
        seen = 0
        counts: list[Any] | None = None
        totals: list[int] = []
        grad = np.empty(t, np.float64)
        for i, data in enumerate(batches):
            lo, hi, order = data.lo, data.hi, data.order
            b = hi - lo
            if i == 0:
                self._send_data(data.sources)
            if callbacks is not None:
                for c in callbacks.batch_begin:
                    c.on_train_batch_begin(i)
            rows = order[lo:hi] if order is not None else np.arange(lo, hi)
            shards = [s for s in np.array_split(rows, w) if len(s)]
            weights = ray.put(store.values)
            futures = [a.step.remote(weights, s) for a, s in zip(self.actors, shards)]
            results = self._gather(futures, i)
            # The mean over the global batch: shard means weighted by their rows, summed in
            # rank order (float64), whatever order the workers finished in.
            grad[:] = 0.0
            frozen = np.zeros(store.size - t, np.float64)
            total = 0.0
            per_output = [0.0] * k
            for s, (g, nt, losses, tot, cs, ts) in zip(shards, results):
                share = len(s) / b
                grad += share * g
                frozen += share * nt
                total += share * tot
                for j in range(k):
                    per_output[j] += share * losses[j]
                if counts is None:
                    counts = [np.zeros_like(c) if isinstance(c, np.ndarray) else 0 for c in cs]
                    totals = [0] * len(ts)
                for m, c in enumerate(cs):
                    counts[m] += c
                for m, tm in enumerate(ts):
                    totals[m] += tm
            with executor.lock:
                store.grads[:t] = grad
                if store.size > t:
                    store.values[t:] = frozen
                executor.apply_update(update_prog)
            self.steps += 1
            loss_sum += total * b
            for j in range(k):
                out_sums[j] += per_output[j] * b
            seen += b
            if bar is not None and bar.dynamic:
                bar.update(i + 1, {"loss": loss_sum / seen})
            if callbacks is not None and callbacks.batch_end:
                for c in callbacks.batch_end:
                    c.on_train_batch_end(i, {"loss": total})
                if model.stop_training:
                    break
        return trainer.epoch_logs(loss_sum, out_sums, seen, counts, totals)
