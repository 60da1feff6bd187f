"""A fixed (but resizable) set of daemon threads fed from one queue."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from kernel.proc import rss_kib

log = logging.getLogger("kernel.pool.threads")

_STOP = object()
Job = tuple[Callable[[Any], Any], Any, Callable[[Any], None], Callable[[BaseException], None]]


def default_concurrency() -> int:
    return os.cpu_count() or 1


class ThreadPool:
    """`apply` queues a job; each thread runs jobs one by one and reports through the callbacks.

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
        self._serial = 0

    @property
    def concurrency(self) -> int:
        return self._target

    def start(self) -> None:
        for _ in range(self._target):
            self._spawn()

    def _spawn(self) -> None:
        with self._lock:
            self._serial += 1
            thread = threading.Thread(
                target=self._work, name=f"kernel-pool-{self._serial}", daemon=True
            )
            self._threads.add(thread)
        thread.start()

    def _work(self) -> None:
        done = 0
        me = threading.current_thread()
        try:
            while True:
                job = self._jobs.get()
                if job is _STOP:
                    return
                fn, arg, callback, error_callback = job
                try:
                    result = fn(arg)
                except BaseException as exc:  # fn is expected to return an outcome; report anyway
                    log.exception("pool job raised")
                    error_callback(exc)
                else:
                    callback(result)
                done += 1
                if self._recycle is not None and self._recycle(done, rss_kib()):
                    log.info("recycling %s after %d tasks", me.name, done)
                    self._spawn()
                    return
        finally:
            with self._lock:
                self._threads.discard(me)

    def apply(
        self,
        fn: Callable[[Any], Any],
        arg: Any,
        callback: Callable[[Any], None],
        error_callback: Callable[[BaseException], None],
    ) -> None:
        self._jobs.put((fn, arg, callback, error_callback))

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
                return
            for _ in threads:
                self._jobs.put(_STOP)
            for thread in threads:
                thread.join()

    def terminate(self) -> None:
        # threads cannot be killed; they are daemons, so process exit ends them
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(_STOP)

    def info(self) -> dict[str, Any]:
        with self._lock:
            names = sorted(thread.name for thread in self._threads)
        return {
            "implementation": "threads",
            "max-concurrency": self._target,
            "threads": names,
            "processes": [os.getpid()],
        }
