"""The consumer: takes messages, decides when each task may run, hands it to the pool, acks.

One thread owns the broker's consuming channel (kombu channels are not thread-safe). Pool
threads never touch it: they queue their outcome with `call_soon` and wake the loop, which
stores results in batches and acks after storing. A task with nothing to batch its result
with (the only one in flight, none waiting) has it stored where it runs, if the backend can
do that (see Executor).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from kombu import serialization

from ..wire.exceptions import (
    BrokerUnreachable,
    InvalidTaskError,
    NotRegistered,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)
from ..wire.meta import FAILURE, REJECTED, REVOKED, STARTED, SUCCESS, result_meta
from ..wire.protocol import NOTIFY_HEADER, Request, decode_payload, decode_request, utcnow
from ..wire.transport import Stored
from .executor import Executor, Outcome, StoreHere, stored_item

if TYPE_CHECKING:
    from ..client.app import App
    from ..client.task import Task
    from ..lifecycle import Node
    from ..wire.transport import Broker, Message, ResultBackend
    from .contracts import Pool

log = logging.getLogger("kernel.worker")

IDLE_POLL = 1.0  # longest poll between housekeeping passes
FLUSH_BATCH = 100  # results stored (and messages acked) together once this many have finished
FLUSH_AFTER = 0.005  # ... or once the oldest of them has waited this long (seconds)
DISPATCH_AHEAD = 2  # tasks handed to the pool per slot (the second waits inside the pool)
LOOKAHEAD = 0.1  # adaptive prefetch: hold what the worker finishes in this many seconds
LOOKAHEAD_MAX = 500  # ... but never more than this many messages beyond Celery's window
RETUNE_EVERY = 0.25  # seconds between measurements of the finishing rate
NO_WAKEUP_POLL = 0.005  # poll interval while tasks run, for brokers that cannot be woken


class Policy(NamedTuple):
    """What the consumer needs to know of a task's options for each of its messages."""

    acks_late: bool
    acks_on_failure_or_timeout: bool
    ignore_result: bool
    track_started: bool
    time_limit: float | None
    soft_time_limit: float | None


