"""Exceptions of tasks and results, named as in Celery so stored results read alike both ways."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import KernelError

# Where Celery keeps each of these, so results we store name a class Celery can import, and
# results Celery stores map back onto ours.
WIRE_MODULES: dict[str, str] = {
    "Retry": "celery.exceptions",
    "Ignore": "celery.exceptions",
    "Reject": "celery.exceptions",
    "MaxRetriesExceededError": "celery.exceptions",
    "TaskRevokedError": "celery.exceptions",
    "NotRegistered": "celery.exceptions",
    "ChordError": "celery.exceptions",
    "TimeoutError": "celery.exceptions",
    "TimeLimitExceeded": "billiard.exceptions",
    "SoftTimeLimitExceeded": "billiard.exceptions",
    "WorkerLostError": "billiard.exceptions",
}


class TaskError(Exception):
    """Base class of the exceptions below."""


class Retry(TaskError):
    """Raised by `task.retry()` once the retry is sent: the task ends in state RETRY."""

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | str | None = None,
        when: float | datetime | None = None,
        **_: Any,
    ) -> None:
        self.message, self.exc, self.when = message, exc, when
        self.stored = False  # the RETRY state was stored before the retry was sent
        super().__init__(message, exc, when)

    def humanize(self) -> str:
        if isinstance(self.when, (int, float)):
            return f"in {self.when}s"
        return f"at {self.when}"

    def __str__(self) -> str:
        if self.message:
            return self.message
        return f"Retry {self.humanize()}: {self.exc!r}" if self.exc else f"Retry {self.humanize()}"


class Ignore(TaskError):
    """Raised by a task to end without storing a state (state IGNORED, nothing written)."""


class Reject(TaskError):
    """Raised by a task to reject its message, optionally asking the broker to requeue it."""

    def __init__(self, reason: Any = None, requeue: bool = False) -> None:
        self.reason, self.requeue = reason, requeue
        super().__init__(reason, requeue)


class MaxRetriesExceededError(TaskError):
    """The task asked to retry more times than its `max_retries` allows."""


class TaskRevokedError(TaskError):
    """The task was revoked or expired before it ran."""


class NotRegistered(TaskError, KeyError):
    """A message named a task this worker does not know."""

    def __str__(self) -> str:
        return repr(self.args[0]) if self.args else ""


class ChordError(TaskError):
    """A chord's header task failed."""


class TimeoutError(TaskError):
    """`AsyncResult.get(timeout=...)` gave up waiting."""


class TimeLimitExceeded(TaskError):
    """The task ran past its hard time limit and was stopped."""


class SoftTimeLimitExceeded(TaskError):
    """Raised inside a task that reached its soft time limit; the task may catch it."""


class WorkerLostError(TaskError):
    """The process running the task died before the task returned."""


class InvalidTaskError(TaskError):
    """A task message that cannot be run (malformed body or headers, unparseable eta/expires)."""


class BrokerUnreachable(KernelError):
    """The broker could not be reached (after any retries the settings allow)."""


class BackendError(KernelError):
    """The result backend could not be reached or refused a request."""
