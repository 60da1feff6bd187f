"""Retrying a call against a server that may be briefly away: backoff intervals and the loop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("kernel.retry")


def intervals(policy: Mapping[str, Any]) -> Iterator[float]:
    """Sleeps between tries, as Celery's retry policies give them: start, +step, capped at max.

    Yields ``max_retries`` intervals (forever when it is None)."""
    start = float(policy.get("interval_start", 0))
    step = float(policy.get("interval_step", 0.2))
    cap = float(policy.get("interval_max", 1.0))
    tries = policy.get("max_retries", 3)
    current, given = start, 0
    while tries is None or given < tries:
        yield min(current, cap)
        current += step
        given += 1


def retry_call(
    fn: Callable[[], T],
    errors: tuple[type[BaseException], ...],
    policy: Mapping[str, Any],
    what: str,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Call `fn`; on one of `errors`, sleep per `policy` and try again; re-raise once tries run
    out. `on_retry` runs before each sleep (to drop a broken connection, say)."""
    waits: Iterator[float] | None = None  # made on the first failure: most calls succeed
    while True:
        try:
            return fn()
        except errors as exc:
            if waits is None:
                waits = intervals(policy)
            pause = next(waits, None)
            if pause is None:
                raise
            log.warning(
                "%s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, pause
            )
            if on_retry is not None:
                on_retry(exc)
            time.sleep(pause)
