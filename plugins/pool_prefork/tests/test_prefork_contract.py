"""The prefork pool passes the pool and time-limit contracts, resizes, and stops cleanly."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from kernel_pool_prefork import PreforkPool

from kernel.plugin import Pool, SoftTimeLimitExceeded, TimeLimitExceeded
from kernel.testing.contracts import PoolContract, TimeLimitContract
from kernel.testing.helpers import peak_concurrency, wait_until


def run(pool: Pool, fn: Any, arg: Any = None, timeouts: Any = (None, None)) -> dict[str, Any]:
    done = threading.Event()
    box: dict[str, Any] = {}

    def settle(key: str) -> Any:
        def store(value: Any) -> None:
            box[key] = value
            done.set()

        return store

    pool.apply(fn, arg, settle("result"), settle("error"), timeouts)
    assert done.wait(15), "the pool never called back"
    return box


class TestPreforkPool(PoolContract):
    @pytest.fixture
    def pool_name(self) -> str:
        return "prefork"


class TestPreforkTimeLimits(TimeLimitContract):
    @pytest.fixture
    def pool_name(self) -> str:
        return "prefork"


def test_grow_and_shrink_change_the_processes_and_the_parallelism() -> None:
    pool = PreforkPool(1)
    pool.start()
    try:
        assert wait_until(lambda: len(pool.info()["processes"]) == 1)
        pool.grow(2)
        assert pool.concurrency == 3
        assert wait_until(lambda: len(pool.info()["processes"]) == 3)
        assert peak_concurrency(pool, 4) == 3
        pool.shrink(2)
        assert pool.concurrency == 1
        assert wait_until(lambda: len(pool.info()["processes"]) == 1)
        assert peak_concurrency(pool, 2) == 1
    finally:
        pool.stop()
    assert pool.info()["processes"] == []


def nap(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_shrink_lets_a_busy_child_finish_its_job(pool: PreforkPool) -> None:
    results: list[Any] = []
    for _ in range(2):
        pool.apply(nap, 0.5, results.append, results.append)
    time.sleep(0.2)
    pool.shrink(1)
    assert wait_until(lambda: len(results) == 2)
    assert all(isinstance(pid, int) for pid in results)
    assert wait_until(lambda: len(pool.info()["processes"]) == 1)


def test_stop_lets_running_jobs_finish(pool: PreforkPool) -> None:
    results: list[Any] = []
    for _ in range(3):
        pool.apply(nap, 0.3, results.append, results.append)
    pool.stop()
    assert len(results) == 3 and all(isinstance(pid, int) for pid in results)
    assert pool.info()["processes"] == []


def test_terminate_kills_the_children(pool: PreforkPool) -> None:
    assert wait_until(lambda: len(pool.info()["processes"]) == 2)
    pids = pool.info()["processes"]
    pool.apply(lambda _: time.sleep(30), None, print, print)
    pool.terminate()
    assert not any(_alive(pid) for pid in pids)


def test_a_soft_limit_above_the_hard_one_does_not_delay_it(pool: PreforkPool) -> None:
    began = time.monotonic()
    box = run(pool, lambda _: time.sleep(10), timeouts=(5.0, 0.3))
    assert isinstance(box.get("error"), TimeLimitExceeded)
    assert time.monotonic() - began < 2


def test_a_child_ignoring_sigterm_is_killed_at_the_hard_limit(pool: PreforkPool) -> None:
    stubborn_pid = multiprocessing.get_context("fork").Value("i", 0)

    def stubborn(_: Any) -> None:
        stubborn_pid.value = os.getpid()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(0.05)

    box = run(pool, stubborn, timeouts=(None, 0.3))
    assert isinstance(box.get("error"), TimeLimitExceeded)
    assert box["error"].args == (0.3,)
    assert wait_until(lambda: stubborn_pid.value not in pool.info()["processes"])
    assert wait_until(lambda: not _alive(stubborn_pid.value), timeout=3)
    assert wait_until(lambda: len(pool.info()["processes"]) == 2)
    assert run(pool, lambda x: x + 1, 1) == {"result": 2}  # the slot is free again


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_soft_limit_is_catchable_and_the_child_goes_on() -> None:
    def patient(seconds: float) -> tuple[str, int]:
        try:
            time.sleep(seconds)
        except SoftTimeLimitExceeded:
            return "caught", os.getpid()
        return "finished", os.getpid()

    pool = PreforkPool(1)
    pool.start()
    try:
        caught, pid = run(pool, patient, 5, timeouts=(0.2, None))["result"]
        assert caught == "caught"
        assert run(pool, patient, 0.01)["result"] == ("finished", pid)
    finally:
        pool.stop()


def test_results_and_exceptions_that_cannot_be_pickled_fail_the_job(pool: PreforkPool) -> None:
    box = run(pool, lambda _: threading.Lock())
    assert isinstance(box.get("error"), RuntimeError)
    assert "cannot send the job's result" in str(box["error"])
    assert run(pool, lambda x: x * 3, 3) == {"result": 9}


def test_a_new_function_reaches_children_forked_before_it(pool: PreforkPool) -> None:
    assert wait_until(lambda: len(pool.info()["processes"]) == 2)
    before = set(pool.info()["processes"])
    marker = object()  # only a fork made after this line has it
    pid, same = run(pool, lambda _: (os.getpid(), marker is not None))["result"]
    assert same and pid not in before


ORPHAN_SCRIPT = """
import sys, time
from kernel_pool_prefork import PreforkPool
pool = PreforkPool(2)
pool.start()
while len(pool.info()["processes"]) < 2:
    time.sleep(0.01)
print(*pool.info()["processes"], flush=True)
time.sleep(60)
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for whoever adopted it to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_children_exit_when_the_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(_running(pid) for pid in pids)
    parent.kill()
    parent.wait()
    assert wait_until(lambda: not any(_running(pid) for pid in pids), timeout=5)
