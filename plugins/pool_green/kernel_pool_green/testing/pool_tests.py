"""Tests of a green pool on a hub of its own, in this unpatched process.

Its tasks cooperate through the library's API: green concurrency, the bound and resizing, time
limits, stopping, the worker's default size, and a plugin that imports light."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kernel.plugin import POOL, SoftTimeLimitExceeded, TimeLimitExceeded
from kernel.testing.helpers import wait_until

from ..pool import GreenPool
from ..step import DEFAULT_CONCURRENCY, GreenPoolStep

MakePool = Callable[[int], GreenPool]


def green_step(name: str) -> GreenPoolStep:
    """The step of the installed plugin pool.NAME, found as a worker finds it."""
    (entry,) = importlib.metadata.entry_points(group="kernel.plugins", name=f"pool.{name}")
    (step_class,) = entry.load().kernel_steps()
    step: GreenPoolStep = step_class()
    return step


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
    pool: GreenPool,
    fn: Callable[[Any], Any],
    n: int = 1,
    timeouts: tuple[float | None, float | None] = (None, None),
) -> Outcomes:
    outcomes = Outcomes()
    for i in range(n):
        pool.apply(fn, i, outcomes.ok, outcomes.failed, timeouts)
    return outcomes


def green_peak(pool: GreenPool, jobs: int) -> int:
    """How many of `jobs` held-open jobs ran at once (helpers.peak_concurrency, but waiting
    with the library's sleep: a blocking wait would hold the unpatched hub)."""
    running, peak, released = [0], [0], [False]

    def hold(_: Any) -> None:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        while not released[0]:
            pool.green.sleep(0.01)
        running[0] -= 1

    outcomes = submit(pool, hold, jobs)
    wait_until(lambda: peak[0] >= jobs, timeout=1.0)
    released[0] = True
    outcomes.wait(jobs)
    return peak[0]


def hub_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"kernel-pool-{name}"]


class GreenPoolTests:
    """Give the `green_pool` fixture (the pool's name)."""

    @pytest.fixture
    def make_pool(self, green_pool: str) -> Iterator[MakePool]:
        step = green_step(green_pool)
        made: list[GreenPool] = []

        def make(concurrency: int) -> GreenPool:
            pool = step.make_pool(concurrency)
            pool.start()
            made.append(pool)
            return pool

        yield make
        for pool in made:
            pool.terminate()

    def test_a_thousand_green_sleeps_run_at_once(self, make_pool: MakePool) -> None:
        pool = make_pool(1000)
        sleep = pool.green.sleep
        began = time.monotonic()
        outcomes = submit(pool, lambda i: sleep(1) or i, 1000)
        outcomes.wait(1000, timeout=15)
        assert sorted(outcomes.results) == list(range(1000))
        assert time.monotonic() - began < 5

    def test_jobs_beyond_the_bound_wait_their_turn(self, make_pool: MakePool) -> None:
        assert green_peak(make_pool(3), 7) == 3

    def test_grow_and_shrink_move_the_bound(self, make_pool: MakePool) -> None:
        pool = make_pool(1)
        pool.grow(3)
        assert pool.concurrency == 4 and pool.info()["max-concurrency"] == 4
        assert green_peak(pool, 6) == 4
        pool.shrink(10)  # never below one slot
        assert pool.concurrency == 1
        assert green_peak(pool, 3) == 1

    def test_results_and_errors_reach_their_callbacks(self, make_pool: MakePool) -> None:
        pool = make_pool(2)

        def explode(_: Any) -> None:
            raise KeyError("boom")

        good = submit(pool, lambda i: i + 1)
        bad = submit(pool, explode)
        good.wait(1)
        bad.wait(1)
        assert good.results == [1]
        assert isinstance(bad.errors[0], KeyError)

    def test_apply_from_many_threads(self, make_pool: MakePool) -> None:
        pool = make_pool(10)
        sleep = pool.green.sleep
        outcomes = Outcomes()

        def send() -> None:
            for i in range(100):
                pool.apply(lambda x: sleep(0.001) or x, i, outcomes.ok, outcomes.failed)

        threads = [threading.Thread(target=send) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        outcomes.wait(400)
        assert sorted(outcomes.results) == sorted(list(range(100)) * 4)

    def test_the_soft_limit_raises_inside_the_task(self, make_pool: MakePool) -> None:
        pool = make_pool(2)
        sleep = pool.green.sleep

        def patient(_: Any) -> str:
            try:
                sleep(30)
            except SoftTimeLimitExceeded:
                return "caught"
            return "slept"

        caught = submit(pool, patient, timeouts=(0.2, None))
        uncaught = submit(pool, lambda _: sleep(30), timeouts=(0.2, None))
        caught.wait(1, timeout=3)
        uncaught.wait(1, timeout=3)
        assert caught.results == ["caught"]
        assert isinstance(uncaught.errors[0], SoftTimeLimitExceeded)

    def test_the_hard_limit_kills_the_task_and_frees_its_slot(self, make_pool: MakePool) -> None:
        pool = make_pool(1)
        laps = [0]

        def endless(_: Any) -> None:
            while True:
                laps[0] += 1
                pool.green.sleep(0.01)

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

    def test_stop_waits_for_running_and_waiting_jobs(
        self, make_pool: MakePool, green_pool: str
    ) -> None:
        pool = make_pool(2)
        sleep = pool.green.sleep
        outcomes = submit(pool, lambda i: sleep(0.2) or i, 4)
        began = time.monotonic()
        pool.stop()
        assert time.monotonic() - began >= 0.35  # two rounds of two
        assert sorted(outcomes.results) == [0, 1, 2, 3]
        assert hub_threads(green_pool) == []

    def test_terminate_kills_running_jobs_without_callbacks(
        self, make_pool: MakePool, green_pool: str
    ) -> None:
        pool = make_pool(2)
        unwound: list[int] = []

        def long(i: int) -> None:
            try:
                pool.green.sleep(30)
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
        assert hub_threads(green_pool) == []

    def test_info_describes_the_pool(self, make_pool: MakePool, green_pool: str) -> None:
        info = make_pool(7).info()
        assert info["implementation"] == green_pool
        assert info["max-concurrency"] == 7
        assert info["processes"] and info["patched"] is False

    def test_a_worker_runs_a_hundred_green_threads_by_default(
        self, make_worker: Any, green_pool: str
    ) -> None:
        worker = make_worker(settings={"worker_pool": green_pool})
        worker.start()
        try:
            assert worker.services[POOL].concurrency == DEFAULT_CONCURRENCY == 100
        finally:
            worker.stop()

    def test_the_plugin_imports_no_library_and_patches_only_when_asked(
        self, green_pool: str
    ) -> None:
        check = (
            f"import sys, time, kernel_pool_{green_pool} as plugin\n"
            "from kernel.testing.patching import patch_for\n"
            "assert plugin.kernel_task_options() == ['time_limit', 'soft_time_limit']\n"
            "assert patch_for(['start', '-P', 'threads']) is None\n"
            f"assert {green_pool!r} not in sys.modules, 'imported {green_pool}'\n"
            f"assert patch_for(['start', '--pool={green_pool}']) == 'pool.{green_pool}'\n"
            f"assert time.sleep.__module__.startswith('{green_pool}.'), time.sleep\n"
        )
        run = subprocess.run(
            [sys.executable, "-c", check], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
