"""The solo pool: each task runs to completion in the consumer's own thread, one at a time."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs

from kernel import Step, hookimpl
from kernel.plugin import BasePool, ChildHooks, Node, PoolStep


class SoloPool(BasePool):
    """No slots to manage: `apply` runs the function before returning. Useful for debugging.

    It cannot grow, shrink or recycle: its one slot is the consumer's thread."""

    concurrency = 1

    def apply(
        self,
        fn: Callable[[Any], Any],
        arg: Any,
        callback: Callable[[Any], None],
        error_callback: Callable[[BaseException], None],
        timeouts: tuple[float | None, float | None] = (None, None),
    ) -> None:
        try:
            result = fn(arg)
        except BaseException as exc:  # report like any pool would, instead of unwinding the loop
            error_callback(exc)
        else:
            callback(result)

    def stop(self) -> None:
        pass

    def terminate(self) -> None:
        pass

    def info(self) -> dict[str, Any]:
        return {"implementation": "solo", "max-concurrency": 1, "processes": [os.getpid()]}


@attrs.define
class SoloPoolStep(PoolStep):
    name = "pool.solo"

    def default_concurrency(self) -> int:
        return 1

    @property
    def concurrency(self) -> int:
        return 1  # whatever -c says: there is one consumer thread

    def create(self, worker: Node, concurrency: int, children: ChildHooks) -> SoloPool:
        return SoloPool()

    def describe(self) -> str:
        return "one task at a time"


@hookimpl
def kernel_steps() -> list[type[Step]]:
    return [SoloPoolStep]
