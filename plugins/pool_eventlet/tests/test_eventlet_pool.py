"""The eventlet pool in this (unpatched) process, on a hub of its own, with eventlet-aware tasks:
green concurrency, the bound and resizing, time limits, stopping, child init, a light import."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import eventlet
import pytest
from kernel_pool_eventlet.pool import EventletPool

from kernel import hookimpl
from kernel.plugin import POOL, SoftTimeLimitExceeded, TimeLimitExceeded
from kernel.testing.helpers import wait_until


@pytest.fixture
def make_pool() -> Iterator[Callable[[int], EventletPool]]:
    made: list[EventletPool] = []

    def make(concurrency: int) -> EventletPool:
        pool = EventletPool(concurrency)
        pool.start()
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.terminate()


class Outcomes:
    """Collects what the pool reports, from whichever thread it reports in."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def ok(self, result: Any) -> None:
        with self._lock:
            self.results.append(result)

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)

    def wait(self, n: int, timeout: float = 10) -> None:
        assert wait_until(lambda: len(self.results) + len(self.errors) >= n, timeout), (
            f"{len(self.results) + len(self.errors)} of {n} jobs reported"
        )


def submit(
    pool: EventletPool,
    fn: Callable[[Any], Any],
    n: int = 1,
    timeouts: tuple[float | None, float | None] = (None, None),
) -> Outcomes:
    outcomes = Outcomes()
    for i in range(n):
        pool.apply(fn, i, outcomes.ok, outcomes.failed, timeouts)
    return outcomes


def green_peak(pool: EventletPool, jobs: int) -> int:
    """How many of `jobs` held-open jobs ran at once (helpers.peak_concurrency, but waiting
    with eventlet.sleep: a blocking wait would hold the unpatched hub)."""
    running, peak, released = [0], [0], [False]

    def hold(_: Any) -> None:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        while not released[0]:
            eventlet.sleep(0.01)
        running[0] -= 1

    outcomes = submit(pool, hold, jobs)
    wait_until(lambda: peak[0] >= jobs, timeout=1.0)
    released[0] = True
    outcomes.wait(jobs)
    return peak[0]


def test_a_thousand_green_sleeps_run_at_once(make_pool: Callable[[int], EventletPool]) -> None:
    pool = make_pool(1000)
    began = time.monotonic()
    outcomes = submit(pool, lambda i: eventlet.sleep(1) or i, 1000)
    outcomes.wait(1000, timeout=15)
    assert sorted(outcomes.results) == list(range(1000))
    assert time.monotonic() - began < 5


def test_jobs_beyond_the_bound_wait_their_turn(make_pool: Callable[[int], EventletPool]) -> None:
    assert green_peak(make_pool(3), 7) == 3


def test_grow_and_shrink_move_the_bound(make_pool: Callable[[int], EventletPool]) -> None:
    pool = make_pool(1)
    pool.grow(3)
    assert pool.concurrency == 4 and pool.info()["max-concurrency"] == 4
    assert green_peak(pool, 6) == 4
    pool.shrink(10)  # never below one slot
    assert pool.concurrency == 1
    assert green_peak(pool, 3) == 1


def test_results_and_errors_reach_their_callbacks(make_pool: Callable[[int], EventletPool]) -> None:
    pool = make_pool(2)

    def explode(_: Any) -> None:
        raise KeyError("boom")

    good = submit(pool, lambda i: i + 1)
    bad = submit(pool, explode)
    good.wait(1)
    bad.wait(1)
    assert good.results == [1]
    assert isinstance(bad.errors[0], KeyError)


def test_apply_from_many_threads(make_pool: Callable[[int], EventletPool]) -> None:
    pool = make_pool(10)
    outcomes = Outcomes()

    def send() -> None:
        for i in range(100):
            pool.apply(lambda x: eventlet.sleep(0.001) or x, i, outcomes.ok, outcomes.failed)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes.wait(400)
    assert sorted(outcomes.results) == sorted(list(range(100)) * 4)


