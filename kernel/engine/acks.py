"""A task's delivery policy: every decision to acknowledge or reject its message, in one place."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple

from ..wire.exceptions import TimeLimitExceeded
from ..wire.meta import FAILURE, IGNORED, REJECTED

if TYPE_CHECKING:
    from ..client.task import Task
    from ..wire.protocol import Request
    from ..wire.transport import Message

log = logging.getLogger("kernel.worker")


class TaskPolicy(NamedTuple):
    """A task's options as they apply to each of its messages, worked out once per task.

    At most once (the default): the message is acknowledged just before the task runs. At
    least once (`acks_late`): after the task returned and its result is stored."""

    acks_late: bool
    acks_on_failure_or_timeout: bool
    reject_on_worker_lost: bool
    ignore_result: bool
    store_errors_even_if_ignored: bool
    track_started: bool
    time_limit: float | None
    soft_time_limit: float | None

    @classmethod
    def of(cls, task: Task) -> TaskPolicy:
        option = task.option
        return cls(
            acks_late=bool(option("acks_late")),
            acks_on_failure_or_timeout=bool(option("acks_on_failure_or_timeout")),
            reject_on_worker_lost=bool(option("reject_on_worker_lost")),
            ignore_result=bool(option("ignore_result")),
            store_errors_even_if_ignored=bool(option("store_errors_even_if_ignored")),
            track_started=bool(option("track_started")),
            time_limit=option("time_limit"),
            soft_time_limit=option("soft_time_limit"),
        )

    def ignores(self, request: Request) -> bool:
        """The message's own `ignore_result` wins over the task's."""
        return request.ignore_result if request.ignore_result is not None else self.ignore_result

    def stores(self, request: Request, state: str) -> bool:
        """Whether a run that ended in `state` has a result to store."""
        if state in (IGNORED, REJECTED):
            return False
        if self.ignores(request):
            return state == FAILURE and self.store_errors_even_if_ignored
        return True

    def timeouts(self, request: Request) -> tuple[float | None, float | None]:
        """(soft, hard): the message's own limits, else the task's, else the app's defaults."""
        hard, soft = request.timelimit  # the wire order is [hard, soft]
        return (
            self.soft_time_limit if soft is None else soft,
            self.time_limit if hard is None else hard,
        )

    def accept(self, message: Message) -> None:
        """The task is about to run: an early-ack task's message is acknowledged now."""
        if not self.acks_late:
            message.ack()

    def settle(self, message: Message, state: str, requeue: bool, stored: bool) -> None:
        """After the run (and the store): a late-ack task's message is acknowledged, or
        rejected (requeued if its result could not be stored, or the task asked for it)."""
        if not self.acks_late:
            return  # acknowledged before it ran
        if not stored or (state == REJECTED and requeue):
            message.reject(requeue=True)
        elif state == REJECTED or (state == FAILURE and not self.acks_on_failure_or_timeout):
            message.reject(requeue=False)
        else:
            message.ack()

    def requeues_lost(self, exc: BaseException) -> bool:
        """As Celery decides: a late-ack task stopped by its time limit goes back to the queue
        if `acks_on_failure_or_timeout` is off; one lost with its pool child (a dead process)
        if `reject_on_worker_lost` is on. Otherwise its failure is stored."""
        if not self.acks_late:
            return False
        if isinstance(exc, TimeLimitExceeded):
            return not self.acks_on_failure_or_timeout
        return self.reject_on_worker_lost


class Policies:
    """Each task's policy, worked out on its first message; `forget` after options change."""

    def __init__(self) -> None:
        self._found: dict[str, TaskPolicy] = {}

    def __call__(self, task: Task) -> TaskPolicy:
        found = self._found.get(task.name)
        if found is None:
            found = self._found[task.name] = TaskPolicy.of(task)
        return found

    def forget(self) -> None:
        self._found.clear()


def refuse(message: Message, ident: object) -> None:
    """A message no task can run (malformed, unknown task): dropped, as Celery drops it."""
    try:
        message.reject(requeue=False)
    except Exception:
        log.exception("could not reject message %s", ident)


def give_back(message: Message) -> None:
    """A message taken but not started, handed back on a warm shutdown."""
    message.reject(requeue=True)


def drop(message: Message) -> None:
    """A message whose task must not run nor come back (it expired): acknowledged."""
    message.ack()
