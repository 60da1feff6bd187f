"""The eventlet pool plugin: each task runs in a green thread, at most `-c N` at once.

Importing this package loads neither eventlet nor the worker: `kernel plugins` imports every
installed plugin, and the `kernel` command imports it to reach `patch` before patching.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel.plugin import hookimpl

if TYPE_CHECKING:
    from kernel.plugin import Step


@hookimpl
def kernel_steps() -> list[type[Step]]:
    from .step import EventletPoolStep

    return [EventletPoolStep]


@hookimpl
def kernel_task_options() -> list[str]:
    return ["time_limit", "soft_time_limit"]
