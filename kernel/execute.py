"""Running one request: the task call, its outcome, callbacks and chains, and the meta to store."""

from __future__ import annotations

import logging
import time
import traceback as tb
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

from . import results
from .canvas import Signature, as_signature_list
from .exceptions import Ignore, NotRegistered, Reject, Retry
from .protocol import NOTIFY_HEADER, Request, safe_repr
from .results import FAILURE, IGNORED, REJECTED, RETRY, SUCCESS, EagerResult, result_meta
from .roles import Stored

if TYPE_CHECKING:
    from .app import App
    from .plugins import PluginManager
    from .roles import ResultBackend
    from .task import Task

log = logging.getLogger("kernel.worker")


@attrs.define(slots=True)
class Traced:
    """What one run of a task came to, before anything is stored."""

    state: str
    value: Any  # the return value, or the exception
    traceback: str | None = None
    children: list[Any] = attrs.Factory(list)
    requeue: bool = False


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


def trace(task: Task, request: Request, call: Callable[[Task, Request], Any]) -> Traced:
    """Run `call(task, request)` with the request pushed; classify how it ended."""
    app = task.app
    task.push_request(request)
    app.push_current(request)
    try:
        try:
            retval = call(task, request)
        except Retry as exc:
            einfo = tb.format_exc()
            cause = exc.exc if isinstance(exc.exc, BaseException) else exc
            task.on_retry(cause, request.id or "", request.args, request.kwargs, einfo)
            traced = Traced(RETRY, cause, einfo, children=[[[request.id, None], None]])
        except Ignore:
            traced = Traced(IGNORED, None)
        except Reject as exc:
            traced = Traced(REJECTED, exc, requeue=exc.requeue)
        except Exception as exc:
            einfo = tb.format_exc()
            task.on_failure(exc, request.id or "", request.args, request.kwargs, einfo)
            send_errbacks(app, request, exc, einfo)
            traced = Traced(FAILURE, exc, einfo)
        else:
            try:
                children = send_callbacks(app, request, retval)
            except Exception as exc:  # a link that cannot be sent fails the task, as in Celery
                einfo = tb.format_exc()
                task.on_failure(exc, request.id or "", request.args, request.kwargs, einfo)
                traced = Traced(FAILURE, exc, einfo)
            else:
                task.on_success(retval, request.id or "", request.args, request.kwargs)
                traced = Traced(SUCCESS, retval, children=children)
        task.after_return(
            traced.state,
            traced.value,
            request.id or "",
            request.args,
            request.kwargs,
            traced.traceback,
        )
        return traced
    finally:
        app.pop_current()
        task.pop_request()


def send_callbacks(app: App, request: Request, retval: Any) -> list[Any]:
    """Send `link` callbacks and the next chain step with the result; return their result tuples."""
    children = []
    common: dict[str, Any] = {
        "parent_id": request.id,
        "root_id": request.root_id or request.id,
        "priority": request.priority,
    }
    for sig in as_signature_list(request.callbacks, app) or ():
        children.append(_result_tuple(sig.apply_async((retval,), **common)))
    if request.chain:
        rest = list(request.chain)
        step = Signature.from_dict(rest.pop(), app)
        children.append(_result_tuple(step.apply_async((retval,), chain=rest or None, **common)))
    if request.chord is not None:
        log.warning(
            "task %s[%s] is part of a chord; chords are not supported yet, so its "
            "callback %s will not run",
            request.name,
            request.id,
            request.chord.get("task"),
        )
    return children


def send_errbacks(app: App, request: Request, exc: BaseException, einfo: str) -> None:
    """Run `link_error` handlers: in-process if registered here and taking (request, exc, tb),
    otherwise sent as a task with the failed task's id first."""
    for sig in as_signature_list(request.errbacks, app) or ():
        handler = app.tasks.get(sig.name)
        try:
            if handler is not None and _takes_request(handler):
                handler(request, exc, einfo)
            else:
                sig.apply_async(
                    (request.id,), parent_id=request.id, root_id=request.root_id or request.id
                )
        except Exception:  # one broken errback must not hide the task's own failure
            log.exception("errback %s of task %s[%s] failed", sig.name, request.name, request.id)


def _takes_request(handler: Task) -> bool:
    from .task import _signature_of

    try:
        return len(_signature_of(type(handler)).parameters) >= 3
    except (TypeError, ValueError):
        return False


def _result_tuple(result: Any) -> list[Any]:
    return [[result.id, None], None]


def call_task(task: Task, request: Request) -> Any:
    """Call the task's function, turning `autoretry_for` exceptions into retries."""
    if not task.autoretry_for:
        return task.run(*request.args, **request.kwargs)
    try:
        return task.run(*request.args, **request.kwargs)
    except Retry:
        raise
    except Exception as exc:
        if not isinstance(exc, task.autoretry_for) or isinstance(exc, task.dont_autoretry_for):
            raise
        options = dict(task.retry_kwargs)
        if task.retry_backoff:
            options.setdefault("countdown", task.backoff_countdown(request.retries))
        raise task.retry(exc=exc, **options) from exc


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


def apply_eagerly(
    task: Task,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    task_id: str | None,
    retries: int,
    throw: bool | None,
    link: Any,
    link_error: Any,
    options: dict[str, Any],
) -> EagerResult:
    """`task.apply()`: run in this thread; a retry runs again at once, as Celery's apply does."""
    from .task import new_id

    app = task.app
    task_id = task_id or new_id()
    parent = app.current_request()
    request = Request(
        id=task_id,
        name=task.name,
        args=args,
        kwargs=kwargs,
        retries=retries,
        is_eager=True,
        root_id=parent.root_id if parent else task_id,
        parent_id=parent.id if parent else None,
        callbacks=as_signature_list(link, app),
        errbacks=as_signature_list(link_error, app),
        hostname=app.origin,
        delivery_info={"is_eager": True},
    )
    traced = trace(task, request, call_task)
    if traced.state == RETRY:
        return apply_eagerly(
            task,
            args,
            kwargs,
            task_id=task_id,
            retries=retries + 1,
            throw=throw,
            link=link,
            link_error=link_error,
            options=options,
        )
    meta = result_meta(
        task_id,
        traced.state,
        traced.value,
        traceback=traced.traceback,
        children=traced.children,
        request=request,
    )
    exc = traced.value if traced.state == FAILURE else None
    if exc is not None and (throw if throw is not None else app.conf.task_eager_propagates):
        raise exc
    return EagerResult(task_id, app, meta, exc=exc)


__all__ = [
    "Executor",
    "Outcome",
    "StoreHere",
    "Traced",
    "apply_eagerly",
    "results",
    "stored_item",
    "trace",
]
