"""The pool.gevent bootstep: the shared green step, on gevent."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from kernel_pool_green.step import GreenPoolStep

if TYPE_CHECKING:
    from .pool import GeventPool


@attrs.define
class GeventPoolStep(GreenPoolStep):
    name = "pool.gevent"
    slots = "greenlets"

    def make_pool(self, concurrency: int) -> GeventPool:
        from .pool import GeventPool  # gevent loads only when this pool is chosen

        return GeventPool(concurrency)
