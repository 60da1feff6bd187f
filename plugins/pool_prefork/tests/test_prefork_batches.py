"""Fast jobs travel to children in batches; a batch loses nothing when its child dies,
recycles or cannot pickle one of its jobs, and slow or time-limited jobs are not batched."""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections import Counter
from typing import Any

import pytest
from kernel_pool_prefork import PreforkPool

from kernel.plugin import WorkerLostError


class Results:
    """Collects every callback of many applied jobs."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.ok: list[Any] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._done = threading.Event()

    def _add(self, into: list[Any], value: Any) -> None:
        with self._lock:
            into.append(value)
            if len(self.ok) + len(self.errors) >= self.expected:
                self._done.set()

    def apply(self, pool: PreforkPool, fn: Any, arg: Any, timeouts: Any = (None, None)) -> None:
        pool.apply(
            fn, arg, lambda v: self._add(self.ok, v), lambda e: self._add(self.errors, e), timeouts
        )

    def wait(self, timeout: float = 30.0) -> None:
        assert self._done.wait(timeout), (
            f"{len(self.ok)} results and {len(self.errors)} errors of {self.expected}"
        )
        time.sleep(0.2)  # a callback beyond the expected count would show up now
        assert len(self.ok) + len(self.errors) == self.expected, "a job was settled twice"


def run_all(pool: PreforkPool, fn: Any, args: Any) -> Results:
    """Apply fn to each of args at once and wait for every callback."""
    args = list(args)
    results = Results(len(args))
    for arg in args:
        results.apply(pool, fn, arg)
    results.wait()
    return results


def whoami(n: int) -> tuple[int, int]:
    return n, os.getpid()


def die_at(arg: tuple[int, int]) -> tuple[int, int]:
    n, fatal = arg
    if n == fatal:
        os._exit(3)
    return n, os.getpid()


def nap(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def warm_up(pool: PreforkPool) -> None:
    """Run enough fast jobs that the pool knows they are fast."""
    run_all(pool, whoami, range(200))
    assert pool.ahead > pool.concurrency, "fast jobs should be batched"


def test_fast_jobs_are_batched_and_spread_over_the_children(pool: PreforkPool) -> None:
    warm_up(pool)
    results = run_all(pool, whoami, range(2000))
    assert sorted(n for n, _ in results.ok) == list(range(2000))
    by_pid = Counter(pid for _, pid in results.ok)
    assert len(by_pid) == 2 and min(by_pid.values()) > 200, by_pid


def test_slow_jobs_are_not_batched(pool: PreforkPool) -> None:
    warm_up(pool)
    run_all(pool, nap, [0.01] * 40)
    assert pool.ahead == pool.concurrency  # one job waiting per child: Celery's hand-off


def test_a_child_dying_mid_batch_loses_only_its_running_job(pool: PreforkPool) -> None:
    warm_up(pool)
    results = run_all(pool, die_at, ((n, 250) for n in range(500)))
    assert len(results.errors) == 1 and isinstance(results.errors[0], WorkerLostError)
    assert sorted(n for n, _ in results.ok) == [n for n in range(500) if n != 250]


def test_a_recycled_child_gives_back_the_rest_of_its_batch() -> None:
    pool = PreforkPool(2, recycle=lambda tasks, rss: tasks >= 25)
    pool.start()
    try:
        warm_up(pool)
        results = run_all(pool, whoami, range(1000))
    finally:
        pool.stop()
    assert sorted(n for n, _ in results.ok) == list(range(1000))
    by_pid = Counter(pid for _, pid in results.ok)
    assert max(by_pid.values()) <= 25 and len(by_pid) >= 40


def test_a_job_that_cannot_be_pickled_fails_alone(pool: PreforkPool) -> None:
    warm_up(pool)
    results = run_all(pool, whoami, (threading.Lock() if n == 150 else n for n in range(300)))
    assert len(results.errors) == 1 and "pickle" in str(results.errors[0])
    assert sorted(n for n, _ in results.ok) == [n for n in range(300) if n != 150]


def test_time_limited_jobs_keep_their_limits_among_batched_ones(pool: PreforkPool) -> None:
    warm_up(pool)
    results = Results(202)
    for n in range(100):
        results.apply(pool, whoami, n)
    results.apply(pool, nap, 5.0, (None, 0.5))  # killed at its hard limit
    for n in range(100, 200):
        results.apply(pool, whoami, n)
    results.apply(pool, nap, 0.01, (None, 0.5))  # well within it
    started = time.monotonic()
    results.wait()
    assert time.monotonic() - started < 4.0
    assert [type(e).__name__ for e in results.errors] == ["TimeLimitExceeded"]
    assert len(results.ok) == 201
    assert sorted(v[0] for v in results.ok if isinstance(v, tuple)) == list(range(200))


def touch(path: str) -> int:
    with open(path, "w") as fh:
        fh.write("ran")
    return os.getpid()


def test_a_job_for_an_idle_child_starts_without_waiting_for_the_monitor(
    pool: PreforkPool, tmp_path: Any
) -> None:
    # a callback runs in the monitor thread: while it blocks, the monitor does nothing else
    release, blocked = threading.Event(), threading.Event()

    def slow_callback(_: Any) -> None:
        blocked.set()
        release.wait(10)

    done: list[Any] = []
    pool.apply(touch, str(tmp_path / "first"), slow_callback, done.append)
    assert blocked.wait(10)
    marker = tmp_path / "second"
    pool.apply(touch, str(marker), done.append, done.append)
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    ran = marker.exists()
    release.set()
    assert ran, "the job waited for the monitor"
    deadline = time.monotonic() + 5
    while not done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(done) == 1 and isinstance(done[0], int)  # its result came back too


def sized(n: int) -> tuple[int, str]:
    return n, "x" * (n * 997 % 150_000)


def test_replies_of_every_size_arrive_whole(pool: PreforkPool) -> None:
    # the parent reads whatever replies a child has written at once: small ones several to a
    # read, large ones across several reads
    warm_up(pool)
    results = run_all(pool, sized, range(600))
    assert sorted(results.ok) == [sized(n) for n in range(600)]


def test_a_reply_split_across_reads_is_kept_until_it_is_whole() -> None:
    import billiard
    from kernel_pool_prefork.children import Child

    class Proc:
        pid = 0

    parent_end, child_end = billiard.Pipe()
    child = Child(Proc(), parent_end, 0)
    sent = [(True, n, False, 0.001) for n in range(3)] + [(True, "y" * 300_000, False, None)]
    writer = threading.Thread(target=lambda: [child_end.send(reply) for reply in sent])
    writer.start()
    got: list[Any] = []
    while len(got) < len(sent):
        got += [pickle.loads(reply) for reply in child.replies()]
    writer.join()
    assert got == sent
    assert not child.inbox
    child_end.close()
    with pytest.raises(EOFError):  # the child's end closed: it is exiting
        child.replies()
