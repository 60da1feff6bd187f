"""The prefetch window: how many unacknowledged messages a worker lets its broker hand it."""

from __future__ import annotations

import time
from collections.abc import Sized
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..wire.transport import Broker
    from .contracts import Pool

LOOKAHEAD = 0.1  # adaptive prefetch: hold what the worker finishes in this many seconds
LOOKAHEAD_MAX = 500  # ... but never more than this many messages beyond Celery's window
RETUNE_EVERY = 0.25  # seconds between measurements of the finishing rate


class PrefetchWindow:
    """Celery's slots x multiplier, plus the messages held for an eta or a deferral, plus
    (adaptive) what the worker finishes in LOOKAHEAD seconds: fast tasks come in batches,
    slow ones are not hoarded away from other workers."""

    def __init__(
        self, broker: Broker, pool: Pool, multiplier: int, adaptive: bool, held: Sized
    ) -> None:
        self.broker = broker
        self.pool = pool
        self.multiplier = multiplier
        self.adaptive = adaptive
        self.held = held  # messages waiting on a timer, owned by the consumer
        # autoscale sizes the window for the largest pool it may grow to
        self.slots: int | None = None
        self.lookahead = 0
        self.finished = 0  # tasks finished since the rate was last measured
        self._since = time.monotonic()

    @property
    def size(self) -> int:
        if self.multiplier <= 0:
            return 0  # no limit
        slots = self.slots or self.pool.concurrency
        return slots * self.multiplier + len(self.held) + self.lookahead

    def resize(self) -> None:
        """Tell the broker the window's size (after the held messages changed)."""
        self.broker.set_prefetch(self.size)

    def retune(self) -> None:
        """Re-measure the finishing rate (every RETUNE_EVERY s) and move the window if it
        changed by a quarter or more (a window change is a round trip on some brokers)."""
        now = time.monotonic()
        elapsed = now - self._since
        # look early when many tasks finish quickly (the window should open within the first
        # few dozen of a burst), otherwise every RETUNE_EVERY seconds
        early = elapsed < RETUNE_EVERY
        if early and not (self.finished >= 32 and elapsed >= 0.005):
            return
        rate = self.finished / elapsed
        wanted = min(int(rate * LOOKAHEAD), LOOKAHEAD_MAX) if self.adaptive else 0
        if early and wanted <= self.lookahead:
            return  # early looks only open the window: a short sample is a noisy one
        self.finished, self._since = 0, now
        if abs(wanted - self.lookahead) >= max(self.lookahead // 4, 4):
            self.lookahead = wanted
            self.resize()
