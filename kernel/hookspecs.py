"""The hook contract: every hook a plugin may implement, when it runs, where, and what it returns.

Hooks are called with keyword arguments only, and an implementation may accept any subset of
them, so a hook can gain an argument without breaking published plugins. Unless a hook says
otherwise, every implementation is called and the results are collected in a list.

Where a hook runs:

* *parent*: the worker's main process, in the thread that builds or stops the worker;
* *child*: wherever tasks execute: a prefork child process, or the worker process itself for
  the solo, threads, gevent and eventlet pools.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from .bootsteps import Step
    from .settings import Settings
    from .worker import Worker

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
    Raise `kernel.ConfigError` to refuse a combination of settings; assign to `settings` to fill
    in derived values. Returns nothing.
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
