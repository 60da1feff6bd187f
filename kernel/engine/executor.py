"""Running one request in a pool slot: the outcome the worker stores and acknowledges by."""

from __future__ import annotations

import logging
import time
import traceback as tb
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

from ..client.trace import Traced, call_task, trace
from ..wire.exceptions import NotRegistered
from ..wire.meta import FAILURE, IGNORED, REJECTED, RETRY, SUCCESS, result_meta
from ..wire.protocol import NOTIFY_HEADER, Request, safe_repr
from ..wire.transport import Stored

if TYPE_CHECKING:
    from ..client.app import App
    from ..client.task import Task
    from ..manager import PluginManager
    from ..wire.transport import ResultBackend

log = logging.getLogger("kernel.worker")


@attrs.define(slots=True)
class Outcome:
    """What the worker needs after a run: the state, the encoded meta to store, how to ack.

    Crosses process boundaries (prefork), so it holds only plain data."""

    task_id: str
    state: str
    encoded: bytes | None
    requeue: bool = False
    runtime: float = 0.0
    summary: str = ""


class StoreHere(NamedTuple):
    """A request whose result the Executor stores itself, where the task ran (see Executor)."""

    request: Request


def stored_item(request: Request, outcome: Outcome) -> Stored:
    """The outcome as the backend stores it, with where its client waits for notice."""
    assert outcome.encoded is not None
    notify = request.headers.get(NOTIFY_HEADER)
    return Stored(outcome.task_id, outcome.state, outcome.encoded, request.reply_to, notify)


class Executor:
    """Runs requests in a pool slot and returns Outcomes. Built once per worker; cheap per task.

    Called with `StoreHere(request)`, it also stores the result, before returning (so before
    the message is acknowledged), and returns the outcome with nothing left to store; if that
    store fails, the outcome keeps its meta and the worker stores it with its next batch. The
    worker asks this for a task with nothing to batch its result with, when its backend can
    store from any thread or pool child (`stores_in_pool`): the waiting caller then hears
    of it without a hand-off back to the worker's consumer thread."""

    def __init__(
        self, app: App, backend: ResultBackend, hostname: str, pm: PluginManager | None = None
    ) -> None:
        self.app = app
        self.backend = backend
        self.hostname = hostname
        self.extended = bool(app.conf.result_extended)
        self.pm = pm
        # around-task wrappers cost a hook call per task: pay it only if a plugin adds one
        # (the core's own innermost implementation alone needs no hook call)
        impls = pm.hook.kernel_execute_task.get_hookimpls() if pm is not None else []
        custom = [impl for impl in impls if not getattr(impl.function, "innermost", False)]
        self.call = self._call_hook if custom else call_task

    def _call_hook(self, task: Task, request: Request) -> Any:
        assert self.pm is not None
        return self.pm.hook.kernel_execute_task(task=task, request=request)

    def __call__(self, job: Request | StoreHere) -> Outcome:
        if not isinstance(job, StoreHere):
            return self.run(job)
        outcome = self.run(job.request)
        if outcome.encoded is not None:
            try:
                self.backend.store([stored_item(job.request, outcome)])
            except Exception:  # stored again with the worker's next batch, which logs a failure
                log.debug("could not store the result of %s where it ran", outcome.task_id)
            else:
                outcome.encoded = None
        return outcome

    def run(self, request: Request) -> Outcome:
        began = time.monotonic()
        task_id = request.id or ""
        task = self.app.tasks.get(request.name)
        if task is None:  # the consumer checks first; a pool child may have another registry
            exc = NotRegistered(request.name)
            meta = result_meta(task_id, FAILURE, exc, request=request)
            return Outcome(task_id, FAILURE, self.backend.encode(meta), summary=repr(exc))
        request.hostname = self.hostname
        traced = trace(task, request, self.call)
        encoded = self._encode(task, request, traced)
        return Outcome(
            task_id,
            traced.state,
            encoded,
            traced.requeue,
            time.monotonic() - began,
            _summary(traced),
        )

    def _encode(self, task: Task, request: Request, traced: Traced) -> bytes | None:
        if traced.state in (IGNORED, REJECTED):
            return None
        ignored = (
            request.ignore_result
            if request.ignore_result is not None
            else task.option("ignore_result")
        )
        if ignored and not (
            traced.state == FAILURE and task.option("store_errors_even_if_ignored")
        ):
            return None
        meta = result_meta(
            request.id or "",
            traced.state,
            traced.value,
            traceback=traced.traceback,
            children=traced.children,
            request=request,
            extended=self.extended,
        )
        try:
            return self.backend.encode(meta)
        except Exception as exc:  # an unserializable return value fails the task, naming why
            traced.state, traced.value = FAILURE, exc
            meta = result_meta(
                request.id or "",
                FAILURE,
                exc,
                traceback=tb.format_exc(),
                request=request,
                extended=self.extended,
            )
            return self.backend.encode(meta)


def _summary(traced: Traced) -> str:
    if traced.state == RETRY:
        return str(traced.value)
    if traced.state == SUCCESS or isinstance(traced.value, BaseException):
        return safe_repr(traced.value, 200)
    return ""
