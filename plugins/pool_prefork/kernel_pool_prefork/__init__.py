"""The prefork pool: tasks run in forked child processes, with time limits and recycling."""

from __future__ import annotations

import attrs

from kernel import Step, hookimpl
from kernel.plugin import ChildHooks, Node, PoolStep

from .pool import PreforkPool

__all__ = ["PreforkPool", "PreforkPoolStep"]


@attrs.define
class PreforkPoolStep(PoolStep):
    """Forked children; each one calls the child hooks itself, since tasks run there."""

    name = "pool.prefork"
    in_process = False
    recycles = True
    slots = "child processes"

    def create(self, worker: Node, concurrency: int, children: ChildHooks) -> PreforkPool:
        # both run in each child: `started` as it starts, `recycle` after each of its tasks
        # (only when some plugin has a policy: else no count, no RSS read)
        recycle = children.recycle if children.recycles else None
        pool = PreforkPool(concurrency, init=children.started, recycle=recycle)
        pool.start()
        return pool


@hookimpl
def kernel_steps() -> list[type[Step]]:
    return [PreforkPoolStep]


@hookimpl
def kernel_task_options() -> list[str]:
    return ["time_limit", "soft_time_limit"]
