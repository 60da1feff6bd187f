"""States a running task reports itself (`update_state`): stored at once, read by any client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..wire.meta import result_meta
from ..wire.protocol import NOTIFY_HEADER
from ..wire.transport import Stored

if TYPE_CHECKING:
    from ..wire.protocol import Request
    from .app import App


def store_state(
    app: App,
    request: Request,
    task_id: str,
    state: str,
    meta: Any,
    traceback: str | None = None,
    children: list[Any] | None = None,
) -> None:
    """Store `state` with `meta` as its result for `task_id`, through the app's result backend
    in this process, as Celery's `update_state` does: a worker's pool thread or prefork child,
    an eager run, or a client alike. The meta is laid out as the worker lays out a result
    (`result_meta`, with `result_extended`'s fields), and is never cached as ready by readers
    unless `state` is a ready state. Raises what the backend raises."""
    backend = app.backend
    document = result_meta(
        task_id,
        state,
        meta,
        traceback=traceback,
        children=children,
        request=request,
        extended=bool(app.conf.result_extended),
    )
    # where the request's client waits, as the worker stores results (engine.storing.stored)
    notify = request.headers.get(NOTIFY_HEADER)
    backend.store([Stored(task_id, state, backend.encode(document), request.reply_to, notify)])
