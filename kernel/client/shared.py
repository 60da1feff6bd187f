"""`current_app`, `current_task`, `shared_task` and `signature()`, as a Celery project uses them.

A project that names no app in its task modules gets the app created last in this process (or
the one `app.set_current()` chose); if none exists yet, a default one, `App("default")`, on the
embedded broker.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from . import current
from .app import App
from .canvas import Signature
from .task import Task

T = TypeVar("T")


def get_current_app() -> App:
    found = current.current_or_none()
    if found is None:
        with current.lock:
            found = current.current_or_none() or App("default")
    return found


def get_current_task() -> Task | None:
    """The task this thread is running, if any (on the current app)."""
    app = get_current_app()
    request = app.current_request()
    return app.tasks.get(request.name) if request is not None else None


def shared_task(*args: Any, **options: Any) -> Any:
    """``@shared_task`` or ``@shared_task(name=..., bind=True, ...)``: a task registered on
    every app, those alive and those made later, usable before any app exists. What it returns
    stands for the task on the current app."""

    def create(fun: Callable[..., Any]) -> Task:
        made: weakref.WeakKeyDictionary[App, Task] = weakref.WeakKeyDictionary()

        def register(app: App) -> Task:
            task = made.get(app)
            if task is None:
                task = made[app] = app.task(**options)(fun)
            return task

        current.share(register)
        return Proxy(lambda: register(get_current_app()))  # type: ignore[return-value]

    if len(args) == 1 and callable(args[0]) and not options:
        return create(args[0])
    if args:
        raise TypeError("shared_task takes options by keyword: @shared_task(name=...)")
    return create


class Proxy(Generic[T]):
    """Stands for what `resolve()` returns at the moment it is used (`current_app`, a shared
    task): attribute access, calls and truth go to that object."""

    __slots__ = ("_resolve",)
    _resolve: Callable[[], T]

    def __init__(self, resolve: Callable[[], T]) -> None:
        object.__setattr__(self, "_resolve", resolve)

    def _get_current_object(self) -> T:
        return self._resolve()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolve(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._resolve(), name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        target: Any = self._resolve()
        return target(*args, **kwargs)

    def __bool__(self) -> bool:
        return bool(self._resolve())

    def __eq__(self, other: object) -> bool:
        return self._resolve() == other

    def __hash__(self) -> int:
        return hash(self._resolve())

    def __repr__(self) -> str:
        return repr(self._resolve())


current_app: App = Proxy(get_current_app)  # type: ignore[assignment]
current_task: Task | None = Proxy(get_current_task)  # type: ignore[assignment]


def signature(
    varies: Any,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    app: App | None = None,
    **options: Any,
) -> Signature:
    """A signature from a task name, a task, or a signature's dict, as Celery's `signature()`
    makes one; bound to `app`, else to the current app."""
    if isinstance(varies, Mapping):
        return Signature.from_dict(varies, app)
    name = varies if isinstance(varies, str) else getattr(varies, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"signature() takes a task, its name or a dict, not {varies!r}")
    if app is None:
        app = get_current_app()
    return Signature(name, args, kwargs, options, app=app)
