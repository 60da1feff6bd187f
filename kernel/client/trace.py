"""Running one request: the task call, how it ended, its callbacks and chains; `task.apply()`."""

from __future__ import annotations

import logging
import traceback as tb
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from ..wire.exceptions import Ignore, Reject, Retry
from ..wire.meta import FAILURE, IGNORED, REJECTED, RETRY, SUCCESS, result_meta
from ..wire.protocol import Request, new_id
from .arguments import signature_of
from .canvas import Signature, as_signature_list
from .results import EagerResult

if TYPE_CHECKING:
    from .app import App
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
    stored: bool = False  # its state is stored already (a retry stores RETRY before it sends)


# the states after which Celery calls after_return: not after a retry, Ignore (a replaced
# task) or Reject, where the task has not ended
_RETURNED = frozenset({SUCCESS, FAILURE})


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
            traced = Traced(
                RETRY, cause, einfo, children=[[[request.id, None], None]], stored=exc.stored
            )
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
                if task.has_on_success:
                    task.on_success(retval, request.id or "", request.args, request.kwargs)
                traced = Traced(SUCCESS, retval, children=children)
        if task.has_after_return and traced.state in _RETURNED:
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
    try:
        return len(signature_of(type(handler)).parameters) >= 3
    except (TypeError, ValueError):
        return False


def _result_tuple(result: Any) -> list[Any]:
    return [[result.id, None], None]


def call_task(task: Task, request: Request) -> Any:
    """Call the task's function, turning `autoretry_for` exceptions into retries; through
    `before_start` and the class's own `__call__` when it has them."""
    if not task.calls_run:
        return _call_through(task, request)
    if not task.autoretry_for:
        return task.run(*request.args, **request.kwargs)
    try:
        return task.run(*request.args, **request.kwargs)
    except Retry:
        raise
    except Exception as exc:
        if not _autoretries(task, exc):
            raise
        raise _retry(task, request, exc) from exc


def _call_through(task: Task, request: Request) -> Any:
    """`before_start`, then the task through its `__call__`, as Celery's worker calls a task
    class that overrides either; autoretry is around the call, not around `before_start`."""
    args, kwargs = request.args, request.kwargs
    task.before_start(request.id or "", args, kwargs)
    try:
        return task.call_as_worker(args, kwargs)
    except Retry:
        raise
    except Exception as exc:
        if not _autoretries(task, exc):
            raise
        raise _retry(task, request, exc) from exc


def _autoretries(task: Task, exc: Exception) -> bool:
    return isinstance(exc, task.autoretry_for) and not isinstance(exc, task.dont_autoretry_for)


def _retry(task: Task, request: Request, exc: Exception) -> Retry:
    """Send the retry `autoretry_for` asks for (`task.retry` raises Retry, or the exception
    once retries are spent)."""
    options = dict(task.retry_kwargs)
    if task.retry_backoff:
        options.setdefault("countdown", task.backoff_countdown(request.retries))
    return task.retry(exc=exc, **options)


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
        # as Celery fills an eager request in: the task's own limits, the options it was given
        timelimit=(task.time_limit, task.soft_time_limit),
        ignore_result=bool(options.get("ignore_result", False)),
        headers=dict(options.get("headers") or {}),
        replaced_task_nesting=options.get("replaced_task_nesting") or 0,
        delivery_info={
            "is_eager": True,
            "exchange": options.get("exchange"),
            "routing_key": options.get("routing_key"),
            "priority": options.get("priority"),
        },
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
