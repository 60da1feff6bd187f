"""The threads pool: N worker threads taking functions from one queue."""

from __future__ import annotations

import attrs

from kernel import Step, Worker, hookimpl, setting
from kernel.plugin import POOL, optional, to_int

from .pool import ThreadPool, default_concurrency

__all__ = ["ThreadPool", "ThreadPoolStep"]


@attrs.define
class ThreadPoolStep(Step):
    name = "pool.threads"
    provides = ("pool",)

    worker_concurrency: int | None = setting(None, convert=optional(to_int), help="threads")
    pool: ThreadPool | None = attrs.field(default=None, init=False)

    def start(self, worker: Worker) -> None:
        pm = worker.pm
        recycle = None
        if pm.implements("kernel_recycle_child"):

            def recycle(tasks: int, rss_kib: int) -> bool:
                return bool(
                    pm.hook.kernel_recycle_child(worker=worker, tasks=tasks, rss_kib=rss_kib)
                )

        self.pool = ThreadPool(self.worker_concurrency or default_concurrency(), recycle=recycle)
        self.pool.start()
        worker.services[POOL] = self.pool
        pm.hook.kernel_child_init(worker=worker)

    def stop(self, worker: Worker) -> None:
        if self.pool is not None:
            self.pool.stop()

    def terminate(self, worker: Worker) -> None:
        if self.pool is not None:
            self.pool.terminate()

    def describe(self) -> str:
        return f"{self.worker_concurrency or default_concurrency()} threads"


@hookimpl
def kernel_steps() -> list[type[Step]]:
    return [ThreadPoolStep]


@hookimpl
def kernel_task_options() -> list[str]:
    return ["time_limit", "soft_time_limit"]
