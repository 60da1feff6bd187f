"""The consumer: takes messages, decides when each task may run, hands it to the pool, settles.

One thread owns the broker's consuming channel (kombu channels are not thread-safe). Pool
threads never touch it: they queue their outcome with `call_soon` and wake the loop, which
stores results in batches and settles messages after storing. The decisions it applies live
elsewhere, one place each: what a task's options mean for its message (acks.TaskPolicy), what
is stored and how (storing.Results), how many messages to hold (window.PrefetchWindow).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from kombu import serialization

from ..wire.exceptions import (
    BrokerUnreachable,
    InvalidTaskError,
    NotRegistered,
    TaskRevokedError,
    WorkerLostError,
)
from ..wire.meta import FAILURE, REJECTED, REVOKED, STARTED, SUCCESS
from ..wire.protocol import Request, decode_message, utcnow
from . import acks
from .acks import Policies, TaskPolicy
from .executor import Executor, Outcome, StoreHere
from .storing import Finished, Results, stored
from .timers import Timers
from .window import PrefetchWindow

if TYPE_CHECKING:
    from ..client.app import App
    from ..client.task import Task
    from ..lifecycle import Node
    from ..wire.transport import Broker, Message, ResultBackend
    from .contracts import Pool

log = logging.getLogger("kernel.worker")

IDLE_POLL = 1.0  # longest poll between housekeeping passes
DISPATCH_AHEAD = 2  # tasks handed to the pool per slot (the second waits inside the pool)
NO_WAKEUP_POLL = 0.005  # poll interval while tasks run, for brokers that cannot be woken

# a finished task waiting for its result to be stored and its message settled
Entry = tuple[Request, "Message", TaskPolicy, Outcome]


class Consumer:
    """The consumer step's running state: its loop thread and every message it holds."""

    def __init__(
        self,
        worker: Node,
        app: App,
        broker: Broker,
        backend: ResultBackend,
        pool: Pool,
        queues: list[str],
        prefetch_multiplier: int,
        adaptive: bool = True,
    ) -> None:
        self.worker, self.app, self.broker, self.pool = worker, app, broker, pool
        self.queues = queues
        self.hostname = worker.hostname
        self.accept = serialization.prepare_accept_content(app.conf.accept_content)
        self.policies = Policies()
        extended = bool(app.conf.result_extended)
        self.results = Results(backend, worker.hostname, extended, app.timezone)
        self.executor = Executor(worker, app, self.results, self.policies)
        pm = worker.pm
        # per-task hooks cost a call each: made only if some plugin implements them
        self.defer = pm.hook.kernel_task_defer if pm.implements("kernel_task_defer") else None
        self.dispatched = (
            pm.hook.kernel_task_dispatched if pm.implements("kernel_task_dispatched") else None
        )
        self.done = pm.hook.kernel_task_done if pm.implements("kernel_task_done") else None
        # messages by where they are: ready to run, held on a timer, running, finished
        self.ready: deque[tuple[Request, Message, Task]] = deque()
        self.held: dict[int, tuple[Request, Message]] = {}  # waiting on a timer (eta, deferral)
        self.active = 0
        self.finished: Finished[Entry] = Finished()
        self.processed = 0
        self.window = PrefetchWindow(broker, pool, prefetch_multiplier, adaptive, self.held)
        self.timers = Timers()
        self.calls: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._keys = itertools.count()
        self._state = "new"  # new -> running -> draining -> stopped
        self._cold = False
        self._thread: threading.Thread | None = None
        self._info = log.isEnabledFor(logging.INFO)
        self._polls_short = not broker.wakes_up

    # -- what policy plugins see (ConsumerState) --------------------------------------------
    @property
    def prefetch(self) -> int:
        return self.window.size

    @property
    def prefetch_slots(self) -> int | None:
        return self.window.slots

    @prefetch_slots.setter
    def prefetch_slots(self, value: int | None) -> None:
        self.window.slots = value

    @property
    def waiting(self) -> int:
        return len(self.ready)

    def set_time_limit(self, task_name: str, soft: float | None, hard: float | None) -> None:
        """Change a task's limits at run time (the `time_limit` remote command uses this)."""
        cls = type(self.app.tasks[task_name])
        cls.soft_time_limit, cls.time_limit = soft, hard
        self.policies.forget()
        log.info("time limits of %s set to soft=%s hard=%s", task_name, soft, hard)

    def scheduled(self) -> list[tuple[datetime | None, Request]]:
        return [(request.eta, request) for request, _ in self.held.values()]

    # -- lifecycle (main thread) ------------------------------------------------------------
    def start(self) -> None:
        self.broker.consume(self.queues, self.on_message, self.window.size)
        self._state = "running"
        self._thread = threading.Thread(target=self._run, name="kernel-consumer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Warm: stop taking messages, give back the ones not started, wait for running tasks."""
        self.call_soon(self._begin_drain)
        if self._thread is not None:
            while self._thread.is_alive():
                self._thread.join(0.2)  # short joins keep the main thread responsive to signals

    def terminate(self) -> None:
        """Cold: leave now; unacked messages go back to the broker when its connection closes."""
        self._cold = True
        self._state = "stopped"
        self.broker.wakeup()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)

    def call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` in the loop thread. Safe from any thread."""
        self.calls.append((fn, args))
        self.broker.wakeup()

    # -- the loop ---------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while self._state != "stopped":
            try:
                self.broker.poll(self._timeout())
                self._run_calls()
                self.timers.run_due()
                self._dispatch()
                self.window.retune()
                if self.finished.due(idle=not self.ready):  # idle: nothing else to do
                    self._flush()
                failures = 0
            except BrokerUnreachable as exc:  # its reconnect policy is spent: the worker ends
                log.critical("giving up on the broker: %s", exc)
                self._state = "stopped"
                self.worker.fail(str(exc))
            except Exception:
                failures += 1
                log.exception("consumer loop error (%d in a row); retrying", failures)
                time.sleep(min(0.1 * 2**failures, 5.0))
            if self._state == "draining" and self.active == 0 and not self.calls:
                self._flush()
                self._state = "stopped"
        log.debug("consumer loop ended (%s)", "cold" if self._cold else "warm")

    def _timeout(self) -> float:
        if self.calls or (self.ready and self.active < self._dispatch_limit()):
            return 0.0
        timeout = IDLE_POLL
        for wait in (self.finished.wait(), self.timers.wait()):
            if wait is not None and wait < timeout:
                timeout = wait
        if self.active and self._polls_short:
            timeout = min(timeout, NO_WAKEUP_POLL)
        return timeout

    def _run_calls(self) -> None:
        calls = self.calls
        while calls:
            fn, args = calls.popleft()
            fn(*args)

    # -- receiving --------------------------------------------------------------------------
    def on_message(self, message: Message) -> None:
        """Called by the broker, in the loop thread, for every delivered message."""
        try:
            request = decode_message(message, self.accept)
        except InvalidTaskError as exc:
            self._refuse(message, str(exc))
            return
        request.hostname = self.hostname  # the task reads where it runs (task.request.hostname)
        task = self.app.tasks.get(request.name)
        if task is None:
            self._refuse(message, f"unknown task {request.name!r}", request)
            return
        if self._expired(request, message):
            return
        if request.eta is not None:
            wait = (request.eta - utcnow()).total_seconds()
            if wait > 0:
                self._hold(wait, request, message, task)
                return
        self.ready.append((request, message, task))

    def _refuse(self, message: Message, reason: str, request: Request | None = None) -> None:
        """A message that cannot run: logged with why, dropped; an unknown task's id FAILURE."""
        headers = message.headers or {}
        ident = (request.id if request else None) or headers.get("id") or message.delivery_tag
        log.error("rejected message %s: %s", ident, reason)
        if request is not None and request.id:
            self.results.now(request, FAILURE, NotRegistered(request.name))
        acks.refuse(message, ident)

    def _expired(self, request: Request, message: Message) -> bool:
        if request.expires is None or utcnow() <= request.expires:
            return False
        log.warning(
            "task %s[%s] expired at %s: revoked, not run",
            request.name,
            request.id,
            request.expires.isoformat(),
        )
        if request.id:
            self.results.now(request, REVOKED, TaskRevokedError("expired"))
        acks.drop(message)
        return True

    def _hold(self, delay: float, request: Request, message: Message, task: Task) -> None:
        """Keep a message unacked until it may run, without holding a pool slot."""
        key = next(self._keys)
        self.held[key] = (request, message)
        self.window.resize()  # held messages must not starve the window
        self.timers.call_later(delay, self._release, key, task)

    def _release(self, key: int, task: Task) -> None:
        entry = self.held.pop(key, None)
        if entry is None:  # given back during a warm shutdown
            return
        self.window.resize()
        request, message = entry
        self.ready.appendleft((request, message, task))

    # -- running ----------------------------------------------------------------------------
    def _dispatch(self) -> None:
        if self._state != "running":
            return
        limit = self._dispatch_limit()
        while self.ready and self.active < limit:
            request, message, task = self.ready.popleft()
            if not message.valid:
                continue  # its connection is gone; the broker delivers it again
            if self._expired(request, message):
                continue
            if self.defer is not None:
                delay = self.defer(request=request, task=task, worker=self.worker)
                if delay:
                    self._hold(float(delay), request, message, task)
                    continue
            policy = self.policies(task)
            policy.accept(message)
            ignored = policy.ignores(request)
            if policy.track_started and request.id and not ignored:
                self.results.now(
                    request, STARTED, {"pid": os.getpid(), "hostname": self.worker.hostname}
                )
            # alone in the worker: its caller is waiting, and there is no batch to wait for
            lone = self.results.in_pool and not self.active and not self.ready and not ignored
            self.active += 1
            if self.dispatched is not None:
                self.dispatched(request=request, task=task, worker=self.worker)
            # callbacks run in pool threads: they only queue work for this loop
            self.pool.apply(
                self.executor,
                StoreHere(request) if lone else request,
                partial(self.call_soon, self._finished, request, message, task),
                partial(self.call_soon, self._lost, request, message, task),
                policy.timeouts(request),
            )
            if self.calls:  # a pool that ran it already (solo): settle it and go on
                self._run_calls()
            if self.finished.full:
                self._flush()

    def _dispatch_limit(self) -> int:
        """Tasks handed to the pool at once: its slots, and as many again waiting in it, so a
        slot that frees takes its next task without a round trip through this loop; or as
        many as a pool that batches its hand-offs asks for (`ahead`)."""
        concurrency = self.pool.concurrency
        ahead = self.pool.ahead
        if ahead is None:
            return concurrency * DISPATCH_AHEAD
        return concurrency + int(ahead)

    def _finished(self, request: Request, message: Message, task: Task, outcome: Outcome) -> None:
        self.active -= 1  # the slot is free now; the result is stored with the next batch
        self.window.finished += 1
        if self.done is not None:
            self.done(request=request, task=task, worker=self.worker, state=outcome.state)
        self.finished.add((request, message, self.policies(task), outcome))

    def _lost(self, request: Request, message: Message, task: Task, exc: BaseException) -> None:
        """The pool lost the slot running this task: a dead child, or the hard time limit."""
        if not isinstance(exc, Exception):
            exc = WorkerLostError(repr(exc))
        policy = self.policies(task)
        requeue = policy.requeues_lost(exc)
        log.error(
            "task %s[%s] lost: %r%s", request.name, request.id, exc, "; requeued" if requeue else ""
        )
        if requeue:
            outcome = Outcome(request.id or "", REJECTED, None, requeue=True)
        else:
            encoded = self.results.encode(request, FAILURE, exc)
            outcome = Outcome(request.id or "", FAILURE, encoded, summary=repr(exc))
        self.active -= 1
        if self.done is not None:
            self.done(request=request, task=task, worker=self.worker, state=outcome.state)
        self.finished.add((request, message, policy, outcome))

    def _flush(self) -> None:
        """Store the results of finished tasks in one batch, then settle (a result before its
        message is acknowledged)."""
        entries = self.finished.take()
        if not entries:
            return
        items = [
            stored(request, outcome.state, outcome.encoded)
            for request, _, _, outcome in entries
            if outcome.encoded is not None
        ]
        ok = self.results.batch(items) if items else True
        self.processed += len(entries)
        for request, message, policy, outcome in entries:
            if self._info:
                self._log(request, outcome)
            try:
                policy.settle(message, outcome.state, outcome.requeue, ok)
            except Exception:
                log.exception("could not acknowledge task %s[%s]", request.name, request.id)

    @staticmethod
    def _log(request: Request, outcome: Outcome) -> None:
        state = outcome.state
        if state == SUCCESS:
            log.info(
                "task %s[%s] succeeded in %.3fs: %s",
                request.name,
                request.id,
                outcome.runtime,
                outcome.summary,
            )
        elif state == FAILURE:
            log.error(
                "task %s[%s] failed in %.3fs: %s",
                request.name,
                request.id,
                outcome.runtime,
                outcome.summary,
            )
        else:
            log.info("task %s[%s] %s: %s", request.name, request.id, state.lower(), outcome.summary)

    # -- stopping ---------------------------------------------------------------------------
    def _begin_drain(self) -> None:
        """Stop deliveries and hand back every message that has not started running."""
        if self._state != "running":
            return
        self._state = "draining"
        self.broker.cancel_consuming()
        given_back = 0
        while self.ready:
            _, message, _ = self.ready.popleft()
            acks.give_back(message)
            given_back += 1
        for _, message in self.held.values():
            acks.give_back(message)
            given_back += 1
        self.held.clear()
        log.info(
            "consumer stopped: %d message(s) given back, waiting for %d running task(s)",
            given_back,
            self.active,
        )
