"""The solo pool: each task runs to completion in the consumer's own thread, one at a time."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs

from kernel import Step, Worker, hookimpl
from kernel.plugin import POOL


class SoloPool:
    """No slots to manage: `apply` runs the function before returning. Useful for debugging."""

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
class SoloPoolStep(Step):
    name = "pool.solo"
    provides = ("pool",)

    def start(self, worker: Worker) -> None:
        worker.services[POOL] = SoloPool()
        worker.pm.hook.kernel_child_init(worker=worker)

    def describe(self) -> str:
        return "one task at a time"


@hookimpl
def kernel_steps() -> list[type[Step]]:
    return [SoloPoolStep]