class Consumer:
    """Runtime state of the consumer step: its loop thread and every message it holds."""

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
        self.worker, self.app, self.broker, self.backend, self.pool = (
            worker,
            app,
            broker,
            backend,
            pool,
        )
        self.queues = queues
        self.multiplier = prefetch_multiplier
        self.executor = Executor(app, backend, worker.hostname, worker.pm)
        self.accept = serialization.prepare_accept_content(app.conf.accept_content)
        pm = worker.pm
        self.defer = pm.hook.kernel_task_defer if pm.implements("kernel_task_defer") else None
        self.calls: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self.timers: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self.ready: deque[tuple[Request, Message, Task]] = deque()
        self.held: dict[int, tuple[Request, Message]] = {}  # waiting on a timer (eta, deferral)
        self.finished: list[tuple[Request, Message, Task, Outcome]] = []
        self._finished_since = 0.0
        self._policies: dict[str, Policy] = {}
        self.active = 0
        self.processed = 0
        self.adaptive = adaptive
        self._lookahead = 0
        self._rate_count = 0
        self._rate_since = time.monotonic()
        # autoscale sizes the prefetch window for the largest pool it may grow to
        self.prefetch_slots: int | None = None
        self._seq = itertools.count()
        self._state = "new"  # new -> running -> draining -> stopped
        self._cold = False
        self._thread: threading.Thread | None = None
        self._info = log.isEnabledFor(logging.INFO)
        self._store_in_pool = bool(getattr(backend, "stores_in_pool", False))

    # -- lifecycle (main thread) ------------------------------------------------------------
    @property
    def prefetch(self) -> int:
        """How many unacknowledged messages the broker may hand this worker: Celery's slots x
        multiplier, plus those held for an eta or a rate limit, plus (adaptive) what the worker
        finishes in LOOKAHEAD seconds, so fast tasks come in batches and slow ones are not
        hoarded away from other workers."""
        if self.multiplier <= 0:
            return 0
        slots = self.prefetch_slots or self.pool.concurrency
        return slots * self.multiplier + len(self.held) + self._lookahead

    def _retune(self) -> None:
        """Re-measure the finishing rate (every RETUNE_EVERY s) and move the window if it
        changed by a quarter or more (a window change is a round trip on some brokers)."""
        now = time.monotonic()
        elapsed = now - self._rate_since
        # look early when many tasks finish quickly (the window should open within the first
        # few dozen of a burst), otherwise every RETUNE_EVERY seconds
        early = elapsed < RETUNE_EVERY
        if early and not (self._rate_count >= 32 and elapsed >= 0.005):
            return
        rate = self._rate_count / elapsed
        wanted = min(int(rate * LOOKAHEAD), LOOKAHEAD_MAX) if self.adaptive else 0
        if early and wanted <= self._lookahead:
            return  # early looks only open the window: a short sample is a noisy one
        self._rate_count, self._rate_since = 0, now
        if abs(wanted - self._lookahead) >= max(self._lookahead // 4, 4):
            self._lookahead = wanted
            self.broker.set_prefetch(self.prefetch)

    @property
    def waiting(self) -> int:
        return len(self.ready)

    def start(self) -> None:
        self.broker.consume(self.queues, self.on_message, self.prefetch)
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

    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        """Loop thread only."""
        heapq.heappush(self.timers, (time.monotonic() + delay, next(self._seq), fn, args))

    # -- the loop ---------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while self._state != "stopped":
            try:
                self.broker.poll(self._timeout())
                self._run_calls()
                self._run_timers()
                self._dispatch()
                self._retune()
                if self.finished and (
                    not self.ready  # nothing else to do: store and ack now
                    or len(self.finished) >= FLUSH_BATCH
                    or time.monotonic() - self._finished_since >= FLUSH_AFTER
                ):
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
        if self.finished:  # results wait for their batch; not longer than FLUSH_AFTER
            timeout = max(self._finished_since + FLUSH_AFTER - time.monotonic(), 0.0)
        if self.timers:
            timeout = min(timeout, max(self.timers[0][0] - time.monotonic(), 0.0))
        if self.active and not getattr(self.broker, "wakes_up", True):
            timeout = min(timeout, NO_WAKEUP_POLL)
        return timeout

    def _run_calls(self) -> None:
        calls = self.calls
        while calls:
            fn, args = calls.popleft()
            fn(*args)

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, fn, args = heapq.heappop(self.timers)
            fn(*args)

    # -- receiving --------------------------------------------------------------------------
    def on_message(self, message: Message) -> None:
        """Called by the broker, in the loop thread, for every delivered message."""
        try:
            request = self._decode(message)
        except InvalidTaskError as exc:
            self._refuse(message, str(exc))
            return
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

    def _decode(self, message: Message) -> Request:
        headers = message.headers or {}
        payload = decode_payload(
            message.body, message.content_type, message.content_encoding, headers, self.accept
        )
        return decode_request(
            headers,
            message.properties or {},
            message.delivery_info or {},
            payload,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
        )

    def _refuse(self, message: Message, reason: str, request: Request | None = None) -> None:
        """Reject a message that cannot run (dropped, as in Celery), logging why."""
        headers = message.headers or {}
        ident = (request.id if request else None) or headers.get("id") or message.delivery_tag
        log.error("rejected message %s: %s", ident, reason)
        if request is not None and request.id:
            self._store_now(
                request,
                self._meta(request, FAILURE, NotRegistered(request.name)),
            )
        try:
            message.reject(requeue=False)
        except Exception:
            log.exception("could not reject message %s", ident)

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
            self._store_now(
                request,
                self._meta(request, REVOKED, TaskRevokedError("expired")),
            )
        message.ack()
        return True

    def _hold(self, delay: float, request: Request, message: Message, task: Task) -> None:
        """Keep a message unacked until it may run, without holding a pool slot."""
        key = next(self._seq)
        self.held[key] = (request, message)
        self.broker.set_prefetch(self.prefetch)  # held messages must not starve the window
        self.call_later(delay, self._release, key, task)

    def _release(self, key: int, task: Task) -> None:
        entry = self.held.pop(key, None)
        if entry is None:  # given back during a warm shutdown
            return
        self.broker.set_prefetch(self.prefetch)
        request, message = entry
        self.ready.appendleft((request, message, task))

    # -- running ----------------------------------------------------------------------------
    def _dispatch(self) -> None:
        if self._state != "running":
            return
        limit = self._dispatch_limit()
        while self.ready and self.active < limit:
            request, message, task = self.ready.popleft()
            if not getattr(message, "valid", True):
                continue  # its connection is gone; the broker delivers it again
            if self._expired(request, message):
                continue
            if self.defer is not None:
                delay = self.defer(request=request, task=task, worker=self.worker)
                if delay:
                    self._hold(float(delay), request, message, task)
                    continue
            policy = self.policy(task)
            if not policy.acks_late:
                message.ack()  # early ack: the task is accepted, about to run
            ignored = (
                request.ignore_result if request.ignore_result is not None else policy.ignore_result
            )
            if policy.track_started and request.id and not ignored:
                self._store_now(
                    request,
                    self._meta(
                        request, STARTED, {"pid": os.getpid(), "hostname": self.worker.hostname}
                    ),
                )
            # alone in the worker: its caller is waiting, and there is no batch to wait for
            lone = self._store_in_pool and not self.active and not self.ready and not ignored
            self.active += 1
            # callbacks run in pool threads: they only queue work for this loop
            self.pool.apply(
                self.executor,
                StoreHere(request) if lone else request,
                partial(self.call_soon, self._finished, request, message, task),
                partial(self.call_soon, self._lost, request, message, task),
                self._timeouts(request, policy),
            )
            if self.calls:  # a pool that ran it already (solo): settle it and go on
                self._run_calls()
            if len(self.finished) >= FLUSH_BATCH:
                self._flush()

    def policy(self, task: Task) -> Policy:
        """The task's options as they apply now, worked out once per task (it is asked about
        every message); `set_time_limit` and `forget_policies` make it look again."""
        found = self._policies.get(task.name)
        if found is None:
            found = self._policies[task.name] = Policy(
                acks_late=bool(task.option("acks_late")),
                acks_on_failure_or_timeout=bool(task.option("acks_on_failure_or_timeout")),
                ignore_result=bool(task.option("ignore_result")),
                track_started=bool(task.option("track_started")),
                time_limit=task.option("time_limit"),
                soft_time_limit=task.option("soft_time_limit"),
            )
        return found

    def forget_policies(self) -> None:
        """Task options or settings changed while running: work them out again."""
        self._policies.clear()

    def _timeouts(self, request: Request, policy: Policy) -> tuple[float | None, float | None]:
        """(soft, hard): the message's own limits, else the task's, else the app's defaults."""
        hard, soft = request.timelimit  # the wire order is [hard, soft]
        if hard is None:
            hard = policy.time_limit
        if soft is None:
            soft = policy.soft_time_limit
        return (soft, hard)

    def set_time_limit(self, task_name: str, soft: float | None, hard: float | None) -> None:
        """Change a task's limits at run time (the `time_limit` remote command uses this)."""
        task = self.app.tasks[task_name]
        cls = type(task)
        cls.soft_time_limit, cls.time_limit = soft, hard
        self.forget_policies()
        log.info("time limits of %s set to soft=%s hard=%s", task_name, soft, hard)

    def _dispatch_limit(self) -> int:
        """Tasks handed to the pool at once: its slots, and as many again waiting in it, so a
        slot that frees takes its next task without a round trip through this loop; or as
        many as a pool that batches its hand-offs asks for (`ahead`)."""
        concurrency = self.pool.concurrency
        ahead = getattr(self.pool, "ahead", None)
        if ahead is None:
            return concurrency * DISPATCH_AHEAD
        return concurrency + int(ahead)

    def _finished(self, request: Request, message: Message, task: Task, outcome: Outcome) -> None:
        self.active -= 1  # the slot is free now; the result is stored with the next batch
        self._rate_count += 1
        if not self.finished:
            self._finished_since = time.monotonic()
        self.finished.append((request, message, task, outcome))

    def _lost(self, request: Request, message: Message, task: Task, exc: BaseException) -> None:
        """The pool lost the slot running this task: a dead child, or the hard time limit.

        As Celery decides: a late-ack task lost with its worker goes back to the queue if
        `reject_on_worker_lost`; one stopped by its time limit if `acks_on_failure_or_timeout`
        is off. Otherwise the failure is stored and the message acknowledged."""
        if not isinstance(exc, Exception):
            exc = WorkerLostError(repr(exc))
        late = task.option("acks_late")
        if isinstance(exc, TimeLimitExceeded):
            requeue = bool(late and not task.option("acks_on_failure_or_timeout"))
        else:
            requeue = bool(late and task.option("reject_on_worker_lost"))
        log.error(
            "task %s[%s] lost: %r%s", request.name, request.id, exc, "; requeued" if requeue else ""
        )
        if requeue:
            outcome = Outcome(request.id or "", REJECTED, None, requeue=True)
        else:
            meta = self._meta(request, FAILURE, exc)
            outcome = Outcome(
                request.id or "", FAILURE, self.backend.encode(meta), summary=repr(exc)
            )
        self.active -= 1
        if not self.finished:
            self._finished_since = time.monotonic()
        self.finished.append((request, message, task, outcome))

    def _flush(self) -> None:
        """Store the results of finished tasks in one batch, then ack (a result before its ack)."""
        if not self.finished:
            return
        finished, self.finished = self.finished, []
        stored = True
        items = [stored_item(r, o) for r, _, _, o in finished if o.encoded is not None]
        try:
            self.backend.store(items)
        except Exception:
            stored = False
            log.exception(
                "could not store %d result(s); late-ack tasks go back to the queue", len(items)
            )
        for request, message, task, outcome in finished:
            self.processed += 1
            self._settle(request, message, task, outcome, stored)

    def _settle(
        self, request: Request, message: Message, task: Task, outcome: Outcome, stored: bool
    ) -> None:
        state = outcome.state
        if self._info:
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
                log.info(
                    "task %s[%s] %s: %s", request.name, request.id, state.lower(), outcome.summary
                )
        policy = self.policy(task)
        if not policy.acks_late:
            return  # acked before it ran
        try:
            if not stored or (state == REJECTED and outcome.requeue):
                message.reject(requeue=True)
            elif state == REJECTED or (state == FAILURE and not policy.acks_on_failure_or_timeout):
                message.reject(requeue=False)
            else:
                message.ack()
        except Exception:
            log.exception("could not acknowledge task %s[%s]", request.name, request.id)

    def _meta(self, request: Request, state: str, result: Any) -> dict[str, Any]:
        """A meta this loop writes itself, laid out as the executor's are (extended fields too)."""
        request.hostname = self.worker.hostname
        return result_meta(
            request.id or "", state, result, request=request, extended=self.executor.extended
        )

    def _store_now(self, request: Request, meta: dict[str, Any]) -> None:
        task_id = request.id or ""
        try:
            data = self.backend.encode(meta)
            notify = request.headers.get(NOTIFY_HEADER)
            item = Stored(task_id, str(meta["status"]), data, request.reply_to, notify)
            self.backend.store([item])
        except Exception:
            log.exception("could not store %s for task %s", meta.get("status"), task_id)

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
            message.reject(requeue=True)
            given_back += 1
        for _, message in self.held.values():
            message.reject(requeue=True)
            given_back += 1
        self.held.clear()
        log.info(
            "consumer stopped: %d message(s) given back, waiting for %d running task(s)",
            given_back,
            self.active,
        )

    def scheduled(self) -> list[tuple[datetime | None, Request]]:
        return [(request.eta, request) for request, _ in self.held.values()]
