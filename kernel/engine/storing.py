"""Results: the meta written for a request, and storing it (in a batch, at once, or where the
task ran). The one place a worker encodes and stores what its tasks came to."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..wire.meta import result_meta
from ..wire.protocol import NOTIFY_HEADER
from ..wire.transport import Stored

if TYPE_CHECKING:
    from ..wire.protocol import Request
    from ..wire.transport import ResultBackend

log = logging.getLogger("kernel.worker")

FLUSH_BATCH = 100  # results stored (and messages acked) together once this many have finished
FLUSH_AFTER = 0.005  # ... or once the oldest of them has waited this long (seconds)

E = TypeVar("E")


class Results:
    """Encodes metas as Celery lays them out and stores them through the worker's backend.

    Built once per worker; used in the consumer's thread and, for a task whose result is
    stored where it ran, in pool slots (threads or prefork children) too."""

    def __init__(
        self, backend: ResultBackend, hostname: str, extended: bool, zone: tzinfo | None = None
    ) -> None:
        self.backend = backend
        self.hostname = hostname
        self.extended = extended
        self.in_pool = backend.stores_in_pool
        # date_done is given in the app's zone, as Celery gives it (UTC: the meta's default)
        self.zone = None if zone is None or zone is timezone.utc else zone

    def encode(
        self,
        request: Request,
        state: str,
        value: Any,
        traceback: str | None = None,
        children: list[Any] | None = None,
    ) -> bytes:
        """The meta of `request` in `state` with `value`, encoded; raises what the serializer
        raises for a value it refuses."""
        request.hostname = self.hostname
        zone = self.zone
        meta = result_meta(
            request.id or "",
            state,
            value,
            traceback=traceback,
            children=children,
            request=request,
            extended=self.extended,
            date_done=datetime.now(zone) if zone is not None else None,
        )
        return self.backend.encode(meta)

    def now(self, request: Request, state: str, value: Any) -> None:
        """Store one state at once (STARTED, REVOKED, a refused task's FAILURE), logging a
        failure to store: nothing waits on it to settle a message."""
        try:
            self.backend.store([stored(request, state, self.encode(request, state, value))])
        except Exception:
            log.exception("could not store %s for task %s", state, request.id)

    def here(self, request: Request, state: str, data: bytes) -> bool:
        """Store one result where its task ran (a pool slot); False if that failed, and the
        worker stores it with its next batch instead (which logs a failure)."""
        try:
            self.backend.store([stored(request, state, data)])
        except Exception:
            log.debug("could not store the result of %s where it ran", request.id)
            return False
        return True

    def batch(self, items: list[Stored]) -> bool:
        """Store finished tasks' results together; False (logged) if the store failed."""
        try:
            self.backend.store(items)
        except Exception:
            log.exception(
                "could not store %d result(s); late-ack tasks go back to the queue", len(items)
            )
            return False
        return True


def stored(request: Request, state: str, data: bytes) -> Stored:
    """A result as the backend stores it, with where its client waits for notice."""
    notify = request.headers.get(NOTIFY_HEADER)
    return Stored(request.id or "", state, data, request.reply_to, notify)


class Finished(Generic[E]):
    """Finished tasks waiting for their results to be stored together, then to be settled:
    stored once FLUSH_BATCH have finished, FLUSH_AFTER after the oldest did, or when the
    worker has nothing else to do."""

    def __init__(self) -> None:
        self.entries: list[E] = []
        self.since = 0.0  # when the oldest waiting entry finished

    def add(self, entry: E) -> None:
        if not self.entries:
            self.since = time.monotonic()
        self.entries.append(entry)

    @property
    def full(self) -> bool:
        return len(self.entries) >= FLUSH_BATCH

    def due(self, idle: bool) -> bool:
        entries = self.entries
        return bool(entries) and (
            idle or len(entries) >= FLUSH_BATCH or time.monotonic() - self.since >= FLUSH_AFTER
        )

    def wait(self) -> float | None:
        """Seconds until the batch is due by age; None when nothing waits."""
        if not self.entries:
            return None
        return max(self.since + FLUSH_AFTER - time.monotonic(), 0.0)

    def take(self) -> list[E]:
        entries, self.entries = self.entries, []
        return entries
