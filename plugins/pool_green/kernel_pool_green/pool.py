"""A bounded set of green threads on one hub, with soft and hard time limits, on any library.

The library is reached through a `GreenLibrary` adapter (kernel_pool_green.library)."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from kernel.plugin import BasePool, SoftTimeLimitExceeded, TimeLimitExceeded

from .library import Cancel, Doorbell, GreenLibrary, Latch


@dataclasses.dataclass(eq=False)  # compared and hashed by identity: jobs live in a set
class Job:
    """One submitted function, its green thread, and whether it has been reported (or
    abandoned)."""

    fn: Callable[[Any], Any]
    arg: Any
    callback: Callable[[Any], None]
    error_callback: Callable[[BaseException], None]
    soft: float | None
    hard: float | None
    green: Any = None  # the green thread running it
    cancel_watch: Cancel | None = None  # stops the timer that would fire the hard limit
    settled: bool = False


class GreenPool(BasePool):
    """`apply` runs `fn(arg)` in a new green thread while fewer than `concurrency` run; other
    jobs wait their turn in order. Callbacks run in the task's green thread.

    Every green thread lives on one hub. In a patched process (`kernel start -P gevent`) that
    is the main thread's, shared with the consumer and the brokers, which all cooperate. In an
    unpatched one (a Worker embedded in a program, the test suite) the pool runs a hub in a
    thread of its own: tasks then cooperate only through the library's API (its sleep, its
    sockets), and one that blocks in the standard library holds up the others.

    Time limits: at the soft limit the library's timeout raises SoftTimeLimitExceeded in the
    task at its next cooperative switch; the task may catch it. At the hard limit the task is
    reported failed with TimeLimitExceeded, its slot goes to the next job, and its green thread
    is killed (GreenletExit at its next switch). A task that never switches cannot be
    interrupted. Every task runs in a fresh green thread, so there is no slot to recycle.
    """

    def __init__(self, concurrency: int, green: GreenLibrary) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.green = green
        self.patched = False
        self._log = logging.getLogger(f"kernel.pool.{green.name}")
        self._target = concurrency
        self._running: set[Job] = set()
        self._waiting: deque[Job] = deque()
        self._idle_waiters: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        # other threads' calls: queued here, and the hub is told through the doorbell
        self._inbox: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._bell: Doorbell | None = None
        self._hub_thread = 0
        self._closing: Latch | None = None

    @property
    def concurrency(self) -> int:
        return self._target

    # -- the hub ----------------------------------------------------------------------------
    def start(self) -> None:
        name = self.green.name
        self.patched = self.green.patched()
        if not self.patched:
            self._log.warning(
                "%s has not patched this process: the pool's green threads run on a hub in a "
                "thread of their own, so a task that blocks outside %s's API (time.sleep, "
                "sockets, locks) holds up the others; `kernel start -P %s` patches",
                name,
                name,
                name,
            )
        # patched, this "thread" is a green thread on the main hub; unpatched, a real thread
        self._thread = threading.Thread(target=self._serve, name=f"kernel-pool-{name}", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _serve(self) -> None:
        green = self.green
        bell = green.doorbell(self._run_inbox)
        self._bell = bell
        self._hub_thread = green.os_thread_id()
        self._closing = green.latch()
        self._ready.set()
        self._closing.wait()
        self._bell = None
        bell.close()
        if not self.patched:
            green.destroy_hub()  # this thread's own hub: free its loop with it

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` on the pool's hub: now if called there, else on its next loop."""
        if self.green.os_thread_id() == self._hub_thread:
            fn(*args)
            return
        bell = self._bell
        if bell is None:
            raise RuntimeError(f"the {self.green.name} pool is not running")
        self._inbox.append((fn, args))
        bell.ring()

    def _run_inbox(self) -> None:
        inbox = self._inbox
        while inbox:
            fn, args = inbox.popleft()
            try:
                fn(*args)
            except Exception:
                self._log.exception("%s pool call %r failed", self.green.name, fn)

    def _close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None or self._closing is None:
            return
        self._call(self._closing.set)
        if thread is not threading.current_thread():
            thread.join(5)

    # -- running jobs (on the hub's thread) -------------------------------------------------
    def apply(
        self,
        fn: Callable[[Any], Any],
        arg: Any,
        callback: Callable[[Any], None],
        error_callback: Callable[[BaseException], None],
        timeouts: tuple[float | None, float | None] = (None, None),
    ) -> None:
        soft, hard = (limit or None for limit in timeouts)
        self._call(self._enqueue, Job(fn, arg, callback, error_callback, soft, hard))

    def _enqueue(self, job: Job) -> None:
        self._waiting.append(job)
        self._fill()

    def _fill(self) -> None:
        while self._waiting and len(self._running) < self._target:
            job = self._waiting.popleft()
            self._running.add(job)
            job.green = self.green.spawn(self._run, job)

    def _run(self, job: Job) -> None:
        green = self.green
        if job.hard:
            job.cancel_watch = green.call_later(job.hard, self._expire, job)
        result: Any = None
        failed: BaseException | None = None
        try:
            # started here: a timeout raises in the green thread that starts it
            cancel_soft = green.start_timeout(job.soft, SoftTimeLimitExceeded) if job.soft else None
            try:
                result = job.fn(job.arg)
            finally:
                if cancel_soft is not None:
                    cancel_soft()
        except BaseException as exc:  # whatever fn raised; GreenletExit if it was killed
            failed = exc
        if job.cancel_watch is not None:
            job.cancel_watch()
        if job.settled:
            return  # the hard limit or terminate took it: already reported or abandoned
        job.settled = True
        self._release(job)
        if failed is not None:
            self._log.error("pool job raised %r", failed)
        self._report(job, result, failed)

    def _expire(self, job: Job) -> None:
        if job.settled:
            return
        job.settled = True
        self._log.error("hard time limit (%ss) exceeded; killing the task's green thread", job.hard)
        self._release(job)
        self._report(job, None, TimeLimitExceeded(job.hard))
        if job.green is not None:
            self.green.kill(job.green)  # last: a library may switch into the task to unwind it

    def _report(self, job: Job, result: Any, failed: BaseException | None) -> None:
        try:
            if failed is None:
                job.callback(result)
            else:
                job.error_callback(failed)
        except Exception:  # a callback's failure must not take the slot bookkeeping with it
            self._log.exception("pool callback failed")

    def _release(self, job: Job) -> None:
        self._running.discard(job)
        self._fill()
        if not self._running and not self._waiting and self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for notify in waiters:
                notify()

    def _when_idle(self, notify: Callable[[], None]) -> None:
        if self._running or self._waiting:
            self._idle_waiters.append(notify)
        else:
            notify()

    def _kill_all(self) -> None:
        self._waiting.clear()
        jobs, self._running = list(self._running), set()
        for job in jobs:
            job.settled = True
            if job.cancel_watch is not None:
                job.cancel_watch()
        waiters, self._idle_waiters = self._idle_waiters, []
        for notify in waiters:
            notify()
        for job in jobs:  # last: a library may switch into each task to unwind it
            if job.green is not None:
                self.green.kill(job.green)

    # -- size -------------------------------------------------------------------------------
    def grow(self, n: int = 1) -> None:
        self._target += n
        self._call(self._fill)

    def shrink(self, n: int = 1) -> None:
        # running green threads finish; no new one starts until fewer than the target run
        self._target = max(self._target - n, 1)

    # -- stopping ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Let every submitted job finish, then end the hub's thread."""
        if self._thread is None:
            return
        idle = threading.Event()
        self._call(self._when_idle, idle.set)
        idle.wait()
        self._close()

    def terminate(self) -> None:
        """Kill the running green threads and drop waiting jobs, without callbacks. Never
        raises."""
        try:
            if self._thread is not None:
                self._call(self._kill_all)
                self._close()
        except Exception:
            self._log.exception("could not terminate the %s pool cleanly", self.green.name)

    def info(self) -> dict[str, Any]:
        return {
            "implementation": self.green.name,
            "max-concurrency": self._target,
            "processes": [os.getpid()],
            "running": len(self._running),
            "waiting": len(self._waiting),
            "patched": self.patched,
        }