def test_the_soft_limit_raises_inside_the_task(make_pool: Callable[[int], EventletPool]) -> None:
    pool = make_pool(2)

    def patient(_: Any) -> str:
        try:
            eventlet.sleep(30)
        except SoftTimeLimitExceeded:
            return "caught"
        return "slept"

    caught = submit(pool, patient, timeouts=(0.2, None))
    uncaught = submit(pool, lambda _: eventlet.sleep(30), timeouts=(0.2, None))
    caught.wait(1, timeout=3)
    uncaught.wait(1, timeout=3)
    assert caught.results == ["caught"]
    assert isinstance(uncaught.errors[0], SoftTimeLimitExceeded)


def test_the_hard_limit_kills_the_task_and_frees_its_slot(
    make_pool: Callable[[int], EventletPool],
) -> None:
    pool = make_pool(1)
    laps = [0]

    def endless(_: Any) -> None:
        while True:
            laps[0] += 1
            eventlet.sleep(0.01)

    began = time.monotonic()
    killed = submit(pool, endless, timeouts=(None, 0.3))
    after = submit(pool, lambda _: "ran")
    killed.wait(1, timeout=3)
    after.wait(1, timeout=3)
    assert [str(e) for e in killed.errors] == [str(TimeLimitExceeded(0.3))]
    assert isinstance(killed.errors[0], TimeLimitExceeded)
    assert after.results == ["ran"]
    assert time.monotonic() - began < 2
    counted = laps[0]
    time.sleep(0.1)
    assert laps[0] == counted  # the green thread is dead, not merely forgotten


def test_stop_waits_for_running_and_waiting_jobs(make_pool: Callable[[int], EventletPool]) -> None:
    pool = make_pool(2)
    outcomes = submit(pool, lambda i: eventlet.sleep(0.2) or i, 4)
    began = time.monotonic()
    pool.stop()
    assert time.monotonic() - began >= 0.35  # two rounds of two
    assert sorted(outcomes.results) == [0, 1, 2, 3]
    assert not any(t.name == "kernel-pool-eventlet" for t in threading.enumerate())


def test_terminate_kills_running_jobs_without_callbacks(
    make_pool: Callable[[int], EventletPool],
) -> None:
    pool = make_pool(2)
    unwound: list[int] = []

    def long(i: int) -> None:
        try:
            eventlet.sleep(30)
        finally:
            unwound.append(i)

    outcomes = submit(pool, long, 3)
    assert wait_until(lambda: pool.info()["running"] == 2)
    began = time.monotonic()
    pool.terminate()
    assert time.monotonic() - began < 2
    assert sorted(unwound) == [0, 1]  # killed, not left asleep; the third never started
    time.sleep(0.1)
    assert outcomes.results == [] and outcomes.errors == []
    assert not any(t.name == "kernel-pool-eventlet" for t in threading.enumerate())


def test_info_describes_the_pool(make_pool: Callable[[int], EventletPool]) -> None:
    info = make_pool(7).info()
    assert info["implementation"] == "eventlet"
    assert info["max-concurrency"] == 7
    assert info["processes"] and info["patched"] is False


def test_child_init_runs_once_when_the_worker_starts_the_pool(make_worker: Any) -> None:
    calls: list[Any] = []

    class Recorder:
        plugin_name = "recorder"

        @hookimpl
        def kernel_child_init(self, worker: Any) -> None:
            calls.append(worker)

    worker = make_worker(Recorder(), discover=True, settings={"worker_pool": "eventlet"})
    worker.start()
    try:
        assert calls == [worker]
        assert worker.services[POOL].concurrency == 100  # the green default, not the CPUs
    finally:
        worker.stop()


def test_the_plugin_imports_no_eventlet_and_patches_only_when_asked() -> None:
    check = (
        "import sys, kernel_pool_eventlet\n"
        "from kernel.testing.patching import patch_for\n"
        "assert kernel_pool_eventlet.kernel_task_options() == ['time_limit', 'soft_time_limit']\n"
        "assert patch_for(['start', '-P', 'threads']) is None\n"
        "assert 'eventlet' not in sys.modules, 'imported eventlet'\n"
        "assert patch_for(['start', '--pool=eventlet']) == 'pool.eventlet'\n"
        "from eventlet import patcher\n"
        "assert patcher.is_monkey_patched('socket')\n"
    )
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
