"""Running one request in a pool slot: the outcome the worker stores and acknowledges by."""

from __future__ import annotations

import time
import traceback as tb
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

from ..client.trace import Traced, call_task, trace
from ..wire.exceptions import NotRegistered
from ..wire.meta import FAILURE, RETRY, SUCCESS
from ..wire.protocol import Request, safe_repr

if TYPE_CHECKING:
    from ..client.app import App
    from ..client.task import Task
    from ..lifecycle import Node
    from .acks import Policies
    from .storing import Results


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


class Executor:
    """Runs requests in a pool slot and returns Outcomes. Built once per worker; cheap per task.

    Called with `StoreHere(request)`, it also stores the result, before returning (so before
    the message is acknowledged), and returns the outcome with nothing left to store; if that
    store fails, the outcome keeps its meta and the worker stores it with its next batch. The
    worker asks this for a task with nothing to batch its result with, when its backend can
    store from any thread or pool child (`stores_in_pool`): the waiting caller then hears
    of it without a hand-off back to the worker's consumer thread."""

    def __init__(self, worker: Node, app: App, results: Results, policies: Policies) -> None:
        self.worker = worker
        self.app = app
        self.results = results
        self.policies = policies
        # around-task wrappers cost a hook call per task: pay it only if a plugin adds one
        # (the core's own innermost implementation alone needs no hook call)
        impls = worker.pm.hook.kernel_execute_task.get_hookimpls()
        custom = [impl for impl in impls if not getattr(impl.function, "innermost", False)]
        self.call = self._call_hook if custom else call_task

    def _call_hook(self, task: Task, request: Request) -> Any:
        hook = self.worker.pm.hook.kernel_execute_task
        return hook(task=task, request=request, worker=self.worker)

    def __call__(self, job: Request | StoreHere) -> Outcome:
        if not isinstance(job, StoreHere):
            return self.run(job)
        request = job.request
        outcome = self.run(request)
        encoded = outcome.encoded
        if encoded is not None and self.results.here(request, outcome.state, encoded):
            outcome.encoded = None
        return outcome

    def run(self, request: Request) -> Outcome:
        began = time.monotonic()
        task_id = request.id or ""
        task = self.app.tasks.get(request.name)
        if task is None:  # the consumer checks first; a pool child may have another registry
            exc = NotRegistered(request.name)
            failed = self.results.encode(request, FAILURE, exc)
            return Outcome(task_id, FAILURE, failed, summary=repr(exc))
        traced = trace(task, request, self.call)
        encoded: bytes | None = None
        if not traced.stored and self.policies(task).stores(request, traced.state):
            try:
                encoded = self.results.encode(
                    request, traced.state, traced.value, traced.traceback, traced.children
                )
            except Exception as exc:  # an unserializable return value fails the task
                traced.state, traced.value = FAILURE, exc
                encoded = self.results.encode(request, FAILURE, exc, tb.format_exc())
        return Outcome(
            task_id,
            traced.state,
            encoded,
            traced.requeue,
            time.monotonic() - began,
            _summary(traced),
        )


def _summary(traced: Traced) -> str:
    if traced.state == RETRY:
        return str(traced.value)
    if traced.state == SUCCESS or isinstance(traced.value, BaseException):
        return safe_repr(traced.value, 200)
    return ""
