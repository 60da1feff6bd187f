"""Calls due later, run by the consumer's loop (eta tasks, deferrals, late batches)."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any


class Timers:
    """A heap of (due, seq, fn, args); one thread schedules and runs them."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()

    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn, args))

    def wait(self) -> float | None:
        """Seconds until the next call is due; None when none is scheduled."""
        if not self._heap:
            return None
        return max(self._heap[0][0] - time.monotonic(), 0.0)

    def run_due(self) -> None:
        heap = self._heap
        if not heap:
            return
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            _, _, fn, args = heapq.heappop(heap)
            fn(*args)
