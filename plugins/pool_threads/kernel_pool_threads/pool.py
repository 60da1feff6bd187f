"""A resizable set of daemon threads fed from one queue, with time limits where CPython allows."""

from __future__ import annotations

import ctypes
import heapq
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from kernel.plugin import BasePool, Pace, SoftTimeLimitExceeded, TimeLimitExceeded, rss_kib

log = logging.getLogger("kernel.pool.threads")

_STOP = object()
# Fast jobs: the consumer hands over about AHEAD_TIME of work per thread at once, so a thread
# that finishes one takes the next from the queue without waiting for the consumer's loop.
AHEAD_TIME = 0.002
MAX_AHEAD = 32


def _raise_in(thread_id: int, exc_type: type[BaseException]) -> None:
    """Ask CPython to raise `exc_type` in another thread at its next bytecode boundary.

    It arrives only when that thread runs Python code again: a thread blocked in a C call
    (a socket read, a C extension's loop) sees it once the call returns."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
    )


def _absorb() -> None:
    """Give a pending asynchronous exception meant for a finished job a place to land."""
    for _ in range(3):
        pass


class Job:
    """One submitted function, and who settles it first: the thread, or the hard time limit."""

    __slots__ = (
        "arg",
        "callback",
        "error_callback",
        "fn",
        "hard",
        "lock",
        "settled",
        "soft",
        "thread",
    )

    def __init__(
        self,
        fn: Callable[[Any], Any],
        arg: Any,
        callback: Callable[[Any], None],
        error_callback: Callable[[BaseException], None],
        timeouts: tuple[float | None, float | None],
    ) -> None:
        self.fn, self.arg, self.callback, self.error_callback = fn, arg, callback, error_callback
        self.soft, self.hard = timeouts
        self.lock = threading.Lock()
        self.settled = False
        self.thread: threading.Thread | None = None


class ThreadPool(BasePool):
    """`apply` queues a job; each thread runs jobs one by one and reports through the callbacks.

    Time limits: at the soft limit SoftTimeLimitExceeded is raised inside the task (catchable).
    At the hard limit the task is reported failed with TimeLimitExceeded at once, a new thread
    takes its slot, and TimeLimitExceeded is raised in the old thread; that thread ends when
    Python regains control of it, and its late result is dropped.

    `recycle(tasks_run_by_this_thread, rss_kib)` is asked after each job; True replaces the
    thread with a fresh one (thread-local state is dropped, no job is lost).
    """

    def __init__(self, concurrency: int, recycle: Callable[[int, int], bool] | None = None) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._target = concurrency
        self._recycle = recycle
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        self._deadlines: list[tuple[float, int, str, Job]] = []
        self._watch = threading.Condition()
        self._watchdog: threading.Thread | None = None
        self._closed = False
        self._pace = Pace()

    @property
    def concurrency(self) -> int:
        return self._target

    @property
    def ahead(self) -> int:
        """Jobs wanted beyond the threads: about AHEAD_TIME of work per thread."""
        return self._target * self._pace.fitting(AHEAD_TIME, MAX_AHEAD)

    def start(self) -> None:
        for _ in range(self._target):
            self._spawn()

    def _spawn(self) -> None:
        with self._lock:
            thread = threading.Thread(
                target=self._work, name=f"kernel-pool-{next(self._serial)}", daemon=True
            )
            # started before it is listed, both under the lock: `stop` joins what it lists, and
            # a thread cannot be joined before it has started
            thread.start()
            self._threads.add(thread)

    # -- running jobs -----------------------------------------------------------------------
    def _work(self) -> None:
        done = 0
        me = threading.current_thread()
        try:
            while True:
                try:
                    job = self._jobs.get()
                except (SoftTimeLimitExceeded, TimeLimitExceeded):
                    continue  # meant for a job that already ended
                if job is _STOP:
                    return
                if not self._run(job):
                    return  # timed out: a replacement thread already holds this slot
                done += 1
                if self._recycle is not None and self._recycle(done, rss_kib()):
                    log.info("recycling %s after %d tasks", me.name, done)
                    self._spawn()
                    return
        finally:
            with self._lock:
                self._threads.discard(me)

    def _run(self, job: Job) -> bool:
        """Run one job; False if the hard time limit took it from this thread."""
        job.thread = threading.current_thread()
        self._watch_limits(job)
        began = time.perf_counter()
        try:
            try:
                result: Any = job.fn(job.arg)
                failed: BaseException | None = None
            except BaseException as exc:  # fn should return an outcome; report whatever it raised
                result, failed = None, exc
            self._pace.record(time.perf_counter() - began)
            with job.lock:
                mine = not job.settled
                job.settled = True
            try:
                _absorb()
            except (SoftTimeLimitExceeded, TimeLimitExceeded):
                pass
        except (SoftTimeLimitExceeded, TimeLimitExceeded):  # arrived between the lines above
            with job.lock:
                mine, job.settled = not job.settled, True
            result, failed = None, TimeLimitExceeded(job.hard)
        if not mine:
            return False
        if failed is not None:
            log.error("pool job raised %r", failed)
            job.error_callback(failed)
        else:
            job.callback(result)
        return True

    def apply(
        self,
        fn: Callable[[Any], Any],
        arg: Any,
        callback: Callable[[Any], None],
        error_callback: Callable[[BaseException], None],
        timeouts: tuple[float | None, float | None] = (None, None),
    ) -> None:
        self._jobs.put(Job(fn, arg, callback, error_callback, timeouts))

    # -- time limits ------------------------------------------------------------------------
    def _watch_limits(self, job: Job) -> None:
        now = time.monotonic()
        entries = [
            (now + limit, kind) for limit, kind in ((job.soft, "soft"), (job.hard, "hard")) if limit
        ]
        if not entries:
            return
        with self._watch:
            for deadline, kind in entries:
                heapq.heappush(self._deadlines, (deadline, next(self._serial), kind, job))
            if self._watchdog is None:
                self._watchdog = threading.Thread(
                    target=self._police, daemon=True, name="kernel-pool-timelimits"
                )
                self._watchdog.start()
            self._watch.notify()

    def _police(self) -> None:
        with self._watch:
            while not self._closed:
                if not self._deadlines:
                    self._watch.wait()
                    continue
                deadline, _, kind, job = self._deadlines[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._watch.wait(wait)
                    continue
                heapq.heappop(self._deadlines)
                self._expire(job, kind)

    def _expire(self, job: Job, kind: str) -> None:
        with job.lock:
            thread = job.thread
            if job.settled or thread is None or thread.ident is None:
                return
            if kind == "soft":
                _raise_in(thread.ident, SoftTimeLimitExceeded)
                return
            job.settled = True
            _raise_in(thread.ident, TimeLimitExceeded)
        log.error("hard time limit (%ss) exceeded; the slot goes to a new thread", job.hard)
        with self._lock:
            self._threads.discard(thread)  # abandoned: a warm stop must not wait for it
        self._spawn()
        job.error_callback(TimeLimitExceeded(job.hard))

    # -- size -------------------------------------------------------------------------------
    def grow(self, n: int = 1) -> None:
        self._target += n
        for _ in range(n):
            self._spawn()

    def shrink(self, n: int = 1) -> None:
        n = min(n, self._target - 1)
        self._target -= n
        for _ in range(n):  # a thread leaves when it next takes a job: running work finishes
            self._jobs.put(_STOP)

    def stop(self) -> None:
        """Queued jobs run first (the stop markers queue behind them); then every thread ends."""
        while True:  # again, in case a thread was recycled meanwhile
            with self._lock:
                threads = list(self._threads)
            if not threads:
                break
            for _ in threads:
                self._jobs.put(_STOP)
            for thread in threads:
                thread.join()
        self._close_watchdog()

    def terminate(self) -> None:
        # threads cannot be killed; they are daemons, so process exit ends them
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(_STOP)
        self._close_watchdog()

    def _close_watchdog(self) -> None:
        with self._watch:
            self._closed = True
            self._watch.notify()

    def info(self) -> dict[str, Any]:
        with self._lock:
            names = sorted(thread.name for thread in self._threads)
        return {
            "implementation": "threads",
            "max-concurrency": self._target,
            "threads": names,
            "processes": [os.getpid()],
        }
