"""The threads pool passes the pool contract, resizes, and recycles threads when told to."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kernel_pool_threads import ThreadPool

from kernel import hookimpl
from kernel.testing.contracts import PoolContract, TimeLimitContract
from kernel.testing.helpers import peak_concurrency, wait_until


class TestThreadsPool(PoolContract):
    concurrency = 4

    @pytest.fixture
    def pool_name(self) -> str:
        return "threads"


def _run_all(pool: ThreadPool, n: int, fn: Any) -> list[Any]:
    results: list[Any] = []
    done = threading.Event()

    def collect(value: Any) -> None:
        results.append(value)
        if len(results) == n:
            done.set()

    for _ in range(n):
        pool.apply(fn, None, collect, collect)
    assert done.wait(10)
    return results


def test_recycle_policy_replaces_threads_without_losing_work() -> None:
    pool = ThreadPool(2, recycle=lambda tasks, rss: tasks >= 3)
    pool.start()
    names = _run_all(pool, 30, lambda _: threading.current_thread().name)
    pool.stop()
    assert len(names) == 30  # nothing lost
    counts = {name: names.count(name) for name in set(names)}
    assert max(counts.values()) <= 3  # no thread ran more than its quota
    assert len(counts) >= 10


def test_recycle_hook_is_asked_with_the_threads_task_count(make_worker: Any) -> None:
    asked: list[int] = []

    class Policy:
        plugin_name = "policy"

        @hookimpl
        def kernel_recycle_child(self, tasks: int, rss_kib: int) -> bool:
            asked.append(tasks)
            assert rss_kib > 0
            return tasks >= 2

    from kernel.plugin import POOL

    worker = make_worker(
        Policy(), discover=True, settings={"worker_pool": "threads", "worker_concurrency": 1}
    )
    worker.start()
    pool = worker.services[POOL]
    names = _run_all(pool, 6, lambda _: threading.current_thread().name)
    worker.stop()
    assert asked == [1, 2, 1, 2, 1, 2]
    assert len(set(names)) == 3


def test_grow_and_shrink_change_the_slots() -> None:
    pool = ThreadPool(1)
    pool.start()
    pool.grow(3)
    assert pool.concurrency == 4
    assert peak_concurrency(pool, 6) == 4
    pool.shrink(3)
    assert pool.concurrency == 1
    assert wait_until(lambda: len(pool.info()["threads"]) == 1)
    assert peak_concurrency(pool, 3) == 1
    pool.stop()


class TestThreadsTimeLimits(TimeLimitContract):
    @pytest.fixture
    def pool_name(self) -> str:
        return "threads"


def test_fast_jobs_ask_for_more_ahead_and_slow_ones_for_one_per_thread() -> None:
    import time

    pool = ThreadPool(2)
    pool.start()
    try:
        assert pool.ahead == 2  # nothing measured: one waiting job per thread
        _run_all(pool, 200, lambda _: None)
        assert pool.ahead > 2 * 8
        _run_all(pool, 60, lambda _: time.sleep(0.01))
        assert pool.ahead == 2
    finally:
        pool.stop()
