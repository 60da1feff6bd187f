"""The prefork pool's parent side: one monitor thread forks, feeds, times and reaps the children."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import billiard
from billiard.connection import wait

from kernel.plugin import BasePool, Pace, TimeLimitExceeded, WorkerLostError

from .child import STOP, serve
from .children import Child, Job, exit_reason
from .functions import FunctionTable

log = logging.getLogger("kernel.pool.prefork")

KILL_GRACE = 0.1  # from SIGTERM to SIGKILL for a child past its hard time limit
EXIT_GRACE = 10.0  # how long a child told to exit may take before it is killed
IDLE_WAIT = 1.0  # longest wait between passes with no deadline due
# Fast jobs go to a child in batches, one pipe write for many jobs: a batch holds about
# BATCH_TIME of work at the recent pace, so a job never waits long behind others in one child
BATCH_TIME = 0.002
MAX_BATCH = 64


class PreforkPool(BasePool):
    """`concurrency` forked children, each running one job at a time.

    The monitor thread owns the children: it keeps `concurrency` of them alive, sends jobs to
    idle children that know their functions, reads the replies, enforces the time limits, and
    notices deaths through the processes' sentinels. Callbacks run in the monitor thread (or,
    for a job that could not be sent, in the thread that applied it).

    `apply` sends a job straight to an idle child when the pool has nothing else to do and
    the monitor is waiting (it holds `_mutex` while it works), so a lone job does not wait
    for the monitor to wake; otherwise it queues the job and wakes the monitor.

    Jobs without time limits travel in batches sized to BATCH_TIME (see `ahead`); a job
    with a limit travels alone, so its deadlines are armed when it starts.

    Functions travel as keys into a table the children inherit (see FunctionTable); a child
    forked before a function was first applied is replaced by a fresh one to run it.
    `init` runs in each child as it starts; `recycle(tasks_run_by_this_child, rss_kib)` is
    asked in the child after each job, and True makes it exit after sending its reply.
    """

    def __init__(
        self,
        concurrency: int,
        init: Callable[[], None] | None = None,
        recycle: Callable[[int, int], bool] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._target = concurrency
        self._init, self._recycle = init, recycle
        self._ctx = billiard.get_context("fork")
        self._table = FunctionTable()
        self._pending: deque[Job] = deque()  # appended by any thread, taken by the monitor
        self._children: list[Child] = []  # the slots, busy or idle
        self._exiting: list[Child] = []  # told to exit, recycled or killed; reaped when they end
        self._pids: tuple[int, ...] = ()
        self._state = "new"  # new -> running -> stopping -> stopped, or terminating -> stopped
        self._lock = threading.Lock()  # guards the target size and the wake pipe
        # guards the children and the queue: held by the monitor except while it waits, and
        # by `apply` while it sends a job itself
        self._mutex = threading.Lock()
        self._outcomes: deque[tuple[Job, bool, Any]] = deque()  # callbacks due, run unlocked
        self._wake_r, self._wake_w = os.pipe()
        self._woken = False  # a wake-up byte is in the pipe, not yet read by the monitor
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self._pace = Pace()

    @property
    def concurrency(self) -> int:
        return self._target

    @property
    def ahead(self) -> int:
        """Jobs wanted beyond the slots: per child, the rest of the batch it runs and the next
        batch, ready to go the moment it replies to the last one."""
        return self._target * (2 * self._batch_size() - 1)

    def _batch_size(self) -> int:
        return self._pace.fitting(BATCH_TIME, MAX_BATCH)

    # -- the Pool role (any thread) ---------------------------------------------------------
    def start(self) -> None:
        self._state = "running"
        self._thread = threading.Thread(target=self._run, name="kernel-prefork", daemon=True)
        self._thread.start()

    def apply(
        self,
        fn: Callable[[Any], Any],
        arg: Any,
        callback: Callable[[Any], None],
        error_callback: Callable[[BaseException], None],
        timeouts: tuple[float | None, float | None] = (None, None),
    ) -> None:
        if self._state not in ("new", "running"):
            raise RuntimeError(f"the prefork pool is {self._state}; it takes no more jobs")
        job = Job(self._table.key_for(fn), arg, callback, error_callback, timeouts)
        if self._pending or not self._mutex.acquire(blocking=False):
            self._pending.append(job)  # behind the others, or the monitor is busy anyway
        else:
            try:
                child = self._lone_child(job.key) if self._state == "running" else None
                if child is None:
                    self._pending.append(job)
                else:
                    self._send_batch(child, [job])
                # the monitor must know of deadlines it is not waiting for
                wake = bool(self._pending) or (child is not None and job.alone)
            finally:
                self._mutex.release()
            self._run_outcomes()
            if not wake:
                return
        if not self._woken:  # one wake-up byte per pass of the monitor, not one per job
            self._wake()

    def grow(self, n: int = 1) -> None:
        with self._lock:
            self._target += n
        self._wake()

    def shrink(self, n: int = 1) -> None:
        with self._lock:
            self._target -= min(n, self._target - 1)
        self._wake()

    def stop(self) -> None:
        """Run every job applied so far, then end the children."""
        if self._thread is None:
            self._state = "stopped"
            self._close_wake()
            return
        if self._state == "running":
            self._state = "stopping"
        self._wake()
        thread = self._thread
        while thread is not None and thread.is_alive():
            thread.join(0.2)  # short joins keep the main thread responsive to signals

    def terminate(self) -> None:
        try:
            if self._thread is None:
                self._state = "stopped"
                self._close_wake()
                return
            if self._state != "stopped":
                self._state = "terminating"
            self._wake()
            self._thread.join(2.0)
            for child in [*self._children, *self._exiting]:  # in case the monitor is stuck
                _kill(child, signal.SIGKILL)
        except Exception:  # terminate must not raise
            log.exception("could not terminate the prefork pool cleanly")

    def info(self) -> dict[str, Any]:
        return {
            "implementation": "prefork",
            "max-concurrency": self._target,
            "processes": list(self._pids),
        }

    def _wake(self) -> None:
        self._woken = True
        with self._lock:
            if self._wake_w < 0:
                return
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # the pipe is full: the monitor is due to wake anyway

    # -- the monitor thread -----------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while True:
            try:
                if self._pass():
                    break
                failures = 0
            except Exception:
                failures += 1
                log.exception("prefork monitor error (%d in a row); retrying", failures)
                time.sleep(min(0.1 * 2**failures, 5.0))
        self._state = "stopped"
        self._close_wake()

    def _close_wake(self) -> None:
        with self._lock:
            if self._wake_w >= 0:
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_r = self._wake_w = -1

    def _pass(self) -> bool:
        """One round of the monitor; True once the pool has ended."""
        try:
            with self._mutex:
                if self._state == "terminating":
                    self._kill_all()
                    return True
                self._trim()
                self._top_up()
                self._dispatch()
                if self._state == "stopping" and not self._pending:
                    for child in list(self._children):
                        if child.job is None:
                            self._send_stop(child)
                    if not self._children and not self._exiting:
                        return True
                timeout = self._timeout()
                conns = {c.conn: c for c in self._children if not c.eof}
                sentinels = {c.proc.sentinel: c for c in (*self._children, *self._exiting)}
            ready = wait([self._wake_r, *conns, *sentinels], timeout)
            with self._mutex:
                self._handle(ready, conns, sentinels)
                self._enforce_deadlines(time.monotonic())
            return False
        finally:
            self._run_outcomes()

    def _timeout(self) -> float:
        if self._pending and any(c.job is None and not c.retiring for c in self._children):
            return 0.0
        deadlines = [t for child in (*self._children, *self._exiting) for t in child.deadlines()]
        if not deadlines:
            return IDLE_WAIT
        return min(max(min(deadlines) - time.monotonic(), 0.0), IDLE_WAIT)

    def _handle(
        self, ready: list[Any], conns: dict[Any, Child], sentinels: dict[Any, Child]
    ) -> None:
        """Take what the wait found: a wake-up, replies, exits; replies before exits, so that a
        reply sent just before a child exited (a recycled child's last result) is not taken
        for a death."""
        if self._wake_r in ready:
            os.read(self._wake_r, 4096)
            # after reading: a job applied before this line is taken by this pass; one
            # applied after it writes a new byte
            self._woken = False
        for item in ready:
            if item in conns:
                self._receive(conns[item])
        for item in ready:
            if item in sentinels:
                self._exited(sentinels[item])

    # -- children ---------------------------------------------------------------------------
    def _spawn(self) -> Child:
        parent_end, child_end = self._ctx.Pipe()
        known = self._table.known  # read before forking: the child holds every key below it
        proc = self._ctx.Process(
            target=self._child_main, args=(child_end, parent_end), name="kernel-prefork-child"
        )
        proc.daemon = True  # ended by billiard at exit if the pool was never stopped
        proc.start()
        child_end.close()
        child = Child(proc, parent_end, known)
        self._children.append(child)
        self._publish()
        return child

    def _child_main(self, conn: Any, parent_end: Any) -> None:
        """Runs in the forked child, on its copy of this pool."""
        # The parent's ends of every pipe were inherited too: closing them lets a child see
        # EOF when the parent dies, and keeps it from ever reading a sibling's jobs.
        parent_end.close()
        for sibling in (*self._children, *self._exiting):
            sibling.conn.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        serve(conn, self._table, self._init, self._recycle)

    def _top_up(self) -> None:
        """Keep `concurrency` children that take work (not while a warm stop has none left)."""
        if self._state == "stopping" and not self._pending:
            return
        while sum(not c.retiring for c in self._children) < self._target:
            try:
                self._spawn()
            except OSError:
                log.exception("could not fork a pool child; trying again shortly")
                return

    def _trim(self) -> None:
        """After a shrink: idle children leave now, busy ones after their job."""
        excess = sum(not c.retiring for c in self._children) - self._target
        for child in sorted(self._children, key=lambda c: c.job is not None):
            if excess <= 0:
                return
            if not child.retiring:
                excess -= 1
                child.retiring = True
                if child.job is None:
                    self._send_stop(child)

    def _send_stop(self, child: Child) -> None:
        try:
            child.conn.send(STOP)
        except OSError:
            pass  # already gone: its sentinel says so
        self._leave(child, EXIT_GRACE)

    def _leave(self, child: Child, kill_after: float) -> None:
        """The child no longer holds a slot; kill it if it has not exited after `kill_after`."""
        self._children.remove(child)
        self._exiting.append(child)
        child.conn.close()
        child.soft_at = child.hard_at = None
        child.kill_at = time.monotonic() + kill_after
        self._publish()

    def _exited(self, child: Child) -> None:
        if child in self._children:
            while not child.eof and child in self._children and child.conn.poll(0):
                self._receive(child)
        if child in self._children:  # not a planned exit: it died
            self._children.remove(child)
            self._publish()
            child.conn.close()
            reason = exit_reason(_reap(child))
            job = child.jobs.popleft() if child.jobs else None
            self._give_back(child)
            if job is None:
                log.warning("idle pool child %d exited (%s); replacing it", child.pid, reason)
            else:
                log.error("pool child %d died running a job (%s)", child.pid, reason)
                self._settle(job, False, WorkerLostError(f"Worker exited prematurely: {reason}."))
        else:
            self._exiting.remove(child)
            _reap(child)

    def _kill_all(self) -> None:
        for child in (*self._children, *self._exiting):
            _kill(child, signal.SIGKILL)
        for child in (*self._children, *self._exiting):
            child.conn.close()
            _reap(child)
        self._children.clear()
        self._exiting.clear()
        self._publish()

    def _publish(self) -> None:
        self._pids = tuple(child.pid for child in self._children)

    # -- jobs -------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        while self._pending:
            child = self._idle_child(self._pending[0].key)
            if child is None:
                return
            self._send_batch(child, self._take_batch(child))

    def _take_batch(self, child: Child) -> list[Job]:
        """The next jobs for an idle child: the pending ones split evenly among the idle
        children, up to the batch size; a job with a time limit goes alone."""
        pending = self._pending
        batch = [pending.popleft()]
        if batch[0].alone:
            return batch
        idle = sum(not c.jobs and not c.retiring for c in self._children)
        size = min(self._batch_size(), -(-(len(pending) + 1) // max(idle, 1)))
        while len(batch) < size and pending:
            job = pending[0]
            if job.alone or not child.knows(job.key):
                break
            batch.append(pending.popleft())
        return batch

    def _lone_child(self, key: int) -> Child | None:
        """An idle child to send `key` to at once, if no child has work: a job alone in the
        pool is what waits on the hand-off; jobs among others travel in the monitor's batches."""
        if any(child.jobs for child in self._children):
            return None
        return self._ready_child(key)

    def _ready_child(self, key: int) -> Child | None:
        """An idle child that can run `key` now, if any (no fork for a new function)."""
        for child in self._children:
            if child.job is None and not child.retiring and child.knows(key):
                return child
        return None

    def _idle_child(self, key: int) -> Child | None:
        """An idle child that can run `key`, forking one for a new function if need be."""
        found = self._ready_child(key)
        if found is not None:
            return found
        stale = next((c for c in self._children if c.job is None and not c.retiring), None)
        if stale is None:
            return None
        # forked before this function was first applied: a fresh fork inherits it
        self._send_stop(stale)
        try:
            return self._spawn()
        except OSError:
            log.exception("could not fork a pool child; trying again shortly")
            return None

    def _send_batch(self, child: Child, batch: list[Job]) -> None:
        try:
            child.conn.send([(job.key, job.arg) for job in batch])
        except OSError:  # the child is gone; its sentinel reports it; the jobs did not start
            child.retiring = True
            self._pending.extendleft(reversed(batch))
            return
        except Exception as exc:  # an argument cannot be pickled; nothing was written
            if len(batch) == 1:
                self._settle(batch[0], False, exc)
                return
            for job in batch:  # again one by one: only the job to blame fails
                job.alone = True
            self._pending.extendleft(reversed(batch))
            return
        child.jobs.extend(batch)
        job = batch[0]
        now = time.monotonic()
        # armed independently: a soft limit above the hard one must not delay the hard one
        child.soft_at = now + job.soft if job.soft else None
        child.hard_at = now + job.hard if job.hard else None

    def _receive(self, child: Child) -> None:
        try:
            replies = child.replies()
        except (EOFError, OSError):
            child.eof = True  # it is exiting; its sentinel tells how
            return
        for reply in replies:
            if child not in self._children:
                break  # it left (recycled): nothing follows its last reply
            self._reply(child, reply)

    def _reply(self, child: Child, reply: bytearray) -> None:
        elapsed: float | None
        try:
            ok, value, leaving, elapsed = pickle.loads(reply)
        except Exception as exc:  # read whole, but cannot be rebuilt (an odd exception class)
            ok, value, leaving = False, RuntimeError(f"cannot read the job's reply: {exc!r}"), False
            elapsed = None
        job = child.jobs.popleft() if child.jobs else None
        child.soft_at = child.hard_at = None
        if elapsed is not None:
            self._pace.record(elapsed)
        if job is not None:
            self._settle(job, ok, value)
        if leaving:
            log.info("pool child %d is recycled", child.pid)
            self._give_back(child)  # the rest of its batch never started
            self._leave(child, EXIT_GRACE)
        elif child.retiring and not child.jobs:
            self._send_stop(child)

    def _give_back(self, child: Child) -> None:
        """Jobs sent to a child that did not start them go first in line again."""
        self._pending.extendleft(reversed(child.jobs))
        child.jobs.clear()

    def _settle(self, job: Job, ok: bool, value: Any) -> None:
        """The job's outcome is known; its callback runs once the mutex is released."""
        if job.settled:
            return
        job.settled = True
        self._outcomes.append((job, ok, value))

    def _run_outcomes(self) -> None:
        """Call the callbacks of settled jobs (any thread, without the mutex: a callback may
        take its time, and must not hold up `apply` or the monitor)."""
        outcomes = self._outcomes
        while outcomes:
            try:
                job, ok, value = outcomes.popleft()
            except IndexError:  # another thread took the last one
                return
            try:
                if ok:
                    job.callback(value)
                else:
                    job.error_callback(value)
            except Exception:
                log.exception("a pool callback failed")

    # -- time limits ------------------------------------------------------------------------
    def _enforce_deadlines(self, now: float) -> None:
        for child in list(self._children):
            job = child.job
            if job is None:
                continue
            if child.soft_at is not None and child.soft_at <= now:
                child.soft_at = None
                log.warning("soft time limit (%ss) exceeded in pool child %d", job.soft, child.pid)
                _kill(child, signal.SIGUSR1)
            if child.hard_at is not None and child.hard_at <= now:
                log.error(
                    "hard time limit (%ss) exceeded in pool child %d; killing it",
                    job.hard,
                    child.pid,
                )
                child.jobs.popleft()
                self._give_back(child)
                self._settle(job, False, TimeLimitExceeded(job.hard))
                _kill(child, signal.SIGTERM)
                self._leave(child, KILL_GRACE)  # the slot is free: _top_up forks a new child
        for child in self._exiting:
            if child.kill_at is not None and child.kill_at <= now:
                child.kill_at = None
                _kill(child, signal.SIGKILL)


def _kill(child: Child, signum: int) -> None:
    # exitcode reaps a child that already ended, so its pid cannot be reused before we signal
    if child.proc.exitcode is None:
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass


def _reap(child: Child) -> int | None:
    child.proc.join(1.0)
    code: int | None = child.proc.exitcode
    if code is not None:
        child.proc.close()  # releases the sentinel's file descriptor
    return code
