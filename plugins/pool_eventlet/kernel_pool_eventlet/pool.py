"""A bounded set of green threads on one eventlet hub, with soft and hard time limits."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import eventlet
from eventlet import greenthread, hubs, patcher
from eventlet.event import Event as GreenEvent

from kernel.plugin import SoftTimeLimitExceeded, TimeLimitExceeded

from .patch import is_patched

log = logging.getLogger("kernel.pool.eventlet")

# the OS thread's id, even where `threading` is patched to answer with green thread ids
_os_thread_id: Callable[[], int] = patcher.original("_thread").get_ident


class Job:
    """One submitted function, its green thread, and whether it has been reported (or
    abandoned)."""

    __slots__ = (
        "arg",
        "callback",
        "error_callback",
        "fn",
        "gt",
        "hard",
        "settled",
        "soft",
        "watch",
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
        self.soft, self.hard = (limit or None for limit in timeouts)
        self.gt: greenthread.GreenThread | None = None
        self.watch: greenthread.GreenThread | None = None  # fires the hard limit
        self.settled = False


class EventletPool:
    """`apply` runs `fn(arg)` in a new green thread while fewer than `concurrency` run; other
    jobs wait their turn in order. Callbacks run in the task's green thread.

    Every green thread lives on one hub. In a patched process (`kernel start -P eventlet`) that
    is the main thread's, shared with the consumer and the brokers, which all cooperate. In an
    unpatched one (a Worker embedded in a program, the test suite) the pool runs a hub in a
    thread of its own: tasks then cooperate only through eventlet's API (eventlet.sleep, green
    sockets), and one that blocks in the standard library holds up the others.

    Time limits: at the soft limit an eventlet.Timeout raises SoftTimeLimitExceeded in the task
    at its next cooperative switch; the task may catch it. At the hard limit the task is
    reported failed with TimeLimitExceeded, its slot goes to the next job, and its green thread
    is killed (GreenletExit). A task that never switches cannot be interrupted.
    """

    def __init__(self, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._target = concurrency
        self._running: set[Job] = set()
        self._waiting: deque[Job] = deque()
        self._idle_waiters: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._inbox: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        # other threads' calls: queued in the inbox, announced by a byte down this pipe
        self._pipe: tuple[int, int] | None = None
        self._rung = False
        self._hub_thread = 0
        self._closing: GreenEvent | None = None
        self.patched = False

    @property
    def concurrency(self) -> int:
        return self._target

    # -- the hub ----------------------------------------------------------------------------
    def start(self) -> None:
        self.patched = is_patched()
        if not self.patched:
            log.warning(
                "eventlet has not patched this process: the pool's green threads run on a hub "
                "in a thread of their own, so a task that blocks outside eventlet's API "
                "(time.sleep, sockets, locks) holds up the others; `kernel start -P eventlet` "
                "patches"
            )
        # patched, this "thread" is a green thread on the main hub; unpatched, a real thread
        self._thread = threading.Thread(
            target=self._serve, name="kernel-pool-eventlet", daemon=True
        )
        self._thread.start()
        self._ready.wait()

    def _serve(self) -> None:
        hub = hubs.get_hub()
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        self._pipe = (read_end, write_end)
        self._hub_thread = _os_thread_id()
        self._closing = GreenEvent()
        listener = eventlet.spawn(self._listen, read_end)
        self._ready.set()
        self._closing.wait()
        self._pipe = None
        listener.kill()
        os.close(read_end)
        os.close(write_end)
        if not self.patched:
            hub.abort(wait=True)  # this thread's own hub: let its loop end with the thread

    def _listen(self, fd: int) -> None:
        inbox = self._inbox
        while True:
            hubs.trampoline(fd, read=True)
            try:
                os.read(fd, 4096)
            except BlockingIOError:
                pass
            # after the read: a call queued from now on rings again
            self._rung = False
            while inbox:
                fn, args = inbox.popleft()
                try:
                    fn(*args)
                except Exception:
                    log.exception("eventlet pool call %r failed", fn)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` on the pool's hub: now if called there, else on its next loop."""
        if _os_thread_id() == self._hub_thread:
            fn(*args)
            return
        pipe = self._pipe
        if pipe is None:
            raise RuntimeError("the eventlet pool is not running")
        self._inbox.append((fn, args))
        if not self._rung:
            self._rung = True
            try:
                os.write(pipe[1], b"\0")
            except BlockingIOError:
                pass  # a full pipe wakes the listener anyway

    def _close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None or self._closing is None:
            return
        self._call(self._closing.send)
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
        self._call(self._enqueue, Job(fn, arg, callback, error_callback, timeouts))

    def _enqueue(self, job: Job) -> None:
        self._waiting.append(job)
        self._fill()

    def _fill(self) -> None:
        while self._waiting and len(self._running) < self._target:
            job = self._waiting.popleft()
            self._running.add(job)
            job.gt = eventlet.spawn(self._run, job)

    def _run(self, job: Job) -> None:
        if job.hard:
            job.watch = eventlet.spawn_after(job.hard, self._expire, job)
        result: Any = None
        failed: BaseException | None = None
        try:
            # started here: a Timeout raises in the green thread that creates it
            soft = eventlet.Timeout(job.soft, SoftTimeLimitExceeded) if job.soft else None
            try:
                result = job.fn(job.arg)
            finally:
                if soft is not None:
                    soft.cancel()
        except BaseException as exc:  # whatever fn raised; GreenletExit if it was killed
            failed = exc
        if job.watch is not None:
            job.watch.cancel()
        if job.settled:
            return  # the hard limit or terminate took it: already reported or abandoned
        job.settled = True
        self._release(job)
        if failed is not None:
            log.error("pool job raised %r", failed)
        self._report(job, result, failed)

    def _expire(self, job: Job) -> None:
        if job.settled:
            return
        job.settled = True
        log.error("hard time limit (%ss) exceeded; killing the task's green thread", job.hard)
        self._release(job)
        self._report(job, None, TimeLimitExceeded(job.hard))
        if job.gt is not None:
            job.gt.kill()  # last: it switches into the task to unwind it

    @staticmethod
    def _report(job: Job, result: Any, failed: BaseException | None) -> None:
        try:
            if failed is None:
                job.callback(result)
            else:
                job.error_callback(failed)
        except Exception:  # a callback's failure must not take the slot bookkeeping with it
            log.exception("pool callback failed")

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
            if job.watch is not None:
                job.watch.cancel()
        waiters, self._idle_waiters = self._idle_waiters, []
        for notify in waiters:
            notify()
        for job in jobs:
            if job.gt is not None:
                job.gt.kill()

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
            log.exception("could not terminate the eventlet pool cleanly")

    def info(self) -> dict[str, Any]:
        return {
            "implementation": "eventlet",
            "max-concurrency": self._target,
            "processes": [os.getpid()],
            "running": len(self._running),
            "waiting": len(self._waiting),
            "patched": self.patched,
        }
