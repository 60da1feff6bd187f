"""The base step of the green pools: a hundred green threads by default, none recycled."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from kernel.plugin import ChildHooks, Node, PoolStep

if TYPE_CHECKING:
    from .pool import GreenPool

# green threads are cheap: the CPU count (the other pools' default) would waste the point
DEFAULT_CONCURRENCY = 100


@attrs.define
class GreenPoolStep(PoolStep):
    """Subclass it with `name`, `slots` and `make_pool`, which should import the library
    only when called: the plugin module is imported before the standard library is patched.

    Tasks run in the worker process, each in a fresh green thread: the core calls
    `kernel_child_init` once, and there is no slot to recycle (`recycles` stays False)."""

    def default_concurrency(self) -> int:
        return DEFAULT_CONCURRENCY

    def make_pool(self, concurrency: int) -> GreenPool:
        """A new, unstarted pool on this step's library."""
        raise NotImplementedError

    def create(self, worker: Node, concurrency: int, children: ChildHooks) -> GreenPool:
        pool = self.make_pool(concurrency)
        pool.start()
        return pool
