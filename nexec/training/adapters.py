"""Where fit/evaluate/predict get their batches: arrays, memory maps, generators, PyDatasets.

In-memory arrays are checked and cast once (``nexec.training.data``) and each batch is a row
range of them (:class:`ArrayFeed`), as before. Everything else is a *stream*
(:class:`StreamFeed`): a memory-mapped array read row block by row block, a Python generator
or other iterable, or a :class:`PyDataset`. A stream's batches are read, checked (shape,
dtype, finiteness, id range: the checks of ``data.py``, run per batch) and cast on a
background thread, the prefetcher, while the current step runs, so a source that keeps up
costs no step time; the time the step still waits is reported on the progress bar.

Epochs follow Keras 3's ``EpochIterator``: with ``steps_per_epoch`` an epoch takes the next
steps of one pass over the data, which continues across epochs; a source that runs out
before then ends the epoch with Keras' warning; an epoch that gets no batch at all ends
training.
"""
from __future__ import annotations

import itertools
import multiprocessing
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Executor as PoolExecutor
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from nexec.errors import DataError
from nexec.random import generator
from nexec.training.sample_weights import as_sample_weights

__all__ = ["Batch", "PyDataset", "Sequence", "ArrayFeed", "StreamFeed", "is_stream",
           "unpack", "RAN_OUT"]

RAN_OUT = ("Your input ran out of data; interrupting training. Make sure that your dataset or "
           "generator can generate at least `steps_per_epoch * epochs` batches.")


@dataclass
class Batch:
    """One step's data: rows ``lo:hi`` (through ``order`` when shuffled) of ``sources``.

    ``sources`` are the model-typed input arrays, then target arrays, then (when
    ``weighted``) each output's sample weights, as ``Executor.load`` takes them.
    """

    sources: list[np.ndarray]
    lo: int
    hi: int
    order: np.ndarray | None = None
    weighted: bool = False

    @property
    def size(self) -> int:
        return self.hi - self.lo


class PyDataset:
    """A data set read batch by batch by index, as ``keras.utils.PyDataset`` (alias ``Sequence``).

    Subclasses call ``super().__init__(**kwargs)`` and define ``__len__`` (number of batches)
    and ``__getitem__(index)``, returning ``x``, ``(x,)``, ``(x, y)`` or
    ``(x, y, sample_weight)``; ``on_epoch_begin``/``on_epoch_end`` are called around each
    pass. ``fit(shuffle=True)`` (the default) visits the batch indices in a new random order
    each epoch, as Keras does.

    Args:
        workers: Batches read in parallel (threads, or processes with
            ``use_multiprocessing``); as Keras, 1 reads them one at a time (on the
            prefetch thread here, so reading still overlaps the step).
        use_multiprocessing: Read with worker processes (the data set is copied into each).
        max_queue_size: Batches read ahead at most when ``workers`` read in parallel.

    Example:
        >>> import numpy as np
        >>> from nexec.utils import PyDataset
        >>> class Squares(PyDataset):
        ...     def __len__(self):
        ...         return 3
        ...     def __getitem__(self, i):
        ...         x = np.full((4, 1), i, np.float32)
        ...         return x, x ** 2
        >>> len(Squares()), Squares()[2][1][0, 0]
        (3, 4.0)
    """

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False,
                 max_queue_size: int = 10) -> None:
        self._workers = workers
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = max_queue_size

    @property
    def workers(self) -> int:
        return getattr(self, "_workers", 1)

    @workers.setter
    def workers(self, value: int) -> None:
        self._workers = value

    @property
    def use_multiprocessing(self) -> bool:
        return getattr(self, "_use_multiprocessing", False)

    @use_multiprocessing.setter
    def use_multiprocessing(self, value: bool) -> None:
        self._use_multiprocessing = value

    @property
    def max_queue_size(self) -> int:
        return getattr(self, "_max_queue_size", 10)

    @max_queue_size.setter
    def max_queue_size(self, value: int) -> None:
        self._max_queue_size = value

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index).")

    @property
    def num_batches(self) -> int | None:
        """Batches per epoch (``len(self)``), or None for an endless data set."""
        if hasattr(self, "__len__"):
            return len(self)
        return None

    def on_epoch_begin(self) -> None:
        """Called before each pass over the data."""

    def on_epoch_end(self) -> None:
        """Called after each pass over the data (e.g. to reshuffle)."""


