"""`task.replace(sig)`: the signature that takes over a running task's id, links and chain."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .canvas import Signature

if TYPE_CHECKING:
    from ..wire.protocol import Request
    from .app import App


def replacement(app: App, request: Request, sig: Any) -> Signature:
    """A copy of `sig` set up to replace the run of `request`, as Celery's `Task.replace` sets
    up a single task's signature: it gets the replaced task's id (so its result is the one
    `AsyncResult(id)` waits for), root, group and chord, `replaced_task_nesting` one higher,
    and the rest of the chain the replaced task was in. Its links (`link`, `link_error`) are
    added by the caller when the replacement is sent (`with_links`)."""
    if not isinstance(sig, Mapping):
        raise TypeError(f"replace() takes a signature, got {type(sig).__name__}")
    kind = sig.get("subtask_type")
    if kind is not None:
        raise NotImplementedError(
            f"replacing a task with a {kind} is not supported yet (groups, chords and chains "
            "come with the canvas); replace it with a single task's signature"
        )
    new = Signature.from_dict(sig, app).clone()
    if "chord" in new.options:
        raise ValueError("a signature replacing a task must not be part of a chord")
    nesting = request.replaced_task_nesting + 1
    chain = [_nested(step, nesting) for step in request.chain] if request.chain else None
    new.set(
        chord=request.chord,
        group_id=request.group,
        group_index=request.group_index,
        root_id=request.root_id,
        replaced_task_nesting=nesting,
        chain=chain,
    )
    if request.id is not None:  # a task called directly has no id to hand on
        new.set(task_id=request.id)
    return new


def with_links(sig: Signature, request: Request) -> Signature:
    """`sig` with the replaced task's callbacks and errbacks added to its own, so they run
    when the replacement ends (a task replaced in the worker never ends itself)."""
    for callback in request.callbacks or ():
        sig.link(callback)
    for errback in request.errbacks or ():
        sig.link_error(errback)
    return sig


def _nested(step: Mapping[str, Any], nesting: int) -> dict[str, Any]:
    """A chain step (wire layout) marked with the replacement's nesting, as Celery marks it."""
    return {**step, "options": {**(step.get("options") or {}), "replaced_task_nesting": nesting}}
