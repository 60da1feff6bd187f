"""Which app is current, and the tasks shared by every app: the state behind `current_app`
and `shared_task` (kernel.client.shared), kept below the App so that App can register itself."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import App
    from .task import Task

_apps: weakref.WeakSet[App] = weakref.WeakSet()  # every app alive, to register shared tasks on
_shared: list[Callable[[App], Task]] = []  # how to register each shared task on an app
_state = threading.local()  # this thread's current app, if it chose one
_process: dict[str, App] = {}  # the process's current app (or the default one, made on demand)
lock = threading.RLock()  # taken to make the default app once


def add_app(app: App) -> None:
    """A new app: it becomes the current one (in this thread, and for threads that chose
    none), and gets every shared task declared so far."""
    with lock:
        _apps.add(app)
        _state.app = _process["current"] = app
        registers = list(_shared)
    for register in registers:
        register(app)


def set_current(app: App) -> None:
    """Make `app` current in this thread (and for threads that chose none)."""
    _state.app = app
    _process["current"] = app


def current_or_none() -> App | None:
    """The app this thread chose, else the process's current one; None before any exists."""
    return getattr(_state, "app", None) or _process.get("current")


def share(register: Callable[[App], Task]) -> None:
    """Register a shared task on every app alive now and on every app created later."""
    with lock:
        _shared.append(register)
        apps = list(_apps)
    for app in apps:
        register(app)
