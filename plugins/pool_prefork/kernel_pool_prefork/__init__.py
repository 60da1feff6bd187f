"""The prefork pool: tasks run in forked child processes, with time limits and recycling."""

from __future__ import annotations

from typing import Any

import attrs

from kernel import Step, Worker, hookimpl, setting
from kernel.plugin import POOL, optional, to_int

from .pool import PreforkPool, default_concurrency

__all__ = ["PreforkPool", "PreforkPoolStep"]


def _processes(value: Any) -> int | None:
    number = optional(to_int)(value)
    if number is not None and number < 1:
        raise ValueError(f"expected at least one process, got {value!r}")
    return number  # type: ignore[no-any-return]


@attrs.define
class PreforkPoolStep(Step):
    name = "pool.prefork"
    provides = ("pool",)

    worker_concurrency: int | None = setting(None, convert=_processes, help="child processes")
    pool: PreforkPool | None = attrs.field(default=None, init=False)

    def start(self, worker: Worker) -> None:
        pm = worker.pm

        def init() -> None:  # in each child, as it starts
            pm.hook.kernel_child_init(worker=worker)

        recycle = None
        if pm.implements("kernel_recycle_child"):

            def recycle(tasks: int, rss_kib: int) -> bool:  # in the child, after each task
                return bool(
                    pm.hook.kernel_recycle_child(worker=worker, tasks=tasks, rss_kib=rss_kib)
                )

        self.pool = PreforkPool(self.concurrency, init=init, recycle=recycle)
        self.pool.start()
        worker.services[POOL] = self.pool

    def stop(self, worker: Worker) -> None:
        if self.pool is not None:
            self.pool.stop()

    def terminate(self, worker: Worker) -> None:
        if self.pool is not None:
            self.pool.terminate()

    @property
    def concurrency(self) -> int:
        return self.worker_concurrency or default_concurrency()

    def describe(self) -> str:
        return f"{self.concurrency} child processes"


@hookimpl
def kernel_steps() -> list[type[Step]]:
    return [PreforkPoolStep]


@hookimpl
def kernel_task_options() -> list[str]:
    return ["time_limit", "soft_time_limit"]
