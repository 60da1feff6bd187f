"""Leak protection: a pool child is replaced after the task that crosses a bound.

`--max-tasks-per-child N` recycles a child after N tasks; `--max-memory-per-child KIB` after a
task that leaves its process above KIB of resident memory (only for pools whose children are
processes: a thread cannot give memory back). The policy is the `kernel_recycle_child` hook,
so another plugin can implement its own.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import attrs
import click

from kernel import ConfigError, Step, Worker, hookimpl, setting
from kernel.plugin import optional, to_int

log = logging.getLogger("kernel.maxtasks")


def _positive(value: Any) -> int | None:
    number = optional(to_int)(value)
    if number is not None and number < 1:
        raise ValueError(f"expected a positive number, got {value!r}")
    return number  # type: ignore[no-any-return]


@attrs.define
class MaxTasksStep(Step):
    """Holds the bounds (as validated settings) and says them at start-up."""

    name = "maxtasks"
    after = ("pool",)

    worker_max_tasks_per_child: int | None = setting(
        None, convert=_positive, help="recycle a pool child after this many tasks"
    )
    worker_max_memory_per_child: int | None = setting(
        None, convert=_positive, help="recycle a pool child above this resident memory (KiB)"
    )

    def start(self, worker: Worker) -> None:
        log.info("pool children are recycled %s", self.describe())

    def describe(self) -> str:
        bounds = []
        if self.worker_max_tasks_per_child:
            bounds.append(f"after {self.worker_max_tasks_per_child} tasks")
        if self.worker_max_memory_per_child:
            bounds.append(f"above {self.worker_max_memory_per_child} KiB")
        return " or ".join(bounds) or "never (no bound set)"


@hookimpl
def kernel_steps() -> list[type[Step]]:
    return [MaxTasksStep]


@hookimpl
def kernel_cli_options() -> list[click.Parameter]:
    return [
        click.Option(
            ["--max-tasks-per-child", "worker_max_tasks_per_child"],
            type=click.IntRange(min=1),
            help="Recycle a pool child after this many tasks.",
        ),
        click.Option(
            ["--max-memory-per-child", "worker_max_memory_per_child"],
            type=click.IntRange(min=1),
            metavar="KIB",
            help="Recycle a prefork child above KIB of resident memory after a task.",
        ),
    ]


@hookimpl
def kernel_configure(settings: Any) -> None:
    if not settings.get("worker_max_tasks_per_child") and not settings.get(
        "worker_max_memory_per_child"
    ):
        raise ConfigError(
            "worker_max_tasks_per_child",
            "plugin maxtasks is enabled but sets no bound; give "
            "--max-tasks-per-child N and/or --max-memory-per-child KIB",
        )


@hookimpl
def kernel_recycle_child(worker: Worker, tasks: int, rss_kib: int) -> bool | None:
    settings = worker.settings
    most = settings.get("worker_max_tasks_per_child")
    if most and tasks >= most:
        return True
    memory = settings.get("worker_max_memory_per_child")
    if memory and rss_kib > memory and os.getpid() != worker.pid:
        log.info("child %d uses %d KiB (bound %d KiB): recycling it", os.getpid(), rss_kib, memory)
        return True
    return None
