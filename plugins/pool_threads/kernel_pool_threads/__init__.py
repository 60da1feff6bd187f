"""The threads pool: N worker threads taking functions from one queue."""

from __future__ import annotations

import attrs

from kernel import Step, hookimpl
from kernel.plugin import ChildHooks, Node, PoolStep

from .pool import ThreadPool

__all__ = ["ThreadPool", "ThreadPoolStep"]


@attrs.define
class ThreadPoolStep(PoolStep):
    """Threads of the worker process; a thread is replaced when a recycling policy says so."""

    name = "pool.threads"
    recycles = True
    slots = "threads"

    def create(self, worker: Node, concurrency: int, children: ChildHooks) -> ThreadPool:
        # asked after each task only when some plugin has a policy: else no count, no RSS read
        recycle = children.recycle if children.recycles else None
        pool = ThreadPool(concurrency, recycle=recycle)
        pool.start()
        return pool


@hookimpl
def kernel_steps() -> list[type[Step]]:
    return [ThreadPoolStep]


@hookimpl
def kernel_task_options() -> list[str]:
    return ["time_limit", "soft_time_limit"]
