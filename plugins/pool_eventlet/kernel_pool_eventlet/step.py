"""The pool.eventlet bootstep: the shared green step, on eventlet."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from kernel_pool_green.step import GreenPoolStep

if TYPE_CHECKING:
    from .pool import EventletPool


@attrs.define
class EventletPoolStep(GreenPoolStep):
    name = "pool.eventlet"
    slots = "green threads"

    def make_pool(self, concurrency: int) -> EventletPool:
        from .pool import EventletPool  # eventlet loads only when this pool is chosen

        return EventletPool(concurrency)