Sequence = PyDataset


def _memmaps(data: Any) -> bool:
    if isinstance(data, np.memmap):
        return True
    if isinstance(data, dict):
        return any(isinstance(a, np.memmap) for a in data.values())
    if isinstance(data, (list, tuple)):
        return any(isinstance(a, np.memmap) for a in data)
    return False


def is_stream(x: Any, y: Any = None) -> bool:
    """Whether ``x`` (with ``y``) is read batch by batch rather than checked whole up front."""
    if isinstance(x, PyDataset) or _memmaps(x) or _memmaps(y):
        return True
    if isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)) or hasattr(x, "__array__"):
        return False
    return hasattr(x, "__iter__") or hasattr(x, "__next__")


def source_name(x: Any) -> str:
    if isinstance(x, PyDataset):
        return "PyDataset"
    if _memmaps(x):
        return "memory-mapped arrays"
    return "generator" if hasattr(x, "__next__") else "iterable"


def unpack(item: Any, what: str) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` of one batch as Keras reads it: a tuple or list of 1 to 3
    entries, or ``x`` alone (an array or a dict of arrays)."""
    if isinstance(item, (np.ndarray, dict)):
        return item, None, None
    if isinstance(item, list):
        item = tuple(item)
    if not isinstance(item, tuple) or len(item) not in (1, 2, 3):
        raise DataError(f"A {what} must give a tuple (x,), (x, y) or (x, y, sample_weight), "
                        f"an array or a dict; got {type(item).__name__}"
                        + (f" of length {len(item)}" if isinstance(item, tuple) else "") + ".")
    return item + (None,) * (3 - len(item))


# ----- array feeds ---------------------------------------------------------------------------
class ArrayFeed:
    """Batches of checked in-memory arrays: row ranges, no copies (the fast path).

    Args:
        sources: Model-typed inputs, targets, then (``weighted``) per-output sample
            weights, all of one length.
        batch: Rows per batch (the last one may be shorter).
        shuffle: A new random row order for each pass.
        steps_per_epoch: As Keras 3 on arrays: an epoch takes the next ``steps_per_epoch``
            batches of one pass, which continues across epochs.
    """

    waited = None  # nothing to wait for: the progress bar shows no data time
    exhausted = False

    def __init__(self, sources: list[np.ndarray], batch: int, shuffle: bool = False,
                 steps_per_epoch: int | None = None, weighted: bool = False) -> None:
        self.sources = sources
        self.weighted = weighted
        self.n = len(sources[0])
        self.batch = batch
        self.batches = -(-self.n // batch)
        self.shuffle = shuffle
        self.steps_per_epoch = steps_per_epoch
        self.position = 0  # the next batch of the current pass
        self.order: np.ndarray | None = None

    @property
    def steps(self) -> int:
        return self.steps_per_epoch or self.batches

    def epoch_steps(self) -> int | None:
        """Batches the next epoch will take."""
        if self.steps_per_epoch is None:
            return self.batches
        return min(self.position + self.steps_per_epoch, self.batches) - self.position

    def epoch(self) -> Iterator[Batch]:
        if self.position == 0:
            self.order = generator().permutation(self.n) if self.shuffle else None
        start, end = self.position, self.batches
        if self.steps_per_epoch is not None:
            end = start + self.steps_per_epoch
            if end > self.batches:
                warnings.warn(RAN_OUT, stacklevel=4)
                end = self.batches
            self.position = 0 if end >= self.batches else end
        return self._batches(start, end, self.order)

    def _batches(self, start: int, end: int, order: np.ndarray | None) -> Iterator[Batch]:
        for i in range(start, end):
            yield Batch(self.sources, i * self.batch, min((i + 1) * self.batch, self.n), order,
                        self.weighted)

    def close(self) -> None:
        pass


# ----- stream sources ------------------------------------------------------------------------
class _Rows:
    """Raw arrays (e.g. memory maps) read as row blocks: the rows of a batch are gathered and
    nothing else is copied."""

    def __init__(self, xs: list[Any], ys: list[Any] | None, batch: int,
                 sw: Any = None) -> None:
        self.xs, self.ys, self.batch, self.sw = xs, ys, batch, sw
        self.n = len(xs[0])
        self.num_batches: int | None = -(-self.n // batch)

    def iterator(self, shuffle: bool) -> Iterator[Any]:
        order = generator().permutation(self.n) if shuffle else None
        for lo in range(0, self.n, self.batch):
            hi = min(lo + self.batch, self.n)
            rows = slice(lo, hi) if order is None else np.sort(order[lo:hi])
            if order is not None:  # rows read in file order, then put in the shuffled order
                back = np.argsort(np.argsort(order[lo:hi]))
                xs = [np.asarray(a[rows])[back] for a in self.xs]
                ys = None if self.ys is None else [np.asarray(a[rows])[back] for a in self.ys]
                sw = weight_rows(weight_rows(self.sw, rows), back)
            else:
                xs = [np.asarray(a[rows]) for a in self.xs]
                ys = None if self.ys is None else [np.asarray(a[rows]) for a in self.ys]
                sw = weight_rows(self.sw, rows)
            yield xs, ys, sw

    def begin_epoch(self) -> None:
        pass

    def end_epoch(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Iterable:
    """A generator (consumed once: it continues across epochs) or a re-iterable object."""

    num_batches: int | None = None

    def __init__(self, data: Any) -> None:
        self.data = data

    def iterator(self, shuffle: bool) -> Iterator[Any]:
        return iter(self.data)

    def begin_epoch(self) -> None:
        pass

    def end_epoch(self) -> None:
        pass

    def close(self) -> None:
        pass


_WORKER_DATASET: Any = None


def _set_worker_dataset(dataset: Any) -> None:
    global _WORKER_DATASET
    _WORKER_DATASET = dataset


def _worker_item(index: int) -> Any:
    return _WORKER_DATASET[index]


class _PyDatasetSource:
    """A PyDataset's batches by index, read in order by ``workers`` threads or processes."""

    def __init__(self, dataset: PyDataset) -> None:
        self.dataset = dataset
        n = dataset.num_batches
        if n is not None and (not isinstance(n, (int, np.integer)) or n < 0):
            raise DataError(f"len() of the PyDataset must be a count of batches >= 0, got {n!r}.")
        self.num_batches = None if n is None else int(n)
        workers = dataset.workers
        self.parallel = workers > 1 or (workers > 0 and dataset.use_multiprocessing)
        self.pool: PoolExecutor | None = None

    def _pool(self) -> PoolExecutor:
        if self.pool is None:
            if self.dataset.use_multiprocessing:
                methods = multiprocessing.get_all_start_methods()
                ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
                self.pool = ProcessPoolExecutor(self.dataset.workers, mp_context=ctx,
                                                initializer=_set_worker_dataset,
                                                initargs=(self.dataset,))
            else:
                self.pool = ThreadPoolExecutor(self.dataset.workers,
                                               thread_name_prefix="nexec-pydataset")
        return self.pool

    def iterator(self, shuffle: bool) -> Iterator[Any]:
        if self.num_batches is None:
            indices: Any = itertools.count()
        elif shuffle:
            indices = generator().permutation(self.num_batches).tolist()
        else:
            indices = range(self.num_batches)
        if not self.parallel:
            return (self.dataset[i] for i in indices)
        return self._ordered(iter(indices))

    def _ordered(self, indices: Iterator[int]) -> Iterator[Any]:
        """Items in index order, up to ``max_queue_size`` of them being read at once."""
        pool = self._pool()
        get = _worker_item if self.dataset.use_multiprocessing else self.dataset.__getitem__
        ahead = max(int(self.dataset.max_queue_size), self.dataset.workers, 1)
        pending: list[Any] = []
        try:
            for i in itertools.islice(indices, ahead):
                pending.append(pool.submit(get, i))
            while pending:
                item = pending.pop(0).result()
                for i in itertools.islice(indices, 1):
                    pending.append(pool.submit(get, i))
                yield item
        finally:
            for f in pending:
                f.cancel()

    def begin_epoch(self) -> None:
        self.dataset.on_epoch_begin()

    def end_epoch(self) -> None:
        self.dataset.on_epoch_end()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


# ----- the prefetcher ------------------------------------------------------------------------
_END = object()


class StreamFeed:
    """Batches from a stream, read, checked and cast ahead on a background thread.

    Args:
        data: A PyDataset, a generator or iterable, or memory-mapped arrays (``x``; ``y``
            then holds the targets).
        y: Targets beside memory-mapped ``x``; must be None for the other sources.
        sample_weight: Beside memory-mapped ``x`` (rows gathered with theirs); the other
            sources give theirs in their batches.
        prepare: Turns ``(x, y, sample_weight)`` of a batch into a :class:`Batch`
            (the checks and the cast); runs on the prefetch thread.
        batch: Rows per batch for memory-mapped arrays.
        shuffle: New order each epoch (of rows for arrays, of indices for a PyDataset).
        steps_per_epoch: Batches per epoch (None: one pass, or until the source runs out).
        ahead: Batches prepared ahead of the step.
    """

    def __init__(self, data: Any, y: Any, prepare: Callable[[Any, Any, Any], Batch],
                 batch: int, shuffle: bool, steps_per_epoch: int | None, ahead: int = 2,
                 split: Callable[[Any], list[Any]] | None = None,
                 split_y: Callable[[Any], list[Any]] | None = None,
                 sample_weight: Any = None) -> None:
        self.what = source_name(data)
        self.prepare = prepare
        self.shuffle = shuffle
        if isinstance(data, PyDataset):
            self.source: Any = _PyDatasetSource(data)
        elif self.what == "memory-mapped arrays":
            assert split is not None
            xs = split(data)
            ys = None if y is None else (split_y(y) if split_y else [y])
            lengths = {len(a) for a in xs + (ys or [])}
            if len(lengths) > 1:
                raise DataError(f"All input and target arrays need the same number of samples, "
                                f"got lengths {sorted(lengths)}.")
            if not xs or len(xs[0]) == 0:
                raise DataError("The memory-mapped arrays hold no samples.")
            self.source = _Rows(xs, ys, batch, sample_weight)
        else:
            if shuffle:
                warnings.warn(f"`shuffle=True` was passed, but will be ignored since the data "
                              f"`x` was provided as a {self.what}. The {self.what} is expected "
                              "to yield already-shuffled data.", stacklevel=4)
            self.source = _Iterable(data)
        self.steps_per_epoch = steps_per_epoch
        if steps_per_epoch is None and self.source.num_batches is None and \
                isinstance(data, PyDataset):
            raise DataError("The PyDataset has no length (an endless data set): pass "
                            "steps_per_epoch (or steps).")
        self.ahead = ahead
        self._it: Iterator[Any] | None = None
        self._seen = 0  # batches taken from the current pass
        self.batches_read = 0  # over all epochs
        self.waited: float = 0.0  # seconds the last epoch's steps waited for data
        self.exhausted = False  # an epoch got no batch: nothing left to train on

    @property
    def steps(self) -> int | None:
        """Steps per epoch, None while unknown (a generator before it has run out once)."""
        return self.steps_per_epoch or self.source.num_batches

    def epoch_steps(self) -> int | None:
        return self.steps

    def epoch(self) -> Iterator[Batch]:
        """The next epoch's batches, prepared ahead on a background thread."""
        self.waited = 0.0
        if self._it is None or self.steps_per_epoch is None:
            self._it = iter(self.source.iterator(self.shuffle))
            self._seen = 0
        self.source.begin_epoch()
        return self._consume(self.steps)

    def _produce(self, limit: int | None, out: queue.Queue, stop: threading.Event) -> None:
        known = self.source.num_batches
        status = "done"
        try:
            for k in itertools.count() if limit is None else range(limit):
                if stop.is_set():
                    return
                if known is not None and self._seen >= known:
                    status = "cut"
                    break
                try:
                    item = next(self._it)  # type: ignore[arg-type]
                except StopIteration:
                    status = "dry"
                    break
                self._seen += 1
                batch = self._prepare(item, k)
                while not stop.is_set():
                    try:
                        out.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        pass
        except BaseException as e:  # handed to the step's thread, raised there
            status = e  # type: ignore[assignment]
        while not stop.is_set():
            try:
                out.put((_END, status), timeout=0.1)
                return
            except queue.Full:
                pass

    def _prepare(self, item: Any, k: int) -> Batch:
        where = f"Batch {k} of the epoch from the {self.what}"
        try:
            x, y, sw = unpack(item, self.what + " batch")
            return self.prepare(x, y, sw)
        except DataError as e:
            raise DataError(f"{where}: {e}") from None

    def _consume(self, limit: int | None) -> Iterator[Batch]:
        out: queue.Queue = queue.Queue(self.ahead)
        stop = threading.Event()
        thread = threading.Thread(target=self._produce, args=(limit, out, stop),
                                  name="nexec-prefetch", daemon=True)
        thread.start()
        got = 0
        status: Any = "done"
        try:
            while True:
                t0 = time.perf_counter()
                item = out.get()
                self.waited += time.perf_counter() - t0
                if isinstance(item, tuple) and item and item[0] is _END:
                    status = item[1]
                    break
                got += 1
                yield item
        finally:
            stop.set()
            thread.join()
        self.batches_read += got
        if isinstance(status, BaseException):
            self._it = None
            raise status
        if status == "dry":
            self._it = None
        if (status == "dry" and self.steps_per_epoch is not None) or \
                (status == "cut" and self.steps_per_epoch is not None):
            warnings.warn(RAN_OUT, stacklevel=3)
        known = self.source.num_batches
        if known is not None and self._seen >= known:
            self._it = None  # the pass is over: the next epoch starts a new one
        self.source.end_epoch()
        if got == 0:
            if self.batches_read == 0:
                raise DataError(f"The {self.what} gave no batches.")
            if status in ("dry", "cut") and self.steps_per_epoch is None:
                warnings.warn(RAN_OUT, stacklevel=3)
            self.exhausted = True

    def close(self) -> None:
        self.source.close()


def _ids(data: Any) -> set[int]:
    if isinstance(data, dict):
        return {id(v) for v in data.values()}
    if isinstance(data, (list, tuple)):
        return {id(v) for v in data} | {id(data)}
    return {id(data)}


def _own(a: np.ndarray, users: set[int]) -> np.ndarray:
    """``a``, or a copy of it where it is (a view of) the user's array: a generator may refill
    its buffer while this batch waits in the queue."""
    return a.copy() if id(a) in users or not a.flags.owndata else a


def weight_rows(sw: Any, rows: Any) -> Any:
    """Rows of ``sample_weight`` as given: one array, or a list or dict of them per output
    (None entries stay None)."""
    if sw is None:
        return None
    if isinstance(sw, dict):
        return {k: weight_rows(v, rows) for k, v in sw.items()}
    if isinstance(sw, (list, tuple)):
        return [weight_rows(v, rows) for v in sw]
    return np.asarray(sw)[rows]


def preparer(model: Any, dtype: str, losses: list[Any] | None,
             class_weight: Any = None) -> Callable[[Any, Any, Any], Batch]:
    """The per-batch checks and cast of ``data.py`` (targets too unless ``losses`` is None),
    and the batch's sample weights as ``fit(sample_weight=, class_weight=)`` takes them."""
    from nexec.training.data import as_inputs, as_targets

    def prepare(x: Any, y: Any, sw: Any) -> Batch:
        if x is None:
            raise DataError("it has no inputs x.")
        users = _ids(x) | _ids(y)
        xs = [_own(a, users) for a in as_inputs(x, model, dtype)]
        ys: list[np.ndarray] = []
        if losses is not None:
            if y is None:
                raise DataError("it has no targets: training and evaluation need (x, y) "
                                "batches.")
            ys = [_own(a, users) for a in as_targets(y, model, losses, dtype)]
        n = len(xs[0])
        if n == 0:
            raise DataError("it has no samples (0 rows).")
        for a in ys:
            if len(a) != n:
                raise DataError(f"x has {n} samples but y has {len(a)}.")
        ws = None if losses is None else \
            as_sample_weights(sw, class_weight, ys, model, losses, dtype, "the batch")
        return Batch(xs + ys + (ws or []), 0, n, None, ws is not None)

    return prepare


def first_inputs(x: Any, model_name: str) -> Any:
    """Inputs of the first batch of ``x``, for a Sequential that learns its input shape
    from data; a generator cannot be looked into without consuming it."""
    if isinstance(x, PyDataset):
        return unpack(x[0], "PyDataset batch")[0]
    if is_stream(x) and source_name(x) != "memory-mapped arrays":
        raise DataError(f"Sequential '{model_name}' has no input shape yet and cannot learn one "
                        f"from a {source_name(x)}; give the first layer an input_shape (or "
                        "start with an Input).")
    return x
