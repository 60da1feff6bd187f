"""The hook contract: every hook a plugin may implement, when it runs, where, and what it returns.

Hooks are called with keyword arguments only, and an implementation may accept any subset of
them, so a hook can gain an argument without breaking published plugins. Unless a hook says
otherwise, every implementation is called and the results are collected in a list.

Where a hook runs:

* *parent*: the worker's main process, in the thread that builds or stops the worker;
* *child*: wherever tasks execute: a prefork child process, or the worker process itself for
  the solo, threads, gevent and eventlet pools.

Every function of a plugin module (or method of a plugin object) named ``kernel_*``, defined
there or imported, is taken as a hook implementation, marked with ``@hookimpl`` or not: so a
misspelled hook is an error naming it, not a function never called. Name helpers otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from .bootsteps import Step
    from .client.app import App
    from .client.task import Task
    from .engine.worker import Worker
    from .settings import Setting, Settings
    from .wire.protocol import Request
    from .wire.transport import Broker, ResultBackend

PROJECT = "kernel"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- composition: parent, while a worker (or `kernel plugins` / `kernel graph`) is built ---------


@hookspec
def kernel_steps() -> Sequence[type[Step]]:
    """Return the bootstep classes this plugin contributes to every worker it is enabled in.

    Runs in the parent when the worker is built, before settings are validated (the steps'
    `setting()` fields declare which settings exist). Order does not matter: the bootstep graph
    orders steps by their `requires`/`provides`/`after`/`before`.
    """


@hookspec
def kernel_settings() -> Sequence[Setting]:
    """Return settings this plugin declares without a step (a plugin made of hooks alone).

    Runs in the parent when the worker is built, like `kernel_steps`. Each `kernel.plugin.Setting`
    names its key, default, converter and help; a value the converter refuses stops the worker
    at start-up naming the key. Read values from `worker.settings` in any hook.
    """


@hookspec
def kernel_cli_options() -> Sequence[click.Parameter]:
    """Return click options this plugin adds to `kernel start`, `kernel graph` and `kernel plugins`.

    Runs in the CLI process before the command line is parsed, only for enabled plugins. Each
    option's parameter name is the setting key its value is stored under (for example
    ``click.Option(["--max-tasks-per-child", "worker_max_tasks_per_child"], type=int)``); a value
    is stored only when the user gives the option.
    """


@hookspec
def kernel_configure(settings: Settings, worker: Worker) -> None:
    """Check or complete the merged settings before any step is built.

    Runs in the parent once per worker, after every explicit value was converted and checked.
    Raise ``kernel.plugin.ConfigError(key, message)`` to refuse a combination of settings (it
    prints as "setting 'key': message"; ``ConfigError(message)`` prints just the message);
    assign to `settings` to fill in derived values. Returns nothing.
    """


# -- worker lifecycle: parent ---------------------------------------------------------------------


@hookspec
def kernel_worker_init(worker: Worker) -> None:
    """The worker is built (steps ordered and configured) and about to start its first step."""


@hookspec
def kernel_worker_ready(worker: Worker) -> None:
    """Every step started; the worker is taking work. Runs in the parent's main thread."""


@hookspec
def kernel_worker_shutdown(worker: Worker, cold: bool) -> None:
    """Shutdown begins, before the first step stops.

    `cold` is False for a warm shutdown (running work finishes) and True for a cold one (steps
    are terminated). Runs in the parent's main thread; must not block for long.
    """


@hookspec
def kernel_task_options() -> Sequence[str]:
    """Return the task options this plugin honours (``"rate_limit"``, ``"time_limit"``, ...).

    Runs in the parent when the worker is built. A registered task that sets an option no
    enabled plugin honours gets a start-up warning naming the plugin that would.
    """


# -- transports: parent and clients (any process that sends tasks or reads results) ----------


@hookspec(firstresult=True)
def kernel_broker(url: str, app: App) -> Broker | None:
    """Return a Broker for `url` if this plugin handles its scheme, else None.

    Called when an app first sends a task and when a worker's broker step starts; the URL's
    scheme picks which plugin is enabled (``redis://`` enables ``broker.redis``).
    """


@hookspec(firstresult=True)
def kernel_result_backend(url: str, app: App) -> ResultBackend | None:
    """Return a ResultBackend for `url` if this plugin handles its scheme, else None."""


@hookspec(firstresult=True)
def kernel_queue_consumers(url: str, queue: str, app: App) -> tuple[str, int | None] | None:
    """Where the broker at `url` is, for people, when the URL alone does not say (a file
    relative to the current directory), and how many live consumers `queue` has there (None
    if it cannot tell); None if this plugin does not serve `url`. Called in the parent for the
    banner and by `kernel call`, which says so when no worker consumes a task's queue there.
    """


# -- per task: parent ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def kernel_task_defer(request: Request, task: Task, worker: Worker) -> float | None:
    """Decide whether a task may go to the pool now.

    Runs in the parent's consumer thread each time a received task is about to be handed to
    the pool (only if some plugin implements it). Return a number of seconds to hold it back
    (it does not occupy a pool slot meanwhile and is asked about again when they pass), or
    None to let it run now. Rate limiters implement this.

    Implementations are asked newest-registered first (``tryfirst``/``trylast`` move one);
    the first number returned wins and the rest are not asked. So a policy that takes
    something when it admits a task must not count it here, where a later plugin may still
    defer the task: count it in `kernel_task_dispatched` and give it back in
    `kernel_task_done` (or be ``trylast``, asked when every other policy has said yes).
    """


@hookspec
def kernel_task_dispatched(request: Request, task: Task, worker: Worker) -> None:
    """The task passed every deferral and was handed to the pool (its message accepted).

    Runs in the parent's consumer thread, once per task run, only if some plugin implements
    it; whatever the pool (prefork children included). Pairs with `kernel_task_done`.
    """


@hookspec
def kernel_task_done(request: Request, task: Task, worker: Worker, state: str) -> None:
    """The pool reported the task: it ran (`state` SUCCESS, FAILURE, RETRY, IGNORED or
    REJECTED) or its slot was lost (FAILURE, or REJECTED when it goes back to the queue).

    Runs in the parent's consumer thread once for each `kernel_task_dispatched`, only if some
    plugin implements it, as soon as the slot is free (its result is stored a moment later,
    with the next batch). Per-key concurrency limits and accounting implement this.
    """


# -- pool children ----------------------------------------------------------------------------


@hookspec
def kernel_child_init(worker: Worker) -> None:
    """A process that will run tasks is ready: called once per prefork child after it starts,
    and once in the worker process for pools that run tasks in it (solo, threads, green)."""


@hookspec(firstresult=True)
def kernel_execute_task(task: Task, request: Request, worker: Worker) -> object:
    """Call the task and return its result.

    Runs in the child, once per task, only if some plugin implements it. The core supplies the
    innermost implementation (it calls the task); plugins wrap it with
    ``@hookimpl(wrapper=True)`` to act around every task (time limits, accounting, context).
    Exceptions the task raises propagate through the wrappers. `worker` is the worker as the
    child sees it (in a prefork child, the parent's as it was when the child was forked).
    """


@hookspec(firstresult=True)
def kernel_recycle_child(worker: Worker, tasks: int, rss_kib: int) -> bool | None:
    """Should the pool child (process, or thread for the threads pool) that just ran a task be
    replaced by a fresh one? `tasks` is how many it has run, `rss_kib` its process's resident
    memory. Runs in the child after each task, only if some plugin implements it. Return True
    to recycle (no task is lost or failed), None to leave the decision to other plugins."""
