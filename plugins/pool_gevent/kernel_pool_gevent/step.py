"""The pool.gevent bootstep: builds the pool, shares it as the worker's POOL, runs child init."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from kernel import Step, Worker, setting
from kernel.plugin import POOL, optional, to_int

if TYPE_CHECKING:
    from .pool import GeventPool

# green threads are cheap: the CPU count (the other pools' default) would waste the point
DEFAULT_CONCURRENCY = 100


@attrs.define
class GeventPoolStep(Step):
    name = "pool.gevent"
    provides = ("pool",)

    worker_concurrency: int | None = setting(None, convert=optional(to_int), help="greenlets")
    pool: GeventPool | None = attrs.field(default=None, init=False)

    def start(self, worker: Worker) -> None:
        from .pool import GeventPool  # gevent loads only when this pool is chosen

        self.pool = GeventPool(self.worker_concurrency or DEFAULT_CONCURRENCY)
        self.pool.start()
        worker.services[POOL] = self.pool
        worker.pm.hook.kernel_child_init(worker=worker)

    def stop(self, worker: Worker) -> None:
        if self.pool is not None:
            self.pool.stop()

    def terminate(self, worker: Worker) -> None:
        if self.pool is not None:
            self.pool.terminate()

    def describe(self) -> str:
        return f"{self.worker_concurrency or DEFAULT_CONCURRENCY} greenlets"
