"""run_shards: the caller runs a shard whose worker thread has not started it, so a step
never waits for a thread that has not begun (a descheduled worker on a busy machine)."""
from __future__ import annotations

import threading
from typing import Iterator

import pytest

from nexec.devices import threads


@pytest.fixture(autouse=True)
def two_threads_whatever_the_load() -> Iterator[None]:
    before, adaptive = threads.get_num_threads(), threads._adaptive
    threads.set_num_threads(2)
    threads.set_adaptive_threads(False)
    yield
    threads.set_num_threads(before)
    threads.set_adaptive_threads(adaptive)


def test_the_caller_runs_a_shard_its_worker_has_not_started() -> None:
    threads.run_shards(((lambda: None, ()), (lambda: None, ())))  # the worker exists
    worker = threads._workers[0]
    started, release = threading.Event(), threading.Event()

    def busy() -> None:  # keeps the worker from taking the next shard
        started.set()
        release.wait(10)

    worker.submit(busy, (), [])
    assert started.wait(10)
    ran_in: list[int] = []

    def second() -> None:
        ran_in.append(threading.get_ident())
        release.set()  # lets the worker finish, so run_shards can return

    threads.run_shards(((lambda: None, ()), (second, ())))
    assert ran_in == [threading.get_ident()]


def test_shards_still_run_on_the_workers_when_they_are_free() -> None:
    threads.run_shards(((lambda: None, ()), (lambda: None, ())))
    gate = threading.Event()
    ran_in: list[int] = []

    def first() -> None:
        gate.wait(10)  # the worker has picked up the second shard by now

    def second() -> None:
        ran_in.append(threading.get_ident())
        gate.set()

    threads.run_shards(((first, ()), (second, ())))
    assert ran_in and ran_in[0] != threading.get_ident()
